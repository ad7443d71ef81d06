"""The error-aware sequential fit (compression.sequential): its closed form on hand-built data with known
answers, and the data-order fit on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from lite_whisper.calibration.moments import Moments
from lite_whisper.compression.decomposition import low_rank_factors, principal_basis
from lite_whisper.compression.sequential import (
    dense_sites,
    layer_input,
    regression_factors,
    sequential_factors,
)
from lite_whisper.lowrank.convert import to_lite_whisper
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS

D_IN, D_OUT, RANK = 24, 20, 6


def linear(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(D_OUT, D_IN, generator=generator, dtype=torch.float64),
            torch.randn(D_OUT, generator=generator, dtype=torch.float64))


def inputs(rows: int, seed: int) -> torch.Tensor:
    """Rows with a decaying spectrum (some directions strong, most weak) and a non-zero mean."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -2, D_IN, dtype=torch.float64)
    return torch.randn(rows, D_IN, generator=generator, dtype=torch.float64) * scales + 0.3


def joint(compressed: torch.Tensor, dense: torch.Tensor) -> Moments:
    moments = Moments.zeros(2 * D_IN, device="cpu")
    moments.update(torch.cat([compressed, dense], dim=-1)[None].to(torch.float64))
    return moments


def apply(factors, x):
    a, b, bias = factors
    return x @ a @ b + bias


def pca_factors(weight, bias, x_dense):
    outputs = Moments.zeros(D_OUT)
    outputs.update((x_dense @ weight.T + bias)[None])
    _, vectors = principal_basis(outputs)
    return low_rank_factors(weight, bias, outputs.mean(), vectors[:, :RANK])


def test_exact_inputs_give_the_pca_factors():
    weight, bias = linear()
    x = inputs(2000, seed=1)
    fitted = regression_factors(weight, bias, joint(x, x), RANK)
    pca = pca_factors(weight, bias, x)
    # the same map (the basis may differ in sign): A B and the bias agree
    torch.testing.assert_close(fitted[0] @ fitted[1], pca[0] @ pca[1], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fitted[2], pca[2], rtol=1e-7, atol=1e-9)


def test_a_bent_input_is_undone_and_plain_pca_is_not():
    """The compressed model's input is the dense one with two strong directions scaled down and shifted:
    the fit learns to undo the bend; PCA factors fitted on dense inputs cannot know of it."""
    weight, bias = linear()
    dense = inputs(4000, seed=2)
    bend = torch.eye(D_IN, dtype=torch.float64)
    bend[0, 0], bend[1, 1] = 0.6, 0.8
    compressed = dense @ bend + 0.05
    target = dense @ weight.T + bias
    fitted = regression_factors(weight, bias, joint(compressed, dense), RANK, mix=0.0, ridge=0.0)
    pca = pca_factors(weight, bias, dense)
    fitted_error = (apply(fitted, compressed) - target).square().mean()
    pca_error = (apply(pca, compressed) - target).square().mean()
    assert fitted_error < 0.5 * pca_error
    # and no worse on held-out rows bent the same way
    held = inputs(2000, seed=3)
    held_target = held @ weight.T + bias
    assert (apply(fitted, held @ bend + 0.05) - held_target).square().mean() \
        < (apply(pca, held @ bend + 0.05) - held_target).square().mean()


@pytest.mark.parametrize("mix", [0.0, 1.0])
def test_with_a_perturbed_input_the_fit_is_no_worse_than_pca(mix):
    """Random noise on the input: the rank-k least-squares answer is never worse on the rows it is fitted
    to than the PCA factors (which the fit contains as one candidate), whatever the weight of the dense term."""
    weight, bias = linear(seed=4)
    dense = inputs(3000, seed=5)
    generator = torch.Generator().manual_seed(6)
    compressed = dense + 0.02 * torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    target = dense @ weight.T + bias
    fitted = regression_factors(weight, bias, joint(compressed, dense), RANK, mix=mix, ridge=0.0)
    pca = pca_factors(weight, bias, dense)

    def objective(factors):
        return ((apply(factors, compressed) - target).square().mean()
                + mix * (apply(factors, dense) - target).square().mean())

    assert objective(fitted) <= objective(pca) * (1 + 1e-9)


def test_the_ridge_holds_unexcited_directions_to_the_dense_weight():
    """An input direction the clips never excite: least squares could put anything there; the ridge keeps
    what the dense linear does, so speech that does excite it later is mapped as the dense model maps it."""
    weight, bias = linear(seed=7)
    dense = inputs(3000, seed=8)
    dense[:, -1] = 0.0  # never excited
    generator = torch.Generator().manual_seed(9)
    compressed = dense + 0.02 * torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    compressed[:, -1] = 0.0
    fitted = regression_factors(weight, bias, joint(compressed, dense), D_OUT - 1, mix=1.0, ridge=1e-2)
    probe = torch.zeros(1, D_IN, dtype=torch.float64)
    probe[0, -1] = 1.0
    # the response to the unexcited direction is the dense weight's column, up to the rank cut
    response = apply(fitted, probe) - apply(fitted, torch.zeros_like(probe))
    assert torch.nn.functional.cosine_similarity(response[0], weight[:, -1], dim=0) > 0.9


def test_regression_factors_check_their_input():
    weight, bias = linear()
    x = inputs(100, seed=1)
    with pytest.raises(ValueError, match="width"):
        regression_factors(weight[:, :-1], bias, joint(x, x), RANK)
    with pytest.raises(ValueError, match="rank"):
        regression_factors(weight, bias, joint(x, x), D_OUT)
    with pytest.raises(ValueError, match="mix"):
        regression_factors(weight, bias, joint(x, x), RANK, mix=-1.0)


def test_statistics_of_shards_add_up_to_one_pass():
    """The fit reads only sums: clips split between two processes and added give the same factors."""
    weight, bias = linear()
    dense = inputs(3000, seed=10).reshape(6, 500, D_IN)
    compressed = dense * 0.9 + 0.01
    whole = Moments.zeros(2 * D_IN)
    whole.update(torch.cat([compressed, dense], dim=-1))
    first, second = Moments.zeros(2 * D_IN), Moments.zeros(2 * D_IN)
    first.update(torch.cat([compressed[:4], dense[:4]], dim=-1))
    second.update(torch.cat([compressed[4:], dense[4:]], dim=-1))
    merged = first + second
    for one, other in zip(regression_factors(weight, bias, whole, RANK), regression_factors(weight, bias, merged, RANK)):
        torch.testing.assert_close(one, other, rtol=1e-8, atol=1e-10)


# --- the data-order fit on a tiny random model -------------------------------------------------------------


def _model_and_features(seed: int = 0):
    from conftest import tiny_whisper_model

    model = tiny_whisper_model(seed=seed, encoder_layers=3)
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(6, 80, 3000, generator=generator)
    return model, features


def _ranks(model, rank: int = 16):
    return {(layer, name): rank for layer in range(model.config.encoder_layers) for name in LOW_RANK_TARGETS}


def _encoder_output(model, features):
    with torch.inference_mode():
        return model.model.encoder(features).last_hidden_state


def test_the_explicit_layer_steps_reproduce_the_layer():
    """The fit recomputes a layer step by step (norm, attention, residual, MLP); that must be the layer's own
    forward, or the fitted inputs would not be the ones the compressed model sees."""
    from lite_whisper.compression.sequential import _attention_context, _clamped

    model, features = _model_and_features()
    encoder = model.model.encoder
    with torch.inference_mode():
        hidden = layer_input(encoder, features[:2])
        layer = encoder.layers[0]
        _, output = dense_sites(layer, hidden)
        context = _attention_context(layer, layer.self_attn_layer_norm(hidden))
        middle = hidden + layer.self_attn.out_proj(context)
        stepped = _clamped(middle + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(middle)))))
    torch.testing.assert_close(stepped, output)


def test_the_fit_is_deterministic_and_leaves_the_model_alone():
    model, features = _model_and_features()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    one = sequential_factors(model, _ranks(model), features)
    two = sequential_factors(model, _ranks(model), features)
    assert one.keys() == two.keys() == _ranks(model).keys()
    for key in one:
        for a, b in zip(one[key], two[key]):
            assert torch.equal(a, b)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_dense_linears_stay_dense_and_the_fit_beats_pca_on_its_clips():
    """Linears the allocation leaves dense get no factors; with the rest factorised, the model fitted in data
    order is closer to the dense encoder's output on the fit clips than per-linear PCA factors."""
    from lite_whisper.calibration.calibrate import collect_statistics
    from lite_whisper.compression.compress import _bases, _factors, _target_module

    model, features = _model_and_features(seed=1)
    ranks = _ranks(model)
    ranks[1, "fc1"] = None
    fitted = sequential_factors(model, ranks, features, stride=1)
    assert (1, "fc1") not in fitted and len(fitted) == len(ranks) - 1
    statistics = collect_statistics(model, [(features, torch.full((6,), 1500))], progress=False)
    pca = {key: _factors(model, _target_module(model, *key), mean, vectors, ranks[key])
           for key, mean, _, vectors in _bases(model, statistics) if ranks[key] is not None}
    reference = _encoder_output(model, features)

    def error(factors):
        return float((_encoder_output(to_lite_whisper(model, factors), features) - reference).square().mean())

    assert error(fitted) < error(pca)
