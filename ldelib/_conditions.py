"""What a conditional density is conditioned on: class labels, or a context vector.

A model fitted with ``conditional=True`` fits :math:`p(x \\mid y)`. A 1-D ``y`` holds
class labels (integers, strings, booleans or integral floats: any values numpy sorts),
a 2-D ``y`` of shape (n, C) a continuous context. This module turns a ``y`` into what
the models compute with (label codes ``0 .. n_classes - 1``, or a standardised context)
and checks every ``y`` a fitted model is given against what it was fitted with, in the
caller's terms. It takes and returns values; the estimators hold the attributes.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Context", "Labels", "fit_condition", "no_condition"]

#: Labels named in full in a message; more are cut with "...".
_SHOWN = 12


def _as_numpy(y: Any, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        if y.is_meta:
            raise TypeError(f"{name} is a tensor on the 'meta' device, which has no values.")
        return y.detach().cpu().numpy()
    try:
        return np.asarray(y)
    except (TypeError, ValueError) as error:  # ragged nested sequences
        raise ValueError(f"{name} could not be read as an array: {error}") from error


def _shown(values: np.ndarray) -> str:
    items = [repr(v) for v in values[:_SHOWN].tolist()]
    return "[" + ", ".join(items) + (", ..." if len(values) > _SHOWN else "") + "]"


@dataclass(frozen=True)
class Labels:
    """Conditioning on class labels: ``classes`` in sorted order, coded by position."""

    classes: np.ndarray

    def codes(self, y: Any, n: int | None, name: str = "y") -> np.ndarray:
        """The codes of the labels ``y`` (int64, shape (n,)); ``n=None`` takes any
        length. An unseen label is an error that names the known classes."""
        values = _as_numpy(y, name)
        if values.ndim != 1:
            raise ValueError(
                f"This model was fitted on class labels, so {name} must be a 1-D array of "
                f"labels; got shape {values.shape}."
            )
        if n is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} labels for {n} rows of X.")
        index = {label: code for code, label in enumerate(self.classes.tolist())}
        try:
            codes = [index.get(v) for v in values.tolist()]
        except TypeError as error:  # an unhashable label
            raise ValueError(f"{name} holds a label that is not a hashable value.") from error
        unseen = [v for v, c in zip(values.tolist(), codes, strict=True) if c is None]
        if unseen:
            raise ValueError(
                f"{name} holds labels the model was not fitted on: "
                f"{_shown(np.asarray(list(dict.fromkeys(unseen)), dtype=object))}; the "
                f"known classes are {_shown(self.classes)} (classes_)."
            )
        return np.asarray(codes, dtype=np.int64)

    def one(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        """Codes of ``n`` draws: one label shared by all, or one per draw."""
        values = _as_numpy(y, name)
        if values.ndim == 0:
            return np.full(n, self.codes(values[None], 1, name)[0], dtype=np.int64)
        if values.ndim == 1 and len(values) != n:
            raise ValueError(
                f"{name} must be one label, shared by every draw, or one per draw "
                f"({n}); got {len(values)} labels."
            )
        return self.codes(values, n, name)


@dataclass(frozen=True)
class Context:
    """Conditioning on a context vector of ``width`` features, standardised by
    ``mean`` and ``scale`` (zeros and ones without standardisation)."""

    mean: np.ndarray
    scale: np.ndarray

    @property
    def width(self) -> int:
        return len(self.mean)

    def encode(self, y: Any, n: int | None, name: str = "y") -> np.ndarray:
        """The standardised context of ``n`` rows (float64, shape (n, width))."""
        values = _context_values(y, name)
        if values.ndim != 2:
            hint = " (one feature: y.reshape(-1, 1))" if self.width == 1 else ""
            raise ValueError(
                f"This model was fitted on a context of {self.width} feature"
                f"{'s' if self.width > 1 else ''}, so {name} "
                f"must be a 2-D array of shape (n_samples, {self.width}){hint}; got shape "
                f"{values.shape}."
            )
        if values.shape[1] != self.width:
            raise ValueError(
                f"{name} has {values.shape[1]} context features, but the model was fitted "
                f"on {self.width}."
            )
        if n is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} rows for {n} rows of X.")
        return (values - self.mean) / self.scale

    def one(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        """The context of ``n`` draws: one vector shared by all, or one row per draw."""
        values = _context_values(y, name)
        if values.ndim == 1:
            values = np.broadcast_to(values, (n, len(values)))
        elif values.ndim == 2 and len(values) != n:
            raise ValueError(
                f"{name} must be one context vector of {self.width} features, shared by "
                f"every draw, or one row per draw ({n}); got {len(values)} rows."
            )
        return self.encode(values, n, name)


def _context_values(y: Any, name: str) -> np.ndarray:
    values = _as_numpy(y, name)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"A context {name} must hold numbers; got dtype {values.dtype}.")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinity; a context must be finite.")
    return values


def fit_condition(
    y: Any, n_rows: int, standardize: bool, name: str = "y"
) -> tuple[Labels | Context, np.ndarray]:
    """What the training ``y`` conditions on, and its encoding (label codes, or the
    standardised context), checked against the ``n_rows`` rows of X."""
    if y is None:
        raise ValueError(
            "This model was created with conditional=True, so fit needs y: class labels "
            "(shape (n_samples,)) or a context (shape (n_samples, n_context_features))."
        )
    values = _as_numpy(y, name)
    if values.ndim not in (1, 2) or len(values) != n_rows:
        raise ValueError(
            f"{name} must have one entry per row of X ({n_rows}): labels of shape "
            f"({n_rows},) or a context of shape ({n_rows}, n_context_features); got shape "
            f"{values.shape}."
        )
    if values.ndim == 2:
        values = _context_values(values, name)
        if values.shape[1] == 0:
            raise ValueError(f"{name} has no context features.")
        if standardize:
            scale = values.std(axis=0)
            scale[scale == 0] = 1.0  # a constant feature: centred, not scaled
            context = Context(values.mean(axis=0), scale)
        else:
            width = values.shape[1]
            context = Context(np.zeros(width), np.ones(width))
        return context, context.encode(values, n_rows, name)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError(f"{name} contains NaN or infinity; labels must be finite.")
        if not (values == np.round(values)).all():
            raise ValueError(
                f"A 1-D {name} holds class labels, and these are not whole numbers; pass a "
                f"continuous context as a 2-D array: {name}.reshape(-1, 1)."
            )
    if values.dtype.kind == "O":
        values = np.asarray(values.tolist())  # strings or numbers, as numpy reads them
    if values.dtype.kind not in "biufU":
        raise ValueError(
            f"Class labels must be integers, strings, booleans or whole floats; {name} "
            f"has dtype {values.dtype}."
        )
    labels = Labels(np.unique(values))
    return labels, labels.codes(values, n_rows, name)


def no_condition(y: Any, model: str, name: str = "y") -> None:
    """Refuse a ``y`` given to a model fitted without one, saying what to do instead."""
    if y is None:
        return
    hint = ""
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        hint = " (A prefix marginal takes n_dims=k by keyword.)"
    raise ValueError(
        f"{model} was fitted without y, so it has no conditional density p(x | y). Create "
        f"it with conditional=True and fit it with fit(X, y) to condition on class labels "
        f"or a context.{hint}"
    )
