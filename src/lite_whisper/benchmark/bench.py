"""Encoder speed of a model against a baseline, measured in the same process.

What is measured, per batch size: the encoder's latency on a 30 s input (batch x n_mels x
3000), after warm-up, with the model and the baseline interleaved (A B A B ...) so that
load from other processes and frequency drift hit both alike. The headline is the speedup
(baseline median / model median) with the spread of the per-pair ratios. Next to it: the
analytic FLOPs of both encoders (`evaluation.cost`), the speedup those FLOPs predict, and
measured / predicted ("FLOP efficiency": 1.0 means every FLOP saved became time saved).

Optionally, end to end: the same clips transcribed by both models (RTFx, and the share of
the wall time spent in the encoder, timed with forward hooks on the encoder).

Results are data: `BenchResult.to_dict()` / `.save()` give JSON (with torch version,
threads, CPU model and allocator settings, which change CPU timings a lot: see
docs CPU_PERF.md), `.table()` gives text for people.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.compression.report import peak_rss_bytes
from lite_whisper.evaluation.cost import MEL_FRAMES, encoder_flops, encoder_of, encoder_params
from lite_whisper.files import write_json_atomic
from lite_whisper.lowrank.modeling_lite_whisper import fast_cpu_kernels

SCHEMA_VERSION = 1


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
class BatchResult:
    batch_size: int
    model_ms: Timing
    baseline_ms: Timing | None
    speedup: float | None  # baseline median / model median
    speedup_min: float | None  # smallest and largest ratio of one A/B pair
    speedup_max: float | None
    flop_efficiency: float | None  # measured speedup / FLOP-predicted speedup
    model_items_per_second: float  # 30 s inputs encoded per second


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


@dataclass
class BenchResult:
    model: ModelInfo
    baseline: ModelInfo | None
    results: list[BatchResult]
    repeats: int
    warmup: int
    environment: dict
    peak_rss_bytes: int  # of the whole process (both models, inputs, activations)
    end_to_end: dict[str, EndToEndResult] = field(default_factory=dict)  # "model" / "baseline"

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
            "model_flops": model.encoder_flops,
            "baseline_flops": baseline.encoder_flops if baseline else None,
            "flops_speedup": self.flops_speedup,
            "model_params": {"encoder": model.encoder_params, "decoder": model.decoder_params},
            "baseline_params": (
                {"encoder": baseline.encoder_params, "decoder": baseline.decoder_params} if baseline else None
            ),
            "model_info": asdict(model),
            "baseline_info": asdict(baseline) if baseline else None,
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
            f"model     {model.name} ({model.kind}): encoder {model.encoder_params / 1e6:.2f}M params, "
            f"{model.encoder_flops / 1e9:.1f} GFLOPs, weights {_weights(model)}",
        ]
        if baseline is not None:
            lines.append(
                f"baseline  {baseline.name} ({baseline.kind}): encoder {baseline.encoder_params / 1e6:.2f}M params, "
                f"{baseline.encoder_flops / 1e9:.1f} GFLOPs, weights {_weights(baseline)}"
            )
            lines.append(f"FLOP-predicted speedup {self.flops_speedup:.2f}x")
        lines.append(
            f"{env['threads']} threads, torch {env['torch']}, {env['cpu']}; GLIBC_TUNABLES="
            f"{env['glibc_tunables'] or '(unset)'}; {self.repeats} repeats after {self.warmup} warm-up; "
            f"peak RSS {self.peak_rss_bytes / 2**20:.0f} MiB"
        )
        lines.append("")
        header = f"{'batch':>5}  {'model ms (min-max)':>24}"
        if baseline is not None:
            header += f"  {'baseline ms (min-max)':>24}  {'speedup (pair range)':>21}  {'FLOP eff.':>9}"
        lines.append(header)
        for r in self.results:
            row = f"{r.batch_size:>5}  {_span(r.model_ms):>24}"
            if r.baseline_ms is not None:
                spread = f"{r.speedup:.2f}x ({r.speedup_min:.2f}-{r.speedup_max:.2f})"
                row += f"  {_span(r.baseline_ms):>24}  {spread:>21}  {r.flop_efficiency:>9.2f}"
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


# ---------------------------------------------------------------------------------------
# Facts about the model and the machine


def decoder_params(model: nn.Module) -> int:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model.model, "decoder", None)
    if decoder is None:
        return 0
    return sum(p.numel() for name, p in decoder.named_parameters() if not name.startswith("embed_positions"))


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights in memory; tensors that share storage (the tied output projection) count once."""
    seen: set[tuple] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        identity = (tensor.device.type, tensor.data_ptr() if not tensor.is_meta else id(tensor), tensor.shape)
        if identity in seen:
            continue
        seen.add(identity)
        total += tensor.numel() * tensor.element_size()
    return total


def disk_bytes(model: nn.Module, source: str | Path | None = None) -> int | None:
    """Size of the *.safetensors files of the folder `model` was loaded from (`source`, else its
    config's `_name_or_path`); None when there is no such folder (random or hub-only models)."""
    for candidate in (source, getattr(model.config, "_name_or_path", None)):
        if candidate and Path(candidate).is_dir():
            files = list(Path(candidate).glob("*.safetensors"))
            if files:
                return sum(f.stat().st_size for f in files)
    return None


def model_info(model: nn.Module, name: str | None = None, source: str | Path | None = None) -> ModelInfo:
    from lite_whisper.evaluation.cost import reduced_attention_layers

    label = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    return ModelInfo(
        name=label,
        kind=type(model).__name__,
        encoder_params=encoder_params(model),
        decoder_params=decoder_params(model),
        weight_bytes=weight_bytes(model),
        disk_bytes=disk_bytes(model, source),
        encoder_flops=encoder_flops(model),
        reduced_attention_layers=len(reduced_attention_layers(model)),
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import transformers

    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "lite_whisper_fast_cpu": fast_cpu_kernels(),  # LITE_WHISPER_FAST_CPU / fast_cpu_kernels()
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def on_fast_route(model: nn.Module) -> nn.Module:
    """`model` with every encoder layer on lite-whisper's fast CPU route (oneDNN linears, fusions).

    A dense Whisper model becomes a LiteWhisperForConditionalGeneration without low-rank
    modules that shares its weights (nothing is copied); a lite-whisper model is switched in
    place. Timing a dense baseline this way separates what the low-rank factors gain from
    what the faster kernels gain.
    """
    from lite_whisper.lowrank.convert import to_lite_whisper
    from lite_whisper.lowrank.modeling_lite_whisper import LiteWhisperForConditionalGeneration

    if not isinstance(model, LiteWhisperForConditionalGeneration):
        name = getattr(model.config, "_name_or_path", "")
        model = to_lite_whisper(model, {})  # no factors: the same modules, weights shared
        model.config._name_or_path = name
    for layer in encoder_of(model).layers:
        layer.fast_inference = layer.self_attn.fast_inference = True
    return model


@contextmanager
def torch_threads(threads: int | None):
    """Run with `threads` intra-op threads, restoring the previous setting afterwards."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------
# Timing


def encoder_input(model: nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A 30 s log-mel-shaped input (batch x n_mels x 3000) in the encoder's dtype and device."""
    encoder = encoder_of(model)
    weight = encoder.conv1.weight
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch_size, encoder.conv1.in_channels, MEL_FRAMES, generator=generator)
    return features.to(device=weight.device, dtype=weight.dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_encoder(encoder: nn.Module, features: torch.Tensor) -> float:
    """Milliseconds of one encoder pass."""
    _synchronize(features.device)
    start = time.perf_counter()
    encoder(features)
    _synchronize(features.device)
    return 1000.0 * (time.perf_counter() - start)


def benchmark(
    model: nn.Module,
    baseline: nn.Module | None = None,
    *,
    batch_sizes: Iterable[int] = (1,),
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    model_name: str | None = None,
    baseline_name: str | None = None,
    model_source: str | Path | None = None,
    baseline_source: str | Path | None = None,
    data=None,
    processor=None,
    baseline_processor=None,
    limit: int | None = None,
    decode_batch_size: int = 8,
    options=None,
    log=None,
) -> BenchResult:
    """Time `model`'s encoder (and `baseline`'s, interleaved) on 30 s inputs.

    `model_source` / `baseline_source`: the folder a model was loaded from, so weight bytes
    are read from disk. `data` (a dataset spec or `SpeechDataset`) with `processor` (and
    `baseline_processor`, default `processor`) adds end-to-end transcription of `limit` clips
    with decoding `options` (default: greedy, English).
    """
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warm-up runs must be 0 or more, got {warmup}")
    if data is not None and processor is None:
        raise ValueError("end-to-end timing needs the processor (give processor= with data=)")
    log = log or (lambda message: None)

    info = model_info(model, model_name, model_source)
    baseline_info = model_info(baseline, baseline_name, baseline_source) if baseline is not None else None
    predicted = baseline_info.encoder_flops / info.encoder_flops if baseline_info else None
    contenders = [encoder_of(model)] + ([encoder_of(baseline)] if baseline is not None else [])

    with torch_threads(threads):
        env = environment()
        results = []
        for batch_size in batch_sizes:
            features = encoder_input(model, batch_size)
            if baseline is not None and encoder_of(baseline).conv1.in_channels != features.shape[1]:
                raise ValueError("the model and the baseline take different numbers of mel bins")
            log(f"batch {batch_size}: {warmup} warm-up and {repeats} timed runs per model")
            for _ in range(warmup):
                for encoder in contenders:
                    time_encoder(encoder, features)
            samples: list[list[float]] = [[] for _ in contenders]
            for _ in range(repeats):
                for encoder, times in zip(contenders, samples):  # A B A B ...
                    times.append(time_encoder(encoder, features))
            results.append(_batch_result(batch_size, samples, predicted))
        end_to_end = {}
        if data is not None:
            end_to_end = end_to_end_timing(
                [(name, m, p) for name, m, p in
                 (("model", model, processor), ("baseline", baseline, baseline_processor or processor)) if m is not None],
                data, limit=limit, batch_size=decode_batch_size, options=options, log=log,
            )
        env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return BenchResult(info, baseline_info, results, repeats, warmup, env, peak_rss_bytes(), end_to_end)


def _batch_result(batch_size: int, samples: list[list[float]], predicted: float | None) -> BatchResult:
    model_ms = Timing.of(samples[0])
    items_per_second = 1000.0 * batch_size / model_ms.median
    if len(samples) == 1:
        return BatchResult(batch_size, model_ms, None, None, None, None, None, items_per_second)
    baseline_ms = Timing.of(samples[1])
    speedup = baseline_ms.median / model_ms.median
    ratios = [b / a for a, b in zip(samples[0], samples[1])]
    efficiency = speedup / predicted if predicted else None
    return BatchResult(batch_size, model_ms, baseline_ms, speedup, min(ratios), max(ratios), efficiency, items_per_second)


# ---------------------------------------------------------------------------------------
# End to end


class EncoderTimer:
    """Accumulates wall time spent inside an encoder, via forward hooks it owns and removes."""

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.seconds = 0.0
        self.calls = 0
        self._start: float | None = None
        self._handles = []

    def __enter__(self) -> EncoderTimer:
        self._handles = [
            self.encoder.register_forward_pre_hook(self._before),
            self.encoder.register_forward_hook(self._after),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before(self, module, args) -> None:
        _synchronize(next(module.parameters()).device)
        self._start = time.perf_counter()

    def _after(self, module, args, output) -> None:
        _synchronize(next(module.parameters()).device)
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.calls += 1
            self._start = None


def end_to_end_timing(
    models, data, *, limit: int | None = None, batch_size: int = 8, options=None, log=None
) -> dict[str, EndToEndResult]:
    """Transcribe the same clips with each `(name, model, processor)`; RTFx and encoder share.

    Audio is decoded once beforehand, so file reading is not timed. Each model first
    transcribes one clip as a warm-up; then the models take turns batch by batch
    (A B A B ...), like the encoder timings, so background load hits them alike.
    `options`: `DecodingOptions`, default greedy English.
    """
    from lite_whisper.data.datasets import SpeechDataset, load_dataset
    from lite_whisper.inference.transcribe import DecodingOptions, transcribe_iter

    log = log or (lambda message: None)
    dataset = data if isinstance(data, SpeechDataset) else load_dataset(data, limit=limit)
    clips = [(clip.id, clip.audio) for clip in dataset][:limit]
    if not clips:
        raise ValueError("no clips to transcribe")
    audio_seconds = sum(len(audio) for _, audio in clips) / SAMPLE_RATE
    options = options or DecodingOptions(language="en")
    names = [name for name, _, _ in models]
    log(f"end to end: {', '.join(names)} transcribe {len(clips)} clips ({audio_seconds:.0f} s of audio)")
    wall = dict.fromkeys(names, 0.0)
    timers = {name: EncoderTimer(encoder_of(model)) for name, model, _ in models}
    for name, model, processor in models:
        list(transcribe_iter(model, processor, clips[:1], batch_size=1, options=options))  # warm-up
    for first in range(0, len(clips), batch_size):
        chunk = clips[first:first + batch_size]
        for name, model, processor in models:
            with timers[name]:
                start = time.perf_counter()
                for _ in transcribe_iter(model, processor, chunk, batch_size=batch_size, options=options):
                    pass
                wall[name] += time.perf_counter() - start
    return {
        name: EndToEndResult(
            clips=len(clips),
            audio_seconds=audio_seconds,
            wall_seconds=wall[name],
            rtfx=audio_seconds / wall[name],
            encoder_seconds=timers[name].seconds,
            encoder_share=timers[name].seconds / wall[name],
        )
        for name in names
    }
