"""Choosing a mixture's number of components and regularisation on held-out rows."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from ._averaging import Averaging

__all__ = [
    "AUTO_COMPONENTS",
    "AUTO_REG_COVAR",
    "CLEARLY_WORSE_SE",
    "Search",
    "check_rows",
    "clearly_worse",
    "component_candidates",
    "fit_until",
    "is_search",
    "per_component",
    "reg_candidates",
    "rows_to_fit",
]

#: Candidate numbers of components of ``n_components="auto"`` (capped by the data).
AUTO_COMPONENTS = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640)
#: Above this K, the search tries a K only after one that improved, and stops at the
#: first that does not: on the 2-D checkerboard (uniform squares, 5,000 rows), K = 320
#: and 640 scored 0.004 and 0.005 nats per dimension above K = 160 on test; where 160
#: did not improve on 80 (8- and 16-D latents), trying 320 under the rule below it (two
#: stalls) took 6 s of a 45 s budget, which the averaging of the chosen K used better.
PATIENT_UP_TO = 160
#: Candidate regularisations of ``reg_covar="auto"``, in standardised units.
AUTO_REG_COVAR = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)

#: Longest round of EM between looks at the clock, in seconds (see :func:`fit_until`).
_ROUND_S = 2.0


class FitMixture(Protocol):
    """Fits a mixture of ``k`` components at ``reg``, from ``start``'s solution where
    given, until ``deadline``; ``member``: one more for the average of the best."""

    def __call__(
        self,
        k: int,
        reg: float,
        start: GaussianMixture | None,
        deadline: float | None,
        member: bool = False,
    ) -> GaussianMixture: ...


def is_search(value: object) -> bool:
    """Whether a parameter value names candidates (a list, a tuple or "auto")."""
    return isinstance(value, (list, tuple, str))


def component_candidates(
    value: int | Sequence[int] | str, n_rows: int = 1, n_features: int = 1
) -> list[int]:
    """The candidate numbers of components, sorted and without repeats.

    ``"auto"`` keeps the values of :data:`AUTO_COMPONENTS` with at least one row per
    component and dimension.
    """
    if isinstance(value, str):  # "auto"
        cap = max(1, n_rows // n_features)
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


def fit_until(mixture: GaussianMixture, X: np.ndarray, deadline: float | None) -> GaussianMixture:
    """``mixture.fit(X)``, with EM stopped once ``deadline`` (``time.perf_counter``) passes.

    EM runs in rounds of warm-started iterations, each sized to end by the deadline (and
    to take at most a few seconds), and keeps its parameters when time is up. A warm
    start carries EM's lower bound over, so the parameters and the convergence test are
    those of one uninterrupted fit; each round costs one extra E-step. The first round
    (initialisation and one iteration) always runs; its seconds are kept as
    ``first_round_s_``, from which :class:`Search` judges whether a larger mixture's
    first round would still end by the deadline, and estimates a refit's.
    """
    if deadline is None:
        return mixture.fit(X)
    max_iter, done, rounds = int(mixture.max_iter), 0, 1
    mixture.set_params(warm_start=True)
    try:
        while True:
            began = time.perf_counter()
            mixture.set_params(max_iter=rounds)
            with warnings.catch_warnings():
                # Unconverged rounds are the point; the last word is said below.
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture.fit(X)
            if not done:
                mixture.first_round_s_ = time.perf_counter() - began
            done += int(mixture.n_iter_)
            left = deadline - time.perf_counter()
            per_iter = (time.perf_counter() - began) / max(int(mixture.n_iter_), 1)
            if mixture.converged_ or done >= max_iter or left < per_iter:
                break
            rounds = max(1, min(max_iter - done, int(min(left, _ROUND_S) / per_iter)))
    finally:
        mixture.set_params(max_iter=max_iter, warm_start=False)
    mixture.n_iter_ = done
    if not mixture.converged_ and done >= max_iter:
        warnings.warn(
            "Best performing initialization did not converge. Try different init "
            "parameters, or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return mixture


#: Paired standard errors by which held-out scores must trail the best to count as worse.
CLEARLY_WORSE_SE = 2.0


def clearly_worse(rows: np.ndarray, best_rows: np.ndarray) -> bool:
    """Whether held-out log-densities ``rows`` trail ``best_rows`` beyond noise.

    The difference is paired, row by row on the same held-out rows, so its standard
    error is far smaller than either score's own.
    """
    diff = best_rows - rows
    se = float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    return float(diff.mean()) > CLEARLY_WORSE_SE * se


class Search:
    """A joint search over K and the regularisation, on held-out rows, that a deadline
    pauses and a later :meth:`run` resumes where it stopped.

    K goes up; for each K, the regularisations go up from the weakest, each fit starting
    from the previous one's solution (a few EM steps instead of a fresh k-means and EM),
    until the score falls. A K that does not beat the best score so far ends the search
    when it is clearly worse (:func:`clearly_worse`, on the same held-out rows), and
    two in a row end it otherwise: on a few hundred held-out rows one K's score is noisy
    (stopping at the first cost 0.36 nats on one seed of 16-D autoencoder latents of
    900 rows), but the next K costs twice as much, and a fit with many components that
    is clearly worse seldom precedes a better one. Above :data:`PATIENT_UP_TO`, a K is
    tried only after one that improved (each costs more than all before it). A
    deadline cuts the costly last K first, and no K starts whose first round (a k-means
    and one EM step, which do not look at the clock; estimated as the last new K's,
    scaled by K) would end past it.
    Searching K at one regularisation first would stop K early where many components
    need strong regularisation (they overfit without it).

    ``fit(k, reg, start, deadline)`` fits a mixture on the training rows (from
    ``start``'s solution when given), stopping EM at ``deadline``. No fit starts after
    the deadline, except the first. ``scores`` holds the held-out scores of the
    candidates tried (in data units: ``log_det`` is the log-determinant of the
    standardisation); ``best`` the best pair, ``best_mixture`` its mixture and
    ``best_rows`` its held-out log-densities; ``finished``, whether the search ended by
    its own rule rather than by a deadline; ``stalled``, how many K in a row, since the
    last that improved the best score, have not (where one has, a caller may grow the
    average of the best before the search goes on:
    :meth:`~ldelib.models._em.HeldOutSearch.resume`); ``last_gain``, by how much the last K
    that improved it did (nats per held-out row; ``None`` until a second K improves),
    and ``last_s``, the seconds its fits and scores took.

    ``reserve(mixture)`` is the seconds that what follows the search (the refit of its
    best ``mixture``) will take: the search ends that much before the deadline.
    ``averaging``: the mixtures averaged with its choice, set by the caller that grows
    them (:class:`~ldelib.models._averaging.Averaging`).
    """

    def __init__(
        self,
        fit: FitMixture,
        valid: np.ndarray,
        candidates: list[int],
        regs: list[float],
        log_det: float,
        many_reg: bool,
        reserve: Callable[[GaussianMixture], float] | None = None,
    ) -> None:
        self.fit, self.valid, self.candidates, self.regs = fit, valid, candidates, regs
        self.reserve = reserve
        self.log_det, self.many_reg = log_det, many_reg
        self.scores: dict[str, float] = {}
        self.best_score, self.best = -math.inf, (candidates[0], regs[0])
        self.best_mixture: GaussianMixture | None = None
        self.best_rows = np.empty(0)
        self.best_path: list[tuple[float, GaussianMixture, np.ndarray]] = []
        self.finished = False
        self.stalled = 0
        self.last_gain: float | None = None
        self.last_s: float | None = None
        self.averaging: Averaging | None = None
        self._deadline: float | None = None
        self._bar: tqdm | None = None
        self._fits_left: int | None = None
        self._last_start: tuple[int, float] | None = None  # a new K's first round: (K, s)
        self._steps = self._walk()

    def weakest_tied(self) -> tuple[float, GaussianMixture, np.ndarray]:
        """Of the best K, the weakest regularisation whose held-out rows are not clearly
        worse than the best's (:func:`clearly_worse`): its ``reg_covar``, mixture and
        held-out log-densities.

        For an average of mixtures: averaging lowers the variance that regularisation
        is there to bound, so it gains most at the weakest regularisation that one
        mixture does not clearly lose at. Measured on 32-D MNIST latents (K = 40, 9,000
        rows): one mixture at ``reg_covar`` 1e-4, 1e-3 and 1e-2 scored the held-out rows
        within noise (-49.93, -49.89, -49.96); eight averaged scored the test rows at
        -47.45, -47.52 and -48.03.
        """
        for reg, mixture, rows in self.best_path:  # the weakest first
            if not clearly_worse(rows, self.best_rows):
                return reg, mixture, rows
        raise AssertionError("the best candidate is on its own path")

    def run(
        self, deadline: float | None, bar: tqdm | None = None, fits: int | None = None
    ) -> Search:
        """Search until the search ends or ``deadline`` (``time.perf_counter``) passes,
        or (``fits``) after that many more fits; ``bar`` counts the mixtures fitted.
        Returns the search."""
        self._deadline, self._bar, self._fits_left = deadline, bar, fits
        if not self.finished:
            self.finished = next(self._steps, True)
        return self

    def _cutoff(self, k: int = 0) -> float | None:
        """The deadline, less what follows the search: the refit of the best, or of a
        candidate of ``k`` components (its time scales with K) that would beat it.
        Reserved for the best alone, the refit of K = 80 that beat K = 40 ended the fit
        1 s past its deadline (60,000 rows of a 32-D warped target)."""
        if self._deadline is None or self.reserve is None or self.best_mixture is None:
            return self._deadline
        return self._deadline - self.reserve(self.best_mixture) * max(1.0, k / self.best[0])

    def _out_of_time(self) -> bool:
        """Whether the search pauses here: at the deadline, or after the fits asked for."""
        if self._fits_left is not None and self._fits_left <= 0:
            return True
        cutoff = self._cutoff()
        return (
            cutoff is not None and self.best_mixture is not None and time.perf_counter() >= cutoff
        )

    def _too_late(self, k: int) -> bool:
        cutoff = self._cutoff(k)
        if cutoff is None or self._last_start is None:
            return False
        k0, seconds = self._last_start
        return time.perf_counter() + seconds * k / k0 > cutoff

    def _walk(self) -> Iterator[bool]:
        """The search; it yields ``False`` where a deadline pauses it."""
        for k in self.candidates:
            if k > PATIENT_UP_TO and self.stalled:
                return
            while self.best_mixture is not None and (self._out_of_time() or self._too_late(k)):
                yield False
            before, previous, path_best, path_rows = (
                self.best_score,
                None,
                -math.inf,
                self.best_rows,
            )
            path: list[tuple[float, GaussianMixture, np.ndarray]] = []
            seconds = 0.0  # of this K's fits, not of the pauses between them
            for reg in self.regs:
                while self._out_of_time():
                    yield False
                began = time.perf_counter()
                mixture = self.fit(k, reg, previous, self._cutoff(k))
                if self._fits_left is not None:
                    self._fits_left -= 1
                if previous is None and hasattr(mixture, "first_round_s_"):
                    self._last_start = (k, float(mixture.first_round_s_))
                rows = mixture.score_samples(self.valid)
                key = f"K={k}, reg_covar={reg:g}" if self.many_reg else str(k)
                score = self.scores[key] = float(rows.mean()) - self.log_det
                seconds += time.perf_counter() - began
                if self._bar is not None:
                    self._bar.update()
                    self._bar.set_postfix(
                        {"K": k, "reg": f"{reg:g}", "valid ll": f"{score:.4g} nats/row"}
                    )
                path.append((reg, mixture, rows))
                if score > self.best_score:
                    self.best_score, self.best = score, (k, reg)
                    self.best_mixture, self.best_rows, self.best_path = mixture, rows, path
                if not score > path_best:
                    break
                path_best, previous, path_rows = score, mixture, rows
            if self.best_score > before:
                self.stalled = 0
                if math.isfinite(before):
                    self.last_gain, self.last_s = self.best_score - before, seconds
            elif previous is None or clearly_worse(path_rows, self.best_rows):
                return
            else:
                self.stalled += 1
            if self.stalled == 2:
                return
