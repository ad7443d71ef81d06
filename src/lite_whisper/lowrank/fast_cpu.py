"""The fast CPU route of lite-whisper models: oneDNN linears with fused GELU and residual add.

PyTorch's fp32 nn.Linear calls MKL sgemm, which on non-Intel CPUs (and on the thin shapes of
low-rank factors everywhere) runs at a third to a half of oneDNN's speed on the same shapes;
oneDNN also fuses GELU and a residual add into the matmul.

Self-contained (torch only): copied into every saved folder beside the modeling file.

The route calls the private op `torch.ops.mkldnn._linear_pointwise`. It is checked once
against `F.linear` on a small input before first use; if it is missing, raises or disagrees,
the route is switched off (with a warning) and the plain modules run instead. The route is
also skipped whenever something must see the plain modules run: autograd, tracing and export,
autocast, and forward hooks (a profiler, a quantiser's observer, a calibration hook) on any
module involved or registered globally.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

_FAST_CPU = os.environ.get("LITE_WHISPER_FAST_CPU", "1").lower() not in ("0", "false", "no", "off")
_ONEDNN: bool | None = None  # None: not checked yet (see onednn_usable)


def fast_cpu_kernels(enabled: bool | None = None) -> bool:
    """Get (no argument) or set whether CPU inference may take the oneDNN/fused route.

    On by default; off with `fast_cpu_kernels(False)` or the environment variable
    LITE_WHISPER_FAST_CPU=0. Either route gives the same results within fp32 rounding.
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


def tracing() -> bool:
    """True while torch.jit, torch.compile/torch.export or the ONNX exporter record the model."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and (compiler.is_compiling() or getattr(compiler, "is_exporting", lambda: False)()):
        return True
    return torch.onnx.is_in_onnx_export()


def has_hooks(*modules: nn.Module) -> bool:
    """True when a forward (pre-)hook is registered globally or on any of `modules` or their children.

    The fused route computes several modules in one call (or skips calling a module at all), so
    a hook would silently see nothing; with hooks the plain modules run.
    """
    from torch.nn.modules import module as module_state

    if module_state._global_forward_hooks or module_state._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for module in modules for m in module.modules())


def route_allowed(x: torch.Tensor) -> bool:
    """The checks of `fast_path` that depend on the input alone (no modules)."""
    if not (_FAST_CPU and type(x) is torch.Tensor):  # no tensor subclasses (fake/functional while tracing)
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.is_autocast_enabled("cpu") or tracing():
        return False
    return onednn_usable()


def fast_path(x: torch.Tensor, *modules: nn.Module) -> bool:
    """Whether `modules` may run on the oneDNN route for input `x`.

    Plain fp32 CPU tensors only, plain nn.Linear modules only (a quantiser's replacement keeps
    its own forward), no hooks, and nothing that autograd must record: oneDNN's op has no backward.
    """
    if not route_allowed(x):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters())):
        return False
    for module in modules:
        if type(module) is not nn.Linear or module.weight.dtype != torch.float32 or module.weight.device.type != "cpu":
            return False
    return not has_hooks(*modules)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none"):
    """oneDNN's fp32 inner product, optionally followed by exact (erf) GELU."""
    if activation == "gelu":
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_linear_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, other: torch.Tensor):
    """x W^T + b + other in one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, "add")


def apply_linear(
    module: nn.Module, x: torch.Tensor, activation: str | None = None, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """activation(module(x)) + residual, on the fused oneDNN route when `fast_path` allows it.

    `module` is an nn.Linear or a low-rank linear (two nn.Linear, `down` then `up`; the
    fusions apply to `up`); `activation` is None or "gelu" (exact). A module with hooks is
    called as a whole, so its hooks (and its children's) fire.
    """
    low_rank = hasattr(module, "down") and hasattr(module, "up")
    plain = has_hooks(module) or not (fast_path(x, module.down, module.up) if low_rank else fast_path(x, module))
    if plain:
        y = module(x)
        if activation == "gelu":
            y = F.gelu(y)
        return y if residual is None else residual + y
    if low_rank:  # the down factor alone, then the fusions on the up factor (fast_path already allowed both)
        x, module = onednn_linear(x, module.down.weight, None), module.up
    if residual is not None and activation is None and residual.shape == (*x.shape[:-1], module.out_features):
        return onednn_linear_add(x, module.weight, module.bias, residual.contiguous())
    y = onednn_linear(x, module.weight, module.bias, activation or "none")
    return y if residual is None else residual + y
