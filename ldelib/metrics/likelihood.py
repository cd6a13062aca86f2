"""Log-likelihoods in the units different papers report: nats, nats/dim, bits/dim."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["mean_log_likelihood", "nats_per_dim", "nats_to_bits_per_dim"]


def _check_n_dims(n_dims: int) -> None:
    if isinstance(n_dims, bool) or not isinstance(n_dims, (int, np.integer)) or n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer; got {n_dims!r}.")


def _as_float_or_array(v: Any, name: str) -> float | np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(v, dtype=float)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return float(arr) if arr.ndim == 0 else arr


def power_of_two(a: np.ndarray) -> int:
    """An exponent ``e`` with every finite ``|a| / 2**e < 1``.

    Sums and squares of ``np.ldexp(a, -e)`` cannot overflow (log-likelihoods near
    -1.8e308 are finite), and a power of two scales exactly: a mean or a standard
    deviation of the scaled values, scaled back, is that of ``a`` itself.
    """
    finite = np.abs(a[np.isfinite(a)])
    return math.frexp(float(finite.max()))[1] if finite.size else 0


def nats_to_bits_per_dim(nats: Any, n_dims: int) -> float | np.ndarray:
    """Convert a per-example value in nats to bits per dimension: ``nats / (D ln 2)``.

    The sign is kept, so pass a negative log-likelihood to get the usual (positive)
    bits/dim figure.

    Parameters
    ----------
    nats : float, array-like or Tensor
        Per-example (negative) log-likelihood in nats.
    n_dims : int
        Number of dimensions ``D`` of one example (e.g. 784 for MNIST).

    Returns
    -------
    float or ndarray

    References
    ----------
    .. [1] van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel recurrent neural networks",
       ICML 2016 (bits/dim reporting).

    Examples
    --------
    >>> round(nats_to_bits_per_dim(784 * np.log(2), 784), 12)
    1.0
    """
    _check_n_dims(n_dims)
    return _as_float_or_array(nats, "nats") / (n_dims * math.log(2.0))


def nats_per_dim(ll: Any, n_dims: int) -> float | np.ndarray:
    """Divide a per-example log-likelihood in nats by the number of dimensions.

    Parameters
    ----------
    ll : float, array-like or Tensor
        Per-example log-likelihood (or its negative) in nats.
    n_dims : int
        Number of dimensions of one example.

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> nats_per_dim(-16.0, 8)
    -2.0
    """
    _check_n_dims(n_dims)
    return _as_float_or_array(ll, "ll") / n_dims


def mean_log_likelihood(log_probs: Any, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard error of per-example log-likelihoods.

    Parameters
    ----------
    log_probs : array-like or Tensor of shape (n,)
        Per-example log-likelihoods; must be finite (``-inf`` usually means a bug or a
        zero-density region and would make the mean meaningless).
    ddof : int, default 0
        Delta degrees of freedom of the standard deviation. 0 matches the Parzen
        reference code; use 1 for the sample standard deviation.

    Returns
    -------
    mean, standard_error : float
        ``standard_error = std(log_probs, ddof=ddof) / sqrt(n)``.

    Examples
    --------
    >>> mean_log_likelihood([1.0, 2.0, 3.0, 6.0])
    (3.0, 0.9354143466934853)
    """
    v = _as_float_or_array(log_probs, "log_probs")
    arr = np.atleast_1d(v)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"log_probs must be a non-empty 1-D array; got shape {arr.shape}.")
    if ddof not in (0, 1) or arr.size <= ddof:
        raise ValueError(f"ddof must be 0 or 1 and smaller than n={arr.size}; got {ddof!r}.")
    e = power_of_two(arr)
    y = np.ldexp(arr, -e)
    return float(np.ldexp(y.mean(), e)), float(np.ldexp(y.std(ddof=ddof) / math.sqrt(arr.size), e))
