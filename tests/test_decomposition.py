"""Decomposition math on hand-built data: known principal axes, exact full rank, and beating naive SVD."""

from __future__ import annotations

import math

import pytest
import torch

from lite_whisper.calibration.moments import Moments
from lite_whisper.compression.decomposition import (
    ModuleDecision,
    breaks_even,
    decide_layer,
    explained_variance,
    low_rank_factors,
    principal_basis,
    principal_basis_through,
    rank_for_threshold,
    truncated_svd_factors,
)


def random_orthonormal(dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q


def population_moments(axes: torch.Tensor, variances: torch.Tensor, mean: torch.Tensor, count: int) -> Moments:
    """Exact moments of `count` rows whose covariance is axes diag(variances) axes^T."""
    covariance = axes @ torch.diag(variances) @ axes.T
    return Moments(count=count, sum=count * mean, outer=count * (covariance + torch.outer(mean, mean)))


def sample(axes: torch.Tensor, variances: torch.Tensor, mean: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, axes.shape[0], generator=generator, dtype=torch.float64)
    return (z * variances.sqrt()) @ axes.T + mean


def moments_of(x: torch.Tensor) -> Moments:
    moments = Moments.zeros(x.shape[-1])
    moments.update(x)
    return moments


# 24 strong axes (variance 1) and 40 weak ones (1e-3) in 64 dimensions: the explained
# variance is 0.666 at rank 16, 0.99867 at 32, 0.99933 at 48 and reaches 1 only at 64.
DIM, STRONG = 64, 24
VARIANCES = torch.cat([torch.ones(STRONG, dtype=torch.float64), torch.full((DIM - STRONG,), 1e-3, dtype=torch.float64)])


def test_principal_basis_recovers_known_axes_and_variances():
    axes = random_orthonormal(DIM, seed=0)
    mean = torch.linspace(-2, 2, DIM, dtype=torch.float64)
    variances = torch.cat([torch.linspace(10, 1, STRONG, dtype=torch.float64), VARIANCES[STRONG:]])

    eigenvalues, eigenvectors = principal_basis(population_moments(axes, variances, mean, count=1000))
    torch.testing.assert_close(eigenvalues, variances.sort(descending=True).values)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()
    torch.testing.assert_close(eigenvectors.T @ eigenvectors, torch.eye(DIM, dtype=torch.float64))

    # From sampled rows the strong subspace is still found: projectors agree closely.
    x = sample(axes, variances, mean, rows=20_000, seed=1)
    _, sampled_vectors = principal_basis(moments_of(x))
    found, known = sampled_vectors[:, :STRONG], axes[:, :STRONG]
    assert torch.linalg.matrix_norm(found @ found.T - known @ known.T, ord=2) < 0.05


def test_principal_basis_through_a_widening_linear_equals_the_full_decomposition():
    # fc1's shape: Cov(y) = W C W^T is 4d x 4d but of rank <= d; C itself rank-deficient (rank 10 of 16)
    d_in, d_out, rank = 16, 64, 10
    axes = random_orthonormal(d_in, seed=4)[:, :rank]
    known = torch.logspace(2, -2, rank, dtype=torch.float64)
    covariance = axes @ torch.diag(known) @ axes.T
    mean = torch.linspace(-1, 1, d_in, dtype=torch.float64)
    inputs = Moments(count=500, sum=500 * mean, outer=500 * (covariance + torch.outer(mean, mean)))
    weight = torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    bias = torch.randn(d_out, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    full_values, full_vectors = principal_basis(inputs.affine(weight, bias))
    values, vectors = principal_basis_through(inputs, weight)
    assert values.shape == (d_out,) and vectors.shape == (d_out, d_in)
    torch.testing.assert_close(values, full_values, atol=1e-9, rtol=1e-9)
    assert (values[rank:] < 1e-9).all()  # the covariance's rank, exactly: the rest is zero
    for k in (1, 4, rank):  # the same principal subspaces (each eigenvector is defined up to sign)
        mine, theirs = vectors[:, :k], full_vectors[:, :k]
        torch.testing.assert_close(mine @ mine.T, theirs @ theirs.T, atol=1e-8, rtol=0)
    torch.testing.assert_close(inputs.affine_mean(weight, bias), inputs.affine(weight, bias).mean())
    with pytest.raises(ValueError, match="does not take inputs of width 16"):
        principal_basis_through(inputs, weight[:, :8])


def test_rank_for_threshold_returns_known_multiple_of_16():
    moments = population_moments(random_orthonormal(DIM, seed=2), VARIANCES, torch.zeros(DIM, dtype=torch.float64), 10)
    eigenvalues, _ = principal_basis(moments)
    assert rank_for_threshold(eigenvalues, 0.5) == 16
    assert rank_for_threshold(eigenvalues, 0.99) == 32
    assert rank_for_threshold(eigenvalues, 0.999) == 48
    assert rank_for_threshold(eigenvalues, 0.9999) is None  # only full rank would do
    assert rank_for_threshold(eigenvalues, 1.0) is None
    assert rank_for_threshold(eigenvalues, 0.99, multiple=8) == 24  # all strong axes: 0.9983
    assert rank_for_threshold(eigenvalues, 0.6, multiple=8) == 16


def test_threshold_is_strictly_exceeded():
    eigenvalues = torch.ones(64, dtype=torch.float64)  # ratio(k) = k / 64
    assert rank_for_threshold(eigenvalues, 0.25) == 32  # ratio(16) == 0.25 is not enough


def test_explained_variance_is_cumulative_ratio():
    ratios = explained_variance(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(ratios, torch.tensor([0.75, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(explained_variance(torch.zeros(3)), torch.ones(3))


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, math.nan])
def test_threshold_validation(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        rank_for_threshold(torch.ones(32), threshold)


def test_multiple_validation():
    with pytest.raises(ValueError, match="multiple must be a positive integer"):
        rank_for_threshold(torch.ones(32), 0.9, multiple=0)


def test_breaks_even_at_the_boundary():
    assert breaks_even(192, 384, 384)  # 192 * 768 == 384 * 384: no saving, stay dense
    assert not breaks_even(191, 384, 384)
    assert not breaks_even(307, 384, 1536)  # break-even rank is 307.2
    assert breaks_even(308, 384, 1536)


def test_decide_layer_says_why():
    flat = torch.ones(64, dtype=torch.float64)
    assert decide_layer(flat, d_in=64, threshold=0.2) == ModuleDecision(
        rank=16, explained_variance=0.25, d_in=64, d_out=64, reason="rank 16 explains 0.250000 > 0.2"
    )
    too_big = decide_layer(flat, d_in=64, threshold=0.5)  # rank 48 >= break-even 32
    assert too_big.dense and too_big.rank is None
    assert too_big.reason == "rank 48 does not beat break-even 32"
    assert too_big.explained_variance == 0.75
    unreachable = decide_layer(flat, d_in=64, threshold=0.999)
    assert unreachable.dense and unreachable.reason == "threshold 0.999 not reached below full rank"


def linear_with_anisotropic_inputs(d_in: int, d_out: int, seed: int):
    """A random linear and an input distribution with fast-decaying variances on random axes."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64) / math.sqrt(d_in)
    bias = torch.randn(d_out, generator=generator, dtype=torch.float64)
    axes = random_orthonormal(d_in, seed=seed + 1)
    variances = torch.logspace(1, -4, d_in, dtype=torch.float64)
    mean = torch.randn(d_in, generator=generator, dtype=torch.float64)
    return weight, bias, (axes, variances, mean)


def calibrated_factors(weight, bias, inputs: torch.Tensor, rank: int):
    output_moments = moments_of(inputs).affine(weight, bias)
    eigenvalues, eigenvectors = principal_basis(output_moments)
    factors = low_rank_factors(weight, bias, output_moments.mean(), eigenvectors[:, :rank])
    return factors, eigenvalues


def apply(factors, x):
    a, b, bias = factors
    return (x @ a) @ b + bias


@pytest.mark.parametrize("with_bias", [True, False])
def test_full_rank_factors_reproduce_the_dense_layer(with_bias):
    weight, bias, distribution = linear_with_anisotropic_inputs(40, 24, seed=3)
    bias = bias if with_bias else None  # k_proj has no bias
    x = sample(*distribution, rows=500, seed=4)
    factors, _ = calibrated_factors(weight, bias, x, rank=24)
    a, b, new_bias = factors
    assert a.shape == (40, 24) and b.shape == (24, 24) and new_bias.dtype == torch.float64
    torch.testing.assert_close(apply(factors, x), torch.nn.functional.linear(x, weight, bias), rtol=1e-10, atol=1e-10)


def test_calibration_error_equals_discarded_variance():
    weight, bias, distribution = linear_with_anisotropic_inputs(48, 48, seed=5)
    x = sample(*distribution, rows=3000, seed=6)
    factors, eigenvalues = calibrated_factors(weight, bias, x, rank=16)
    error = (apply(factors, x) - torch.nn.functional.linear(x, weight, bias)).pow(2).sum(1).mean()
    torch.testing.assert_close(error, eigenvalues[16:].sum(), rtol=1e-8, atol=1e-12)  # Eckart-Young


def test_calibrated_factors_beat_truncated_svd_on_held_out_data():
    weight, bias, distribution = linear_with_anisotropic_inputs(64, 64, seed=7)
    calibration = sample(*distribution, rows=4000, seed=8)
    held_out = sample(*distribution, rows=4000, seed=9)
    reference = torch.nn.functional.linear(held_out, weight, bias)
    rank = 16

    pca, _ = calibrated_factors(weight, bias, calibration, rank)
    svd = truncated_svd_factors(weight, bias, rank)
    pca_error = (apply(pca, held_out) - reference).pow(2).mean()
    svd_error = (apply(svd, held_out) - reference).pow(2).mean()
    assert pca_error < 0.1 * svd_error

    # At full rank the SVD baseline is exact too, so the comparison is fair.
    torch.testing.assert_close(apply(truncated_svd_factors(weight, bias, 64), held_out), reference)
