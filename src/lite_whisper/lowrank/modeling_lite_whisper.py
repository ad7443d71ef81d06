"""Whisper with low-rank encoder linears (LiteASR), in the authors' Hugging Face format.

Self-contained (torch, transformers and the standard library only): this file,
`configuration_lite_whisper.py` and `fast_cpu.py` are copied into every saved folder, so
`AutoModel.from_pretrained(folder, trust_remote_code=True)` works where lite_whisper is not
installed.

On disk a low-rank module stores `weight1` (in x rank), `weight2` (rank x out) and `bias`
under the dense module's path, like the authors' checkpoints. In memory it is two plain
`nn.Linear`s (`down`, `up`) so quantisers, exporters and profilers keep working; the
conversion mapping registered at the bottom translates between the two layouts when
transformers loads or saves.

Inference on the CPU takes a faster route (same results within fp32 rounding; see
`fast_cpu.py`): fp32 linears through oneDNN instead of MKL, GELU and the second residual add
fused into the linears, the q/k/v projections that share an input fused into one matmul, and
no layout copies around attention. Training, autograd, tracing, export (torch.jit,
torch.compile, torch.export, ONNX) and anything with forward hooks see the plain modules.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import transformers
from torch import nn

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
from .fast_cpu import apply_linear, fast_cpu_kernels, fast_path, has_hooks, onednn_linear, tracing

__all__ = [
    "LOW_RANK_TARGETS", "LiteWhisperAttention", "LiteWhisperConfig", "LiteWhisperEncoderLayer",
    "LiteWhisperForConditionalGeneration", "LowRankLinear", "attention_flops",
]


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
        if fast_path(x, self.down, self.up):
            return onednn_linear(onednn_linear(x, self.down.weight, None), self.up.weight, self.up.bias)
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def attention_flops(
    seq_len: int,
    d_model: int,
    n_heads: int,
    r_q: int | None,
    r_k: int | None,
    r_v: int | None,
    reduced: bool,
) -> int:
    """FLOPs (2 per multiply-add) of self-attention from its input to the input of out_proj.

    Counts the q, k, v projections (rank None = dense) and the two attention matmuls;
    biases, softmax and out_proj are the same on both paths and are left out.
    Ordinary path: project q, k, v to d_model, then softmax(q k^T) v per head.
    Reduced path (METHOD.md §5, needs all three low-rank): x -> q1, k1, v1; per head
    (q1 M_h + u_h) k1^T, then (P v1) Bv_h. Keys and values are zero-padded to one width,
    max(r_k, r_v), because fused attention kernels (SDPA's flash kernels) need equal head
    widths and fall back to a several times slower path otherwise; the count includes the padding.
    """
    n, d, h = seq_len, d_model, n_heads
    if reduced:
        if None in (r_q, r_k, r_v):
            raise ValueError("the reduced path needs low-rank q, k and v")
        width = max(r_k, r_v)
        down = n * d * (r_q + r_k + r_v)
        macs = down + h * n * r_q * width + 2 * h * n * n * width + n * r_v * d
    else:
        projections = sum(n * d * d if r is None else n * r * 2 * d for r in (r_q, r_k, r_v))
        macs = projections + 2 * n * n * d
    return 2 * macs


class LiteWhisperAttention(WhisperAttention):
    """Encoder self-attention that works in the reduced dimension when that is cheaper.

    `path` is "auto" (decide by `attention_flops` at the encoder's sequence length),
    "reduced" or "ordinary". The ordinary path is transformers' own forward; the reduced
    path uses the same attention backend (SDPA, eager, ...) on rank-sized heads.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = "auto"
        self.fast_inference = True  # see LiteWhisperForConditionalGeneration.__init__

    def _ranks(self) -> tuple[int | None, int | None, int | None]:
        """Ranks of q_proj, k_proj and v_proj; None where dense."""
        modules = (self.q_proj, self.k_proj, self.v_proj)
        return tuple(module.rank if isinstance(module, LowRankLinear) else None for module in modules)

    def flops(self, seq_len: int, reduced: bool) -> int:
        return attention_flops(seq_len, self.embed_dim, self.num_heads, *self._ranks(), reduced=reduced)

    @property
    def uses_reduced_path(self) -> bool:
        if self.path not in ("auto", "reduced", "ordinary"):
            raise ValueError(f"attention path must be 'auto', 'reduced' or 'ordinary', not {self.path!r}")
        possible = None not in self._ranks()
        if self.path == "reduced" and not possible:
            raise ValueError("the reduced attention path needs low-rank q_proj, k_proj and v_proj")
        if self.path != "auto":
            return self.path == "reduced"
        n = self.config.max_source_positions
        return possible and self.flops(n, reduced=True) < self.flops(n, reduced=False)

    def forward(self, hidden_states, key_value_states=None, cache=None, attention_mask=None, **kwargs):
        if key_value_states is not None or cache is not None:
            return super().forward(
                hidden_states, key_value_states, cache=cache, attention_mask=attention_mask, **kwargs
            )
        # Hooks on q/k/v/out must see those modules run: the reduced path never computes q, k, v in full.
        if self.uses_reduced_path and not (self.path == "auto" and has_hooks(self)):
            return self._reduced_forward(hidden_states, attention_mask, **kwargs)
        if self._fast_ordinary_path(hidden_states, kwargs):
            return self._ordinary_forward(hidden_states, attention_mask)
        return super().forward(hidden_states, attention_mask=attention_mask, **kwargs)

    def _fast_ordinary_path(self, hidden_states: torch.Tensor, kwargs: dict) -> bool:
        """Whether our own ordinary forward may replace transformers' (inference with SDPA only)."""
        return (
            fast_cpu_kernels()
            and self.fast_inference
            and not self.training
            and self.config._attn_implementation == "sdpa"
            and not kwargs.get("output_attentions", False)
            and type(hidden_states) is torch.Tensor
            and not tracing()
            and not has_hooks(self)
        )

    def _first_stage(self, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """The first matmul of q_proj, k_proj and v_proj (the down-projection if low-rank, else the
        whole dense projection), fused into one matmul over the shared input on the oneDNN route.

        The concatenated weight is cached beside the modules (not in the state dict) and rebuilt
        whenever a component weight is replaced or modified in place.
        """
        modules = (self.q_proj, self.k_proj, self.v_proj)
        stages = [m.down if isinstance(m, LowRankLinear) else m for m in modules]
        if not fast_path(hidden_states, *stages):
            return [stage(hidden_states) for stage in stages]
        weight, bias = self._fused_first_stage(stages)
        fused = onednn_linear(hidden_states, weight, bias)
        return list(fused.split([stage.out_features for stage in stages], dim=-1))

    def _fused_first_stage(self, stages: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = tuple(
            (id(t), t.data_ptr(), 0 if t.is_inference() else t._version, t.shape)  # inference tensors have no version
            for stage in stages
            for t in (stage.weight, stage.bias)
            if t is not None
        )
        cached = self.__dict__.get("_fused_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                weight = torch.cat([stage.weight for stage in stages])
                bias = None
                if any(stage.bias is not None for stage in stages):
                    bias = torch.cat([
                        stage.bias if stage.bias is not None else stage.weight.new_zeros(stage.out_features)
                        for stage in stages
                    ])
            cached = (key, weight, bias)
            self.__dict__["_fused_cache"] = cached  # a plain attribute: not a parameter, not saved
        return cached[1], cached[2]

    def _ordinary_forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None):
        """transformers' ordinary self-attention without its layout copies.

        q, k and v stay strided views of the projections (SDPA takes any strides), the softmax
        scaling goes to SDPA instead of a pass over q, and SDPA's output is already laid out
        (batch, seq, heads, head_dim), so merging the heads is free.
        """
        batch, seq_len, _ = hidden_states.shape
        heads_shape = (batch, seq_len, self.num_heads, self.head_dim)
        projected = []
        for module, first in zip((self.q_proj, self.k_proj, self.v_proj), self._first_stage(hidden_states)):
            full = apply_linear(module.up, first) if isinstance(module, LowRankLinear) else first
            projected.append(full.view(heads_shape).transpose(1, 2))
        context = F.scaled_dot_product_attention(
            *projected, attn_mask=attention_mask, dropout_p=0.0, scale=self.scaling
        )
        context = context.transpose(1, 2).reshape(batch, seq_len, self.embed_dim)
        return apply_linear(self.out_proj, context), None

    def _score_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """M (heads, r_q, r_k) and u (heads, 1, r_k), with the softmax scaling folded in.

        Recomputed every call: O(r_q r_k d_model), negligible next to O(seq_len^2) and
        never stale after the weights change.
        """
        h, dh = self.num_heads, self.head_dim
        bq = self.q_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_q, dh)
        bk = self.k_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_k, dh)
        cq = self.q_proj.up.bias.reshape(h, 1, dh)
        m = bq @ bk.transpose(1, 2) * self.scaling
        u = cq @ bk.transpose(1, 2) * self.scaling
        return m, u

    def _reduced_forward(self, hidden_states, attention_mask, output_attentions: bool = False, **kwargs):
        batch, seq_len, _ = hidden_states.shape
        h, dh = self.num_heads, self.head_dim
        q1, k1, v1 = self._first_stage(hidden_states)
        m, u = self._score_maps()
        # Zero columns change neither scores nor values, and equal widths keep SDPA on its fused kernel.
        r_k, r_v = self.k_proj.rank, self.v_proj.rank  # Python ints, also while tracing
        width = max(r_k, r_v)
        if r_k < width:
            m, u, k1 = (F.pad(t, (0, width - r_k)) for t in (m, u, k1))
        if r_v < width:
            v1 = F.pad(v1, (0, width - r_v))
        # scores_h = (q1 M_h + u_h) k1^T; terms constant along the key axis (k's bias) cancel in the softmax.
        query = (q1.unsqueeze(1) @ m + u).contiguous()  # (b, h, n, width)
        key = k1.unsqueeze(1).expand(batch, h, seq_len, -1)
        value = v1.unsqueeze(1).expand(batch, h, seq_len, -1)
        # The same backend (SDPA, eager, ...) as the ordinary path, on rank-sized heads.
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        context, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout,
            scaling=1.0,
            output_attentions=output_attentions,
            **kwargs,
        )  # context: (b, n, h, width)
        # P v_h = (P v1) Bv_h + cv_h, because each softmax row sums to one.
        bv = self.v_proj.up.weight.T.reshape(-1, h, dh).transpose(0, 1)  # (h, r_v, dh)
        heads = (context[..., :r_v].transpose(1, 2) @ bv).transpose(1, 2)  # (b, n, h, dh)
        attn_output = heads.reshape(batch, seq_len, h * dh) + self.v_proj.up.bias
        return apply_linear(self.out_proj, attn_output), weights


class LiteWhisperEncoderLayer(WhisperEncoderLayer):
    """A Whisper encoder layer whose linears named in `ranks` are low-rank."""

    def __init__(self, config: LiteWhisperConfig, ranks: dict[str, int]):
        super().__init__(config)
        self.self_attn = LiteWhisperAttention(
            embed_dim=config.d_model,
            num_heads=config.encoder_attention_heads,
            dropout=config.attention_dropout,
            config=config,
        )
        for name, rank in ranks.items():
            if name not in LOW_RANK_TARGETS:
                raise ValueError(f"unknown low-rank module {name!r}; expected one of {', '.join(LOW_RANK_TARGETS)}")
            parent_path, _, attribute = LOW_RANK_TARGETS[name][0].rpartition(".")
            parent = self.get_submodule(parent_path)
            dense = getattr(parent, attribute)
            setattr(parent, attribute, LowRankLinear(dense.in_features, dense.out_features, rank))
        self.activation_function = config.activation_function
        self.fast_inference = True  # see LiteWhisperForConditionalGeneration.__init__

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs) -> torch.Tensor:
        fast = fast_cpu_kernels() and self.fast_inference and not self.training
        if not fast or type(hidden_states) is not torch.Tensor or tracing() or has_hooks(self):
            return super().forward(hidden_states, attention_mask, **kwargs)
        # The encoder's stem hands over a channels-first view; transformers keeps that layout through
        # every residual add, so each layer norm copies its input and each add transposes.
        hidden_states = hidden_states.contiguous()
        residual = hidden_states
        hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, _ = self.self_attn(hidden_states=hidden_states, attention_mask=attention_mask, **kwargs)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        if self.activation_function == "gelu":  # exact GELU, fused into fc1 on the oneDNN route
            hidden_states = apply_linear(self.fc1, hidden_states, activation="gelu")
        else:
            hidden_states = self.activation_fn(apply_linear(self.fc1, hidden_states))
        hidden_states = apply_linear(self.fc2, hidden_states, residual=residual)

        if hidden_states.dtype == torch.float16:
            clamp_value = torch.finfo(hidden_states.dtype).max - 1000
            hidden_states = torch.clamp(hidden_states, min=-clamp_value, max=clamp_value)
        return hidden_states


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
        # Without any low-rank module this is plain Whisper and computes exactly what transformers'
        # modules compute; with some, every encoder layer takes the fast CPU route (fp32 rounding apart).
        fast = any(ranks)
        for layer in self.model.encoder.layers:
            layer.fast_inference = layer.self_attn.fast_inference = fast
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


# Keyed by class name: instances report model_type "whisper" (see _ModelType).
register_checkpoint_conversion_mapping(
    LiteWhisperForConditionalGeneration.__name__, _checkpoint_conversions(), overwrite=True
)
