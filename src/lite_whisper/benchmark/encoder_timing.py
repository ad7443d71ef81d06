"""Encoder latency on 30 s inputs: several encoders timed interleaved (A B C A B C ...) after warm-up."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Sequence

import torch
from torch import nn

from lite_whisper.benchmark.harness import Contender, run_interleaved
from lite_whisper.lowrank.cost import MEL_FRAMES, encoder_of


def encoder_input(model: nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A 30 s log-mel-shaped input (batch x n_mels x 3000) in the encoder's dtype and device."""
    encoder = encoder_of(model)
    weight = encoder.conv1.weight
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch_size, encoder.conv1.in_channels, MEL_FRAMES, generator=generator)
    return features.to(device=weight.device, dtype=weight.dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_encoder(encoder, features: torch.Tensor) -> float:
    """Milliseconds of one encoder pass (a module, or a callable such as `FastEncoder`). On a GPU, CUDA events
    time the device's work from the first launch to the last kernel's end (host gaps included: an encoder
    the host cannot feed fast enough is charged for them)."""
    if features.device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(features.device)
        start.record()
        encoder(features)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    start_time = time.perf_counter()
    encoder(features)
    return 1000.0 * (time.perf_counter() - start_time)


@contextlib.contextmanager
def no_gc():
    """Python's garbage collector paused (a collection inside a timed pass is noise), restored after."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


STABLE_SPREAD = 0.05  # warm-up ends when two passes in a row agree within 5%


def encoder_preset(warmup: int) -> dict:
    """The harness's rules for encoder passes: a chunk is one pass; warm-up at least `warmup` passes of each
    encoder, more until two in a row agree within 5% (GPU clocks, autotuning and graph capture settle), at
    most 4 x warmup + 3; `warmup` 0: none."""
    if warmup < 0:
        raise ValueError(f"warm-up runs must be 0 or more, got {warmup}")
    if not warmup:
        return {"chunk_size": 1, "warmup_runs": 0}
    return {"chunk_size": 1, "warmup_tolerance": STABLE_SPREAD, "min_warmup_runs": warmup,
            "max_warmup_runs": 4 * warmup + 3}


def time_interleaved(encoders: Sequence, features: torch.Tensor, repeats: int, warmup: int) -> list[list[float]]:
    """Milliseconds of `repeats` passes of each encoder (a module, or any callable on `features`), taking turns
    (A B A B ...) so that load from other processes and frequency drift hit all alike, with the garbage
    collector off: `harness.run_interleaved` with `encoder_preset(warmup)`, each pass timed by `time_encoder`
    (on a GPU from its first launch to its last kernel). An encoder that fails raises (a benchmark of encoders
    has no partial answer)."""
    clock = _PassClock()
    contenders = [Contender(f"encoder {index + 1}", clock.timing(encoder, features))
                  for index, encoder in enumerate(encoders)]
    passes = [(f"pass {index + 1}", None) for index in range(repeats)]
    with no_gc():
        timings = run_interleaved(contenders, passes, clock=clock, **encoder_preset(warmup))
    failed = [f"{timing.name}: {timing.failure}" for timing in timings if timing.failed]
    if failed:
        raise RuntimeError("encoder timing failed: " + "; ".join(failed))
    return [[1000.0 * seconds for seconds in timing.chunk_seconds] for timing in timings]


class _PassClock:
    """The harness's clock for encoder passes: it reads 0 when a pass starts and the pass's own `time_encoder`
    measure when it ends (CUDA events on a GPU; the wall clock around it would add the launch overhead)."""

    def __init__(self):
        self._last: float | None = None

    def __call__(self) -> float:
        last, self._last = self._last, None
        return 0.0 if last is None else last

    def timing(self, encoder, features: torch.Tensor):
        def run(items: list) -> list[str]:
            self._last = time_encoder(encoder, features) / 1000.0
            return [""] * len(items)

        return run
