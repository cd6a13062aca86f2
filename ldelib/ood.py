"""Out-of-distribution detection from several latent scores at once.

:meth:`~ldelib.LatentDensityEstimator.ood_scores` gives each input a few scores (the latent
log-likelihood, prefix marginals, the reconstruction error), each higher for typical
inputs. :class:`LatentOODScore` combines them into one, calibrated on held-out
**in-distribution** inputs only, without out-of-distribution data or a second,
background model:

* ``method="sum"``: the mean of the scores standardised by their in-distribution mean
  and spread: low when the scores are jointly low;
* ``method="typicality"``: the log-density of the score vector under a mixture fitted to
  the in-distribution ones (the "density of states" of Morningstar et al., 2021): low
  also for inputs that are *too* likely, the failure of pixel-space likelihoods that
  give MNIST digits higher likelihood than the Fashion-MNIST images a model was trained
  on (Nalisnick et al., 2019).

References:
    | Do Deep Generative Models Know What They Don't Know? (Nalisnick et al., 2019)
    | https://arxiv.org/abs/1810.09136
    | Density of States Estimation for Out-of-Distribution Detection (Morningstar et
      al., 2021), https://arxiv.org/abs/2006.09273
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from typing_extensions import Self

from .latent import LatentDensityEstimator
from .models import GMM

__all__ = ["LatentOODScore"]


class LatentOODScore(BaseEstimator):
    r"""One out-of-distribution score from a latent density's several scores.

    ``fit`` computes :meth:`~ldelib.LatentDensityEstimator.ood_scores` of held-out
    in-distribution inputs (never the rows the latent density was fitted on, whose
    likelihoods are optimistic) and calibrates the combination on them;
    ``score_samples`` scores new inputs, higher meaning more in-distribution, as
    :func:`ldelib.metrics.ood_metrics` expects.

    Parameters
    ----------
    lde : LatentDensityEstimator
        Fitted, with a tractable density (and a decoder, for the reconstruction score).
    method : {"sum", "typicality"}, default="sum"
        ``"sum"``: the mean of the scores, each standardised by its in-distribution
        mean and standard deviation. ``"typicality"``: the log-density of the score
        vector under a validated Gaussian mixture fitted to the in-distribution ones,
        which also flags inputs more likely than typical ones.
    prefixes : sequence of int or "auto", default="auto"
        Prefix marginals to include; ``"auto"`` takes the first quarter of the latents
        (none below 4 latents).
    scores : sequence of str or None, default=None
        Names among those :meth:`~ldelib.LatentDensityEstimator.ood_scores` returns, to use
        only those; ``None`` uses all.
    random_state : int, Generator or None, default=None
        Seeds the mixture of ``method="typicality"``.

    Attributes
    ----------
    score_names_ : list of str
        The scores combined, in column order.
    center_, spread_ : ndarray of shape (n_scores,)
        Their in-distribution means and standard deviations.
    mixture_ : GMM or None
        The mixture fitted to the score vectors (``method="typicality"``).

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import GMM, LatentDensityEstimator
    >>> from ldelib.metrics import ood_metrics
    >>> from ldelib.ood import LatentOODScore
    >>> rng = np.random.default_rng(0)
    >>> lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(rng.normal(size=(500, 8)))
    >>> score = LatentOODScore(lde).fit(rng.normal(size=(300, 8)))
    >>> score.score_names_
    ['log_prob', 'log_prob_k2']
    >>> inside = score.score_samples(rng.normal(size=(200, 8)))
    >>> shifted = score.score_samples(rng.normal(size=(200, 8)) + 2.0)
    >>> bool(ood_metrics(inside, shifted).auroc > 0.95)
    True

    Inputs at the mode are more likely than typical ones: only the typicality flags them.

    >>> typical = LatentOODScore(lde, method="typicality", random_state=0)
    >>> typical = typical.fit(rng.normal(size=(300, 8)))
    >>> mode, fresh = np.zeros((200, 8)), rng.normal(size=(200, 8))
    >>> bool(score.score_samples(mode).mean() > score.score_samples(fresh).mean())
    True
    >>> bool(typical.score_samples(mode).mean() < typical.score_samples(fresh).mean())
    True
    """

    def __init__(
        self,
        lde: LatentDensityEstimator,
        method: str = "sum",
        prefixes: Sequence[int] | str = "auto",
        scores: Sequence[str] | None = None,
        random_state: Any = None,
    ) -> None:
        self.lde = lde
        self.method = method
        self.prefixes = prefixes
        self.scores = scores
        self.random_state = random_state

    def _prefixes(self) -> list[int]:
        if isinstance(self.prefixes, str):
            if self.prefixes != "auto":
                raise ValueError(
                    f'prefixes must be "auto" or a list of ints, got {self.prefixes!r}.'
                )
            d = int(self.lde.latent_dim_)
            return [d // 4] if d >= 4 else []
        return [int(k) for k in self.prefixes]

    def _matrix(self, X: Any) -> tuple[list[str], np.ndarray]:
        scores = self.lde.ood_scores(X, prefixes=self._prefixes())
        names = list(scores) if self.scores is None else list(self.scores)
        unknown = [n for n in names if n not in scores]
        if unknown:
            raise ValueError(f"Unknown score {unknown[0]!r}; the scores are {list(scores)}.")
        return names, np.column_stack([scores[n] for n in names])

    def fit(self, X: Any, y: Any = None) -> Self:
        """Calibrate on the scores of held-out in-distribution inputs ``X``."""
        if self.method not in ("sum", "typicality"):
            raise ValueError(f'method must be "sum" or "typicality", got {self.method!r}.')
        if not isinstance(self.lde, LatentDensityEstimator):
            raise TypeError(
                f"lde must be a fitted LatentDensityEstimator, got {type(self.lde).__name__}."
            )
        check_is_fitted(self.lde)
        names, S = self._matrix(X)
        if len(S) < 2 or not np.isfinite(S).all():
            raise ValueError(
                "Calibration needs at least 2 in-distribution inputs, all with a finite "
                "density: fit the latent density on data like X, or pass fewer prefixes."
            )
        self.score_names_ = names
        self.center_ = S.mean(axis=0)
        self.spread_ = np.maximum(S.std(axis=0), 1e-12 * np.maximum(1.0, np.abs(self.center_)))
        self.mixture_ = None
        if self.method == "typicality":
            self.mixture_ = GMM("auto", reg_covar="auto", random_state=self.random_state).fit(S)
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """The combined score of each input (higher: more in-distribution)."""
        check_is_fitted(self, "center_")
        _, S = self._matrix(X)
        standard = (S - self.center_) / self.spread_
        if self.mixture_ is None:
            return standard.mean(axis=1)
        # A zero density (-inf) or a runaway score is atypical, not an error: far beyond
        # what calibration saw, but finite for the mixture.
        limit = 1e3
        S = self.center_ + self.spread_ * np.clip(standard, -limit, limit)
        return np.asarray(self.mixture_.score_samples(S), dtype=np.float64)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples`."""
        return float(self.score_samples(X).mean())
