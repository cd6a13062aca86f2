"""Input checks and small helpers shared by the metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._arrays import check_has_values, check_rows


def frozen(a: Any) -> np.ndarray:
    """A read-only float64 copy of ``a``.

    A frozen dataclass cannot stop writes into a numpy field, so the buffer is locked too.
    """
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def check_points(x: Any, name: str) -> np.ndarray | torch.Tensor:
    """:func:`ldelib._arrays.check_rows` with ``ndim=2``, in the metrics' vocabulary.

    Every refusal is a ``ValueError`` (check_rows raises ``TypeError`` for complex,
    object and string data), and an empty or non-finite sample gets the metrics' own
    message. Returns a float64 numpy array, or the tensor detached, on its device and in
    its dtype.
    """
    try:
        check_has_values(x, name)
    except TypeError as exc:  # the metrics refuse with ValueError only
        raise ValueError(str(exc)) from None
    try:
        arr = check_rows(x, name, ndim=2, finite=False)
    except TypeError as exc:
        raise ValueError(f"{exc} Pass a real-valued numeric array.") from None
    except ValueError:
        shape = _shape(x)
        if len(shape) == 2 and 0 in shape:
            raise ValueError(
                f"{name} is empty (shape {shape}); it needs at least one point and dim."
            ) from None
        raise
    if isinstance(arr, torch.Tensor):
        finite = bool(torch.isfinite(arr).all())
    else:
        arr = np.asarray(arr, dtype=np.float64)
        finite = bool(np.isfinite(arr).all())
    if not finite:
        raise ValueError(
            f"{name} contains NaN or infinite values; drop or impute them first (a diverged "
            "model that emits NaN samples cannot be scored)."
        )
    return arr


def _shape(x: Any) -> tuple[int, ...]:
    try:
        return tuple(np.shape(x))
    except ValueError:  # ragged nested lists
        return ()


def check_same_dims(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, msg: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{msg}: {a.shape[1]} vs {b.shape[1]} dimensions.")


def check_bandwidths(values: Any, name: str) -> np.ndarray:
    h = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if h.ndim != 1 or h.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of positive floats.")
    if not (np.isfinite(h).all() and (h > 0).all()):
        raise ValueError(f"{name} must be finite and strictly positive; got {h.tolist()}.")
    return h
