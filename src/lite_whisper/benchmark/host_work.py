"""Host work per encoder-layer call, counted: what a layer costs the CPU that drives the kernels.

At batch 1 on a GPU the kernels are short and a layer's time is the Python that launches them, so
the count of function calls (Python and C, as `sys.setprofile` reports them) and of aten ops (as a
`TorchDispatchMode` sees them) in one forward is a deterministic proxy for it, unlike a timing.

    python -m lite_whisper.benchmark.host_work        # tiny.en's layer 0, dense vs five low-rank linears
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import WhisperForConditionalGeneration

from lite_whisper.lowrank.convert import to_lite_whisper
from lite_whisper.models.random import init_random_, whisper_config
from lite_whisper.runtime.cpu_route import apply_cpu_route, remove_cpu_route

# Layer 0 of a compressed tiny.en: five of the six linears factorised (q dense, so the attention stays ordinary).
FIVE_LOW_RANK = {"k_proj": 64, "v_proj": 64, "out_proj": 64, "fc1": 128, "fc2": 128}


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def host_work(layer: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(function calls, aten ops) of one inference forward of an encoder `layer` on `x` (after one untimed call)."""
    calls = 0

    def profile(frame, event, arg) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    with torch.inference_mode():
        layer(x, None)
        sys.setprofile(profile)
        layer(x, None)
        sys.setprofile(None)
        with _CountOps() as counter:
            layer(x, None)
    return calls - 1, counter.ops  # less the call of setprofile itself


def tiny_en_layer_zero(ranks: dict[str, int] = FIVE_LOW_RANK, seed: int = 0):
    """(dense, lite) tiny.en-shaped random models; the lite one's layer 0 has `ranks` (weights do not change counts)."""
    config = whisper_config("tiny")
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    dense = init_random_(WhisperForConditionalGeneration(config), seed=seed).eval()
    generator = torch.Generator().manual_seed(seed)
    d, ffn = config.d_model, config.encoder_ffn_dim
    factors = {}
    for name, rank in ranks.items():
        d_in, d_out = {"fc1": (d, ffn), "fc2": (ffn, d)}.get(name, (d, d))
        factors[0, name] = (torch.randn(d_in, rank, generator=generator) / d_in**0.5,
                            torch.randn(rank, d_out, generator=generator) / rank**0.5, torch.zeros(d_out))
    return dense, to_lite_whisper(dense, factors).eval()


def compare(tokens: int = 8) -> dict:
    """The dense layer, the lite layer as a GPU runs it (plain modules) and on the CPU route, on 1 x tokens x 384."""
    dense, lite = tiny_en_layer_zero()
    x = torch.randn(1, tokens, dense.config.d_model, generator=torch.Generator().manual_seed(1))
    counts = {"dense": host_work(dense.model.encoder.layers[0], x)}
    remove_cpu_route(lite)
    counts["lite, plain modules"] = host_work(lite.model.encoder.layers[0], x)
    routed = apply_cpu_route(lite) > 0
    if routed:
        counts["lite, fast CPU route"] = host_work(lite.model.encoder.layers[0], x)
    calls, ops = counts["dense"]
    return {name: {"calls": c, "ops": o, "calls_vs_dense": round(c / calls, 2)} for name, (c, o) in counts.items()}


if __name__ == "__main__":
    print(json.dumps(compare(), indent=2))
