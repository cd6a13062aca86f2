"""Prefix marginals and conditional draws: which dimensions, and the input checks.

A model's *ordering* lists its dimensions in the order its factorisation takes them:
``CausalConvMDN.ordering_`` for the autoregressive model, the column order for the
others. The prefix of length ``k`` is ``ordering[:k]``; :meth:`log_prob` with
``n_dims=k`` is the exact density of those dimensions alone, and ``sample(given=...)``
draws the other dimensions given them. Rows of prefix values have either ``k`` columns
(the prefix, in the model's order) or all ``D`` (the prefix is read from its columns,
the others are ignored).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._arrays import Batch, check_has_values, validate_input

__all__ = ["check_given", "check_n_dims", "prefix_columns", "prefix_input"]


def prefix_columns(ordering: np.ndarray, k: int) -> np.ndarray:
    """The data columns of the first ``k`` dimensions of ``ordering``."""
    return np.asarray(ordering[:k], dtype=np.int64)


def check_n_dims(n_dims: Any, d: int) -> int | None:
    """``n_dims`` as an int in ``1..d``, or ``None`` (all ``d`` dimensions)."""
    if n_dims is None:
        return None
    integral = isinstance(n_dims, numbers.Integral) and not isinstance(n_dims, bool)
    if not (integral and 1 <= int(n_dims) <= d):
        raise ValueError(
            f"n_dims must be an integer from 1 to {d} (the model's dimensions), got {n_dims!r}."
        )
    return int(n_dims)


def prefix_input(estimator: BaseEstimator, X: Any, columns: np.ndarray, fill: np.ndarray) -> Batch:
    """Validate rows of width ``k = len(columns)`` or ``D`` for ``estimator`` and widen
    them to ``D`` columns.

    The prefix goes to ``columns``; every other column holds ``fill`` (the column means:
    zero once standardised), which the prefix density never reads.
    """
    d, k = estimator.n_features_in_, len(columns)
    try:
        shape = tuple(X.shape) if isinstance(X, torch.Tensor) else np.shape(X)
    except ValueError:  # ragged: the usual checks say so
        shape = ()
    if len(shape) != 2 or shape[1] == d or k == d:
        return validate_input(estimator, X, reset=False)
    try:
        batch = validate_input(estimator, X, reset=False, n_features=k)
    except ValueError as error:
        if "features" not in str(error):
            raise
        raise ValueError(
            f"X has {shape[1]} features, but with "
            f"n_dims={k} {type(estimator).__name__} takes rows of the {k} prefix dimensions "
            f"or of all {d}."
        ) from error
    data = batch.data
    dtype = data.dtype if data.is_floating_point() else torch.get_default_dtype()
    wide = torch.as_tensor(fill, dtype=dtype, device=data.device).repeat(len(data), 1)
    wide[:, torch.as_tensor(columns, device=data.device)] = data.to(dtype)
    return Batch(wide, batch.is_tensor, batch.device, batch.dtype)


def check_given(given: Any, n_samples: int, d: int) -> np.ndarray:
    """The given prefix values as a float64 array of shape ``(n_samples, k)``.

    ``given`` is one row ``(k,)`` (or ``(1, k)``) shared by every draw, or one row per
    draw ``(n_samples, k)``; ``0 <= k <= d``, the model's dimensions.
    """
    check_has_values(given, "given")
    if isinstance(given, torch.Tensor):
        given = given.detach().cpu().numpy()
    array = np.asarray(given)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"given must hold real numbers, got an array of dtype {array.dtype}.")
    array = array.astype(np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] > d or len(array) not in (1, n_samples):
        raise ValueError(
            f"given must have shape (k,) or (n_samples, k) = ({n_samples}, k) with k <= {d}: "
            f"the values of the first k dimensions of the model's ordering; got shape "
            f"{np.shape(given)}."
        )
    if not np.isfinite(array).all():
        raise ValueError("given contains NaN or infinity; the prefix must be finite.")
    return np.broadcast_to(array, (n_samples, array.shape[1]))
