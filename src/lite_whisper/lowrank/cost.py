"""What a Whisper model of the low-rank format costs: encoder parameters and FLOPs at Whisper's
fixed 30 s input, decoder parameters, weight bytes in memory and on disk — one copy of each formula.

FLOPs count 2 per multiply-add in the convolutions, the linears and the two attention
matmuls (scores and values), the terms that dominate; layer norms, GELU, softmax and
biases are left out. Attention uses the path the model really takes (ordinary or
reduced-dimension, see `modeling_lite_whisper.attention_flops`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lite_whisper.data.audio import ENCODER_FRAMES, MEL_FRAMES
from lite_whisper.lowrank.modeling_lite_whisper import attention_flops

__all__ = [
    "ENCODER_FRAMES", "MEL_FRAMES", "break_even_rank", "breaks_even", "decoder_params", "disk_bytes",
    "encoder_flops", "encoder_of", "encoder_params", "has_low_rank", "linear_cost", "reduced_attention_layers",
    "weight_bytes",
]


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder of a Whisper model (or the encoder itself)."""
    if hasattr(model, "conv1") and hasattr(model, "layers"):
        return model
    return model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder


def is_low_rank(module: nn.Module) -> bool:
    """A low-rank linear of this package or of a saved folder's own (remote) code: `down` then `up`."""
    return getattr(module, "rank", None) is not None and hasattr(module, "down") and hasattr(module, "up")


def has_low_rank(model: nn.Module) -> bool:
    """Whether any encoder linear of `model` is factorised."""
    return any(is_low_rank(module) for module in encoder_of(model).modules())


def break_even_rank(d_in: int, d_out: int) -> float:
    """The rank k at which k (d_in + d_out) = d_in d_out: two factors then cost what the dense layer does."""
    return d_in * d_out / (d_in + d_out)


def breaks_even(rank: int, d_in: int, d_out: int) -> bool:
    """True when rank * (d_in + d_out) >= d_in * d_out: the factorised layer saves no compute.

    (rank >= break_even_rank(d_in, d_out), in exact integer arithmetic.)
    """
    return rank * (d_in + d_out) >= d_in * d_out


def linear_cost(kind: str, d_in: int, d_out: int, rank: int | None, has_bias: bool = True,
                rows: int = ENCODER_FRAMES) -> int:
    """Parameters (kind "params") or FLOPs over `rows` rows (kind "flops") of one linear, dense
    (rank None) or factorised. A factorised linear always has a bias (k_proj gains one)."""
    if kind == "flops":
        return 2 * rows * (d_in * d_out if rank is None else rank * (d_in + d_out))
    if kind != "params":
        raise ValueError(f"cost kind must be 'params' or 'flops', got {kind!r}")
    if rank is None:
        return d_in * d_out + (d_out if has_bias else 0)
    return rank * (d_in + d_out) + d_out


def encoder_params(model: nn.Module) -> int:
    """Encoder parameters without the (fixed, sinusoidal) positional embedding.

    This is how the LiteASR model cards count: whisper-tiny's encoder is 7.63M.
    """
    encoder = encoder_of(model)
    return sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith("embed_positions"))


def linear_flops(module: nn.Module, rows: int) -> int:
    if is_low_rank(module):
        return linear_cost("flops", module.in_features, module.out_features, module.rank, rows=rows)
    if isinstance(module, nn.Linear):
        return linear_cost("flops", module.in_features, module.out_features, None, rows=rows)
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def conv_flops(conv: nn.Conv1d, out_length: int) -> int:
    return 2 * out_length * conv.out_channels * conv.in_channels * conv.kernel_size[0] // conv.groups


def self_attention_flops(attention: nn.Module, rows: int) -> int:
    """Projections q, k, v, the score and value matmuls (not out_proj) on the path in use."""
    ranks = tuple(getattr(m, "rank", None) for m in (attention.q_proj, attention.k_proj, attention.v_proj))
    reduced = bool(getattr(attention, "uses_reduced_path", False))
    return attention_flops(rows, attention.embed_dim, attention.num_heads, *ranks, reduced=reduced)


def encoder_layer_flops(layer: nn.Module, rows: int = ENCODER_FRAMES) -> int:
    attention = layer.self_attn
    return (
        self_attention_flops(attention, rows)
        + linear_flops(attention.out_proj, rows)
        + linear_flops(layer.fc1, rows)
        + linear_flops(layer.fc2, rows)
    )


def encoder_flops(model: nn.Module) -> int:
    """FLOPs of one encoder pass over a 30 s input (batch 1)."""
    encoder = encoder_of(model)
    stem = conv_flops(encoder.conv1, MEL_FRAMES) + conv_flops(encoder.conv2, ENCODER_FRAMES)
    return stem + sum(encoder_layer_flops(layer) for layer in encoder.layers)


def reduced_attention_layers(model: nn.Module) -> list[int]:
    """Encoder layers whose self-attention runs in the reduced dimension."""
    return [
        index for index, layer in enumerate(encoder_of(model).layers)
        if getattr(layer.self_attn, "uses_reduced_path", False)
    ]


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
