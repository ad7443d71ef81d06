"""Calibration: run the encoder over audio and stream the moments of every target linear.

Only the encoder runs (no decoding). Forward hooks, owned here and always removed, add each
batch's activations to float64 sums; nothing is kept but O(d^2) per hooked site.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from lite_whisper.calibration.moments import PRODUCT_PRECISIONS, Moments, float32_without_tf32
from lite_whisper.calibration.reduce import all_reduce_statistics
from lite_whisper.calibration.statistics import SITES, CalibrationStatistics, ModelSignature
from lite_whisper.data.datasets import SpeechDataset, load_dataset
from lite_whisper.data.features import feature_batches
from lite_whisper.distributed import SINGLE, Ranks
from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS
from lite_whisper.progress import ProgressBar


def calibrate(
    model,
    processor,
    data: SpeechDataset | str,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    exclude_padding: bool = False,
    progress: bool = True,
    model_name: str = "",
    ranks: Ranks = SINGLE,
    compute_dtype: torch.dtype | None = None,
    products: str = "float32",
) -> CalibrationStatistics:
    """Stream the output statistics of every target linear over a calibration dataset.

    Under torch.distributed (`ranks`), each rank reads every world_size-th clip and the sums
    are all-reduced: every rank returns the statistics of the whole dataset. `compute_dtype`
    (float16/bfloat16) and `products`: see `collect_statistics`.
    """
    dataset = data if isinstance(data, SpeechDataset) else load_dataset(data, limit=limit)
    if ranks.distributed:
        dataset = dataset.sharded(ranks.rank, ranks.world_size)
    skipped: list[str] = []
    batches = feature_batches(dataset, processor, batch_size, model.device, model.dtype, skipped)
    statistics = collect_statistics(
        model, batches, exclude_padding=exclude_padding, progress=progress and ranks.main,
        total_clips=dataset.size, model_name=model_name, compute_dtype=compute_dtype, products=products,
    )
    all_reduce_statistics(statistics, ranks)
    if statistics.calibration_clips == 0:
        detail = f" ({len(skipped)} clips could not be read, e.g. {skipped[0]})" if skipped else ""
        raise ValueError(f"calibration data {dataset.spec}: no usable audio{detail}")
    return statistics


def collect_statistics(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    exclude_padding: bool = False,
    progress: bool = True,
    total_clips: int | None = None,
    model_name: str = "",
    compute_dtype: torch.dtype | None = None,
    products: str = "float32",
) -> CalibrationStatistics:
    """Run only the encoder of `model` over `batches` and stream the moments of every target.

    Each batch is (input_features, n_frames): log-mel features (B, n_mels, 3000), clips
    padded to 30 s as Whisper does, and a LongTensor (B,) of encoder frames that carry
    audio (1 to 1500; an encoder frame is two mel frames, rounded up). By default all
    1500 rows of every clip count, as in the paper; with `exclude_padding` only the
    first n_frames rows of each clip do. Memory does not grow with the number of clips.
    With `compute_dtype` float16 or bfloat16 the encoder runs under autocast (weights stay as
    they are; a GPU's fast path); the moments are float64 all the same. A float32 encoder runs
    with TF32 off (cuDNN turns it on for convolutions by default). `products`: the precision of
    each batch's products (`moments.PRODUCT_PRECISIONS`); the statistics record all three.

    Nothing in the loop waits for a GPU: frame counts stay on the host, padding is masked by
    multiplication, each hook adds its batch with one batched product (`Moments.update`).
    """
    if products not in PRODUCT_PRECISIONS:
        raise ValueError(f"unknown product precision {products!r}; choose one of {', '.join(PRODUCT_PRECISIONS)}")
    encoder = encoder_of(model)
    parameter = next(encoder.parameters())
    mixed = compute_dtype not in (None, parameter.dtype)
    encoder_dtype = compute_dtype if mixed else parameter.dtype
    statistics = CalibrationStatistics(
        signature=ModelSignature.of(model, model_name), exclude_padding=exclude_padding,
        precision={"encoder": str(encoder_dtype).removeprefix("torch."), "tf32": False,
                   "products": products, "sums": "float64"},
    )
    batch = {"mask": None, "rows": None}  # the current batch's row mask and row count; read by the hooks

    def record_input(moments: Moments) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            moments.update(args[0], batch["mask"], batch["rows"], products)

        return hook

    def record_output(moments: Moments) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            moments.update(output, batch["mask"], batch["rows"], products)

        return hook

    handles = []
    was_training = encoder.training
    try:
        for index, layer in enumerate(encoder.layers):
            for target, side in SITES:
                linear = layer.get_submodule(LOW_RANK_TARGETS[target][0])
                width = linear.in_features if side == "input" else linear.out_features
                moments = Moments.zeros(width, device=linear.weight.device)
                statistics.moments[(index, target, side)] = moments
                if side == "input":
                    handles.append(linear.register_forward_pre_hook(record_input(moments)))
                else:
                    handles.append(linear.register_forward_hook(record_output(moments)))

        encoder.eval()  # dropout would distort the statistics

        def precision():
            if mixed:
                return torch.autocast(parameter.device.type, dtype=compute_dtype)
            return float32_without_tf32() if parameter.dtype == torch.float32 else contextlib.nullcontext()
        with ProgressBar(total=total_clips, unit="clip", desc="calibrating", disable=not progress) as bar:
            for input_features, n_frames in batches:
                n_frames = n_frames.cpu()  # host numbers: counting on the device would wait for it
                encoder_frames = (input_features.shape[-1] + 1) // 2
                _check_frames(n_frames, input_features.shape[0], encoder_frames)
                audio_frames = int(n_frames.sum())
                if exclude_padding:
                    frames = n_frames.to(parameter.device, non_blocking=True)
                    batch["mask"] = torch.arange(encoder_frames, device=parameter.device) < frames[:, None]
                    batch["rows"] = audio_frames
                with torch.inference_mode(), precision():
                    encoder(input_features.to(device=parameter.device, dtype=parameter.dtype, non_blocking=True))
                statistics.calibration_clips += input_features.shape[0]
                statistics.calibration_frames += audio_frames
                bar.update(input_features.shape[0])
        for moments in statistics.moments.values():
            moments.symmetrize()  # once, after the last batch
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    return statistics


def _check_frames(n_frames: Tensor, batch_size: int, encoder_frames: int) -> None:
    if n_frames.shape != (batch_size,) or n_frames.dtype.is_floating_point:
        raise ValueError(
            f"n_frames must be an integer tensor of shape ({batch_size},), got {n_frames.dtype} {tuple(n_frames.shape)}"
        )
    if (n_frames < 1).any() or (n_frames > encoder_frames).any():
        raise ValueError(f"n_frames must be between 1 and {encoder_frames} encoder frames, got {n_frames.tolist()}")
