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
def smoothed(encoder: nn.Module, features: torch.Tensor, alpha: float = 0.5) -> nn.Module:
    """A copy of `encoder` computing the same function with int8-friendlier MatMul inputs.

    `features`: calibration log-mel features (a few clips) that set the activation ranges.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"smoothing alpha must be within [0, 1], got {alpha}")
    encoder = copy.deepcopy(encoder)
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
