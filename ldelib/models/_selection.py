"""Choosing a mixture's number of components and regularisation on held-out rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

__all__ = [
    "AUTO_COMPONENTS",
    "AUTO_REG_COVAR",
    "check_rows",
    "component_candidates",
    "is_search",
    "per_component",
    "reg_candidates",
    "rows_to_fit",
    "select",
]

#: Candidate numbers of components of ``n_components="auto"`` (capped by the data).
AUTO_COMPONENTS = (1, 2, 5, 10, 20, 40, 80, 160)
#: Candidate regularisations of ``reg_covar="auto"``, in standardised units.
AUTO_REG_COVAR = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)

FitMixture = Callable[[int, float, "GaussianMixture | None"], GaussianMixture]


def is_search(value: object) -> bool:
    """Whether a parameter value names candidates (a list, a tuple or "auto")."""
    return isinstance(value, (list, tuple, str))


def component_candidates(
    value: int | Sequence[int] | str, n_rows: int = 1, n_features: int = 1
) -> list[int]:
    """The candidate numbers of components, sorted and without repeats.

    ``"auto"`` keeps the values of :data:`AUTO_COMPONENTS` with at least two rows per
    component and dimension.
    """
    if isinstance(value, str):  # "auto"
        cap = max(1, n_rows // (2 * n_features))
        return [k for k in AUTO_COMPONENTS if k <= cap]
    values = value if isinstance(value, Sequence) else [value]
    return sorted({int(k) for k in values})


def reg_candidates(value: float | Sequence[float] | str) -> list[float]:
    """The candidate regularisations, sorted and without repeats."""
    if isinstance(value, str):  # "auto"
        return list(AUTO_REG_COVAR)
    values = value if isinstance(value, Sequence) else [value]
    return sorted({float(v) for v in values})


def check_rows(candidates: list[int], n_rows: int, where: str) -> None:
    """Refuse candidates with more components than rows."""
    too_many = [k for k in candidates if k > n_rows]
    if too_many:
        raise ValueError(
            f"n_components={too_many[0] if len(too_many) == 1 else too_many} exceeds "
            f"the {n_rows} rows {where}; a mixture cannot have more components than "
            "training rows. Use fewer components or more data."
        )


def rows_to_fit(
    n_components: int | Sequence[int] | str, validation_fraction: float | None
) -> tuple[int, int]:
    """The fewest rows a mixture's fit takes: in all, and left to fit each candidate on.

    EM needs two rows, and one per component; ``validation_fraction`` (``None``: no
    selection by likelihood) holds rows out of that, as
    :func:`ldelib.training.split_positions` splits them: ``round(fraction * n)``, at
    least one, leaving at least one.
    """
    largest = max(component_candidates(n_components))  # "auto" starts at K = 1
    fit_rows = max(2, largest)
    if validation_fraction is None:
        return fit_rows, fit_rows
    n = fit_rows
    while n - min(max(1, round(validation_fraction * n)), n - 1) < fit_rows:
        n += 1
    return n, fit_rows


def per_component(fit_rows: int) -> str:
    """Why a fit needs ``fit_rows`` rows, when the components (not EM's two) set it."""
    return f" (one per component of n_components={fit_rows})" if fit_rows > 2 else ""


def select(
    fit: FitMixture,
    valid: np.ndarray,
    candidates: list[int],
    regs: list[float],
    log_det: float,
    many_reg: bool,
    bar: tqdm,
) -> tuple[dict[str, float], tuple[int, float], GaussianMixture]:
    """A coordinate search: K at the smallest regularisation, then the regularisation.

    ``fit(k, reg, start)`` fits a mixture on the training rows (from ``start``'s
    solution when given). K stops after two candidates without a better held-out
    score; each regularisation starts from the previous one's solution. Returns the
    held-out scores of the candidates tried (in data units: ``log_det`` is the
    log-determinant of the standardisation), the best pair and its mixture.
    """
    scores: dict[str, float] = {}
    best_score, best, best_mixture = -math.inf, (candidates[0], regs[0]), None

    def try_fit(k: int, reg: float, start: GaussianMixture | None) -> GaussianMixture:
        nonlocal best_score, best, best_mixture
        mixture = fit(k, reg, start)
        key = f"K={k}, reg_covar={reg:g}" if many_reg else str(k)
        scores[key] = float(mixture.score(valid)) - log_det
        if scores[key] > best_score:
            best_score, best, best_mixture = scores[key], (k, reg), mixture
        bar.update()
        bar.set_postfix({"K": k, "reg": f"{reg:g}", "valid ll": f"{scores[key]:.4g} nats/row"})
        return mixture

    stalled = 0
    for k in candidates:
        before = best_score
        try_fit(k, regs[0], None)
        stalled = 0 if best_score > before else stalled + 1
        if stalled == 2:
            break
    # Each regularisation starts from the previous one's solution: a few EM steps
    # instead of a fresh k-means and EM.
    previous = best_mixture
    for reg in regs[1:]:
        previous = try_fit(best[0], reg, previous)
    return scores, best, best_mixture
