"""The decomposition math (METHOD §3-§4) as pure tensor functions: moments -> basis -> rank -> factors.

Nothing here touches a model, so every step is testable with hand-built tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lite_whisper.calibration.moments import Moments
from lite_whisper.lowrank.cost import break_even_rank, breaks_even


def principal_basis(moments: Moments) -> tuple[Tensor, Tensor]:
    """Eigen-decompose the centred output covariance in float64.

    Returns (eigenvalues in descending order, eigenvectors as the matching columns).
    Tiny negative eigenvalues from round-off are clamped to 0; there is no damping,
    which would shift the energy-threshold ranks.
    """
    covariance = moments.covariance().to(torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvalues.flip(0).clamp_min(0.0), eigenvectors.flip(1)


def principal_basis_through(input_moments: Moments, weight: Tensor) -> tuple[Tensor, Tensor]:
    """The principal basis of y = x W^T + b from the moments of x, without forming Cov(y).

    Cov(y) = W C W^T has rank <= d_in. With C = U S U^T and M = W U S^(1/2), Cov(y) = M M^T, so
    the left singular vectors of M are its eigenvectors and the squared singular values its
    eigenvalues: exact, and O(d_out d_in^2) instead of O(d_out^3) (64x cheaper for fc1 at
    ffn = 4 d_model, and no d_out x d_out matrix). Returns all d_out eigenvalues in descending
    order (the last d_out - d_in are 0) and the d_in eigenvectors that can carry variance, as
    columns (d_out, min(d_in, d_out)); ranks below d_in never need the others.
    """
    covariance = input_moments.covariance().to(torch.float64)
    w = weight.detach().to(device=covariance.device, dtype=torch.float64)
    if w.shape[1] != covariance.shape[0]:
        raise ValueError(f"weight of shape {tuple(w.shape)} does not take inputs of width {covariance.shape[0]}")
    values, vectors = torch.linalg.eigh(covariance)
    left, singular, _ = torch.linalg.svd(w @ (vectors * values.clamp_min(0.0).sqrt()), full_matrices=False)
    eigenvalues = torch.cat([singular.square(), singular.new_zeros(w.shape[0] - singular.shape[0])])
    return eigenvalues, left


def explained_variance(eigenvalues: Tensor) -> Tensor:
    """Cumulative ratio: entry k-1 is the share of total variance in the top k eigenvalues.

    A constant output (zero total variance) is fully explained by any number of components.
    """
    total = eigenvalues.sum()
    if total <= 0:
        return torch.ones_like(eigenvalues)
    # clamped: a cumulative sum may round above the total (sums in another order), and a spectrum with
    # exact zeros (`principal_basis_through`) must not "exceed" a threshold of 1 before full rank
    return (eigenvalues.cumsum(0) / total).clamp(max=1.0)


def massive_directions(eigenvalues: Tensor, gap: float = 10.0, max_count: int = 4) -> int:
    """How many leading eigenvalues are massive: m such that lambda_m / lambda_(m+1) >= `gap`, the
    largest such m up to `max_count` (0 when no leading gap is that large).

    Massive activations (a few directions hundreds of times larger than the rest) make a tiny rank
    "explain 99%" while the next layer norm divides them away (METHOD §8).
    """
    head = eigenvalues[: max_count + 1]
    count = 0
    for index in range(min(max_count, head.shape[0] - 1)):
        if head[index] > 0 and (head[index + 1] <= 0 or head[index] / head[index + 1] >= gap):
            count = index + 1
    return count


def rank_for_threshold(eigenvalues: Tensor, threshold: float, multiple: int = 16, massive: int = 0) -> int | None:
    """Smallest multiple of `multiple` below full rank whose explained variance exceeds `threshold`.

    Strictly greater, as in METHOD §3. With `massive` = m > 0 (the robust rule) the top m directions
    are always kept and the variance is measured over the rest of the spectrum only. None when
    no such rank exists (the layer stays dense).
    """
    _check_threshold(threshold)
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    ratios = explained_variance(eigenvalues[massive:])
    for rank in range(multiple, eigenvalues.shape[0], multiple):
        if rank > massive and ratios[rank - massive - 1] > threshold:
            return rank
    return None


def low_rank_factors(
    weight: Tensor, bias: Tensor | None, mean_out: Tensor, basis_k: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The calibrated rank-k factorisation of y = x W^T + b (METHOD §4).

    weight (d_out, d_in), bias (d_out,) or None (then b = 0, e.g. k_proj), mean_out the
    calibration output mean mu (d_out,), basis_k the top-k eigenvectors V_k (d_out, k).
    Returns float64 (A, B, bias') with A = W^T V_k (d_in, k), B = V_k^T (k, d_out) and
    bias' = mu + (b - mu) V_k V_k^T, so that y' = (x A) B + bias'. The caller casts.
    """
    w = weight.detach().to(torch.float64)
    v = basis_k.detach().to(torch.float64)
    mu = mean_out.detach().to(torch.float64)
    b = torch.zeros_like(mu) if bias is None else bias.detach().to(torch.float64)
    return w.T @ v, v.T.contiguous(), mu + ((b - mu) @ v) @ v.T


def truncated_svd_factors(weight: Tensor, bias: Tensor | None, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The naive baseline: rank-k SVD of the weight alone, blind to the activations.

    Returns float64 (A, B, bias) in the same form as `low_rank_factors`; the bias is kept.
    """
    w = weight.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    b = w.new_zeros(w.shape[0]) if bias is None else bias.detach().to(torch.float64)
    return vh[:k].T * s[:k], u[:, :k].T.contiguous(), b


@dataclass(frozen=True)
class ModuleDecision:
    """What to do with one linear: factorise at `rank`, or stay dense (rank None), and why.

    explained_variance is the share of output variance kept at the rank considered
    (1.0 when no rank below full reaches the threshold).
    """

    rank: int | None
    explained_variance: float
    d_in: int
    d_out: int
    reason: str

    @property
    def dense(self) -> bool:
        return self.rank is None


def decide_layer(eigenvalues: Tensor, d_in: int, threshold: float, multiple: int = 16, massive: int = 0) -> ModuleDecision:
    """Choose the rank of one linear from its output eigenvalues, or keep it dense.

    Dense when the threshold is not reached below full rank, or when the chosen rank
    does not beat the break-even rank d_in d_out / (d_in + d_out). `massive`: see
    `rank_for_threshold` (the reported explained variance is then that of the rest too).
    """
    d_out = eigenvalues.shape[0]
    rank = rank_for_threshold(eigenvalues, threshold, multiple, massive)
    if rank is None:
        reason = f"threshold {threshold:g} not reached below full rank"
        return ModuleDecision(rank=None, explained_variance=1.0, d_in=d_in, d_out=d_out, reason=reason)
    kept = float(explained_variance(eigenvalues[massive:])[rank - massive - 1])
    if breaks_even(rank, d_in, d_out):
        reason = f"rank {rank} does not beat break-even {break_even_rank(d_in, d_out):g}"
        return ModuleDecision(rank=None, explained_variance=kept, d_in=d_in, d_out=d_out, reason=reason)
    reason = f"rank {rank} explains {kept:.6f} > {threshold:g}"
    if massive:
        reason += f" of the variance beyond {massive} massive direction{'s' if massive > 1 else ''}"
    return ModuleDecision(rank=rank, explained_variance=kept, d_in=d_in, d_out=d_out, reason=reason)


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
