"""Parzen-window (Gaussian kernel density) log-likelihood of test points.

:func:`parzen_log_likelihood` reproduces the protocol of GAN, GMMN and AAE papers: fit an
isotropic Gaussian kernel density estimate to (typically 10,000) model samples, choose
the window on a validation set, report the test mean and its standard error in nats.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_bandwidths, check_points, check_same_dims, frozen
from .likelihood import mean_log_likelihood, power_of_two

__all__ = [
    "MNIST_PARZEN_BANDWIDTHS",
    "TFD_PARZEN_BANDWIDTHS",
    "ParzenResult",
    "parzen_log_likelihood",
]

#: Window grid of the MNIST Parzen protocol (0.10, 0.11, ..., 0.30) for [0, 1] pixels.
MNIST_PARZEN_BANDWIDTHS: np.ndarray = frozen(np.round(np.arange(10, 31) / 100.0, 2))
#: Window grid of the TFD Parzen protocol (0.001, 0.006, ..., 0.196) for [0, 1] pixels.
TFD_PARZEN_BANDWIDTHS: np.ndarray = frozen(np.round(0.001 + 0.005 * np.arange(40), 3))

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class ParzenResult:
    """Outcome of :func:`parzen_log_likelihood`.

    Attributes
    ----------
    mean : float
        Mean test log-likelihood in nats per example.
    std_err : float
        Standard error of the mean, ``std(log_likelihoods) / sqrt(n_test)`` with ``ddof=0``
        as in the reference Parzen code (pylearn2, GMMN).
    log_likelihoods : ndarray of shape (n_test,)
        Per-point log-likelihoods (read-only).
    bandwidth : float
        Kernel standard deviation used for the test set.
    bandwidths : ndarray of shape (n_grid,) or None
        Grid searched on the validation set; None if ``bandwidth`` was given.
    validation_scores : ndarray of shape (n_grid,) or None
        Mean validation log-likelihood for each grid bandwidth; None if not selected.
    """

    mean: float
    std_err: float
    log_likelihoods: np.ndarray = field(repr=False)
    bandwidth: float
    bandwidths: np.ndarray | None = field(default=None, repr=False)
    validation_scores: np.ndarray | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std_err:.2f} nats (bandwidth {self.bandwidth:.4g})"


def _parzen_lse(
    x: torch.Tensor,
    s: torch.Tensor,
    centre: torch.Tensor,
    bandwidths: np.ndarray,
    batch_size: int,
    unit: float = 1.0,
) -> torch.Tensor:
    """Return ``logsumexp_i(-||x - s_i||^2 / (2 h^2))`` of shape (n_bandwidths, n_x).

    ``s`` is already divided by ``unit`` and centred; ``x`` is divided and centred block
    by block, so no full copy is made. ``bandwidths`` are in the data's units. A value
    below float64's range is -inf, never a NaN.
    """
    log_h = torch.as_tensor(np.log(bandwidths), dtype=torch.float64, device=x.device)
    s_sq = (s * s).sum(dim=1)
    s_c = s @ centre  # for far rows, below
    c_sq = centre @ centre
    out = torch.empty(len(bandwidths), x.shape[0], dtype=torch.float64, device=x.device)
    for i0 in range(0, x.shape[0], batch_size):
        raw = x[i0 : i0 + batch_size].to(torch.float64)
        xb = raw / unit - centre
        # Every sample lies within 2 units of the centre. A row beyond 4 units has
        # squared distances that can overflow in these units (a point at 1e160, samples
        # near 1), so it is measured in units of its own largest value M instead, where
        # nothing overflows and nothing cancels: ||x/M - rho (s + centre)||^2 with
        # rho = unit / M <= 1/3 is at least 4/9 (x/M has a coordinate of 1, a sample at
        # most 1/3 there).
        far = ~(xb.abs() <= 4.0).all(dim=1, keepdim=True)
        any_far = bool(far.any())
        size = raw.abs().amax(dim=1, keepdim=True)
        if any_far:
            xb = torch.where(far, raw / size, xb)
            rho = torch.where(far, unit / size, 1.0)
            x_c = far * (xb @ centre)[:, None]
        x_sq = (xb * xb).sum(dim=1, keepdim=True)
        # 1 / (2 h^2) in the row's units, from logs: a far row's may overflow to inf,
        # and its log-density, below float64's range, is then -inf.
        log_unit = torch.where(far, size.log(), math.log(unit))
        k = (math.log(0.5) + 2.0 * (log_unit.T - log_h[:, None])).exp().unsqueeze(-1)
        # 0 * inf (a coincident sample, a window too small for the units) counts as 0.
        finite_k = bool(torch.isfinite(k).all())
        acc = torch.full(
            (len(bandwidths), xb.shape[0]), -math.inf, dtype=torch.float64, device=x.device
        )
        for j0 in range(0, s.shape[0], batch_size):
            sb = s[j0 : j0 + batch_size]
            # One GEMM per block serves every bandwidth; the clamp removes the tiny negative
            # values the expanded form produces for (near-)coincident points.
            d2 = torch.addmm(x_sq + s_sq[j0 : j0 + batch_size], xb, sb.T, alpha=-2.0)
            if any_far:
                s_far = 2.0 * s_c[j0 : j0 + batch_size] + c_sq
                d2 = torch.where(
                    far,
                    x_sq
                    + rho.square() * (s_sq[j0 : j0 + batch_size] + s_far)
                    - 2.0 * rho * (xb @ sb.T + x_c),
                    d2,
                )
            d2.clamp_(min=0.0)
            # Shifting by the nearest sample's distance makes the largest term exp(0) = 1 for
            # every bandwidth, so no row underflows to log(0) even for tiny windows.
            d2_min = d2.amin(dim=1, keepdim=True)
            d2.sub_(d2_min)
            buf = torch.empty_like(d2)
            for b in range(len(bandwidths)):
                torch.mul(d2, k[b], out=buf)
                shift = d2_min * k[b]
                if not finite_k:
                    buf.nan_to_num_(nan=0.0, posinf=math.inf)
                    shift.nan_to_num_(nan=0.0, posinf=math.inf)
                lse = buf.neg_().exp_().sum(dim=1).log_().sub_(shift.squeeze(1))
                torch.logaddexp(acc[b], lse, out=acc[b])
        out[:, i0 : i0 + batch_size] = acc
    return out


def _largest(a: np.ndarray | torch.Tensor) -> float:
    return float(a.abs().max()) if isinstance(a, torch.Tensor) else float(np.abs(a).max())


def _too_far(
    ll: np.ndarray,
    x: np.ndarray | torch.Tensor,
    name: str,
    window: str,
    samples: np.ndarray | torch.Tensor,
) -> None:
    """Refuse a point whose log-likelihood (``-inf`` in ``ll``) is below float64's range."""
    row = int(np.flatnonzero(~np.isfinite(ll))[0])
    point, reach = _largest(x[row]), _largest(samples)
    raise ValueError(
        f"{name} row {row} (largest magnitude {point:.3g}) is so far from every sample "
        f"(largest magnitude {reach:.3g}) that its Parzen log-likelihood at {window} is "
        f"below -{np.finfo(np.float64).max:.3g} nats, beyond float64's range. Check that "
        f"{name} and the samples are in the same units, or drop such rows."
    )


def parzen_log_likelihood(
    samples: np.ndarray | torch.Tensor,
    X_test: np.ndarray | torch.Tensor,
    bandwidth: float | None = None,
    X_valid: np.ndarray | torch.Tensor | None = None,
    bandwidths: np.ndarray | list[float] | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> ParzenResult:
    r"""Gaussian Parzen-window (kernel density) log-likelihood of test points.

    The density is an equal-weight mixture of isotropic Gaussians of standard deviation
    ``h`` centred on the ``n`` model samples ``s_i`` in ``D`` dimensions:

    .. math::

        \log p(x) = \operatorname{logsumexp}_i\left(-\frac{\lVert x - s_i\rVert^2}{2h^2}
        \right) - \log n - \frac{D}{2}\log(2\pi h^2).

    If ``bandwidth`` is None, ``h`` is the grid value that maximises the mean
    log-likelihood of ``X_valid``; the test set is then scored with that single ``h``.

    .. warning::

       Parzen-window estimates are a poor estimator of log-likelihood in high dimension:
       even with 10,000 samples they are far from the true log-likelihood and can rank
       models wrongly (a model that memorises or slightly blurs the training set can
       score better than a good one). Theis, van den Oord & Bethge (2016) recommend
       against using them for model comparison. The number is in the units of the data
       space given (e.g. nats for [0, 1] pixels) and depends on the window; it is not
       comparable with exact likelihoods (flows, autoregressive models) or with numbers
       computed on differently scaled, dequantised or logit-transformed data.

    Parameters
    ----------
    samples : array-like or Tensor of shape (n_samples, n_dims)
        Model samples, the kernel centres (10,000 in the GAN/GMMN/AAE protocol).
    X_test : array-like or Tensor of shape (n_test, n_dims)
        Held-out data to score.
    bandwidth : float, optional
        Kernel standard deviation ``h``. Give either this or ``X_valid``, not both.
    X_valid : array-like or Tensor of shape (n_valid, n_dims), optional
        Validation data on which to choose ``h``; required when ``bandwidth`` is None.
    bandwidths : sequence of float, optional
        Grid of candidate ``h``. Default: ``scale * np.logspace(-2, 0.5, 21)``, where
        ``scale = sqrt(mean_d Var(samples[:, d]))`` is the root-mean per-dimension standard
        deviation of the samples. For the published protocols on [0, 1] pixels pass
        :data:`MNIST_PARZEN_BANDWIDTHS` (0.10 to 0.30, step 0.01) or
        :data:`TFD_PARZEN_BANDWIDTHS` (0.001 to 0.196, step 0.005). A ``UserWarning`` is
        raised if the best value lies on the edge of the grid.
    batch_size : int, default 1024
        Edge of the (test points x samples) blocks of squared distances. Working memory
        is about ``3 * 8 * batch_size**2`` bytes (25 MB at the default) plus one float64
        copy of ``samples``; blocks this small also keep the per-bandwidth passes in cache.
    device : str or torch.device, optional
        Where to compute. Default: the device of ``samples`` if it is a tensor, else CPU.

    Returns
    -------
    ParzenResult
        Mean, standard error, per-point values (nats), the window used and, when it was
        selected, the grid and its validation scores.

    Raises
    ------
    ValueError
        On non-2-D, empty or non-finite inputs, mismatched dimensions, invalid
        bandwidths, or when neither ``bandwidth`` nor ``X_valid`` is given; and for a
        point so far from every sample that its log-likelihood is below float64's range
        (about -1.8e308: a point at 1e160 with samples near 1 and a window of 0.5).

    Notes
    -----
    All arithmetic is float64: the expanded squared distance
    ``||x||^2 - 2 x.s + ||s||^2`` loses about ``log10(||x||^2 / ||x - s||^2)`` digits, and
    dividing by ``2 h^2`` with small windows turns float32 rounding into errors of a
    fraction of a nat. Data are centred on the sample mean first to limit that loss.
    Log-sum-exp partial results are merged across sample blocks, so memory does not
    grow with ``n_samples``; distances of a block are computed once for all bandwidths.
    A point far outside the samples is measured in units of its own largest value, so
    its squared distances do not overflow: its log-likelihood is finite whenever float64
    can hold it.

    References
    ----------
    .. [1] Breuleux, Bengio & Vincent, "Quickly generating representative samples from an
       RBM-derived process", Neural Computation 23(8), 2011.
    .. [2] Li, Swersky & Zemel, "Generative moment matching networks", ICML 2015.
    .. [3] Theis, van den Oord & Bethge, "A note on the evaluation of generative models",
       ICLR 2016, arXiv:1511.01844.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> samples = rng.normal(size=(500, 2))
    >>> res = parzen_log_likelihood(samples, rng.normal(size=(200, 2)),
    ...                             X_valid=rng.normal(size=(200, 2)),
    ...                             bandwidths=[0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    >>> res.bandwidth
    0.4
    >>> bool(np.isclose(res.mean, res.log_likelihoods.mean()))
    True
    """
    s = check_points(samples, "samples")
    x_test = check_points(X_test, "X_test")
    check_same_dims(s, x_test, "samples and X_test must have the same number of dimensions")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if bandwidth is not None and (X_valid is not None or bandwidths is not None):
        raise ValueError(
            "Pass either a fixed `bandwidth` or `X_valid` (with an optional `bandwidths` "
            "grid) to select one, not both."
        )
    if bandwidth is None and X_valid is None:
        raise ValueError(
            "bandwidth is None, so X_valid is required to select it; pass validation data "
            "(X_valid=...) or a fixed bandwidth=... ."
        )

    if device is None:
        device = s.device if isinstance(s, torch.Tensor) else "cpu"
    dev = torch.device(device)

    def to_x(a: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(a, np.ndarray) and not (a.flags.writeable and a.flags.c_contiguous):
            # torch cannot share a read-only buffer (np.load(..., mmap_mode="r")) nor
            # negative strides (X[::-1]).
            a = np.array(a, order="C")
        # Stay in the caller's dtype until a block is cut out, to avoid a float64 copy.
        return torch.as_tensor(a).to(device=dev)

    def to_t(a: np.ndarray | torch.Tensor) -> torch.Tensor:
        return to_x(a).to(dtype=torch.float64)

    s_t = to_t(s)
    # Distances in units of the samples' largest magnitude (bandwidths alike), so no
    # square overflows or underflows whatever the data's units.
    unit = float(s_t.abs().max()) or 1.0
    s_t = s_t / unit
    # Distances are translation invariant; centring shrinks ||x||^2 and ||s||^2 and with
    # them the cancellation in the expanded form.
    centre = s_t.mean(dim=0)
    s_t = s_t - centre
    n, d = s_t.shape

    def log_norm(h: np.ndarray) -> np.ndarray:
        return -math.log(n) - 0.5 * d * (_LOG_2PI + 2.0 * np.log(h))

    grid: np.ndarray | None = None
    scores: np.ndarray | None = None
    if bandwidth is None:
        x_valid = check_points(X_valid, "X_valid")
        check_same_dims(s, x_valid, "samples and X_valid must have the same number of dimensions")
        if bandwidths is None:
            scale = math.sqrt(float(s_t.square().mean())) * unit
            if scale == 0.0:
                raise ValueError(
                    "All samples are identical, so no default bandwidth grid can be derived; "
                    "pass `bandwidths` explicitly."
                )
            grid = scale * np.logspace(-2.0, 0.5, 21)
        else:
            grid = check_bandwidths(bandwidths, "bandwidths")
        lse = _parzen_lse(to_x(x_valid), s_t, centre, grid, batch_size, unit).cpu().numpy()
        e = power_of_two(lse)
        scores = np.ldexp(np.ldexp(lse, -e).mean(axis=1), e) + log_norm(grid)
        if not np.isfinite(scores).any():
            widest = int(np.argmax(grid))
            _too_far(
                lse[widest], x_valid, "X_valid", f"every bandwidth up to {grid[widest]:.4g}", s
            )
        best = int(np.argmax(scores))
        h = float(grid[best])
        if grid.size > 1 and h in (grid.min(), grid.max()):
            warnings.warn(
                f"The selected Parzen bandwidth {h:.4g} lies on the edge of the grid "
                f"[{grid.min():.4g}, {grid.max():.4g}]; widen `bandwidths`.",
                UserWarning,
                stacklevel=2,
            )
    else:
        if np.ndim(bandwidth) != 0:
            raise ValueError("bandwidth must be a scalar; use X_valid and bandwidths to search.")
        h = float(check_bandwidths(bandwidth, "bandwidth")[0])

    lse_test = _parzen_lse(to_x(x_test), s_t, centre, np.array([h]), batch_size, unit)[0]
    ll = lse_test.cpu().numpy() + log_norm(np.array([h]))[0]
    if not np.isfinite(ll).all():
        _too_far(ll, x_test, "X_test", f"the bandwidth {h:.4g}", s)
    mean, se = mean_log_likelihood(ll)
    return ParzenResult(
        mean=mean,
        std_err=se,
        log_likelihoods=frozen(ll),
        bandwidth=h,
        bandwidths=None if grid is None else frozen(grid),
        validation_scores=None if scores is None else frozen(scores),
    )
