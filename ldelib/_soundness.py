"""Whether a fitted model is numerically sound (the last guard against a diverged fit),
and whether its data make it degenerate (see ``ldelib.DegenerateDataWarning``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .base import BaseDensityEstimator

__all__ = ["check_sound", "held_out_collapse", "repeated_values"]


def check_sound(model: BaseDensityEstimator, Z: np.ndarray) -> None:
    """Raise FloatingPointError if training left a numerically broken model.

    A model whose samples are not finite or fly off far beyond the data, or that
    scores its own training rows far below a diagonal Gaussian, diverged: training
    kept the best weights it saw, and even those are unusable.
    """
    generator = torch.Generator(device=torch.device(model.device_)).manual_seed(0)
    with torch.no_grad():
        S = model._sample(256, generator).to("cpu", torch.float64).numpy()
    reach = float(np.abs(S).max()) if np.isfinite(S).all() else math.inf
    problem = None
    if reach > 1e3 * max(1.0, float(np.abs(Z).max())):
        problem = (
            "its samples hold NaN or infinite values"
            if math.isinf(reach)
            else f"its samples reach {reach:.3g} standard deviations from the mean"
        )
    elif model._has_log_prob():
        rows = torch.as_tensor(Z[:1024], dtype=model._dtype, device=torch.device(model.device_))
        with torch.no_grad():
            score = float(model._log_prob(rows).mean()) / Z.shape[1]
        # A diagonal Gaussian of the same rows, columns floored at 1e-3 std (a
        # constant column would make it infinite).
        gaussian = -0.5 * (math.log(2 * math.pi) + 1) - float(
            np.log(np.maximum(Z.std(axis=0), 1e-3)).mean()
        )
        if not score > gaussian - 10.0:
            problem = (
                f"it scores its training rows at {score:.4g} nats per dimension (in "
                f"standard units), far below a diagonal Gaussian's {gaussian:.4g}"
            )
    if problem is not None:
        lr = getattr(model, "learning_rate", None)
        hint = f" (now {lr})" if lr is not None else ""
        raise FloatingPointError(
            f"{type(model).__name__} diverged while training: {problem}. Lower "
            f"learning_rate{hint}, or check the data for extreme values."
        )


#: Rows read, evenly spaced, to count each column's distinct values: enough to tell a
#: column of a few values from a continuous one, and cheap on any number of rows.
_DISTINCT_ROWS = 2048
#: Held-out log-likelihood, in nats per dimension, below the moment-matched Gaussian's
#: at which a fit counts as degenerate (the margin ``check_sound`` uses on training rows).
_HELD_OUT_MARGIN = 10.0


def _columns(index: np.ndarray) -> str:
    shown = ", ".join(str(int(j)) for j in index[:5])
    return shown + (f" and {len(index) - 5} more" if len(index) > 5 else "")


def repeated_values(X: np.ndarray) -> str | None:
    """Why the rows ``X`` (raw, finite; in memory or a memmap) make a likelihood
    degenerate, or ``None``.

    Under a continuous density, values repeat with probability zero. A column in which
    they repeat (on average twice or more each: at most half as many distinct values as
    rows) is discrete, and a maximum-likelihood fit can put ever narrower peaks on its
    values: the likelihood is unbounded, and what the fit reaches depends on the
    regularisation, not on the data. A constant column is the extreme case.
    """
    n = len(X)
    rows = X if n <= _DISTINCT_ROWS else X[np.linspace(0, n - 1, _DISTINCT_ROWS).astype(int)]
    rows = np.asarray(rows, dtype=np.float64)  # a memmap's rows are read here
    m = len(rows)
    ordered = np.sort(rows, axis=0)
    distinct = 1 + (ordered[1:] != ordered[:-1]).sum(axis=0)  # no difference can overflow
    constant = np.flatnonzero(distinct == 1)
    few = np.flatnonzero((distinct > 1) & (distinct <= m // 2))
    if len(constant) == 0 and len(few) == 0:
        return None
    among = f"{m} rows" if m == n else f"{m} evenly spaced rows of {n}"
    parts = []
    if len(constant):
        parts.append(f"column{'s' if len(constant) > 1 else ''} {_columns(constant)} constant")
    if len(few):
        j = int(few[0])
        parts.append(
            f"column{'s' if len(few) > 1 else ''} {_columns(few)} with few distinct values "
            f"(column {j}: {int(distinct[j])} distinct values among {among})"
        )
    return (
        f"X has {' and '.join(parts)}: a density fitted by maximum likelihood can put ever "
        "narrower peaks on repeated values, so its log-likelihoods measure the "
        "regularisation rather than the data."
    )


def held_out_collapse(model: BaseDensityEstimator, Z: np.ndarray) -> str | None:
    """Why the model's held-out score shows a degenerate fit, or ``None``.

    The reference is the Gaussian with the data's own means and variances (in standard
    units: per dimension, ``-(log(2 pi) + 1) / 2`` less the log of the column's
    spread, floored at 1e-3 as in ``check_sound``): knowing nothing but two moments of
    each column, it scores the rows about that much on average, held-out ones included.
    A fitted model whose held-out rows score far below it (``_HELD_OUT_MARGIN`` nats
    per dimension, a likelihood ratio of e^-10 in every dimension) has not learned the
    density: it put its mass where the held-out rows are not, the peaks of a discrete or
    degenerate training part.
    """
    score = model._held_out_score()
    if score is None:
        return None
    d = Z.shape[1]
    per_dim = (score + model._log_scale_sum()) / d  # standard units
    with np.errstate(over="ignore"):  # unstandardised rows' squares can sum past 1.8e308
        spread = Z.std(axis=0)
    gaussian = -0.5 * (math.log(2 * math.pi) + 1) - float(np.log(np.maximum(spread, 1e-3)).mean())
    if not per_dim < gaussian - _HELD_OUT_MARGIN:
        return None
    return (
        f"Its held-out log-likelihood, {score:.4g} nats per row, is {gaussian - per_dim:.3g} "
        f"nats per dimension below that of a Gaussian with the data's means and variances: "
        "the fit is degenerate."
    )
