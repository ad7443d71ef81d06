"""Streaming moments of activations: count, sum and sum of outer products, in float64.

PCA of a layer's outputs needs only their mean and covariance, and both follow from these
sums (METHOD §2). Memory is O(d^2) whatever the number of rows, and moments computed apart
(other clips, other processes, other machines) merge by addition.

A batch of clips is added with one batched product per hook (per clip, so sums do not depend
on how clips were batched) and no host synchronisation: padding is masked by multiplication,
row counts come from the caller as Python numbers. On the CPU, wide activations take only the
blocks on and above the diagonal (3/8 fewer operations at d >= 1024) and the blocks below are
mirrored once, when the matrix is read.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lite_whisper.calibration import PRODUCT_PRECISIONS



@dataclass
class Moments:
    """Running sums over the rows of activations of width d.

    count: rows seen; sum: sum of rows (d,); outer: sum of row outer products (d, d).
    Both tensors are float64 so that sums over millions of rows keep their precision.
    After `update`, `outer` may hold only its upper blocks until `symmetrize` (which every
    reader here calls; `collect_statistics` calls it once at the end).
    """

    count: int
    sum: Tensor
    outer: Tensor
    lower_stale: bool = field(default=False, repr=False, compare=False)

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

    def update(self, x: Tensor, mask: Tensor | None = None, rows: int | None = None,
               products: str = "float32") -> None:
        """Add the rows of `x` (..., T, d); with a `mask` of shape x.shape[:-1] (bool or 0/1), only rows where it is set.

        `rows`: how many rows the mask selects, when the caller knows it (on a GPU, counting them here
        would wait for the device). Each sequence of T rows (clip) is centred on its own mean and its
        centred products are taken in float32 (float64 for float64 activations) in one batched product,
        then summed in float64; `products` trades their precision for speed (`PRODUCT_PRECISIONS`).
        """
        if x.dim() < 2 or x.shape[-1] != self.dim:
            raise ValueError(f"expected activations of width {self.dim}, got shape {tuple(x.shape)}")
        if mask is not None and mask.shape != x.shape[:-1]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(x.shape)}")
        if products not in PRODUCT_PRECISIONS:
            raise ValueError(f"unknown product precision {products!r}; choose one of {', '.join(PRODUCT_PRECISIONS)}")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        sequences = x.to(device=self.sum.device, dtype=dtype).reshape(-1, x.shape[-2], self.dim)
        if mask is None:
            weights = None
            n = torch.full((sequences.shape[0], 1), float(sequences.shape[1]), dtype=dtype, device=self.sum.device)
            rows = sequences.shape[0] * sequences.shape[1]
        else:
            weights = mask.reshape(sequences.shape[:2]).to(device=self.sum.device, dtype=dtype)[..., None]
            n = weights.sum(dim=1)
            rows = int(weights.sum()) if rows is None else rows
        if rows == 0:
            return
        # centre each clip on its own (rounded) mean: small centred values keep float32 products accurate
        # beside large means (massive activations); masked rows become exact zeros
        total = sequences.sum(dim=1) if weights is None else (sequences * weights).sum(dim=1)
        shift = total / n.clamp_min(1)
        centred = sequences - shift[:, None]
        if weights is not None:
            centred = centred * weights
        self._add_products(centred, products)
        # sum x x^T = sum (x - m)(x - m)^T + m s^T + s m^T - n m m^T exactly, for any m (per clip);
        # with u = s - n m / 2 the last three terms are m^T u + u^T m: two small float64 products
        m = shift.to(torch.float64)
        s = n.to(torch.float64) * m + centred.sum(dim=1).to(torch.float64)  # exact-ish: centred rows are small
        u = s - n.to(torch.float64) * m / 2
        self.outer.addmm_(m.T, u).addmm_(u.T, m)
        self.sum += s.sum(dim=0)
        self.count += rows

    def _add_products(self, centred: Tensor, products: str) -> None:
        """outer += sum over clips of centred^T centred, the per-clip products in float32 (or as `products` says)."""
        centred = _rounded(centred, products)
        on_gpu = centred.device.type == "cuda"
        with _tf32(True) if products == "tf32" and on_gpu else contextlib.nullcontext():
            if on_gpu or self.dim < 512:  # one product: a GPU's time goes to launches, not operations
                self.outer += _batched_product(centred, centred, products).sum(dim=0, dtype=torch.float64)
                return
            blocks = _blocks(self.dim)
            for i, rows_i in enumerate(blocks):
                left = centred[..., rows_i].transpose(1, 2)
                for cols_j in blocks[i:]:
                    self.outer[rows_i, cols_j] += (left @ centred[..., cols_j]).sum(dim=0, dtype=torch.float64)
            self.lower_stale = True

    def symmetrize(self) -> Moments:
        """Mirror the blocks above the diagonal below it (after triangular updates); returns self."""
        if self.lower_stale:
            blocks = _blocks(self.dim)
            for i, rows_i in enumerate(blocks):
                for cols_j in blocks[:i]:
                    self.outer[rows_i, cols_j] = self.outer[cols_j, rows_i].T
            self.lower_stale = False
        return self

    def __add__(self, other: Moments) -> Moments:
        """The moments of the union of both row sets."""
        if other.dim != self.dim:
            raise ValueError(f"cannot add moments of width {self.dim} and {other.dim}")
        device = self.sum.device
        return Moments(
            count=self.count + other.count,
            sum=self.sum + other.sum.to(device),
            outer=self.symmetrize().outer + other.symmetrize().outer.to(device),
        )

    def mean(self) -> Tensor:
        if self.count == 0:
            raise ValueError("no rows accumulated: the mean is undefined")
        return self.sum / self.count

    def covariance(self) -> Tensor:
        """The centred (population) covariance S/n - mean mean^T."""
        mean = self.mean()
        return self.symmetrize().outer / self.count - torch.outer(mean, mean)

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
        outer = w @ self.symmetrize().outer @ w.T
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


def round_to_tf32(x: Tensor) -> Tensor:
    """float32 values rounded (to nearest, ties to even) to TF32's 10 mantissa bits, as tensor cores read them."""
    bits = x.contiguous().view(torch.int32)
    lower = bits & 0x1FFF  # the 13 dropped bits
    keep_odd = (bits >> 13) & 1
    up = (lower > 0x1000) | ((lower == 0x1000) & (keep_odd == 1))
    rounded = (bits & ~0x1FFF) + (up.to(torch.int32) << 13)
    return rounded.view(torch.float32)


def _rounded(x: Tensor, products: str) -> Tensor:
    """`x` as the products read it: float32 products on a GPU take it as it is (TF32 rounds in hardware)."""
    if x.dtype == torch.float64 or products == "float32":
        return x
    if products == "bfloat16":
        return x if x.device.type == "cuda" else x.to(torch.bfloat16).to(torch.float32)
    return x if x.device.type == "cuda" else round_to_tf32(x)


def _batched_product(a: Tensor, b: Tensor, products: str) -> Tensor:
    """a^T b per clip, (B, T, d) x (B, T, d) -> (B, d, d), float32 accumulation (float64 for float64)."""
    if products == "bfloat16" and a.device.type == "cuda":
        try:  # bfloat16 tensor-core products with float32 results
            return torch.bmm(a.transpose(1, 2).bfloat16(), b.bfloat16(), out_dtype=torch.float32)
        except (TypeError, RuntimeError):
            a, b = a.bfloat16().float(), b.bfloat16().float()
    return torch.bmm(a.transpose(1, 2), b)


@contextlib.contextmanager
def _tf32(matmul: bool, cudnn: bool | None = None):
    """cuBLAS's (and, when given, cuDNN's) TF32 flags set for the work inside, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = matmul
    if cudnn is not None:
        torch.backends.cudnn.allow_tf32 = cudnn
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def float32_without_tf32():
    """TF32 off in cuBLAS and cuDNN (on by default for convolutions): float32 means float32."""
    return _tf32(matmul=False, cudnn=False)
