"""The unbiased estimator of the squared maximum mean discrepancy (Gretton et al. 2012, eq. 3):

    MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j) - 2/(nm) sum_{i,j} k(x_i, y_j)

with an RBF kernel k = exp(-||a-b||^2 / (2 sigma_k^2)) or an inverse multiquadric k = C / (C + ||a-b||^2).

Bandwidth: both kernels take one ``scale`` s, the squared distance at which they have fallen
appreciably (rbf: exp(-d/s), so 2 sigma_k^2 = s; imq: s/(s+d), so C = s). Against a prior
N(0, sigma^2 I) in D dimensions the default is s = 2 D sigma^2, the expected squared distance
between two prior draws: Tolstikhin et al. (2018, sec. 4) use C = 2 D sigma^2 for the IMQ kernel,
and the same s gives the RBF kernel sigma_k^2 = D sigma^2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Kernel = Literal["rbf", "imq"]


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2 ``[n, m]`` for ``a`` ``[n, D]`` and ``b`` ``[m, D]`` (by differences, not
    the expanded form, so a point's distance to itself is exactly 0)."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


def kernel_matrix(a: Tensor, b: Tensor, kernel: Kernel, scale: float) -> Tensor:
    """k(a_i, b_j) ``[n, m]``: rbf exp(-d/scale) (scale = 2 sigma_k^2) or imq scale/(scale + d) (scale = C)."""
    d = squared_distances(a, b)
    if kernel == "rbf":
        return torch.exp(-d / scale)
    return scale / (scale + d)


def prior_scale(dims: int, prior_variance: float = 1.0) -> float:
    """The default bandwidth 2 D sigma^2 against a prior N(0, sigma^2 I) in ``dims`` dimensions."""
    return 2.0 * dims * prior_variance


def mmd(x: Tensor, y: Tensor, kernel: Kernel, scale: float | None = None) -> Tensor:
    """The unbiased estimate of MMD^2 between samples ``x`` ``[n, D]`` and ``y`` ``[m, D]`` (n, m >= 2);
    ``scale`` None: ``prior_scale(D)``, the choice for a standard normal prior."""
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per sample, got {n} and {m}")
    scale = prior_scale(x.shape[1]) if scale is None else scale
    kxx, kyy, kxy = (kernel_matrix(a, b, kernel, scale) for a, b in ((x, x), (y, y), (x, y)))
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * kxy.mean()


def mmd_to_standard_normal(z: Tensor, kernel: Kernel) -> Tensor:
    """MMD^2 between the batch's latent draws ``z`` ``[B, D]`` and as many draws from N(0, I),
    with the default bandwidth, in float32 at least (draws from a bfloat16 forward pass are too
    coarse for the kernel sums). A batch of fewer than two draws has no unbiased estimate (a
    ragged last batch of one image): it gives 0."""
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    if z.shape[0] < 2:
        return z.new_zeros(())
    return mmd(z, torch.randn_like(z), kernel)

