"""How well a score tells in-distribution inputs from out-of-distribution ones.

Scores follow one convention: **higher means more in-distribution** (a log-likelihood,
minus a reconstruction error). The metrics are those of the out-of-distribution
literature (Hendrycks & Gimpel, 2017; Ren et al., 2019), computed with scikit-learn:

* AUROC, the probability that an in-distribution input scores above an
  out-of-distribution one (ties count half): 1 is perfect, 0.5 chance, and below 0.5
  the score ranks the two sets the wrong way round (Ren et al. report 0.089 for a
  PixelCNN++ likelihood trained on Fashion-MNIST and tested on MNIST);
* AUPR with the in-distribution inputs as the positive class, and with the
  out-of-distribution ones (scored by minus the score) as the positive class;
* FPR at 95 % TPR: the fraction of out-of-distribution inputs accepted by the threshold
  that accepts 95 % of the in-distribution ones (lower is better).

References:
    | A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural
      Networks (Hendrycks & Gimpel, 2017), https://arxiv.org/abs/1610.02136
    | Likelihood Ratios for Out-of-Distribution Detection (Ren et al., 2019),
      https://arxiv.org/abs/1906.02845
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .._arrays import check_rows

__all__ = ["OODMetrics", "ood_metrics"]


@dataclass(frozen=True)
class OODMetrics:
    """The result of :func:`ood_metrics`.

    Attributes
    ----------
    auroc : float
        Probability that an in-distribution input scores higher than an
        out-of-distribution one.
    aupr_in, aupr_out : float
        Average precision with the in-distribution (resp. out-of-distribution) inputs
        as the positive class.
    fpr_at_95_tpr : float
        Fraction of out-of-distribution inputs scoring at or above the 5 % quantile of
        the in-distribution scores.
    n_in, n_out : int
        Number of inputs of each kind.
    """

    auroc: float
    aupr_in: float
    aupr_out: float
    fpr_at_95_tpr: float
    n_in: int
    n_out: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scores(x: Any, name: str) -> np.ndarray:
    scores = check_rows(x, name, ndim=1, finite=False)
    if not isinstance(scores, np.ndarray):
        scores = scores.to("cpu").numpy()
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"{name} contains NaN; a score must be a number (or -inf).")
    return scores


def ood_metrics(scores_in: Any, scores_out: Any) -> OODMetrics:
    """AUROC, AUPR and FPR at 95 % TPR of a score, higher meaning more in-distribution.

    Parameters
    ----------
    scores_in : array-like or Tensor of shape (n_in,)
        Scores of in-distribution inputs (e.g. a held-out test set).
    scores_out : array-like or Tensor of shape (n_out,)
        Scores of out-of-distribution inputs. Infinite scores are allowed (a density of
        zero is ``-inf``): only the order of the scores matters.

    Returns
    -------
    OODMetrics

    Examples
    --------
    >>> from ldelib.metrics import ood_metrics
    >>> m = ood_metrics([3.0, 2.5, 2.0, 1.0], [0.5, 1.5, -1.0])
    >>> round(m.auroc, 3), round(m.fpr_at_95_tpr, 3)
    (0.917, 0.333)
    """
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    scores = np.concatenate([s_in, s_out])
    # Ranks carry everything these metrics read, and they are finite.
    ranks = np.unique(scores, return_inverse=True)[1].astype(np.float64)
    r_in, r_out = ranks[: len(s_in)], ranks[len(s_in) :]
    labels = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    # The threshold that accepts (at least) 95 % of the in-distribution inputs.
    threshold = np.sort(r_in)[int(np.floor(0.05 * len(r_in)))]
    return OODMetrics(
        auroc=float(roc_auc_score(labels, ranks)),
        aupr_in=float(average_precision_score(labels, ranks)),
        aupr_out=float(average_precision_score(1 - labels, -ranks)),
        fpr_at_95_tpr=float(np.mean(r_out >= threshold)),
        n_in=len(s_in),
        n_out=len(s_out),
    )
