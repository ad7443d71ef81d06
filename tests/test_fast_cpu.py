"""The fast CPU route (oneDNN linears, fusions) against the plain modules: same numbers, hooks
fire, autograd and tracing see plain modules, the self-test guards the private op."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_whisper_model
from test_bench import HEADS, MELS, D, N, T, random_factors

import lite_whisper.lowrank.fast_cpu as fast_cpu
import lite_whisper.lowrank.modeling_lite_whisper as modeling
from lite_whisper.benchmark.bench import on_fast_route
from lite_whisper.lowrank.convert import to_lite_whisper

needs_onednn = pytest.mark.skipif(not fast_cpu.onednn_usable(), reason="oneDNN's fused linear is not usable here")


def mixed_lite_model():
    """Layer 0: low-rank everything, ordinary attention. Layer 1: unequal q/k/v ranks below the head width
    (reduced attention, keys and values padded to one width), dense fc1/out_proj."""
    factors = random_factors([
        {"q_proj": 32, "k_proj": 32, "v_proj": 48, "out_proj": 32, "fc1": 64, "fc2": 32},
        {"q_proj": 8, "k_proj": 4, "v_proj": 12, "fc2": 16},
    ])
    for (layer, name), (a, b, bias) in list(factors.items()):
        factors[layer, name] = (a, b, torch.randn(bias.shape, generator=torch.Generator().manual_seed(layer)) * 0.1)
    return to_lite_whisper(tiny_whisper_model(), factors)


def encode(model, x, fast: bool):
    previous = modeling.fast_cpu_kernels()
    modeling.fast_cpu_kernels(fast)
    try:
        with torch.inference_mode():
            return model.model.encoder(x).last_hidden_state
    finally:
        modeling.fast_cpu_kernels(previous)


def count_onednn_calls(monkeypatch) -> list:
    calls = []
    real = fast_cpu.onednn_linear
    counting = lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(fast_cpu, "onednn_linear", counting)
    monkeypatch.setattr(modeling, "onednn_linear", counting)
    return calls


@needs_onednn
def test_fast_route_matches_the_plain_modules(monkeypatch):
    lite = mixed_lite_model()
    assert [layer.self_attn.uses_reduced_path for layer in lite.model.encoder.layers] == [False, True]
    calls = count_onednn_calls(monkeypatch)
    x = torch.randn(2, MELS, T, generator=torch.Generator().manual_seed(1))
    fast, plain = encode(lite, x, True), encode(lite, x, False)
    assert calls, "the fast route did not use oneDNN"
    scale = plain.abs().max()
    torch.testing.assert_close(fast / scale, plain / scale, rtol=0, atol=2e-6)
    # and the plain route is transformers' computation, in float64 for reference
    reference = lite.double().model.encoder(x.double()).last_hidden_state
    torch.testing.assert_close(fast.double() / scale, reference / scale, rtol=0, atol=2e-6)


@needs_onednn
def test_fused_projection_follows_weight_changes():
    lite = mixed_lite_model()
    x = torch.randn(1, MELS, T, generator=torch.Generator().manual_seed(2))
    encode(lite, x, True)  # builds the fused first-stage weights
    attention = lite.model.encoder.layers[0].self_attn
    with torch.no_grad():
        attention.k_proj.down.weight.mul_(2.0)  # in place
    torch.testing.assert_close(encode(lite, x, True), encode(lite, x, False), rtol=0, atol=2e-5)
    attention.v_proj.down.weight = torch.nn.Parameter(torch.randn_like(attention.v_proj.down.weight) * 0.1)  # replaced
    torch.testing.assert_close(encode(lite, x, True), encode(lite, x, False), rtol=0, atol=2e-5)
    assert not any("fused" in key for key in lite.state_dict())  # the cache is never saved


def test_fast_route_leaves_autograd_alone():
    lite = mixed_lite_model().eval()
    x = torch.randn(1, MELS, T, generator=torch.Generator().manual_seed(3))
    lite.model.encoder(x).last_hidden_state.square().mean().backward()
    down = lite.model.encoder.layers[0].self_attn.q_proj.down.weight
    assert down.grad is not None and down.grad.abs().sum() > 0


def test_tracing_and_export_see_plain_modules():
    lite = mixed_lite_model()

    class Encoder(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, features):
            return self.encoder(features).last_hidden_state

    x = torch.randn(1, MELS, T)
    with torch.no_grad():
        traced = torch.jit.trace(Encoder(lite.model.encoder), x, check_trace=False)
    assert "mkldnn" not in str(traced.inlined_graph)
    exported = torch.export.export(Encoder(lite.model.encoder), (x,), strict=False)
    assert "mkldnn" not in str(exported.graph)
    torch.testing.assert_close(exported.module()(x), encode(lite, x, True), rtol=0, atol=1e-4)


def test_unequal_key_and_value_ranks_are_counted_padded():
    # width = max(r_k, r_v) = 24: q1 M_h 4*n*8*24, scores and P v1 2 * 4*n^2*24
    expected = 2 * (N * D * (8 + 4 + 24) + HEADS * N * 8 * 24 + 2 * HEADS * N * N * 24 + N * 24 * D)
    assert modeling.attention_flops(N, D, HEADS, 8, 4, 24, reduced=True) == expected


@needs_onednn
def test_dense_model_on_the_fast_route_computes_the_same():
    dense = tiny_whisper_model()
    fast = on_fast_route(dense)
    assert fast.model.encoder.conv1.weight.data_ptr() == dense.model.encoder.conv1.weight.data_ptr()
    x = torch.randn(1, MELS, T, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        expected = dense.model.encoder(x).last_hidden_state
    actual = encode(fast, x, True)
    torch.testing.assert_close(actual / expected.abs().max(), expected / expected.abs().max(), rtol=0, atol=2e-6)


@needs_onednn
def test_hooks_fire_on_a_lite_model_on_cpu_fp32(monkeypatch):
    """Forward hooks on q/k/v/out, fc1, fc2 and their factors see every call, as on the plain modules;
    the fast route is not taken for hooked modules (it would compute them without calling them)."""
    lite = mixed_lite_model().eval()
    x = torch.randn(1, MELS, T, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = lite.model.encoder(x).last_hidden_state
    seen: dict[str, tuple] = {}
    handles = []
    for index, layer in enumerate(lite.model.encoder.layers):
        for name, module in (("q_proj", layer.self_attn.q_proj), ("k_proj", layer.self_attn.k_proj),
                             ("out_proj", layer.self_attn.out_proj), ("fc1", layer.fc1), ("fc2", layer.fc2)):
            key = f"{index}.{name}"
            handles.append(module.register_forward_hook(
                lambda m, args, out, key=key: seen.__setitem__(key, tuple(out.shape))))
        handles.append(layer.fc2.register_forward_pre_hook(
            lambda m, args, key=f"{index}.fc2.input": seen.__setitem__(key, tuple(args[0].shape))))
    down = lite.model.encoder.layers[0].fc1.down  # a factor of a low-rank module
    handles.append(down.register_forward_hook(lambda m, args, out: seen.__setitem__("0.fc1.down", tuple(out.shape))))
    try:
        with torch.inference_mode():
            hooked = lite.model.encoder(x).last_hidden_state
    finally:
        for handle in handles:
            handle.remove()
    assert seen["0.fc1.down"] == (1, N, 64)  # rank 64
    for index in range(2):
        assert seen[f"{index}.q_proj"] == seen[f"{index}.out_proj"] == (1, N, D)
        assert seen[f"{index}.fc1"] == (1, N, 256) and seen[f"{index}.fc2.input"] == (1, N, 256)
    torch.testing.assert_close(hooked, expected, rtol=0, atol=1e-4)
    # with the hooks gone, the fast route is back
    calls = count_onednn_calls(monkeypatch)
    with torch.inference_mode():
        lite.model.encoder(x)
    assert calls


@needs_onednn
def test_a_global_hook_turns_the_fast_route_off(monkeypatch):
    lite = mixed_lite_model().eval()
    calls = count_onednn_calls(monkeypatch)
    names = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: names.append(type(m).__name__))
    try:
        with torch.inference_mode():
            lite.model.encoder(torch.randn(1, MELS, T))
    finally:
        handle.remove()
    assert not calls and names.count("Linear") >= 2 * 6  # every linear (or factor) was called as a module


def test_self_test_switches_a_broken_op_off(monkeypatch):
    """A private op that returns wrong numbers (or raises) must not be used: the plain modules run instead."""
    monkeypatch.setattr(fast_cpu, "_ONEDNN", None)
    monkeypatch.setattr(fast_cpu, "onednn_linear", lambda x, w, b, activation="none": torch.zeros(*x.shape[:-1], w.shape[0]))
    with pytest.warns(UserWarning, match="wrong results"):
        assert fast_cpu.onednn_usable() is False
    monkeypatch.setattr(fast_cpu, "_ONEDNN", None)

    def raising(*args, **kwargs):
        raise RuntimeError("op removed")

    monkeypatch.setattr(fast_cpu, "onednn_linear", raising)
    with pytest.warns(UserWarning, match="op removed"):
        assert fast_cpu.onednn_usable() is False
    lite = mixed_lite_model().eval()
    x = torch.randn(1, MELS, T, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():  # runs (on the plain modules) although the op raises
        out = lite.model.encoder(x).last_hidden_state
    assert torch.isfinite(out).all()


def test_fast_and_plain_routes_generate_the_same_tokens():
    from conftest import tiny_english_model

    dense = tiny_english_model()
    lite = to_lite_whisper(dense, random_factors([{"fc1": 32, "fc2": 32, "q_proj": 16}] * 2))
    features = torch.randn(2, MELS, T, generator=torch.Generator().manual_seed(7))
    outputs = []
    for fast in (True, False):
        previous = fast_cpu.fast_cpu_kernels(fast)
        try:
            with torch.inference_mode():
                outputs.append(lite.generate(features, max_new_tokens=12))
        finally:
            fast_cpu.fast_cpu_kernels(previous)
    assert torch.equal(outputs[0], outputs[1])
