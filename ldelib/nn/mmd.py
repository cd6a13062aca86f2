r"""Maximum mean discrepancy between two samples, as a differentiable torch loss.

With a mixture of Gaussian kernels
:math:`k(a, b) = \sum_{\sigma} \exp(-\lVert a - b\rVert^2 / (2\sigma^2))`,

.. math::

    \mathrm{MMD}^2_b = \frac{1}{m^2}\sum_{i,j}k(x_i,x_j) + \frac{1}{n^2}\sum_{i,j}k(y_i,y_j)
    - \frac{2}{mn}\sum_{i,j}k(x_i,y_j)

is the biased (V-statistic) estimate, never negative, and :math:`\mathrm{MMD}^2_u` drops
the diagonal terms of the two within-sample sums (dividing by :math:`m(m-1)` and
:math:`n(n-1)`), which makes it unbiased but possibly negative. This module is the one
implementation of the kernel, the median heuristic and both estimators:
:func:`ldelib.metrics.mmd2_unbiased` and :func:`ldelib.metrics.mmd_permutation_test`
evaluate them in float64, so a training loss and an evaluation agree on the same
bandwidths.

References:
    | A Kernel Two-Sample Test (Gretton et al., 2012)
    | https://jmlr.org/papers/v13/gretton12a.html
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_BANDWIDTH_FACTORS",
    "gaussian_kernel",
    "median_distance",
    "median_pairwise_distance",
    "mmd2",
    "mmd2_from_blocks",
    "squared_distances",
]

#: Multiples of the median pairwise distance used as kernel bandwidths by default
#: (the median heuristic), by the GMMN loss and by the two-sample metrics alike.
DEFAULT_BANDWIDTH_FACTORS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

# exp(-60) ~ 9e-27; see gaussian_kernel.
_MIN_EXPONENT = -60.0


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` (m, D) and ``y`` (n, D).

    The expanded form ``|x|^2 + |y|^2 - 2 x.y`` takes one matrix product and, unlike
    :func:`torch.cdist`, has a finite gradient where two rows coincide.
    """
    x_sq = x.square().sum(dim=1, keepdim=True)
    y_sq = y.square().sum(dim=1)
    return torch.addmm(x_sq + y_sq, x, y.T, alpha=-2.0).clamp(min=0.0)


def gaussian_kernel(d2: Tensor, bandwidths: Sequence[float] | np.ndarray | Tensor) -> Tensor:
    r"""Sum of Gaussian kernels :math:`\sum_\sigma \exp(-d^2 / (2\sigma^2))` of squared distances."""
    # One kernel matrix at a time keeps memory at two (m, n) matrices. Exponents are
    # floored at _MIN_EXPONENT: the terms changed are below 1e-26, and computing them
    # would produce subnormal floats, whose arithmetic is tens of times slower on CPUs.
    sigmas = torch.as_tensor(bandwidths, dtype=torch.float64).reshape(-1).tolist()
    total = torch.zeros_like(d2)
    if d2.requires_grad and torch.is_grad_enabled():
        for sigma in sigmas:
            total = total + torch.exp((d2 * (-0.5 / sigma**2)).clamp(min=_MIN_EXPONENT))
        return total
    # Without a graph to record, the same operations in place: about half the memory
    # traffic, which is what bounds this loop (the two-sample metrics take this path).
    buf = torch.empty_like(d2)
    for sigma in sigmas:
        total.add_(torch.mul(d2, -0.5 / sigma**2, out=buf).clamp_(min=_MIN_EXPONENT).exp_())
    return total


def mmd2(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] | Tensor,
    *,
    unbiased: bool = True,
) -> Tensor:
    """Squared MMD between the rows of ``x`` (m, D) and ``y`` (n, D), a scalar tensor.

    Arguments:
        x, y: The two samples; the unbiased estimate needs ``m, n >= 2``.
        bandwidths: Standard deviations of the Gaussian kernels that are summed.
        unbiased: The U-statistic (can be negative), or the biased V-statistic
            (never negative; the one whose square root the GMMN paper minimises).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g)
        >>> bool(mmd2(x, y, [1.0]).abs() < mmd2(x, y + 2.0, [1.0]))
        True
    """
    m, n = len(x), len(y)
    if unbiased and min(m, n) < 2:
        raise ValueError(f"The unbiased MMD² needs at least 2 rows per sample; got {m} and {n}.")
    # Centring is free (distances are translation invariant) and limits the cancellation
    # of the expanded squared distance.
    centre = torch.cat([x, y]).mean(dim=0).detach()
    x, y = x - centre, y - centre
    k_xx = gaussian_kernel(squared_distances(x, x), bandwidths)
    k_yy = gaussian_kernel(squared_distances(y, y), bandwidths)
    k_xy = gaussian_kernel(squared_distances(x, y), bandwidths)
    return mmd2_from_blocks(k_xx, k_yy, k_xy, unbiased=unbiased)


def mmd2_from_blocks(k_xx: Tensor, k_yy: Tensor, k_xy: Tensor, *, unbiased: bool = True) -> Tensor:
    """Squared MMD from the kernel blocks of ``x`` (m rows) and ``y`` (n rows).

    Arguments:
        k_xx, k_yy, k_xy: Kernel matrices of shapes (m, m), (n, n) and (m, n); the
            unbiased estimate needs ``m, n >= 2``.
        unbiased: The U-statistic, which ignores the diagonals of ``k_xx`` and ``k_yy``,
            or the biased V-statistic.
    """
    m, n = k_xy.shape
    if unbiased:
        xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
        yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    else:
        xx, yy = k_xx.mean(), k_yy.mean()
    return xx + yy - 2.0 * k_xy.mean()


def median_pairwise_distance(x: Tensor, max_rows: int = 2000) -> float:
    """Median Euclidean distance over the pairs ``i < j`` of the first ``max_rows`` rows.

    The median heuristic for a kernel bandwidth; pass shuffled rows, since only a prefix
    is used to keep the cost bounded. Returns 0.0 for fewer than two rows.
    """
    x = x[:max_rows].to(torch.float64)
    if len(x) < 2:
        return 0.0
    x = x - x.mean(dim=0)
    return median_distance(squared_distances(x, x))


def median_distance(d2: Tensor) -> float:
    """Median of ``sqrt(d2[i, j])`` over the pairs ``i < j`` of a square matrix ``d2``.

    ``d2`` holds squared distances between the rows of one sample (at least two rows);
    like :func:`numpy.median`, an even count gives the mean of the two middle values.
    """
    upper = torch.ones(d2.shape, dtype=torch.bool, device=d2.device).triu_(diagonal=1)
    # numpy's median selects in linear time: several times faster than a torch sort or
    # two kthvalue calls on the millions of pairs of a large pooled sample.
    return float(np.median(d2.detach()[upper].sqrt().cpu().numpy()))
