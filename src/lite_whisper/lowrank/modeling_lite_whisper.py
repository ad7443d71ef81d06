"""Whisper with low-rank encoder linears (LiteASR), in the authors' Hugging Face format.

Self-contained (torch, transformers and `configuration_lite_whisper.py`): this file and the
configuration are copied into every saved folder, so `AutoModel.from_pretrained(folder,
trust_remote_code=True)` works where lite_whisper is not installed.

On disk a low-rank module stores `weight1` (in x rank), `weight2` (rank x out) and `bias` under
the dense module's path, like the authors' checkpoints. In memory it is two plain `nn.Linear`s
(`down`, `up`) so quantisers, exporters and profilers keep working; the conversion mapping at
the bottom translates between the two layouts when transformers loads or saves.

Only the format and a plain forward live here. lite-whisper's faster CPU kernels are a
separate, one-time transform of a loaded model (`lite_whisper.runtime.cpu_route`).
"""

from __future__ import annotations

import re

import torch
import transformers
from torch import nn
from torch.nn.modules import module as module_state

try:  # the checkpoint conversion API and the attention interface of transformers 5
    from transformers.conversion_mapping import register_checkpoint_conversion_mapping
    from transformers.core_model_loading import Transpose, WeightConverter, WeightRenaming
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.whisper.modeling_whisper import (
        WhisperAttention,
        WhisperEncoderLayer,
        WhisperForConditionalGeneration,
        eager_attention_forward,
    )
except ImportError as error:
    raise ImportError(
        f"lite-whisper models need transformers >= 5.0 and < 6 (found {transformers.__version__}): "
        f"pip install 'transformers>=5,<6' ({error})"
    ) from None

from .configuration_lite_whisper import LOW_RANK_TARGETS, LiteWhisperConfig

__all__ = [
    "LOW_RANK_TARGETS", "LiteWhisperAttention", "LiteWhisperConfig", "LiteWhisperEncoderLayer",
    "LiteWhisperForConditionalGeneration", "LowRankLinear", "attention_flops",
]

ATTENTION_PATHS = ("auto", "reduced", "ordinary")


class LowRankLinear(nn.Module):
    """y = up(down(x)): a rank-`rank` factorisation of an `in_features -> out_features` linear."""

    def __init__(self, in_features: int, out_features: int, rank: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=True, device=device, dtype=dtype)

    @classmethod
    def from_factors(cls, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> LowRankLinear:
        """From y = (x a) b + bias with a: (in, rank), b: (rank, out), bias: (out,)."""
        (in_features, rank), out_features = a.shape, b.shape[1]
        if b.shape[0] != rank or bias.shape != (out_features,):
            shapes = f"a {tuple(a.shape)}, b {tuple(b.shape)}, bias {tuple(bias.shape)}"
            raise ValueError(f"factor shapes do not chain: {shapes}")
        module = cls(in_features, out_features, rank, device="meta")
        module.down.weight = nn.Parameter(a.detach().T.contiguous())
        module.up.weight = nn.Parameter(b.detach().T.contiguous())
        module.up.bias = nn.Parameter(bias.detach().clone())
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The factors by dictionary: each `self.down` is a Python call (Module.__getattr__), and at
        # batch 1 on a GPU a layer's time is its host work.
        factors = self._modules
        return factors["up"](factors["down"](x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def attention_flops(seq_len: int, d_model: int, n_heads: int, r_q: int | None, r_k: int | None,
                    r_v: int | None, reduced: bool) -> int:
    """FLOPs (2 per multiply-add) of self-attention from its input to the input of out_proj.

    Counts the q, k, v projections (rank None = dense) and the two attention matmuls;
    biases, softmax and out_proj are the same on both paths and are left out.
    Ordinary path: project q, k, v to d_model, then softmax(q k^T) v per head.
    Reduced path (METHOD.md §5, needs all three low-rank): x -> q1, k1, v1; per head
    (q1 M_h + u_h) k1^T, then (P v1) Bv_h. Keys and values are zero-padded to one width,
    max(r_k, r_v), because fused attention kernels need equal head widths and fall back to a
    several times slower path otherwise; the count includes the padding.
    """
    n, d, h = seq_len, d_model, n_heads
    if reduced:
        if None in (r_q, r_k, r_v):
            raise ValueError("the reduced path needs low-rank q, k and v")
        width = max(r_k, r_v)
        macs = n * d * (r_q + r_k + r_v) + h * n * r_q * width + 2 * h * n * n * width + n * r_v * d
    else:
        projections = sum(n * d * d if r is None else n * r * 2 * d for r in (r_q, r_k, r_v))
        macs = projections + 2 * n * n * d
    return 2 * macs


class LiteWhisperAttention(WhisperAttention):
    """Encoder self-attention that works in the reduced dimension when that is cheaper.

    `path` is "auto" (the cheaper by `attention_flops` at the encoder's sequence length),
    "reduced" or "ordinary". It is decided when set and when the layer is built, not per call.
    The ordinary path is transformers' own forward; the reduced one uses the same attention
    backend (SDPA, eager, ...) on rank-sized heads.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = "auto"
        self.uses_reduced_path = False

    @property
    def path(self) -> str:
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if value not in ATTENTION_PATHS:
            raise ValueError(f"attention path must be 'auto', 'reduced' or 'ordinary', not {value!r}")
        if value == "reduced" and None in self.ranks():
            raise ValueError("the reduced attention path needs low-rank q_proj, k_proj and v_proj")
        self._path = value
        self.uses_reduced_path = value == "reduced" or (value == "auto" and self._reduced_is_cheaper())

    def ranks(self) -> tuple[int | None, int | None, int | None]:
        """Ranks of q_proj, k_proj and v_proj; None where dense."""
        return tuple(getattr(m, "rank", None) for m in (self.q_proj, self.k_proj, self.v_proj))

    def flops(self, seq_len: int, reduced: bool) -> int:
        return attention_flops(seq_len, self.embed_dim, self.num_heads, *self.ranks(), reduced=reduced)

    def _reduced_is_cheaper(self) -> bool:
        n = self.config.max_source_positions
        return None not in self.ranks() and self.flops(n, reduced=True) < self.flops(n, reduced=False)

    def forward(self, hidden_states, key_value_states=None, cache=None, attention_mask=None, **kwargs):
        if self.uses_reduced_path and key_value_states is None and cache is None and not self._projections_hooked():
            return self.reduced_forward(hidden_states, attention_mask, **kwargs)
        return WhisperAttention.forward(self, hidden_states, key_value_states, cache=cache, attention_mask=attention_mask,
                                        **kwargs)

    def _projections_hooked(self) -> bool:
        """Hooks on q/k/v must see those modules run; the reduced path never computes q, k, v in full."""
        if module_state._global_forward_hooks or module_state._global_forward_pre_hooks:
            return True
        for m in (self.q_proj, self.k_proj, self.v_proj):
            if m._forward_hooks or m._forward_pre_hooks:
                return True
        return False

    def score_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """M (heads, r_q, r_k) and u (heads, 1, r_k), with the softmax scaling folded in."""
        h, dh = self.num_heads, self.head_dim
        bq = self.q_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_q, dh)
        bk = self.k_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_k, dh)
        cq = self.q_proj.up.bias.reshape(h, 1, dh)
        return bq @ bk.transpose(1, 2) * self.scaling, cq @ bk.transpose(1, 2) * self.scaling

    def reduced_forward(self, hidden_states, attention_mask, output_attentions: bool = False, **kwargs):
        batch, seq_len, _ = hidden_states.shape
        h, dh = self.num_heads, self.head_dim
        q1, k1, v1 = self.q_proj.down(hidden_states), self.k_proj.down(hidden_states), self.v_proj.down(hidden_states)
        m, u = self.score_maps()
        # Zero columns change neither scores nor values, and equal widths keep SDPA on its fused kernel.
        r_k, r_v = self.k_proj.rank, self.v_proj.rank
        width = max(r_k, r_v)
        if r_k < width:
            m, u, k1 = (nn.functional.pad(t, (0, width - r_k)) for t in (m, u, k1))
        if r_v < width:
            v1 = nn.functional.pad(v1, (0, width - r_v))
        # scores_h = (q1 M_h + u_h) k1^T; terms constant along the key axis (k's bias) cancel in the softmax.
        query = (q1.unsqueeze(1) @ m + u).contiguous()  # (b, h, n, width)
        key = k1.unsqueeze(1).expand(batch, h, seq_len, -1)
        value = v1.unsqueeze(1).expand(batch, h, seq_len, -1)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        context, weights = attention_interface(
            self, query, key, value, attention_mask, dropout=0.0 if not self.training else self.dropout,
            scaling=1.0, output_attentions=output_attentions, **kwargs,
        )  # context: (b, n, h, width)
        # P v_h = (P v1) Bv_h + cv_h, because each softmax row sums to one.
        bv = self.v_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_v, dh)
        heads = (context[..., :r_v].transpose(1, 2) @ bv).transpose(1, 2)  # (b, n, h, dh)
        return self.out_proj(heads.reshape(batch, seq_len, h * dh) + self.v_proj.up.bias), weights


class LiteWhisperEncoderLayer(WhisperEncoderLayer):
    """A Whisper encoder layer whose linears named in `ranks` are low-rank (transformers' forward)."""

    def __init__(self, config: LiteWhisperConfig, ranks: dict[str, int]):
        super().__init__(config)
        self.self_attn = LiteWhisperAttention(
            embed_dim=config.d_model, num_heads=config.encoder_attention_heads,
            dropout=config.attention_dropout, config=config,
        )
        for name, rank in ranks.items():
            if name not in LOW_RANK_TARGETS:
                raise ValueError(f"unknown low-rank module {name!r}; expected one of {', '.join(LOW_RANK_TARGETS)}")
            parent_path, _, attribute = LOW_RANK_TARGETS[name][0].rpartition(".")
            parent = self.get_submodule(parent_path)
            dense = getattr(parent, attribute)
            setattr(parent, attribute, LowRankLinear(dense.in_features, dense.out_features, rank))
        self.self_attn.path = "auto"  # decided now that the ranks are in place


class LiteWhisperForConditionalGeneration(WhisperForConditionalGeneration):
    """WhisperForConditionalGeneration whose encoder layers follow `config.low_rank_config`."""

    config_class = LiteWhisperConfig
    config: LiteWhisperConfig
    _no_split_modules = ["LiteWhisperEncoderLayer", "WhisperDecoderLayer"]

    def __init__(self, config: LiteWhisperConfig):
        super().__init__(config)
        ranks = config.low_rank_config or [{}] * config.encoder_layers
        if len(ranks) != config.encoder_layers:
            raise ValueError(f"low_rank_config has {len(ranks)} entries for {config.encoder_layers} encoder layers")
        self.model.encoder.layers = nn.ModuleList(LiteWhisperEncoderLayer(config, layer) for layer in ranks)
        self.post_init()


def _checkpoint_conversions() -> list[WeightConverter | WeightRenaming]:
    """weight1/weight2/bias on disk <-> down.weight/up.weight/up.bias in memory.

    transformers applies these on load and reverses them on save. A dense module's
    `<path>.bias` is renamed too, but the loader keeps the original key when the renamed
    one does not exist in the model, so dense modules are unaffected.
    """
    return [
        WeightConverter("weight1", "down.weight", operations=[Transpose()]),
        WeightConverter("weight2", "up.weight", operations=[Transpose()]),
        *(WeightRenaming(rf"{re.escape(path)}\.bias", f"{path}.up.bias") for path, _ in LOW_RANK_TARGETS.values()),
    ]


# Keyed by class name: instances report model_type "whisper" (see configuration_lite_whisper._ModelType).
register_checkpoint_conversion_mapping(
    LiteWhisperForConditionalGeneration.__name__, _checkpoint_conversions(), overwrite=True
)
