"""lite-whisper's fast CPU route: oneDNN linears with fused GELU and residual adds, applied once.

PyTorch's fp32 nn.Linear calls MKL sgemm, which on non-Intel CPUs (and on the thin shapes of
low-rank factors everywhere) runs at a third to a half of oneDNN's speed on the same shapes;
oneDNN also fuses GELU and a residual add into the matmul. So on the CPU in float32 an encoder
layer runs better as one function over its weights: the q/k/v first stages in one matmul, no
layout copies around attention, the activation and the residual adds inside the linears.

`apply_cpu_route(model)` swaps modules once, the way torchao's `quantize_` does: each encoder
layer is replaced in its list by an instance of a routed subclass (`CpuRoutedWhisperEncoderLayer`,
`CpuRoutedLiteWhisperEncoderLayer`) holding the very same submodules, parameters and hooks, so
`state_dict`, `.to()`, copies, pickles and autograd are those of a plain module. Its `forward`
runs the route where the route computes the same thing — inference (no grad, not training),
float32 on the CPU, no attention mask, no hook on a module inside the layer, not traced, compiled
or exported — and the layer's own forward everywhere else: the route steps aside by itself, with
no global switch. The fused weights (the plan) are built on the first call and again whenever a
weight is replaced, changed in place, moved, converted or given new data (`.data =`, a conversion
there and back such as `.half().float()`). A plan holds on to the data it was made from until it is
made again (the next inference call, `routed_layers` or `remove_cpu_route`), so after moving a routed
model the old copy lives until then. `remove_cpu_route(model)` puts the plain classes back.

A global module hook (`torch.nn.modules.module.register_module_forward_hook`) sees a routed layer
as one module: the route does not call its linears as modules.

The route calls the private op `torch.ops.mkldnn._linear_pointwise`, checked once against
`F.linear` before first use; if it is missing, raises or disagrees, the route is never applied
(with a warning). LITE_WHISPER_FAST_CPU=0 (or `fast_cpu_kernels(False)`) keeps it off.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.lowrank.modeling_lite_whisper import LiteWhisperEncoderLayer

_FAST_CPU = os.environ.get("LITE_WHISPER_FAST_CPU", "1").lower() not in ("0", "false", "no", "off")
_ONEDNN: bool | None = None  # None: not checked yet (see onednn_usable)


def fast_cpu_kernels(enabled: bool | None = None) -> bool:
    """Get (no argument) or set whether `apply_cpu_route` may put models on the route.

    On by default; off with `fast_cpu_kernels(False)` or LITE_WHISPER_FAST_CPU=0. Models already
    routed stay so until `remove_cpu_route`. Either way the results agree within fp32 rounding.
    """
    global _FAST_CPU
    if enabled is not None:
        _FAST_CPU = bool(enabled)
    return _FAST_CPU


def onednn_usable() -> bool:
    """Whether oneDNN's fused linear exists and passes its self-test (checked once per process)."""
    global _ONEDNN
    if _ONEDNN is None:
        _ONEDNN = _self_test()
    return _ONEDNN


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none"):
    """oneDNN's fp32 inner product, optionally followed by exact (erf) GELU."""
    if activation == "gelu":
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_linear_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, other: torch.Tensor):
    """x W^T + b + other in one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, "add")


def _self_test() -> bool:
    try:
        if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
            return False
    except (AttributeError, RuntimeError):
        return False
    generator = torch.Generator().manual_seed(0)
    x, other = torch.randn(2, 5, 24, generator=generator), torch.randn(2, 5, 40, generator=generator)
    weight, bias = torch.randn(40, 24, generator=generator), torch.randn(40, generator=generator)
    expected = F.linear(x, weight, bias)
    try:
        with torch.no_grad():
            results = [
                (onednn_linear(x, weight, bias), expected),
                (onednn_linear(x, weight, None), F.linear(x, weight)),
                (onednn_linear(x, weight, bias, "gelu"), F.gelu(expected)),
                (onednn_linear_add(x, weight, bias, other), expected + other),
            ]
        good = all(got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4) for got, want in results)
    except Exception as error:  # a private op may change or vanish in any torch release
        warnings.warn(f"lite-whisper: oneDNN fused linear failed its self-test ({type(error).__name__}: {error}); "
                      "using the plain modules", stacklevel=2)
        return False
    if not good:
        warnings.warn("lite-whisper: oneDNN fused linear gave wrong results in its self-test; using the plain modules",
                      stacklevel=2)
    return good


# --- applying and removing -------------------------------------------------------------------------


def apply_cpu_route(model: nn.Module) -> int:
    """Swap every encoder layer of `model` (a Whisper model or its encoder) for its routed twin; return how
    many layers run on the route now.

    0 when the model cannot take it: not on the CPU in float32, in training mode, oneDNN's op
    unusable here, or the route switched off (LITE_WHISPER_FAST_CPU=0). Idempotent.
    """
    encoder = encoder_of(model)
    parameter = next(encoder.parameters())
    if not (_FAST_CPU and not encoder.training and parameter.device.type == "cpu"
            and parameter.dtype == torch.float32 and onednn_usable()):
        return 0
    for index, layer in enumerate(encoder.layers):
        routed = _ROUTED.get(type(layer))
        if routed is not None:
            encoder.layers[index] = _swapped(layer, routed)
    return routed_layers(encoder)


def remove_cpu_route(model: nn.Module) -> None:
    """Put the plain layers back (the same submodules and weights; nothing else changes)."""
    layers = encoder_of(model).layers
    for index, layer in enumerate(layers):
        if isinstance(layer, CpuRouted):
            layers[index] = _swapped(layer, layer._cpu_route_base)


def routed_layers(model: nn.Module) -> int:
    """How many encoder layers would run on the route now (not a hooked, training or float64 one)."""
    return sum(isinstance(layer, CpuRouted) and layer.on_route() for layer in encoder_of(model).layers)


def _swapped(layer: nn.Module, cls: type) -> nn.Module:
    """An instance of `cls` holding `layer`'s state: the same submodules, parameters, buffers and hook
    dictionaries (a hook's handle still finds its hook), without a plan."""
    swapped = cls.__new__(cls)
    swapped.__dict__.update(layer.__dict__)
    swapped.__dict__.pop("_cpu_plan", None)
    return swapped


class CpuRouted:
    """Mixin of a routed encoder layer class: the route where it computes the same thing, else the base's forward."""

    _cpu_route_base: type
    _cpu_plan: _LayerPlan | None = None

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        # what the call asks for first (a plan is never made while training, tracing or exporting), then the plan
        if (self.training or attention_mask is not None or torch.is_grad_enabled()
                or type(hidden_states) is not torch.Tensor or hidden_states.dtype is not torch.float32
                or kwargs.get("output_attentions") or torch.is_autocast_enabled("cpu")
                or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            return super().forward(hidden_states, attention_mask, **kwargs)
        plan = self._current_plan()
        if not plan.runnable or plan.hooked():
            return super().forward(hidden_states, attention_mask, **kwargs)
        return plan.run(hidden_states)

    def on_route(self) -> bool:
        """Whether an inference call would take the route now."""
        plan = self._current_plan()
        return plan.runnable and not self.training and not plan.hooked()

    def _current_plan(self) -> _LayerPlan:
        """The plan, made again when what it was made from has changed."""
        plan = self._cpu_plan
        if plan is None or not plan.current():
            plan = _LayerPlan.of(self)
            self.__dict__["_cpu_plan"] = plan  # not a module attribute: never in state_dict
        return plan

    def __getstate__(self):  # copies and pickles plan again from their own tensors
        state = self.__dict__.copy()
        state.pop("_cpu_plan", None)
        return state


class CpuRoutedWhisperEncoderLayer(CpuRouted, WhisperEncoderLayer):
    _cpu_route_base = WhisperEncoderLayer


class CpuRoutedLiteWhisperEncoderLayer(CpuRouted, LiteWhisperEncoderLayer):
    _cpu_route_base = LiteWhisperEncoderLayer


# The layer classes the route knows (a saved folder's own remote-code class is not among them: it runs as itself).
_ROUTED = {WhisperEncoderLayer: CpuRoutedWhisperEncoderLayer, LiteWhisperEncoderLayer: CpuRoutedLiteWhisperEncoderLayer}


# --- the plan: one layer's weights as the route uses them ------------------------------------------


class _Linear:
    """A linear (dense or low-rank) as the route runs it: an optional down factor, then weight and bias."""

    __slots__ = ("down", "weight", "bias")

    def __init__(self, down, weight, bias):
        self.down, self.weight, self.bias = down, weight, bias

    def __call__(self, x, activation="none"):
        if self.down is not None:
            x = onednn_linear(x, self.down, None)
        return onednn_linear(x, self.weight, self.bias, activation)

    def add(self, x, residual):
        """x's linear plus `residual`, the add fused into the last matmul."""
        if self.down is not None:
            x = onednn_linear(x, self.down, None)
        return onednn_linear_add(x, self.weight, self.bias, residual)


class _LayerPlan:
    """What the route needs of one layer, with what to check that it is still the layer's."""

    runnable = False

    @classmethod
    def of(cls, layer: nn.Module) -> _LayerPlan:
        """The layer's plan: runnable, or (unsupported modules, weights not float32 on the CPU) a plan that only
        watches what it was made from, so that it is made again when that changes."""
        modules = list(layer.modules())
        plan = cls()
        plan._watch(modules)
        plan.inner = tuple(modules[1:])  # hooks on the layer itself fire around the route; on these they would not
        supported = plan._supported(layer)
        if supported is not None:
            with torch.no_grad():
                plan._build(layer, *supported)
            plan.runnable = True
        return plan

    @staticmethod
    def _supported(layer: nn.Module):
        """(attention, linear stages, reduced) where the route computes what the layer does, else None."""
        attention = layer.__dict__["_modules"].get("self_attn")
        if attention is None or not all(hasattr(layer, name) for name in
                                        ("self_attn_layer_norm", "final_layer_norm", "fc1", "fc2")):
            return None
        linears = [attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj, layer.fc1, layer.fc2]
        stages = []
        for linear in linears:
            stage = [linear.down, linear.up] if hasattr(linear, "down") and hasattr(linear, "up") else [linear]
            for part in stage:  # plain nn.Linear only: a quantiser's replacement keeps its own forward
                if type(part) is not nn.Linear or part.weight.dtype != torch.float32 or part.weight.device.type != "cpu":
                    return None
            stages.append(stage)
        for norm in (layer.self_attn_layer_norm, layer.final_layer_norm):
            if type(norm) is not nn.LayerNorm or norm.weight is None:
                return None
        reduced = bool(getattr(attention, "uses_reduced_path", False))
        if not reduced and attention.config._attn_implementation != "sdpa":
            return None  # eager attention is what the user asked for
        if reduced and not hasattr(attention, "score_maps"):
            return None  # a saved folder's own (older) attention class: its reduced path stays its own
        return attention, stages, reduced

    def _watch(self, modules: list[nn.Module]) -> None:
        """Every (dictionary, key, value) the plan was made from, and every tensor's data address and version:
        `.to()`, `.double()` and `.data =` give a tensor new data, an in-place change bumps its version. The plan
        holds on to the data it was made from (an alias), so a new allocation cannot reuse its address."""
        watch, tensors = [], []
        for module in modules:
            for container in (module._modules, module._parameters, module._buffers):
                for key, value in container.items():
                    watch.append((container, key, value))
                    if isinstance(value, torch.Tensor):
                        tensors.append((value, value.detach(), value.data_ptr(),
                                        -1 if value.is_inference() else value._version))
        self.watch, self.tensors = tuple(watch), tuple(tensors)

    def current(self) -> bool:
        """Whether every module and tensor is still the one planned from, unchanged."""
        for container, key, value in self.watch:
            if key not in container or container[key] is not value:  # subscripts, not calls: the cheapest check
                return False
        for tensor, _, pointer, version in self.tensors:
            if tensor.data_ptr() != pointer or version >= 0 and tensor._version != version:
                return False
        return True

    def hooked(self) -> bool:
        """Whether a module inside the layer has a forward (pre-)hook (the route would not call it)."""
        for module in self.inner:
            if module._forward_hooks or module._forward_pre_hooks:
                return True
        return False

    def _build(self, layer, attention, stages, reduced: bool) -> None:
        def linear(stage):
            return _Linear(stage[0].weight if len(stage) == 2 else None, stage[-1].weight, stage[-1].bias)

        first = [stage[0] for stage in stages[:3]]
        self.first_weight = torch.cat([part.weight for part in first])
        biases = [part.bias for part in first]
        self.first_bias = None if all(b is None for b in biases) else torch.cat([
            b if b is not None else part.weight.new_zeros(part.out_features) for b, part in zip(biases, first)])
        self.first_split = [part.out_features for part in first]
        self.ups = [(stage[1].weight, stage[1].bias) if len(stage) == 2 else None for stage in stages[:3]]
        self.out, self.fc1, self.fc2 = linear(stages[3]), linear(stages[4]), linear(stages[5])
        self.norm1 = (layer.self_attn_layer_norm.normalized_shape, layer.self_attn_layer_norm.weight,
                      layer.self_attn_layer_norm.bias, layer.self_attn_layer_norm.eps)
        self.norm2 = (layer.final_layer_norm.normalized_shape, layer.final_layer_norm.weight,
                      layer.final_layer_norm.bias, layer.final_layer_norm.eps)
        self.gelu = attention.config.activation_function == "gelu"  # exact GELU: fused into fc1
        self.activation = layer.activation_fn
        self.heads, self.head_dim, self.scaling = attention.num_heads, attention.head_dim, attention.scaling
        self.embed_dim = attention.embed_dim
        self.reduced = reduced
        if reduced:
            self._plan_reduced(attention)

    def _plan_reduced(self, attention) -> None:
        """M, u (keys padded to one width with the values), B_v and v's bias of LiteASR's reduced attention."""
        m, u = attention.score_maps()
        v_up = attention.v_proj.up
        self.r_k, self.r_v = attention.k_proj.rank, attention.v_proj.rank
        self.width = max(self.r_k, self.r_v)
        if self.r_k < self.width:
            m, u = F.pad(m, (0, self.width - self.r_k)), F.pad(u, (0, self.width - self.r_k))
        self.m, self.u = m.contiguous(), u.contiguous()
        self.bv = v_up.weight.T.reshape(-1, self.heads, self.head_dim).transpose(0, 1).contiguous()  # (h, r_v, dh)
        self.v_bias = v_up.bias

    def run(self, x: torch.Tensor) -> torch.Tensor:
        # The encoder's stem hands over a channels-first view; keep one contiguous layout throughout.
        x = x.contiguous()
        h = torch.layer_norm(x, *self.norm1)
        parts = onednn_linear(h, self.first_weight, self.first_bias).split(self.first_split, dim=-1)
        context = self._reduced_attention(parts) if self.reduced else self._attention(parts)
        x = self.out.add(context, x)
        h = torch.layer_norm(x, *self.norm2)
        h = self.fc1(h, "gelu") if self.gelu else self.activation(self.fc1(h))
        return self.fc2.add(h, x)

    def _attention(self, parts) -> torch.Tensor:
        """transformers' self-attention without its layout copies: q, k, v stay strided views (SDPA
        takes any strides), the scaling goes to SDPA, and SDPA's output needs no head merge."""
        batch, length = parts[0].shape[:2]
        heads = (batch, length, self.heads, self.head_dim)
        q, k, v = (part if up is None else onednn_linear(part, *up) for part, up in zip(parts, self.ups))
        context = F.scaled_dot_product_attention(q.view(heads).transpose(1, 2), k.view(heads).transpose(1, 2),
                                                 v.view(heads).transpose(1, 2), scale=self.scaling)
        return context.transpose(1, 2).reshape(batch, length, self.embed_dim)

    def _reduced_attention(self, parts) -> torch.Tensor:
        """LiteASR's attention in the rank-sized space (see LiteWhisperAttention.reduced_forward)."""
        q1, k1, v1 = parts
        batch, length = q1.shape[:2]
        if self.r_k < self.width:
            k1 = F.pad(k1, (0, self.width - self.r_k))
        if self.r_v < self.width:
            v1 = F.pad(v1, (0, self.width - self.r_v))
        query = q1.unsqueeze(1) @ self.m + self.u  # (b, h, n, width)
        key = k1.unsqueeze(1).expand(batch, self.heads, length, -1)
        value = v1.unsqueeze(1).expand(batch, self.heads, length, -1)
        context = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # (b, h, n, width)
        heads = context[..., : self.r_v] @ self.bv  # (b, h, n, dh)
        return heads.transpose(1, 2).reshape(batch, length, self.embed_dim) + self.v_bias
