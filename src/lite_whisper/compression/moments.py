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

        Rows are cast to float64 `chunk_rows` at a time so the temporary copy stays small.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected activations of width {self.dim}, got shape {tuple(x.shape)}")
        rows = x.reshape(-1, self.dim)
        if mask is not None:
            if mask.shape != x.shape[:-1]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(x.shape)}")
            rows = rows[mask.reshape(-1).to(rows.device)]
        for chunk in rows.split(chunk_rows):
            chunk = chunk.to(device=self.sum.device, dtype=torch.float64)
            self.count += chunk.shape[0]
            self.sum += chunk.sum(dim=0)
            self.outer.addmm_(chunk.T, chunk)

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
