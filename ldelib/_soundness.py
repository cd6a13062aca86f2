"""Whether a fitted model is numerically sound (the last guard against a diverged fit),
and whether its data make it degenerate (see ``ldelib.DegenerateDataWarning``)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_sound", "held_out_collapse", "repeated_values"]


def _gaussian_score(Z: np.ndarray) -> float:
    """Per dimension, what a diagonal Gaussian with the columns' own means and spreads
    scores its rows on average, spreads floored at 1e-3 (a constant column would make
    it infinite)."""
    with np.errstate(over="ignore"):  # unstandardised rows' squares can sum past 1.8e308
        spread = Z.std(axis=0)
    return -0.5 * (math.log(2 * math.pi) + 1) - float(np.log(np.maximum(spread, 1e-3)).mean())


def check_sound(samples: np.ndarray, score: float | None, Z: np.ndarray) -> str | None:
    """What is numerically broken in a fitted model, or ``None``.

    ``samples`` are a few hundred of its draws and ``score`` its mean log-density of the
    training rows ``Z`` per dimension (``None`` without a density), all in the units of
    ``Z``. Samples that are not finite or fly off far beyond the data, or a score far
    below a diagonal Gaussian's, mean that the fit diverged: training kept the best
    weights it saw, and even those are unusable.
    """
    reach = float(np.abs(samples).max()) if np.isfinite(samples).all() else math.inf
    if reach > 1e3 * max(1.0, float(np.abs(Z).max())):
        return (
            "its samples hold NaN or infinite values"
            if math.isinf(reach)
            else f"its samples reach {reach:.3g} standard deviations from the mean"
        )
    gaussian = _gaussian_score(Z)
    if score is not None and not score > gaussian - 10.0:
        return (
            f"it scores its training rows at {score:.4g} nats per dimension (in "
            f"standard units), far below a diagonal Gaussian's {gaussian:.4g}"
        )
    return None


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


def held_out_collapse(score: float | None, log_scale_sum: float, Z: np.ndarray) -> str | None:
    """Why a model's held-out score shows a degenerate fit, or ``None``.

    ``score`` is the fitted model's mean log-likelihood of held-out rows (nats per row,
    data units; ``None``: none held out), ``log_scale_sum`` the log-determinant of the
    standardisation and ``Z`` the standardised training rows. The reference is the
    Gaussian with the data's own means and variances (in standard units: per dimension,
    ``-(log(2 pi) + 1) / 2`` less the log of the column's spread, floored at 1e-3 as in
    ``check_sound``): knowing nothing but two moments of each column, it scores the rows
    about that much on average, held-out ones included. A fitted model whose held-out
    rows score far below it (``_HELD_OUT_MARGIN`` nats per dimension, a likelihood ratio
    of e^-10 in every dimension) has not learned the density: it put its mass where the
    held-out rows are not, the peaks of a discrete or degenerate training part.
    """
    if score is None:
        return None
    per_dim = (score + log_scale_sum) / Z.shape[1]  # standard units
    gaussian = _gaussian_score(Z)
    if not per_dim < gaussian - _HELD_OUT_MARGIN:
        return None
    return (
        f"Its held-out log-likelihood, {score:.4g} nats per row, is {gaussian - per_dim:.3g} "
        f"nats per dimension below that of a Gaussian with the data's means and variances: "
        "the fit is degenerate."
    )
