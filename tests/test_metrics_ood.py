"""ldelib.metrics.ood: AUROC, AUPR and FPR at 95 % TPR, higher scores in-distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ldelib.metrics import OODMetrics, ood_metrics


def test_agrees_with_scikit_learn_on_continuous_scores():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1.0, 1.0, 700), rng.normal(0.0, 1.5, 400)
    m = ood_metrics(s_in, s_out)
    labels = np.r_[np.ones(700), np.zeros(400)]
    scores = np.r_[s_in, s_out]
    assert m.auroc == pytest.approx(roc_auc_score(labels, scores))
    assert m.aupr_in == pytest.approx(average_precision_score(labels, scores))
    assert m.aupr_out == pytest.approx(average_precision_score(1 - labels, -scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    assert m.fpr_at_95_tpr == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
    # And by its definition: out-of-distribution inputs above the in-distribution 5 % point.
    assert m.fpr_at_95_tpr == pytest.approx(np.mean(s_out >= np.sort(s_in)[35]))
    assert (m.n_in, m.n_out) == (700, 400)
    assert set(m.as_dict()) == {"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "n_in", "n_out"}


def test_perfect_reversed_and_chance_scores():
    perfect = ood_metrics([5, 6, 7], [1, 2])
    assert (perfect.auroc, perfect.aupr_in, perfect.aupr_out, perfect.fpr_at_95_tpr) == (
        1.0,
        1.0,
        1.0,
        0.0,
    )
    reversed_ = ood_metrics([1, 2], [5, 6, 7])
    assert reversed_.auroc == 0.0 and reversed_.fpr_at_95_tpr == 1.0
    tied = ood_metrics([1.0, 1.0], [1.0, 1.0])
    assert tied.auroc == 0.5 and tied.fpr_at_95_tpr == 1.0


def test_infinite_scores_rank_at_the_ends():
    """A density of zero (-inf) is the least in-distribution score there is."""
    finite = ood_metrics([0.0, 1.0, 2.0, -5.0], [-1e300, 0.5, 3.0])
    infinite = ood_metrics([0.0, 1.0, 2.0, -5.0], [-np.inf, 0.5, np.inf])
    assert infinite.auroc == finite.auroc
    assert infinite.fpr_at_95_tpr == finite.fpr_at_95_tpr


def test_tensors_are_accepted():
    m = ood_metrics(torch.tensor([2.0, 3.0]), torch.tensor([1.0]))
    assert isinstance(m, OODMetrics) and m.auroc == 1.0


@pytest.mark.parametrize(
    ("scores_in", "scores_out", "error", "match"),
    [
        ([1.0, np.nan], [0.0], ValueError, "scores_in contains NaN"),
        ([1.0], [[0.0]], ValueError, "scores_out"),
        ([], [0.0], ValueError, "scores_in"),
        (["a"], [0.0], TypeError, "real numbers"),
    ],
)
def test_bad_scores(scores_in, scores_out, error, match):
    with pytest.raises(error, match=match):
        ood_metrics(scores_in, scores_out)
