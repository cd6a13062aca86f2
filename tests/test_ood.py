"""ldelib.ood.LatentOODScore and LatentDensityEstimator.ood_scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from ldelib import GMM, LatentDensityEstimator
from ldelib.metrics import ood_metrics
from ldelib.ood import LatentOODScore

D = 24
W = np.random.default_rng(0).normal(size=(40, D))


def inputs(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Data on a 24-D subspace of 40-D space (plus a little noise off it)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, D)) * np.linspace(2.0, 0.5, D) + shift
    return z @ W.T + 0.01 * rng.normal(size=(n, 40))


@pytest.fixture(scope="module")
def lde() -> LatentDensityEstimator:
    pinv = np.linalg.pinv(W)
    return LatentDensityEstimator(
        GMM(2, random_state=0), encoder=lambda x: x @ pinv.T, decoder=lambda z: z @ W.T
    ).fit(inputs(2000, 0))


def test_scores_are_the_latent_likelihoods_and_the_reconstruction(lde):
    X = inputs(50, 1)
    scores = lde.ood_scores(X, prefixes=[1, 3])
    assert list(scores) == ["log_prob", "log_prob_k1", "log_prob_k3", "neg_reconstruction_error"]
    np.testing.assert_allclose(scores["log_prob"], lde.log_prob(X))
    np.testing.assert_allclose(scores["log_prob_k3"], lde.log_prob(X, n_dims=3))
    error = ((lde.reconstruct(X) - X) ** 2).mean(axis=1)
    np.testing.assert_allclose(scores["neg_reconstruction_error"], -error)
    without = LatentDensityEstimator(GMM(2, random_state=0)).fit(lde.encode(inputs(300, 2)))
    assert list(without.ood_scores(lde.encode(X))) == ["log_prob"]


def test_the_sum_is_the_mean_standardised_score(lde):
    calibration, X = inputs(500, 3), inputs(20, 4)
    combined = LatentOODScore(lde).fit(calibration)
    assert combined.score_names_ == ["log_prob", "log_prob_k6", "neg_reconstruction_error"]
    S = np.column_stack(list(lde.ood_scores(calibration, prefixes=[6]).values()))
    T = np.column_stack(list(lde.ood_scores(X, prefixes=[6]).values()))
    np.testing.assert_allclose(combined.score_samples(X), ((T - S.mean(0)) / S.std(0)).mean(1))


@pytest.mark.parametrize("method", ["sum", "typicality"])
def test_both_methods_separate_shifted_inputs(lde, method):
    combined = LatentOODScore(lde, method=method, random_state=0).fit(inputs(500, 3))
    inside = combined.score_samples(inputs(400, 4))
    shifted = combined.score_samples(inputs(400, 5, shift=3.0))
    assert ood_metrics(inside, shifted).auroc > 0.95


def test_only_the_typicality_flags_inputs_that_are_too_likely(lde):
    """In 24 dimensions typical latents lie about 12 nats below the mode."""
    rng = np.random.default_rng(7)
    mode = lde.decode(0.01 * rng.normal(size=(400, D)))
    assert lde.log_prob(mode).min() > lde.log_prob(inputs(400, 4)).max()
    for method, expected in (("sum", False), ("typicality", True)):
        combined = LatentOODScore(lde, method=method, random_state=0).fit(inputs(500, 3))
        auroc = ood_metrics(combined.score_samples(inputs(400, 4)), combined.score_samples(mode))
        assert (auroc.auroc > 0.95) is expected, method


def test_zero_density_inputs_are_atypical_not_errors(lde):
    far = inputs(5, 6) * 1e200
    assert np.isneginf(lde.log_prob(far)).all()
    for method in ("sum", "typicality"):
        combined = LatentOODScore(lde, method=method, scores=["log_prob"], random_state=0)
        combined.fit(inputs(500, 3))
        scores = combined.score_samples(far)
        assert not np.isnan(scores).any()
        assert scores.max() < combined.score_samples(inputs(200, 4)).min()


def test_bad_use(lde):
    with pytest.raises(NotFittedError):
        LatentOODScore(lde).score_samples(inputs(5, 1))
    with pytest.raises(TypeError, match="fitted LatentDensityEstimator"):
        LatentOODScore(GMM(2)).fit(inputs(5, 1))
    with pytest.raises(NotFittedError):
        LatentOODScore(LatentDensityEstimator(GMM(2))).fit(inputs(5, 1))
    with pytest.raises(ValueError, match="Unknown score 'nll'"):
        LatentOODScore(lde, scores=["nll"]).fit(inputs(50, 1))
    with pytest.raises(ValueError, match='prefixes must be "auto"'):
        LatentOODScore(lde, prefixes="all").fit(inputs(50, 1))
    with pytest.raises(ValueError, match='method must be "sum" or "typicality"'):
        LatentOODScore(lde, method="max").fit(inputs(50, 1))
    with pytest.raises(ValueError, match="from 1 to 24"):
        LatentOODScore(lde, prefixes=[25]).fit(inputs(50, 1))
