"""Turn a dense Whisper model plus low-rank factors into a LiteWhisperForConditionalGeneration."""

from __future__ import annotations

import copy

import torch
from torch import Tensor
from transformers import WhisperConfig, WhisperForConditionalGeneration

from lite_whisper.lowrank.modeling_lite_whisper import (
    LOW_RANK_TARGETS,
    LiteWhisperConfig,
    LiteWhisperForConditionalGeneration,
    LowRankLinear,
)

Factors = dict[tuple[int, str], tuple[Tensor, Tensor, Tensor]]


LITE_ONLY_KEYS = ("model_type", "architectures", "auto_map", "low_rank_config", "lite_whisper")


def dense_config(config) -> WhisperConfig:
    """A plain `WhisperConfig` with `config`'s settings: the dense architecture a lite model has the shapes of."""
    return WhisperConfig(**{key: value for key, value in config.to_dict().items() if key not in LITE_ONLY_KEYS})


def low_rank_config(factors: Factors, encoder_layers: int) -> list[dict[str, int]]:
    """One {short name: rank} dict per encoder layer, in LOW_RANK_TARGETS order; dense modules omitted."""
    for layer, name in factors:
        if name not in LOW_RANK_TARGETS or not 0 <= layer < encoder_layers:
            raise ValueError(f"no low-rank target ({layer}, {name!r}) in a {encoder_layers}-layer encoder")
    return [
        {name: factors[layer, name][0].shape[1] for name in LOW_RANK_TARGETS if (layer, name) in factors}
        for layer in range(encoder_layers)
    ]


def to_lite_whisper(model: WhisperForConditionalGeneration, factors: Factors) -> LiteWhisperForConditionalGeneration:
    """Replace the factorised encoder linears of `model` by LowRankLinear modules.

    factors[(layer, short name)] = (A: d_in x k, B: k x d_out, bias: d_out), so the module
    computes (x A) B + bias (METHOD.md §4). Every other parameter is shared with `model`,
    not copied, so the conversion costs only the factors' memory; `model` is not modified.
    """
    config = LiteWhisperConfig.from_whisper(model.config, low_rank_config(factors, model.config.encoder_layers))
    # Build on the meta device: the weights are attached below, nothing is allocated twice.
    with torch.device("meta"):
        lite = LiteWhisperForConditionalGeneration(config)
    low_rank_modules = {
        f"model.encoder.layers.{layer}.{LOW_RANK_TARGETS[name][0]}.": LowRankLinear.from_factors(
            *(tensor.to(model.dtype) for tensor in factor)
        )
        for (layer, name), factor in factors.items()
    }
    state = {key: value for key, value in model.state_dict().items() if not key.startswith(tuple(low_rank_modules))}
    for prefix, module in low_rank_modules.items():
        state.update({prefix + key: value for key, value in module.state_dict().items()})
    lite.load_state_dict(state, strict=True, assign=True)
    lite.tie_weights()
    lite.generation_config = copy.deepcopy(model.generation_config)
    lite.config._attn_implementation = model.config._attn_implementation
    return lite.to(model.device).train(model.training)
