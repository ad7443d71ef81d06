"""The encoder without host overhead: a CUDA graph per batch bucket, or torch.compile, or plain eager.

On a GPU a Whisper encoder at batch 1 is launch-bound: large-v3's eager pass queues ~1,000
kernels and the GPU waits on Python (GPU.md: 19.1 ms eager, 8.2 ms replayed from a graph; the
low-rank encoder, with twice the linears, gains nothing eager and 1.41x graphed). So:

    graphed    each batch is padded up to a bucket (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, ...),
               and each bucket's pass is captured once in a CUDA graph and replayed (its own
               memory pool: buckets replay in any order). CUDA only.
    compiled   torch.compile (mode "reduce-overhead" on CUDA, which graphs the compiled code; the
               default mode elsewhere), also on bucket-padded batches so each bucket compiles once.
    eager      the modules as they are.
    auto       graphed on CUDA, eager elsewhere.

Padding rows are independent of the real ones (the encoder has no cross-clip operation) and
are dropped from the output. Every mode returns the same states as eager, to the kernels'
rounding (tests: compiled on the CPU, graphed on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lite_whisper.lowrank.cost import encoder_of

ENCODER_MODES = ("auto", "graphed", "compiled", "eager")
WARMUP_PASSES = 3  # before a capture: cuBLAS/cuDNN pick their algorithms and allocate workspaces


def bucket_for(batch: int) -> int:
    """The smallest bucket holding `batch` rows: powers of two, and from 8 up 1.5x powers of two too (at most a
    third of a bucket is padding there)."""
    if batch < 1:
        raise ValueError(f"batch size must be at least 1, got {batch}")
    bucket = 1
    while bucket < batch:
        half_step = bucket + bucket // 2
        bucket = half_step if bucket >= 8 and half_step >= batch else bucket * 2
    return bucket


def resolve_mode(mode: str, device: torch.device) -> str:
    if mode not in ENCODER_MODES:
        raise ValueError(f"unknown encoder mode {mode!r}; choose one of {', '.join(ENCODER_MODES)}")
    if mode == "auto":
        return "graphed" if device.type == "cuda" else "eager"
    if mode == "graphed" and device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device; use --encoder-mode compiled or eager here")
    return mode


class FastEncoder:
    """`model`'s encoder as a callable: features (B, n_mels, 3000) -> states (B, 1500, d), in `mode`."""

    def __init__(self, model: nn.Module, mode: str = "auto"):
        self.encoder = encoder_of(model)
        parameter = next(self.encoder.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.mode = resolve_mode(mode, self.device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._compiled: Callable | None = None

    def __repr__(self) -> str:
        return f"FastEncoder({self.mode}, {self.device}, {self.dtype}, buckets={sorted(self._graphs)})"

    def _eager(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder(features).last_hidden_state

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        features = features.to(device=self.device, dtype=self.dtype)
        if self.mode == "eager":
            return self._eager(features)
        batch = features.shape[0]
        bucket = bucket_for(batch)
        if self.mode == "compiled":
            if self._compiled is None:
                mode = "reduce-overhead" if self.device.type == "cuda" else None
                self._compiled = torch.compile(self._eager, mode=mode, dynamic=False)
            padded = _padded(features, bucket)
            return self._compiled(padded)[:batch].clone()  # cloned: a graphed result is overwritten next call
        graph, static_in, static_out = self._graph(bucket, features.shape[1:])
        static_in[:batch].copy_(features)
        graph.replay()
        return static_out[:batch].clone()

    def _graph(self, bucket: int, shape: torch.Size):
        """The bucket's graph, captured on first use (warm-up passes on a side stream first, as CUDA requires)."""
        if bucket not in self._graphs:
            static_in = torch.zeros((bucket, *shape), device=self.device, dtype=self.dtype)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_PASSES):
                    self._eager(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._eager(static_in)
            self._graphs[bucket] = (graph, static_in, static_out)
        return self._graphs[bucket]

    @property
    def buckets(self) -> list[int]:
        """The buckets captured so far (graphed mode)."""
        return sorted(self._graphs)


def _padded(features: torch.Tensor, bucket: int) -> torch.Tensor:
    if features.shape[0] == bucket:
        return features
    padding = features.new_zeros((bucket - features.shape[0], *features.shape[1:]))
    return torch.cat([features, padding])
