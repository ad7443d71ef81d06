"""LiteASR end to end: calibrate on audio, choose ranks, factorise, build the lite model.

    statistics = calibrate(model, processor, "calibration.txt")
    lite, report = compress(model, statistics, CompressionConfig.parse("0.99:0.999"))

Each step is separate so that one calibration serves many compressions (`sweep`).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch

from lite_whisper.compression.decomposition import ModuleDecision, decide_layer, low_rank_factors, principal_basis
from lite_whisper.compression.report import CompressionReport, ModuleReport, peak_rss_mb
from lite_whisper.compression.statistics import CalibrationStatistics, collect_statistics
from lite_whisper.compression.targets import ATTENTION, LOW_RANK_TARGETS
from lite_whisper.data.audio import SAMPLE_RATE, AudioError
from lite_whisper.data.datasets import SpeechDataset, load_dataset
from lite_whisper.evaluation.cost import encoder_flops, encoder_of, encoder_params, reduced_attention_layers
from lite_whisper.lowrank.convert import to_lite_whisper

HOP_LENGTH = 160  # samples per mel frame
WINDOW_SAMPLES = 30 * SAMPLE_RATE


@dataclass(frozen=True)
class CompressionConfig:
    """Explained-variance thresholds (attention projections, MLP) and the rank granularity."""

    attention_threshold: float = 0.99
    mlp_threshold: float = 0.999
    rank_multiple: int = 16
    version: int = 1

    def __post_init__(self):
        for name in ("attention_threshold", "mlp_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise ValueError(f"{name.replace('_', ' ')} must be in (0, 1], got {value!r}")
        if self.rank_multiple < 1:
            raise ValueError(f"rank multiple must be at least 1, got {self.rank_multiple}")

    @classmethod
    def parse(cls, threshold: str | float, rank_multiple: int = 16) -> "CompressionConfig":
        """'0.99' (all six linears) or '0.99:0.999' (attention:MLP)."""
        text = str(threshold).strip()
        parts = text.split(":")
        if len(parts) not in (1, 2) or not all(parts):
            raise ValueError(f"threshold {text!r}: expected a number like 0.99 or ATTN:MLP like 0.99:0.999")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"threshold {text!r}: expected a number like 0.99 or ATTN:MLP like 0.99:0.999") from None
        attention, mlp = values if len(values) == 2 else values * 2
        return cls(attention, mlp, rank_multiple)

    @property
    def label(self) -> str:
        if self.attention_threshold == self.mlp_threshold:
            return f"{self.attention_threshold:g}"
        return f"{self.attention_threshold:g}:{self.mlp_threshold:g}"

    def threshold_for(self, name: str) -> float:
        return self.attention_threshold if name in ATTENTION else self.mlp_threshold

    def to_dict(self) -> dict:
        return asdict(self)


def encoder_frames(n_samples: int) -> int:
    """Encoder frames (20 ms each) that carry audio in a clip of `n_samples` samples."""
    mel_frames = math.ceil(min(n_samples, WINDOW_SAMPLES) / HOP_LENGTH)
    return max(1, min(1500, math.ceil(mel_frames / 2)))


def calibration_batches(dataset: SpeechDataset, processor, batch_size: int, device, dtype, skipped: list[str]) -> Iterator:
    """(input_features, n_frames) batches; clips are padded (or cut) to 30 s as Whisper does.

    Unreadable clips are skipped with a warning and listed in `skipped`.
    """
    clips = iter(dataset)
    while True:
        audio: list[np.ndarray] = []
        while len(audio) < batch_size:
            try:
                clip = next(clips)
            except StopIteration:
                break
            except AudioError as error:
                skipped.append(str(error))
                warnings.warn(f"calibration: skipping {error}", stacklevel=2)
                continue
            audio.append(clip.audio[:WINDOW_SAMPLES])
        if not audio:
            return
        features = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        frames = torch.tensor([encoder_frames(len(a)) for a in audio], dtype=torch.long)
        yield features.to(device=device, dtype=dtype), frames.to(device)


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
) -> CalibrationStatistics:
    """Stream the output statistics of every target linear over a calibration dataset."""
    dataset = data if isinstance(data, SpeechDataset) else load_dataset(data, limit=limit)
    skipped: list[str] = []
    batches = calibration_batches(dataset, processor, batch_size, model.device, model.dtype, skipped)
    statistics = collect_statistics(
        model, batches, exclude_padding=exclude_padding, progress=progress,
        total_clips=dataset.size, model_name=model_name,
    )
    if statistics.calibration_clips == 0:
        detail = f" ({len(skipped)} clips could not be read, e.g. {skipped[0]})" if skipped else ""
        raise ValueError(f"calibration data {dataset.spec}: no usable audio{detail}")
    return statistics


def compress(
    model,
    statistics: CalibrationStatistics,
    config: CompressionConfig = CompressionConfig(),
    *,
    model_name: str = "",
    calibration_data: str = "",
):
    """Factorise every target linear whose rank beats break-even; return (lite model, report)."""
    start = time.perf_counter()
    statistics.check_compatible(model)
    moments = statistics.derive_output_moments(model)
    decisions: dict[tuple[int, str], ModuleDecision] = {}
    factors = {}
    for (layer, name), output_moments in moments.items():
        module = _target_module(model, layer, name)
        eigenvalues, eigenvectors = principal_basis(output_moments)
        decision = decide_layer(eigenvalues, module.in_features, config.threshold_for(name), config.rank_multiple)
        decisions[layer, name] = decision
        if decision.rank is not None:
            a, b, bias = low_rank_factors(module.weight, module.bias, output_moments.mean(), eigenvectors[:, : decision.rank])
            factors[layer, name] = (a.to(model.dtype), b.to(model.dtype), bias.to(model.dtype))
    lite = to_lite_whisper(model, factors)
    report = CompressionReport(
        model=model_name or str(getattr(model.config, "_name_or_path", "")),
        threshold=config.label,
        attention_threshold=config.attention_threshold,
        mlp_threshold=config.mlp_threshold,
        rank_multiple=config.rank_multiple,
        calibration_data=calibration_data,
        calibration_clips=statistics.calibration_clips,
        calibration_frames=statistics.calibration_frames,
        exclude_padding=statistics.exclude_padding,
        encoder_params_before=encoder_params(model),
        encoder_params_after=encoder_params(lite),
        encoder_flops_before=encoder_flops(model),
        encoder_flops_after=encoder_flops(lite),
        layers=[
            {name: ModuleReport.of(decisions[layer, name]) for name in LOW_RANK_TARGETS}
            for layer in range(len(encoder_of(model).layers))
        ],
        reduced_attention_layers=reduced_attention_layers(lite),
        wall_seconds=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(),
    )
    return lite, report


def _target_module(model, layer: int, name: str) -> torch.nn.Module:
    return encoder_of(model).layers[layer].get_submodule(LOW_RANK_TARGETS[name][0])

