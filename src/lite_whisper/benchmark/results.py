"""What `bench` measured, as data (JSON) and as a table for people.

Two ratios per batch size, never one without the other:
- `speedup`: the dense baseline as users run it (stock transformers) over the model;
- `same_kernels_speedup`: the same dense baseline on the model's own kernels (lite-whisper's
  oneDNN CPU route) over the model: what the compression alone buys. The FLOP efficiency
  (measured / FLOP-predicted speedup) is based on this one, since FLOPs say nothing of kernels.
When the model does not run on faster kernels than the baseline (GPU, the route switched off,
two lite models), both ratios are the same measurement.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from torch import nn

from lite_whisper.files import write_json_atomic
from lite_whisper.lowrank.cost import (
    decoder_params,
    disk_bytes,
    encoder_flops,
    encoder_params,
    reduced_attention_layers,
    weight_bytes,
)

SCHEMA_VERSION = 3  # 2: same-kernel baseline and its speedup beside the stock one; 3: graphed results (GPU)


@dataclass(frozen=True)
class Timing:
    """Summary of repeated wall-clock measurements, in milliseconds."""

    median: float
    min: float
    max: float
    samples: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        if not samples_ms:
            raise ValueError("no timing samples")
        return cls(statistics.median(samples_ms), min(samples_ms), max(samples_ms), [round(s, 3) for s in samples_ms])


@dataclass(frozen=True)
class Ratio:
    """Baseline median / model median, and the smallest and largest ratio of one interleaved pair."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, model_ms: Sequence[float], baseline_ms: Sequence[float]) -> Ratio:
        pairs = [b / a for a, b in zip(model_ms, baseline_ms)]
        return cls(statistics.median(baseline_ms) / statistics.median(model_ms), min(pairs), max(pairs))


@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    model_ms: Timing
    baseline_ms: Timing | None  # the dense baseline as users run it
    speedup: Ratio | None  # vs baseline_ms
    same_kernels_ms: Timing | None  # the dense baseline on the model's kernels
    same_kernels_speedup: Ratio | None  # vs same_kernels_ms: what the compression alone buys
    flop_efficiency: float | None  # same_kernels_speedup / FLOP-predicted speedup
    model_items_per_second: float  # 30 s inputs encoded per second

    @classmethod
    def of(cls, batch_size: int, model: list[float], baseline: list[float] | None,
           same_kernels: list[float] | None, predicted: float | None) -> BatchResult:
        """From raw samples. `same_kernels` None: the baseline already runs on the model's kernels."""
        model_ms = Timing.of(model)
        items_per_second = 1000.0 * batch_size / model_ms.median
        if baseline is None:
            return cls(batch_size, model_ms, None, None, None, None, None, items_per_second)
        speedup = Ratio.of(model, baseline)
        same = same_kernels if same_kernels is not None else baseline
        same_speedup = Ratio.of(model, same)
        efficiency = same_speedup.median / predicted if predicted else None
        return cls(batch_size, model_ms, Timing.of(baseline), speedup, Timing.of(same), same_speedup,
                   efficiency, items_per_second)


@dataclass(frozen=True)
class EndToEndResult:
    """Transcription of the same clips by one model (greedy, English)."""

    clips: int
    audio_seconds: float
    wall_seconds: float
    rtfx: float  # audio seconds per wall second
    encoder_seconds: float
    encoder_share: float  # encoder time / wall time


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # class name
    encoder_params: int
    decoder_params: int
    weight_bytes: int  # in memory, as loaded for timing (shared storage counted once)
    disk_bytes: int | None  # the *.safetensors files of the folder it came from; None if unknown
    encoder_flops: int  # one 30 s input
    reduced_attention_layers: int
    kernels: str = ""  # "lite-whisper fast CPU route (oneDNN)" or "plain modules"

    @classmethod
    def of(cls, model: nn.Module, name: str | None = None, source: str | Path | None = None,
           kernels: str = "") -> ModelInfo:
        label = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        return cls(
            name=label,
            kind=type(model).__name__,
            encoder_params=encoder_params(model),
            decoder_params=decoder_params(model),
            weight_bytes=weight_bytes(model),
            disk_bytes=disk_bytes(model, source),
            encoder_flops=encoder_flops(model),
            reduced_attention_layers=len(reduced_attention_layers(model)),
            kernels=kernels,
        )


@dataclass
class BenchResult:
    model: ModelInfo
    baseline: ModelInfo | None
    results: list[BatchResult]
    repeats: int
    warmup: int
    environment: dict
    peak_rss_bytes: int  # of the whole process (all models, inputs, activations)
    end_to_end: dict[str, EndToEndResult] = field(default_factory=dict)  # "model" / "baseline"
    same_kernels_baseline: ModelInfo | None = None  # None: the baseline already ran on the model's kernels
    graphed_results: list[BatchResult] = field(default_factory=list)  # on a GPU: both replayed from CUDA graphs

    @property
    def flops_speedup(self) -> float | None:
        if self.baseline is None:
            return None
        return self.baseline.encoder_flops / self.model.encoder_flops

    def to_dict(self) -> dict:
        model, baseline = self.model, self.baseline
        return {
            "schema_version": SCHEMA_VERSION,
            "model": model.name,
            "baseline": baseline.name if baseline else None,
            "results": [asdict(r) for r in self.results],
            "graphed_results": [asdict(r) for r in self.graphed_results],
            "model_flops": model.encoder_flops,
            "baseline_flops": baseline.encoder_flops if baseline else None,
            "flops_speedup": self.flops_speedup,
            "model_params": {"encoder": model.encoder_params, "decoder": model.decoder_params},
            "baseline_params": (
                {"encoder": baseline.encoder_params, "decoder": baseline.decoder_params} if baseline else None
            ),
            "model_info": asdict(model),
            "baseline_info": asdict(baseline) if baseline else None,
            "same_kernels_baseline_info": asdict(self.same_kernels_baseline) if self.same_kernels_baseline else None,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "peak_rss_bytes": self.peak_rss_bytes,
            "end_to_end": {name: asdict(result) for name, result in self.end_to_end.items()},
            "environment": self.environment,
        }

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    def table(self) -> str:
        model, baseline = self.model, self.baseline
        env = self.environment
        lines = [
            f"model     {model.name} ({model.kind}, {model.kernels}): encoder {model.encoder_params / 1e6:.2f}M "
            f"params, {model.encoder_flops / 1e9:.1f} GFLOPs, weights {_weights(model)}",
        ]
        if baseline is not None:
            lines.append(
                f"baseline  {baseline.name} ({baseline.kind}, {baseline.kernels}): encoder "
                f"{baseline.encoder_params / 1e6:.2f}M params, {baseline.encoder_flops / 1e9:.1f} GFLOPs, "
                f"weights {_weights(baseline)}"
            )
            same = self.same_kernels_baseline
            lines.append(
                "same-kernel baseline: " + (f"{same.name} on {same.kernels}" if same else "the baseline itself "
                                            "(it already runs on the model's kernels)")
            )
            lines.append(f"FLOP-predicted speedup {self.flops_speedup:.2f}x")
        lines.append(
            f"{env['threads']} threads, torch {env['torch']}, {env['cpu']}; GLIBC_TUNABLES="
            f"{env['glibc_tunables'] or '(unset)'}; {self.repeats} repeats after {self.warmup} warm-up; "
            f"peak RSS {self.peak_rss_bytes / 2**20:.0f} MiB"
        )
        lines.append("")
        header = f"{'batch':>5}  {'model ms (min-max)':>22}"
        if baseline is not None:
            header += (f"  {'baseline ms':>22}  {'vs baseline':>18}  {'same-kernel ms':>22}  "
                       f"{'vs same kernels':>18}  {'FLOP eff.':>9}")
        lines.append(header)
        for r in self.results:
            row = f"{r.batch_size:>5}  {_span(r.model_ms):>22}"
            if r.baseline_ms is not None:
                row += (f"  {_span(r.baseline_ms):>22}  {_ratio(r.speedup):>18}  {_span(r.same_kernels_ms):>22}  "
                        f"{_ratio(r.same_kernels_speedup):>18}  {r.flop_efficiency:>9.2f}")
            lines.append(row)
        if baseline is not None:
            lines.append("vs baseline: against the dense model as users run it; vs same kernels: what the "
                         "compression alone buys (FLOP eff. is based on it)")
        if self.graphed_results:
            lines.append("")
            lines.append("replayed from CUDA graphs (one per batch size; host launch overhead removed):")
            lines.append(f"{'batch':>5}  {'model ms (min-max)':>22}" + (
                f"  {'baseline ms':>22}  {'vs baseline':>18}  {'FLOP eff.':>9}" if baseline is not None else ""))
            for r in self.graphed_results:
                row = f"{r.batch_size:>5}  {_span(r.model_ms):>22}"
                if r.baseline_ms is not None:
                    row += f"  {_span(r.baseline_ms):>22}  {_ratio(r.speedup):>18}  {r.flop_efficiency:>9.2f}"
                lines.append(row)
        if self.end_to_end:
            lines.append("")
            lines.append(f"{'end to end':<10} {'clips':>5} {'audio s':>8} {'wall s':>8} {'RTFx':>6} {'encoder share':>14}")
            for name, e in self.end_to_end.items():
                lines.append(
                    f"{name:<10} {e.clips:>5} {e.audio_seconds:>8.1f} {e.wall_seconds:>8.2f} {e.rtfx:>6.1f} "
                    f"{100 * e.encoder_share:>13.0f}%"
                )
        return "\n".join(lines)


def _weights(info: ModelInfo) -> str:
    disk = "" if info.disk_bytes is None else f", {info.disk_bytes / 2**20:.1f} MiB on disk"
    return f"{info.weight_bytes / 2**20:.1f} MiB in memory{disk}"


def _span(timing: Timing) -> str:
    return f"{timing.median:.1f} ({timing.min:.1f}-{timing.max:.1f})"


def _ratio(ratio: Ratio) -> str:
    return f"{ratio.median:.2f}x ({ratio.min:.2f}-{ratio.max:.2f})"
