"""Encoder latency on 30 s inputs: several encoders timed interleaved (A B C A B C ...) after warm-up."""

from __future__ import annotations

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
def time_encoder(encoder: nn.Module, features: torch.Tensor) -> float:
    """Milliseconds of one encoder pass."""
    synchronize(features.device)
    start = time.perf_counter()
    encoder(features)
    synchronize(features.device)
    return 1000.0 * (time.perf_counter() - start)



def time_interleaved(encoders: Sequence[nn.Module], features: torch.Tensor, repeats: int, warmup: int) -> list[list[float]]:
    """Milliseconds of `repeats` passes of each encoder, taking turns (A B A B ...) so that load from
    other processes and frequency drift hit all alike; `warmup` untimed turns first."""
    for _ in range(warmup):
        for encoder in encoders:
            time_encoder(encoder, features)
    samples: list[list[float]] = [[] for _ in encoders]
    for _ in range(repeats):
        for encoder, times in zip(encoders, samples):
            times.append(time_encoder(encoder, features))
    return samples
