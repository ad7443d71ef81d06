"""Activation smoothing before int8 (SmoothQuant, Xiao et al. 2023), folded exactly into the weights.

ONNX Runtime's dynamic int8 MatMul quantises its input with one scale per tensor, so a few
input channels with large ranges set the step for all of them. Smoothing divides channel j
of a MatMul's input by s_j and multiplies row j of its weight by s_j: the product is
unchanged, the activations become flatter and the weights (quantised per output channel)
absorb the range. s_j = max|x_j|^alpha / max|w_j|^(1 - alpha).

Where the division can be folded into what produces the input, it costs nothing at run time,
and the encoder computes the same function in float32:
- a layer norm's output (the input of q, k, v and of fc1): its weight and bias;
- the rank-sized middle of a low-rank linear: the rows of its first factor;
- the attention output (the input of out_proj): v's output channels, since attention mixes
  positions, never channels.
fc2's input comes out of a GELU and is left as it is.

Before smoothing, each low-rank middle is turned by a random orthogonal matrix Q (down's rows by
Q^T, up's columns by Q: the product is unchanged). PCA factors make the middle's channels the
principal directions, their variances falling from the first to the last, so one per-tensor
scale set by the first leaves the last few steps wide; after the turn every channel carries
about the average variance (QuaRot's and QuIP's incoherence, where it costs nothing: inside a
factor pair). Measured on base at 75% (docs/RESULTS.md §19, "int8 for low-rank encoders"): the
int8 search left 12 MatMuls float32 instead of 21 within the same error bound.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear


def _first(module: nn.Module) -> nn.Linear:
    return module.down if isinstance(module, LowRankLinear) else module


def _last(module: nn.Module) -> nn.Linear:
    return module.up if isinstance(module, LowRankLinear) else module


def input_ranges(encoder: nn.Module, features: torch.Tensor, batch_size: int = 2) -> dict[nn.Linear, torch.Tensor]:
    """max |input| per channel of every nn.Linear in `encoder`, over `features` (clips x mels x frames)."""
    ranges: dict[nn.Linear, torch.Tensor] = {}

    def record(module, args):
        seen = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
        ranges[module] = seen if module not in ranges else torch.maximum(ranges[module], seen)

    hooks = [m.register_forward_pre_hook(record) for m in encoder.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            for start in range(0, features.shape[0], batch_size):
                encoder(features[start: start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def _scales(activation: torch.Tensor, consumers: list[nn.Linear], alpha: float) -> torch.Tensor:
    weight = torch.stack([c.weight.detach().abs().amax(0) for c in consumers]).amax(0)
    return activation.clamp(min=1e-5) ** alpha / weight.clamp(min=1e-5) ** (1 - alpha)


@torch.no_grad()
def rotate_middles(encoder: nn.Module, seed: int = 0) -> None:
    """Turn every low-rank linear's rank-sized middle by a random orthogonal matrix, in place (same function).

    The quantisation noise of a middle in per-tensor int8 is ~uniform over its channels, step max|z| / 127;
    what reaches the output is that noise times up's column norms. Columns of one norm, then a turn that
    spreads the variance evenly over the channels, make the step as small as one scale allows."""
    generator = torch.Generator().manual_seed(seed)
    for module in encoder.modules():
        if isinstance(module, LowRankLinear):
            gaussian = torch.randn(module.rank, module.rank, generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(gaussian)
            q = q * torch.sign(torch.diagonal(r))  # Haar-distributed, and the same Q for the same seed everywhere
            down, up = module.down.weight.double(), module.up.weight.double()  # (rank, in), (out, rank): z = x down^T
            # first every middle channel weighs the same at the output (up's columns of one norm, as PCA's
            # are): a channel scaled up with its column scaled down would otherwise be spread over all
            norms = up.norm(dim=0).clamp(min=1e-12)
            down, up = down * norms[:, None], up / norms
            module.down.weight.copy_((q.T @ down).to(module.down.weight.dtype))
            module.up.weight.copy_((up @ q).to(module.up.weight.dtype))


@torch.no_grad()
def smoothed(encoder: nn.Module, features: torch.Tensor, alpha: float = 0.5, in_place: bool = False) -> nn.Module:
    """A copy of `encoder` computing the same function with int8-friendlier MatMul inputs: low-rank middles
    turned (`rotate_middles`), then activations smoothed.

    `features`: calibration log-mel features (a few clips) that set the activation ranges. `in_place`: change
    `encoder` itself and return it (no copy: an export that owns its model saves the encoder's size).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"smoothing alpha must be within [0, 1], got {alpha}")
    if not in_place:
        encoder = copy.deepcopy(encoder)
    rotate_middles(encoder)
    ranges = input_ranges(encoder, features)
    for layer in encoder.layers:
        attention = layer.self_attn
        qkv = [_first(m) for m in (attention.q_proj, attention.k_proj, attention.v_proj)]
        plans = [(layer.self_attn_layer_norm, qkv), (layer.final_layer_norm, [_first(layer.fc1)])]
        scales = [_scales(ranges[consumers[0]], consumers, alpha) for _, consumers in plans]
        # (on the reduced-dimension attention path q, k and v's second factors never run as MatMuls)
        middles = [m for m in (attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj,
                               layer.fc1, layer.fc2) if isinstance(m, LowRankLinear) and m.up in ranges]
        middle_scales = [_scales(ranges[m.up], [m.up], alpha) for m in middles]
        out_first = _first(attention.out_proj)
        value_scale = _scales(ranges[out_first], [out_first], alpha)
        # every range above is of the original encoder: each scaling leaves all other inputs as they were
        for (norm, consumers), s in zip(plans, scales):
            norm.weight.div_(s)
            norm.bias.div_(s)
            for consumer in consumers:
                consumer.weight.mul_(s)
        for module, s in zip(middles, middle_scales):
            module.down.weight.div_(s[:, None])
            module.up.weight.mul_(s)
        value = _last(attention.v_proj)
        value.weight.div_(value_scale[:, None])
        value.bias.div_(value_scale)
        out_first.weight.mul_(value_scale)
    return encoder
