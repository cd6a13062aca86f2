from __future__ import annotations

import re
import time

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import ldelib
from ldelib import GMM, CausalConvMDN
from ldelib._validation import InvalidParameterError
from ldelib.datasets import make_target
from ldelib.models._averaging import (
    MAX_AVERAGE,
    PATIENCE,
    Averaging,
    combined,
    members,
    shares,
)


def _integral(model, rows: np.ndarray, n: int = 801) -> float:
    """The model's density integrated over a box 3 units beyond ``rows``, by Simpson's
    rule on an n x n grid (one call to score the grid)."""
    lo, hi = rows.min(0) - 3, rows.max(0) + 3
    x, y = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    grid = np.stack(np.meshgrid(x, y, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(model.score_samples(grid)).reshape(n, n)
    return float(integrate.simpson(integrate.simpson(density, x=y), x=x))


@pytest.fixture(scope="module")
def rows():
    # Few rows for many components: each EM optimum overfits them in its own way.
    target = make_target("ring", 2)
    return target.sample(600, 0), target.sample(4000, 1)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_combined_is_the_mean_of_its_mixtures(rows, covariance_type):
    train, test = rows
    fitted = [
        GaussianMixture(5, covariance_type=covariance_type, random_state=s).fit(train)
        for s in range(3)
    ]
    mean = logsumexp([m.score_samples(test) for m in fitted], axis=0) - np.log(3)
    mixture = combined(fitted)
    assert mixture.n_components == 15
    assert mixture.weights_.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(mixture.score_samples(test), mean, rtol=0, atol=1e-10)
    # The mean of the lower bounds bounds the mean's log-likelihood (Jensen).
    assert mixture.lower_bound_ <= mixture.score(train)
    for (w, mu, cov), m in zip(
        members(mixture.weights_, mixture.means_, mixture.covariances_, 3), fitted, strict=True
    ):
        np.testing.assert_allclose(w, m.weights_)
        np.testing.assert_array_equal(mu, m.means_)
        np.testing.assert_array_equal(cov, m.covariances_)


def test_one_mixture_is_left_as_it_is(rows):
    train, _ = rows
    tied = GaussianMixture(3, covariance_type="tied", random_state=0).fit(train)
    assert combined([tied]) is tied
    ((_, _, cov),) = members(tied.weights_, tied.means_, tied.covariances_, 1)
    assert cov is tied.covariances_  # (D, D): not cut into components


def _averaging(fit, first, held_out, n_average, refit_s=0.0):
    return Averaging(fit, first, first.score_samples(held_out), held_out, 0.0, n_average, refit_s)


def test_averaging_ends_after_mixtures_that_do_not_help(rows):
    train, test = rows
    first = GaussianMixture(4, random_state=0).fit(train)
    # The same mixture again: its mean with the first is the first.
    again = _averaging(
        lambda _: GaussianMixture(4, random_state=0).fit(train), first, test, "auto"
    )
    assert again.run(None).kept == [first] and again.finished and again.tried == PATIENCE
    assert again.scores == [pytest.approx(first.score(test))]
    # An integer is a count, whether or not each mixture helps.
    three = _averaging(lambda _: GaussianMixture(4, random_state=0).fit(train), first, test, 3)
    assert len(three.run(None).kept) == 3 and np.allclose(three.scores, first.score(test))


def test_averaging_leaves_time_for_the_refits(rows):
    train, test = rows
    first = GaussianMixture(4, random_state=0).fit(train)
    calls = []

    def fit(cutoff):
        calls.append(cutoff)
        return GaussianMixture(4, random_state=len(calls)).fit(train)

    deadline = time.perf_counter() + 60.0
    assert len(_averaging(fit, first, test, 4, 10.0).run(deadline).kept) == 4
    # Each fit must end early enough for every kept mixture's refit (10 s each).
    assert calls == pytest.approx([deadline - 20.0, deadline - 30.0, deadline - 40.0])
    calls.clear()
    paused = _averaging(fit, first, test, 8, 30.0).run(deadline)
    assert calls == [] and paused.kept == [first] and not paused.finished


def test_shares_split_the_time_left_evenly():
    now = time.perf_counter()
    # Each share is of the time left when it is taken: here no fit spends any, so the
    # first's third of 30 s passes on to the others, and the last ends at the deadline.
    deadlines = list(shares(now + 30.0, 3))
    assert deadlines == pytest.approx([now + 10.0, now + 15.0, now + 30.0], abs=0.05)
    assert list(shares(None, 2)) == [None, None]


def test_averaged_gmm_scores_held_out_rows_higher():
    # Warped clusters in 8-D: no mixture of few components is right, and EM's optima
    # on 1,500 rows differ (measured: 10.55 -> 10.37 nats per row on these rows).
    target = make_target("warped", 8)
    train, test = target.sample(1500, 0), target.sample(4000, 1)
    one = GMM([10, 20, 40], reg_covar="auto", random_state=0).fit(train)
    mean = GMM([10, 20, 40], reg_covar="auto", n_average="auto", random_state=0).fit(train)
    assert one.n_average_ == 1 and one.average_scores_ == [max(one.candidate_scores_.values())]
    assert 1 < mean.n_average_ <= MAX_AVERAGE
    assert mean.n_components_ == mean.n_average_ * one.n_components_
    assert len(mean.average_scores_) == mean.n_average_
    assert np.all(np.diff(mean.average_scores_) > 0)  # "auto" keeps what helps
    assert mean.reg_covar_ == one.reg_covar_  # the members share the chosen candidate
    assert mean.score(test) > one.score(test) + 0.1


def test_averaged_gmm_integrates_to_one_and_samples_match(rows):
    train, _ = rows
    model = GMM(4, n_average=3, random_state=0).fit(train)
    assert model.n_components_ == 12 and model.n_average_ == 3
    assert model.average_scores_ == []  # no held-out rows without candidates
    assert _integral(model, train) == pytest.approx(1.0, abs=1e-4)
    # The draws' mean and covariance are the mixture's, within their sampling error: a
    # draw from the wrong members or weights would move them.
    n = 40000
    draws = model.sample(n, random_state=1)
    w, mu, cov = model.weights_, model.means_, model.covariances_  # standardised units
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    spread = second - np.outer(mean, mean)
    Z = (draws - model.mean_) / model.scale_
    se = np.sqrt(np.diag(spread) / n)
    assert np.all(np.abs(Z.mean(0) - mean) < 5 * se)
    # Fourth moments of standardised rows stay below 10 here: the covariance's error is
    # below 5 * sqrt(10 / n) per entry.
    assert np.abs(np.cov(Z.T) - spread).max() < 5 * np.sqrt(10 / n)


def test_refit_keeps_each_mixture_apart(rows):
    train, _ = rows
    model = GMM(4, n_average=2, random_state=0).fit(train)
    Z = (train - model.mean_) / model.scale_
    refit = model.refitted(Z, np.random.default_rng(0), None)
    assert refit.n_components == 8
    # One EM over all eight would move weight between the two halves.
    assert refit.weights_[:4].sum() == pytest.approx(0.5)
    assert refit.weights_[4:].sum() == pytest.approx(0.5)


def test_max_time_bounds_the_average(rows):
    train, _ = rows
    model = GMM(4, n_average=50, max_time=1e-3, random_state=0).fit(train)
    assert 1 <= model.n_average_ < 50
    assert model.n_components_ == 4 * model.n_average_


def test_file_round_trip_and_files_before_averaging(rows, tmp_path):
    train, test = rows
    model = GMM([4, 8], n_average="auto", random_state=0).fit(train)
    model.save(tmp_path / "m.ldelib")
    loaded = ldelib.load(tmp_path / "m.ldelib")
    assert loaded.n_average_ == model.n_average_
    assert loaded.average_scores_ == pytest.approx(model.average_scores_)
    np.testing.assert_array_equal(loaded.score_samples(test), model.score_samples(test))
    single = GMM(4, random_state=0).fit(train)
    del single.n_average_, single.average_scores_  # as a file written before averaging
    single.save(tmp_path / "old.ldelib")
    assert ldelib.load(tmp_path / "old.ldelib").n_average_ == 1


def test_a_broken_average_in_a_file_is_refused(rows, tmp_path):
    train, _ = rows
    model = GMM(4, n_average=2, random_state=0).fit(train)
    model.n_average_ = 3  # 8 components are not three mixtures
    model.save(tmp_path / "m.ldelib")
    with pytest.raises(ValueError, match="n_average_ must be a positive integer that divides 8"):
        ldelib.load(tmp_path / "m.ldelib")


def test_parameter_errors(rows):
    train, _ = rows
    fitted = GMM(4, random_state=0).fit(train)
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in vars(fitted).items()}
    for params, message in [
        ({"n_average": "auto"}, "n_average='auto' chooses on held-out"),
        (
            {"covariance_type": "tied", "n_average": 2},
            "n_average must be an int equal to 1 when covariance_type='tied'; got 2",
        ),
        (
            {"n_average": 0},
            re.escape("n_average must be an int in the range [1, inf) or 'auto'; got 0."),
        ),
    ]:
        with pytest.raises(InvalidParameterError, match=message):
            GMM(4, **params).fit(train)
        # A refit with the bad value leaves the fitted model as it was.
        bad = fitted.set_params(**params)
        with pytest.raises(InvalidParameterError, match=message):
            bad.fit(train)
        fitted.set_params(n_average=1, covariance_type="full")
        after = vars(fitted)
        assert after.keys() == before.keys()
        for key, value in before.items():
            assert (
                np.array_equal(after[key], value)
                if isinstance(value, np.ndarray)
                else after[key] == value
            ), key
    labels = (train[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match="averages mixtures, which a fit per class does not"):
        GMM(4, n_average=2, conditional=True).fit(train, labels)
    per_class = GMM([2, 4], reg_covar="auto", n_average="auto", conditional=True, random_state=0)
    assert per_class.fit(train, labels).n_average_ == 1
    with pytest.raises(InvalidParameterError, match="mixtures to average"):
        CausalConvMDN(init="random", n_average=2).fit(train)


def test_lde_anchor_is_the_average(rows):
    train, _ = rows
    lde = CausalConvMDN(
        [4, 8], n_average=3, max_epochs=1, validation_fraction=0.2, random_state=0
    ).fit(train)
    assert lde.anchor_["n_average"] == 3
    assert lde.n_components_ == lde.anchor_["n_components"] in (12, 24)
    assert lde.module_.anchor.log_weights.numel() == lde.n_components_
    # On the averaged mixture, the network's density still integrates to one.
    assert _integral(lde, train) == pytest.approx(1.0, abs=1e-3)


class _Scored:
    """A stand-in for a fitted mixture: fixed held-out log-densities."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def score_samples(self, X):
        return self.rows


def test_averaging_pauses_at_a_deadline_and_resumes():
    # Members that each score half of the held-out rows well: their mean beats each.
    good, bad = np.zeros(40), np.full(40, -10.0)
    first = np.r_[good[:20], bad[:20]]
    parts = iter([np.r_[bad[:20], good[:20]], first, good, bad, bad])
    averaging = Averaging(
        lambda cutoff: _Scored(next(parts)),
        _Scored(first),
        first,
        np.zeros((40, 1)),
        0.0,
        "auto",
        0.0,
    )
    assert averaging.run(0.0).kept == averaging.kept[:1] and not averaging.finished
    assert averaging.last_gain is None and averaging.last_s is None
    # One fit at a time when asked (the LDE's turns), then on to the end.
    assert len(averaging.run(None, fits=1).kept) == 2 and not averaging.finished
    assert averaging.scores[1] - averaging.scores[0] == pytest.approx(averaging.last_gain)
    assert averaging.last_gain > 4 and averaging.last_s >= 0
    # The third (the first again) does not help and is dropped; the fourth, good
    # everywhere, is kept: one that fails is not the end.
    assert len(averaging.run(None, fits=2).kept) == 3 and averaging.tried == 3
    assert not averaging.finished
    # Two bad ones in a row end it, neither kept; a sixth is never fitted.
    averaging.run(None)
    assert len(averaging.kept) == 3 and averaging.finished and averaging.tried == 5
    assert np.all(np.diff(averaging.scores) > 0)


def test_a_held_out_search_resumes_a_cut_averaging(rows):
    from ldelib.models._em import HeldOutSearch

    train, _ = rows
    # One candidate: the search ends at once; the budget is spent before a second mixture.
    estimator = GMM([4], reg_covar=[1e-3], n_average=3, standardize=False, max_time=1e-9)
    search = HeldOutSearch(estimator, train[:500], train[500:])
    assert estimator.n_average_ == 1
    assert not search.finished and search.improving and search.last_gain is None
    larger = search.resume(None)
    assert larger.n_average_ == 3 and larger.n_components_ == 12
    assert len(larger.average_scores_) == 3 and search.finished
    assert larger.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    assert estimator.n_average_ == 1  # the estimator keeps its fit
    assert search.resume(None) is None
