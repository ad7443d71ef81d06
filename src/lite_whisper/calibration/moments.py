"""Streaming moments of activations: count, sum and sum of outer products, in float64.

PCA of a layer's outputs needs only their mean and covariance, and both follow from these
sums (METHOD §2). Memory is O(d^2) whatever the number of rows, and moments computed apart
(other clips, other processes, other machines) merge by addition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Moments:
    """Running sums over the rows of activations of width d.

    count: rows seen; sum: sum of rows (d,); outer: sum of row outer products (d, d).
    Both tensors are float64 so that sums over millions of rows keep their precision.
    """

    count: int
    sum: Tensor
    outer: Tensor

    @classmethod
    def zeros(cls, dim: int, device: torch.device | str | None = None) -> Moments:
        return cls(
            count=0,
            sum=torch.zeros(dim, dtype=torch.float64, device=device),
            outer=torch.zeros(dim, dim, dtype=torch.float64, device=device),
        )

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, x: Tensor, mask: Tensor | None = None, chunk_rows: int = 4096) -> None:
        """Add the rows of `x` (..., d); with a boolean `mask` of shape x.shape[:-1], only rows where it is True.

        Activations (..., T, d) are added one sequence (clip) of T rows at a time, so the sums do not
        depend on how clips were batched; a 2-D `x` is one sequence. See `_add_centred_products` for the precision.
        """
        if x.dim() < 2 or x.shape[-1] != self.dim:
            raise ValueError(f"expected activations of width {self.dim}, got shape {tuple(x.shape)}")
        if mask is not None and mask.shape != x.shape[:-1]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(x.shape)}")
        sequences = x.reshape(-1, x.shape[-2], self.dim)
        masks = None if mask is None else mask.reshape(sequences.shape[:2]).to(x.device)
        shifts, totals, counts = [], [], []
        for index, rows in enumerate(sequences):
            if masks is not None:
                rows = rows[masks[index]]
            for chunk in rows.split(chunk_rows):
                if chunk.shape[0]:
                    shift, total = self._add_centred_products(chunk)
                    shifts.append(shift)
                    totals.append(total)
                    counts.append(chunk.shape[0])
        if not counts:
            return
        # the mean terms of every chunk at once (see _add_centred_products), in float64
        m, s = torch.stack(shifts), torch.stack(totals)
        n = torch.tensor(counts, dtype=torch.float64, device=m.device)
        self.outer.addmm_(m.T, s).addmm_(s.T, m).addmm_(m.T * -n, m)
        blocks = _blocks(self.dim)
        for i, rows_i in enumerate(blocks):  # only blocks on and above the diagonal got products: mirror them
            for cols_j in blocks[:i]:
                self.outer[rows_i, cols_j] = self.outer[cols_j, rows_i].T
        self.sum += s.sum(dim=0)
        self.count += int(sum(counts))

    def _add_centred_products(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Add the centred products of `rows` to `outer`; return (shift m, row sum s) in float64.

        sum x x^T = sum (x - m)(x - m)^T + m s^T + s m^T - n m m^T exactly, for any m; `update`
        adds the last three terms. With m the rows' (rounded) mean the centred products are small
        and are taken in the activations' precision (float32 for float32/16 activations: half the
        cost of float64 matrix products, and no cancellation against large means such as massive
        activations), then accumulated in float64. Float64 activations stay float64 throughout.
        """
        dtype = torch.float64 if rows.dtype == torch.float64 else torch.float32
        rows = rows.to(device=self.sum.device, dtype=dtype)
        shift = rows.mean(dim=0)
        centred = rows - shift
        # float32 products into the float64 sums; the matrix is symmetric, so for wide activations
        # only the blocks on and above the diagonal are computed (5/8 of the work at d >= 1024)
        blocks = _blocks(self.dim)
        for i, rows_i in enumerate(blocks):
            left = centred[:, rows_i].T
            for cols_j in blocks[i:]:
                self.outer[rows_i, cols_j] += left @ centred[:, cols_j]
        shift = shift.to(torch.float64)
        return shift, rows.shape[0] * shift + centred.sum(dim=0).to(torch.float64)  # exact-ish: centred rows are small

    def __add__(self, other: Moments) -> Moments:
        """The moments of the union of both row sets."""
        if other.dim != self.dim:
            raise ValueError(f"cannot add moments of width {self.dim} and {other.dim}")
        device = self.sum.device
        return Moments(
            count=self.count + other.count,
            sum=self.sum + other.sum.to(device),
            outer=self.outer + other.outer.to(device),
        )

    def mean(self) -> Tensor:
        if self.count == 0:
            raise ValueError("no rows accumulated: the mean is undefined")
        return self.sum / self.count

    def covariance(self) -> Tensor:
        """The centred (population) covariance S/n - mean mean^T."""
        mean = self.mean()
        return self.outer / self.count - torch.outer(mean, mean)

    def affine_mean(self, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """The mean of y = x W^T + b given these moments of x (without the d_out x d_out outer sum)."""
        w = weight.detach().to(device=self.sum.device, dtype=torch.float64)
        mean = w @ self.mean()
        return mean if bias is None else mean + bias.detach().to(device=self.sum.device, dtype=torch.float64)

    def affine(self, weight: Tensor, bias: Tensor | None = None) -> Moments:
        """The exact moments of y = x W^T + b given these moments of x.

        s_y = W s_x + n b;  S_y = W S_x W^T + W s_x b^T + b s_x^T W^T + n b b^T.
        """
        w = weight.detach().to(device=self.sum.device, dtype=torch.float64)
        if w.shape[1] != self.dim:
            raise ValueError(f"weight of shape {tuple(w.shape)} does not take inputs of width {self.dim}")
        w_sum = w @ self.sum
        outer = w @ self.outer @ w.T
        if bias is None:
            return Moments(count=self.count, sum=w_sum, outer=outer)
        b = bias.detach().to(device=self.sum.device, dtype=torch.float64)
        cross = torch.outer(w_sum, b)
        outer += cross + cross.T + self.count * torch.outer(b, b)
        return Moments(count=self.count, sum=w_sum + self.count * b, outer=outer)


def _blocks(dim: int) -> list[slice]:
    """Column blocks for the triangular product: one below 512 (no gain), up to four at 1024 and above."""
    count = max(1, min(4, dim // 256))
    edges = [dim * k // count for k in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(edges, edges[1:])]
