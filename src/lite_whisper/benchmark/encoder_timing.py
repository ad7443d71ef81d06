"""Encoder latency on 30 s inputs: several encoders timed interleaved (A B C A B C ...) after warm-up."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Sequence

import torch
from torch import nn

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


STABLE_WINDOW = 3  # warm-up ends when the last 3 passes of every encoder agree within STABLE_SPREAD
STABLE_SPREAD = 0.05


def time_interleaved(encoders: Sequence, features: torch.Tensor, repeats: int, warmup: int) -> list[list[float]]:
    """Milliseconds of `repeats` passes of each encoder, taking turns (A B A B ...) so that load from
    other processes and frequency drift hit all alike, with the garbage collector off. Warm-up: at least
    `warmup` untimed turns, more until every encoder's last 3 passes are within 5% of each other (GPU
    clocks, autotuning and graph capture settle), at most 4 x warmup + 3 turns."""
    limit = 4 * warmup + STABLE_WINDOW
    with no_gc():
        recent: list[list[float]] = [[] for _ in encoders]
        turns = 0
        while warmup and (turns < warmup or (turns < limit and not all(map(_stable, recent)))):
            for encoder, times in zip(encoders, recent):
                times.append(time_encoder(encoder, features))
            turns += 1
        samples: list[list[float]] = [[] for _ in encoders]
        for _ in range(repeats):
            for encoder, times in zip(encoders, samples):
                times.append(time_encoder(encoder, features))
    return samples


def _stable(times: list[float]) -> bool:
    last = times[-STABLE_WINDOW:]
    return len(last) == STABLE_WINDOW and (max(last) - min(last)) <= STABLE_SPREAD * min(last)
