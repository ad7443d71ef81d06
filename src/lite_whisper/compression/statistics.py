"""Streaming calibration statistics: the output moments of every target linear.

PCA of a layer's outputs needs only their mean and covariance, and both follow from
sums (METHOD §2): count n, s = sum of y, S = sum of y y^T, accumulated in float64.
Memory is O(d^2) per hooked site whatever the amount of audio, and shards computed
apart merge by addition.

Moments are accumulated on the cheaper side of each linear and mapped through its
weights exactly when asked (`Moments.affine`): q, k and v read the same hidden
states, so one d x d input matrix serves all three; fc1's d-wide input is cheaper than
its 4d-wide output; out_proj and fc2 are measured on their outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lite_whisper.compression.targets import LOW_RANK_TARGETS

Side = Literal["input", "output"]

# target -> (side that is measured, target whose module carries the hook). k and v reuse
# q's input: WhisperAttention feeds the same hidden states to all three projections.
_SOURCES: dict[str, tuple[Side, str]] = {
    "q_proj": ("input", "q_proj"),
    "k_proj": ("input", "q_proj"),
    "v_proj": ("input", "q_proj"),
    "out_proj": ("output", "out_proj"),
    "fc1": ("input", "fc1"),
    "fc2": ("output", "fc2"),
}
# The hooked sites, each as (target, side), in table order.
_SITES: tuple[tuple[str, Side], ...] = tuple(
    dict.fromkeys((hooked, side) for side, hooked in _SOURCES.values())
)

_FORMAT = "lite-whisper-statistics"
_VERSION = 1
_METADATA_KEY = "lite_whisper_statistics"


@dataclass
class Moments:
    """Running sums over the rows of activations of width d.

    count: rows seen; sum: sum of rows (d,); outer: sum of row outer products (d, d).
    Both tensors are float64 so that sums over millions of rows keep their precision.
    """

    count: int
    sum: Tensor
    outer: Tensor

    @classmethod
    def zeros(cls, dim: int, device: torch.device | str | None = None) -> Moments:
        return cls(
            count=0,
            sum=torch.zeros(dim, dtype=torch.float64, device=device),
            outer=torch.zeros(dim, dim, dtype=torch.float64, device=device),
        )

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, x: Tensor, mask: Tensor | None = None, chunk_rows: int = 4096) -> None:
        """Add the rows of `x` (..., d); with a boolean `mask` of shape x.shape[:-1], only rows where it is True.

        Rows are cast to float64 `chunk_rows` at a time so the temporary copy stays small.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected activations of width {self.dim}, got shape {tuple(x.shape)}")
        rows = x.reshape(-1, self.dim)
        if mask is not None:
            if mask.shape != x.shape[:-1]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(x.shape)}")
            rows = rows[mask.reshape(-1).to(rows.device)]
        for chunk in rows.split(chunk_rows):
            chunk = chunk.to(device=self.sum.device, dtype=torch.float64)
            self.count += chunk.shape[0]
            self.sum += chunk.sum(dim=0)
            self.outer.addmm_(chunk.T, chunk)

    def __add__(self, other: Moments) -> Moments:
        """The moments of the union of both row sets."""
        if other.dim != self.dim:
            raise ValueError(f"cannot add moments of width {self.dim} and {other.dim}")
        device = self.sum.device
        return Moments(
            count=self.count + other.count,
            sum=self.sum + other.sum.to(device),
            outer=self.outer + other.outer.to(device),
        )

    def mean(self) -> Tensor:
        if self.count == 0:
            raise ValueError("no rows accumulated: the mean is undefined")
        return self.sum / self.count

    def covariance(self) -> Tensor:
        """The centred (population) covariance S/n - mean mean^T."""
        mean = self.mean()
        return self.outer / self.count - torch.outer(mean, mean)

    def affine(self, weight: Tensor, bias: Tensor | None = None) -> Moments:
        """The exact moments of y = x W^T + b given these moments of x.

        s_y = W s_x + n b;  S_y = W S_x W^T + W s_x b^T + b s_x^T W^T + n b b^T.
        """
        w = weight.detach().to(device=self.sum.device, dtype=torch.float64)
        if w.shape[1] != self.dim:
            raise ValueError(f"weight of shape {tuple(w.shape)} does not take inputs of width {self.dim}")
        w_sum = w @ self.sum
        outer = w @ self.outer @ w.T
        if bias is None:
            return Moments(count=self.count, sum=w_sum, outer=outer)
        b = bias.detach().to(device=self.sum.device, dtype=torch.float64)
        cross = torch.outer(w_sum, b)
        outer += cross + cross.T + self.count * torch.outer(b, b)
        return Moments(count=self.count, sum=w_sum + self.count * b, outer=outer)


@dataclass(frozen=True)
class ModelSignature:
    """The encoder shape statistics belong to, and a free-form model name."""

    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int
    model_name: str = ""

    @classmethod
    def of(cls, model: nn.Module, model_name: str = "") -> ModelSignature:
        """Read the signature from a Whisper model's (or encoder's) config."""
        config = model.config
        return cls(
            d_model=config.d_model,
            encoder_layers=config.encoder_layers,
            encoder_attention_heads=config.encoder_attention_heads,
            encoder_ffn_dim=config.encoder_ffn_dim,
            num_mel_bins=config.num_mel_bins,
            model_name=model_name,
        )

    def same_architecture(self, other: ModelSignature) -> bool:
        """True when the shapes agree, whatever the names."""
        return asdict(self) | {"model_name": ""} == asdict(other) | {"model_name": ""}

    def describe(self) -> str:
        shape = (
            f"d_model={self.d_model}, {self.encoder_layers} layers, {self.encoder_attention_heads} heads, "
            f"ffn {self.encoder_ffn_dim}, {self.num_mel_bins} mels"
        )
        return f"{shape} ({self.model_name})" if self.model_name else shape


@dataclass
class CalibrationStatistics:
    """Moments of every target linear of an encoder, gathered on calibration audio.

    `moments` is keyed by (layer index, hooked target, side); use `output_moments` or
    `derive_output_moments` to get the output moments of any target of the table.
    `calibration_frames` counts encoder frames that carry audio (20 ms each), padding
    excluded, whatever `exclude_padding` says; `Moments.count` counts the rows that
    entered the sums (1500 per clip unless padding is excluded).
    """

    signature: ModelSignature
    exclude_padding: bool
    calibration_clips: int = 0
    calibration_frames: int = 0
    moments: dict[tuple[int, str, Side], Moments] = field(default_factory=dict)

    def output_moments(
        self, layer: int, name: str, weight: Tensor | None = None, bias: Tensor | None = None
    ) -> Moments:
        """Output moments of target `name` in encoder layer `layer`.

        Targets measured on their input (q, k, v, fc1) need that linear's unmodified
        `weight` and `bias` to be mapped to the output side; the others ignore them.
        """
        if name not in _SOURCES:
            raise KeyError(f"unknown target {name!r}; known: {', '.join(_SOURCES)}")
        side, hooked = _SOURCES[name]
        moments = self.moments[(layer, hooked, side)]
        if side == "output":
            return moments
        if weight is None:
            raise ValueError(
                f"{name} statistics are kept on its input: pass its weight (and bias) to get output moments"
            )
        return moments.affine(weight, bias)

    def derive_output_moments(self, model: nn.Module) -> dict[tuple[int, str], Moments]:
        """Output moments of every (layer, target), using the weights of the unmodified `model`."""
        self.check_compatible(model)
        result = {}
        for index, layer in enumerate(_encoder_of(model).layers):
            for name, (path, _) in LOW_RANK_TARGETS.items():
                linear = layer.get_submodule(path)
                result[(index, name)] = self.output_moments(index, name, linear.weight, linear.bias)
        return result

    def check_compatible(self, model: nn.Module) -> None:
        """Raise ValueError when `model`'s encoder has another shape than the one calibrated."""
        theirs = ModelSignature.of(model)
        if not self.signature.same_architecture(theirs):
            raise ValueError(
                f"statistics were collected on a model with {self.signature.describe()}; "
                f"this model has {theirs.describe()}"
            )

    def merge(self, other: CalibrationStatistics) -> CalibrationStatistics:
        """Statistics of the union of both calibration sets (moments and counts add)."""
        if self.signature != other.signature:
            raise ValueError(
                f"cannot merge statistics of different models: {self.signature.describe()} "
                f"vs {other.signature.describe()}"
            )
        if self.exclude_padding != other.exclude_padding:
            raise ValueError(
                f"cannot merge statistics with exclude_padding={self.exclude_padding} "
                f"and exclude_padding={other.exclude_padding}"
            )
        if self.moments.keys() != other.moments.keys():
            raise ValueError("cannot merge statistics that cover different layers or sites")
        return CalibrationStatistics(
            signature=self.signature,
            exclude_padding=self.exclude_padding,
            calibration_clips=self.calibration_clips + other.calibration_clips,
            calibration_frames=self.calibration_frames + other.calibration_frames,
            moments={key: moments + other.moments[key] for key, moments in self.moments.items()},
        )

    def save(self, path: str | Path) -> None:
        """Write one safetensors file: float64 sums as tensors, everything else as JSON metadata."""
        from safetensors.torch import save_file

        tensors: dict[str, Tensor] = {}
        sites = []
        for (layer, target, side), moments in self.moments.items():
            prefix = _tensor_prefix(layer, target, side)
            tensors[f"{prefix}.sum"] = moments.sum.detach().cpu().contiguous()
            tensors[f"{prefix}.outer"] = moments.outer.detach().cpu().contiguous()
            sites.append({"layer": layer, "target": target, "side": side, "count": moments.count})
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "signature": asdict(self.signature),
            "exclude_padding": self.exclude_padding,
            "calibration_clips": self.calibration_clips,
            "calibration_frames": self.calibration_frames,
            "sites": sites,
        }
        save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(header)})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> CalibrationStatistics:
        """Read a file written by `save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: statistics file not found")
        with safe_open(str(path), framework="pt", device=str(device)) as file:
            raw = (file.metadata() or {}).get(_METADATA_KEY)
            if raw is None:
                raise ValueError(f"{path}: not a lite-whisper statistics file (no {_METADATA_KEY!r} metadata)")
            header: dict[str, Any] = json.loads(raw)
            if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                raise ValueError(
                    f"{path}: unsupported statistics format {header.get('format')!r} "
                    f"version {header.get('version')!r} (this version reads {_FORMAT!r} version {_VERSION})"
                )
            moments = {}
            for site in header["sites"]:
                prefix = _tensor_prefix(site["layer"], site["target"], site["side"])
                moments[(site["layer"], site["target"], site["side"])] = Moments(
                    count=site["count"],
                    sum=file.get_tensor(f"{prefix}.sum"),
                    outer=file.get_tensor(f"{prefix}.outer"),
                )
        return cls(
            signature=ModelSignature(**header["signature"]),
            exclude_padding=header["exclude_padding"],
            calibration_clips=header["calibration_clips"],
            calibration_frames=header["calibration_frames"],
            moments=moments,
        )


def collect_statistics(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    exclude_padding: bool = False,
    progress: bool = True,
    total_clips: int | None = None,
    model_name: str = "",
) -> CalibrationStatistics:
    """Run only the encoder of `model` over `batches` and stream the moments of every target.

    Each batch is (input_features, n_frames): log-mel features (B, n_mels, 3000), clips
    padded to 30 s as Whisper does, and a LongTensor (B,) of encoder frames that carry
    audio (1 to 1500; an encoder frame is two mel frames, rounded up). By default all
    1500 rows of every clip count, as in the paper; with `exclude_padding` only the
    first n_frames rows of each clip do. Memory does not grow with the number of clips.
    """
    encoder = _encoder_of(model)
    statistics = CalibrationStatistics(
        signature=ModelSignature.of(model, model_name), exclude_padding=exclude_padding
    )
    row_mask: Tensor | None = None  # rows that count in the current batch; read by the hooks

    def record_input(moments: Moments) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            moments.update(args[0], row_mask)

        return hook

    def record_output(moments: Moments) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            moments.update(output, row_mask)

        return hook

    handles = []
    was_training = encoder.training
    try:
        for index, layer in enumerate(encoder.layers):
            for target, side in _SITES:
                linear = layer.get_submodule(LOW_RANK_TARGETS[target][0])
                width = linear.in_features if side == "input" else linear.out_features
                moments = Moments.zeros(width, device=linear.weight.device)
                statistics.moments[(index, target, side)] = moments
                if side == "input":
                    handles.append(linear.register_forward_pre_hook(record_input(moments)))
                else:
                    handles.append(linear.register_forward_hook(record_output(moments)))

        encoder.eval()  # dropout would distort the statistics
        parameter = next(encoder.parameters())
        with tqdm(total=total_clips, unit="clip", desc="calibration", disable=not progress) as bar:
            for input_features, n_frames in batches:
                encoder_frames = (input_features.shape[-1] + 1) // 2
                _check_frames(n_frames, input_features.shape[0], encoder_frames)
                if exclude_padding:
                    positions = torch.arange(encoder_frames, device=n_frames.device)
                    row_mask = positions < n_frames[:, None]
                with torch.inference_mode():
                    encoder(input_features.to(device=parameter.device, dtype=parameter.dtype))
                statistics.calibration_clips += input_features.shape[0]
                statistics.calibration_frames += int(n_frames.sum())
                bar.update(input_features.shape[0])
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    return statistics


def _encoder_of(model: nn.Module) -> nn.Module:
    if hasattr(model, "get_encoder"):
        return model.get_encoder()
    if hasattr(model, "model") and hasattr(model.model, "encoder"):
        return model.model.encoder
    raise TypeError(f"{type(model).__name__} has no Whisper encoder (expected get_encoder() or .model.encoder)")


def _check_frames(n_frames: Tensor, batch_size: int, encoder_frames: int) -> None:
    if n_frames.shape != (batch_size,) or n_frames.dtype.is_floating_point:
        raise ValueError(
            f"n_frames must be an integer tensor of shape ({batch_size},), got {n_frames.dtype} {tuple(n_frames.shape)}"
        )
    if (n_frames < 1).any() or (n_frames > encoder_frames).any():
        raise ValueError(f"n_frames must be between 1 and {encoder_frames} encoder frames, got {n_frames.tolist()}")


def _tensor_prefix(layer: int, target: str, side: str) -> str:
    return f"layers.{layer}.{target}.{side}"
