"""The numpy/torch boundary: input validation, conversion and random-number plumbing.

Every public method of a density model goes through :func:`validate_input`, so the
rules live in one place: numpy (or any array-like) in gives float64 numpy out; a torch
tensor in gives a tensor out, on its own device and in its own floating dtype, with the
autograd graph kept so that a fitted model can serve as a differentiable prior.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, validate_data

__all__ = [
    "Batch",
    "check_has_values",
    "check_n_samples",
    "check_rows",
    "make_rng",
    "resolve_device",
    "torch_generator",
    "validate_input",
]

RandomStateLike = int | np.integer | np.random.Generator | np.random.RandomState | None

_NOT_FINITE = (
    "Input X contains NaN or infinity. Density models need finite values: drop or impute "
    "those rows first."
)


@dataclass(frozen=True)
class Batch:
    """Validated input: the data as a tensor, and how to hand results back.

    Attributes
    ----------
    data : Tensor of shape (n_samples, n_features)
        The caller's tensor, or a float64 CPU tensor for any other input.
    is_tensor : bool
        Whether the caller passed a tensor (results go back as tensors).
    device, dtype :
        Where and in which dtype a tensor result goes back.
    """

    data: torch.Tensor
    is_tensor: bool
    device: torch.device
    dtype: torch.dtype

    def output(self, result: torch.Tensor) -> np.ndarray | torch.Tensor:
        """Convert a per-row result back to the caller's array type."""
        if self.is_tensor:
            return result.to(device=self.device, dtype=self.dtype)
        return result.detach().to("cpu", torch.float64).numpy()


def check_has_values(X: Any, name: str = "X") -> None:
    """Refuse a tensor on the ``meta`` device, which has a shape and a dtype but no values.

    Every read of one fails deep inside torch ("Tensor.item() cannot be called on meta
    tensors"), in words about torch rather than about what the caller passed.
    """
    if isinstance(X, torch.Tensor) and X.is_meta:
        raise TypeError(
            f"{name} is a tensor on the 'meta' device, which has a shape and a dtype but no "
            "values; create it on 'cpu' or 'cuda' instead."
        )


def _check_tensor(
    estimator: BaseEstimator, X: torch.Tensor, *, reset: bool, n_features: int | None = None
) -> torch.Tensor:
    # Mirrors sklearn's validate_data messages so users see one vocabulary either way.
    name = type(estimator).__name__
    check_has_values(X)
    if X.is_complex():
        raise ValueError("Complex data not supported; pass a real-valued tensor.")
    if X.dtype == torch.bool:
        raise TypeError("Boolean tensors are not accepted; convert to a floating dtype first.")
    if X.layout != torch.strided:
        raise TypeError(f"{name} needs a dense tensor; got layout {X.layout}. Use X.to_dense().")
    if X.dim() != 2:
        raise ValueError(
            f"Expected a 2-D tensor of shape (n_samples, n_features), got {X.dim()}-D with "
            f"shape {tuple(X.shape)}. Reshape with X.reshape(-1, n_features) for several "
            "points, or X.reshape(1, -1) for a single point."
        )
    n, d = X.shape
    if n == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
            f"required by {name}."
        )
    if d == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
            f"required by {name}."
        )
    if not X.is_floating_point():
        X = X.to(torch.get_default_dtype())
    if not bool(torch.isfinite(X).all()):
        raise ValueError(_NOT_FINITE)
    if reset:
        estimator.n_features_in_ = d
    else:
        _check_width(estimator, d, n_features)
    return X


def _check_width(estimator: BaseEstimator, d: int, n_features: int | None) -> None:
    expected = estimator.n_features_in_ if n_features is None else n_features
    if d != expected:
        raise ValueError(
            f"X has {d} features, but {type(estimator).__name__} is expecting {expected} "
            "features as input."
        )


def check_rows(
    X: Any,
    name: str = "X",
    *,
    ndim: int | None = 2,
    finite: bool = True,
    min_rows: int = 1,
) -> np.ndarray | torch.Tensor:
    """Check that ``X`` holds rows of real numbers; return it as numpy or as a tensor.

    The one check every entry point without an estimator uses (metrics, targets,
    encoders, autoencoder training), with one vocabulary of messages. A tensor stays a
    tensor (detached, same device and dtype); anything else becomes a numpy array of
    its own numeric dtype (booleans and integers are accepted, complex, object and
    string data are not).

    Parameters
    ----------
    X : array-like or Tensor
    name : str
        How messages call ``X``.
    ndim : int or None
        Required number of axes; ``None`` accepts any shape ``(n_rows, ...)`` with at
        least two axes.
    finite : bool
        Refuse NaN and infinity.
    min_rows : int
        Fewest rows accepted.
    """
    if isinstance(X, torch.Tensor):
        check_has_values(X, name)
        if X.is_complex():
            raise TypeError(f"{name} must be real-valued, got a tensor of dtype {X.dtype}.")
        arr: np.ndarray | torch.Tensor = X.detach()
    else:
        try:
            arr = np.asarray(X)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array of rows: {error}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}.")
    shape = tuple(arr.shape)
    if (ndim is not None and len(shape) != ndim) or (ndim is None and len(shape) < 2):
        wanted = (
            "2-D, of shape (n_samples, n_features)"
            if ndim == 2
            else (
                f"{ndim}-D"
                if ndim is not None
                else "of shape (n_samples, ...) with at least 2 axes"
            )
        )
        hint = (
            f" Use {name}.reshape(len({name}), -1) to flatten images, or {name}.reshape(1, -1) "
            "for a single row."
            if ndim == 2
            else ""
        )
        raise ValueError(f"{name} must be {wanted}; got shape {shape}.{hint}")
    if shape[0] < min_rows or 0 in shape[1:]:
        raise ValueError(
            f"{name} has shape {shape}; at least {min_rows} row(s) and one value per row "
            "are needed."
        )
    if finite:
        ok = (
            bool(torch.isfinite(arr).all())
            if isinstance(arr, torch.Tensor)
            else bool(np.isfinite(arr).all())
        )
        if not ok:
            raise ValueError(f"{name} contains NaN or infinity; drop or impute those rows first.")
    return arr


def validate_input(
    estimator: BaseEstimator, X: Any, *, reset: bool, n_features: int | None = None
) -> Batch:
    """Validate ``X`` for ``estimator``.

    With ``reset=True`` (in ``fit``), ``n_features_in_`` is set; otherwise the number of
    features must match it, or ``n_features`` where given (rows of a prefix of the
    dimensions, whose feature names are not checked). Rejects NaN/inf, complex, object
    and string data, sparse matrices, empty arrays and anything that is not 2-D, with an
    actionable message. A tensor keeps its device, dtype and autograd graph; anything
    else becomes a float64 CPU tensor.
    """
    if isinstance(X, torch.Tensor):
        X = _check_tensor(estimator, X, reset=reset, n_features=n_features)
        return Batch(X, True, X.device, X.dtype)
    # scikit-learn's own finiteness check first sums X, which overflows, with a
    # RuntimeWarning, on valid data near float64's limit: so the check here is
    # element-wise.
    checks: dict[str, Any] = {
        "dtype": np.float64,
        "ensure_min_samples": 1,
        "ensure_all_finite": False,
    }
    if n_features is None:
        X = validate_data(estimator, X, reset=reset, **checks)
    else:
        X = check_array(X, estimator=estimator, **checks)
        _check_width(estimator, X.shape[1], n_features)
    if not np.isfinite(X).all():
        raise ValueError(_NOT_FINITE)
    # A fresh copy: torch rejects negative strides and warns on read-only memmaps.
    data = torch.from_numpy(np.array(X, dtype=np.float64, order="C", copy=True))
    return Batch(data, False, torch.device("cpu"), torch.float64)


def check_n_samples(n_samples: Any, name: str = "n_samples", minimum: int = 1) -> int:
    """Check that ``n_samples`` is an integer of at least ``minimum`` (1 or 0); as ``int``."""
    kind = "a positive" if minimum == 1 else "a non-negative"
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"{name} must be {kind} integer, got {n_samples!r}.")
    if n_samples < minimum:
        raise ValueError(f"{name} must be {kind} integer, got {n_samples}.")
    return int(n_samples)


def make_rng(random_state: RandomStateLike) -> np.random.Generator:
    """A numpy ``Generator`` from a scikit-learn style ``random_state``.

    ``None`` draws fresh entropy from the OS instead of sharing numpy's global state,
    so nothing in ldelib ever advances the global RNG.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**32 - 1, size=4))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}.")
        return np.random.default_rng(int(random_state))
    raise ValueError(
        "random_state must be None, a non-negative int, a numpy Generator or a RandomState, "
        f"got {random_state!r}."
    )


def torch_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from (and advancing) ``rng``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.integers(2**63 - 1)))
    return generator


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``... into a checked device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}."
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use device='auto' "
            "to fall back to the CPU."
        )
    return resolved
