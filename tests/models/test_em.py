"""The fitting half of GMM: its search over K and reg_covar, its budget, HeldOutSearch."""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from ldelib import GMM
from ldelib.datasets import make_target


@pytest.fixture(scope="module")
def mixture():
    target = make_target("gmm", 4, n_components=3)
    return target, target.sample(3000, 0), target.sample(3000, 1)


def test_regularisation_is_chosen_on_held_out_rows(mixture):
    train = mixture[1]
    regs = [1e-4, 0.1, 1.0]
    model = GMM([1, 2, 3, 4], reg_covar=regs, random_state=0).fit(train[:600])
    scores = model.candidate_scores_
    best = max(scores, key=scores.get)
    assert best == f"K={model.n_components_}, reg_covar={model.reg_covar_:g}"
    # A unit ridge on standardised data is far too much: it is never the choice.
    assert model.reg_covar_ < 1.0
    assert model.n_components_ == 3


def test_the_search_is_joint(mixture):
    # Each K walks reg_covar up from the weakest until the held-out score falls; K goes
    # up until one clearly worse K, or two in a row, do not beat the best.
    train = mixture[1]
    regs = [1e-4, 1e-2, 0.1, 1.0]
    model = GMM([1, 2, 3, 4, 5, 6, 8], reg_covar=regs, random_state=0).fit(train[:600])
    tried: dict[int, list[float]] = {}
    for key, score in model.candidate_scores_.items():
        k = re.fullmatch(r"K=(\d+), reg_covar=.+", key).group(1)
        tried.setdefault(int(k), []).append(score)
    candidates = [1, 2, 3, 4, 5, 6, 8]
    assert list(tried) == candidates[: len(tried)]
    # The search ends no later than two K in a row that do not beat the best so far.
    best, stalled = -np.inf, 0
    for k, path in tried.items():
        assert stalled < 2, f"K={k} was tried after two K without progress"
        stalled = 0 if max(path) > best else stalled + 1
        best = max(best, *path)
    assert stalled >= 1 or len(tried) == len(candidates)
    for path in tried.values():
        assert 1 <= len(path) <= len(regs)
        rising = path[:-1] if len(path) < len(regs) else path
        assert all(a < b for a, b in itertools.pairwise(rising))
        if len(path) < len(regs):  # it stopped where the score fell
            assert path[-1] <= path[-2]


class _Scored:
    """A stand-in for a fitted mixture: fixed held-out log-densities."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows

    def score_samples(self, X):
        return self.rows


@pytest.mark.parametrize(("shift", "tried"), [(2.0, [1, 2]), (0.01, [1, 2, 3])])
def test_a_clearly_worse_k_ends_the_search_and_a_tie_does_not(shift, tried):
    from tqdm.auto import tqdm

    from ldelib.models._selection import Search

    # K = 1 is best; K = 2 trails it by `shift` nats on every held-out row, plus noise
    # of sd 1 (paired se about 0.03 on 1,000 rows); K >= 3 would be best of all.
    noise = np.random.default_rng(0).normal(size=1000)
    rows = {1: np.zeros(1000), 2: noise - shift, 3: np.ones(1000), 4: np.ones(1000)}
    fitted: list[int] = []

    def fit(k, reg, start, deadline=None):
        fitted.append(k)
        return _Scored(rows[k])

    with tqdm(disable=True) as bar:
        search = Search(fit, np.zeros((1000, 1)), [1, 2, 3, 4], [0.1], 0.0, False)
        best = search.run(None, bar).best
    assert fitted[: len(tried)] == tried
    if shift > 1:
        assert fitted == [1, 2] and best == (1, 0.1)
    else:
        assert best[0] == 3


def test_clearly_worse_is_a_paired_comparison():
    from ldelib.models._selection import clearly_worse

    rng = np.random.default_rng(0)
    best = rng.normal(0, 5, 1000)  # rows differ far more than the two models do
    assert clearly_worse(best - 0.01, best)  # behind on every row
    assert not clearly_worse(best + 0.01, best)
    noisy = best + rng.normal(0, 5, 1000)  # paired se about 0.16
    assert not clearly_worse(noisy - 0.1, best)
    assert clearly_worse(noisy - 1.0, best)


def test_many_components_with_strong_regularisation_are_found():
    # 48 tight clusters of 10 rows each in 12-D: without a ridge, every component
    # collapses onto its few rows; the joint search pairs many K with a strong ridge.
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (48, 12))
    X = np.repeat(centres, 14, axis=0) + rng.normal(0, 0.3, (48 * 14, 12))
    model = GMM("auto", reg_covar="auto", random_state=0).fit(X)
    assert model.n_components_ >= 40
    scores = model.candidate_scores_
    assert max(scores, key=scores.get) == (
        f"K={model.n_components_}, reg_covar={model.reg_covar_:g}"
    )


def _watch_em_precision(
    monkeypatch, single_fails_at: float = 0.0
) -> list[tuple[int, float, np.dtype, bool]]:
    """Record each EM fit of a GMM: (K, reg_covar, dtype of its rows, whether it failed).

    A fit on float32 rows with ``reg_covar <= single_fails_at`` fails as scikit-learn's
    does where a covariance is not positive definite in single precision (which rounding
    decides, so a test cannot count on real data to fail on every CPU).
    """
    import ldelib.models._em as em_module

    seen: list[tuple[int, float, np.dtype, bool]] = []
    fit_until = em_module.fit_until

    def watching(mixture, X, deadline):
        if X.dtype == np.float32 and mixture.reg_covar <= single_fails_at:
            seen.append((mixture.n_components, mixture.reg_covar, X.dtype, True))
            raise ValueError(
                "Fitting the mixture model failed because some components have "
                "ill-defined empirical covariance (for instance caused by singleton or "
                "collapsed samples). Try to decrease the number of components, increase "
                "reg_covar, or scale the input data."
            )
        seen.append((mixture.n_components, mixture.reg_covar, X.dtype, False))
        return fit_until(mixture, X, deadline)

    monkeypatch.setattr(em_module, "fit_until", watching)
    return seen


def test_the_search_runs_in_single_precision_and_chooses_as_in_double(mixture, monkeypatch):
    import ldelib.models._em as em_module

    _, train, test = mixture
    seen = _watch_em_precision(monkeypatch)
    model = GMM([1, 2, 3, 4], reg_covar=[1e-4, 1e-2], random_state=0).fit(train[:1500])
    *search, final = seen
    assert search and {dtype for _, _, dtype, _ in search} == {np.dtype(np.float32)}
    assert final[2] == np.float64  # the chosen mixture, refitted on every row
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(model, name).dtype == np.float64

    monkeypatch.setattr(em_module, "_SEARCH_DTYPE", np.float64)
    double = GMM([1, 2, 3, 4], reg_covar=[1e-4, 1e-2], random_state=0).fit(train[:1500])
    assert (model.n_components_, model.reg_covar_) == (double.n_components_, double.reg_covar_)
    assert model.candidate_scores_.keys() == double.candidate_scores_.keys()
    # EM stops once an iteration gains less than tol = 1e-3 nats per row: in single and
    # double precision it may stop an iteration apart, which moves a score by about that.
    for key, score in double.candidate_scores_.items():
        assert model.candidate_scores_[key] == pytest.approx(score, abs=2e-3)
    assert model.score(test) == pytest.approx(double.score(test), abs=2e-3)


def test_a_covariance_singular_in_single_precision_is_fitted_in_double(mixture, monkeypatch):
    import ldelib.models._em as em_module

    train = mixture[1][:1500]
    seen = _watch_em_precision(monkeypatch, single_fails_at=1e-4)
    model = GMM([2, 3], reg_covar=[1e-4, 1e-2], random_state=0).fit(train)
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    # K = 2 fails at 1e-4 in single precision and is retried in double at once; K = 3
    # then goes to double there directly; the stronger ridge stays in single precision.
    assert seen[:2] == [(2, 1e-4, f32, True), (2, 1e-4, f64, False)]
    assert (3, 1e-4, f32, True) not in seen and (3, 1e-4, f64, False) in seen
    assert [dtype for _, reg, dtype, _ in seen[:-1] if reg == 1e-2] == [f32, f32]
    assert seen[-1][2] == f64  # the refit of the choice
    assert np.isfinite(model.score_samples(train)).all()
    # From the same seed (a k-means start of K = 2), each retry is the fit a search in
    # double makes, to the bit.
    monkeypatch.setattr(em_module, "_SEARCH_DTYPE", np.float64)
    double = GMM([2, 3], reg_covar=[1e-4, 1e-2], random_state=0).fit(train)
    for k in (2, 3):
        key = f"K={k}, reg_covar=0.0001"
        assert model.candidate_scores_[key] == double.candidate_scores_[key]


def test_a_search_paused_by_its_deadline_resumes_where_it_stopped():
    from ldelib.models._selection import Search

    # Along K = 1's path the score rises with reg_covar; K = 3 is best, K = 4 clearly
    # worse: uninterrupted, the search fits (1, .1), (1, 1), (2, .1), ... and ends at K = 4.
    def score(k, reg):
        return {1: 0.0, 2: 1.0, 3: 2.0, 4: -5.0}[k] + (0.5 if (k, reg) == (1, 1.0) else 0.0)

    def search(calls):
        def fit(k, reg, start, deadline):
            calls.append((k, reg, start, deadline))
            return _Scored(np.full(50, score(k, reg)) + np.linspace(-1e-3, 1e-3, 50))

        return Search(fit, np.zeros((50, 1)), [1, 2, 3, 4], [0.1, 1.0], 0.0, True)

    whole_calls, calls = [], []
    whole = search(whole_calls).run(None)
    assert whole.finished and whole.best == (3, 0.1)

    # A deadline already passed: the first fit runs, the second does not start.
    paused = search(calls).run(0.0)
    assert not paused.finished and [c[:2] for c in calls] == [(1, 0.1)]
    assert not paused.run(1.0).finished and len(calls) == 1  # still past it
    resumed = paused.run(None)
    assert resumed.finished
    assert [c[:2] for c in calls] == [c[:2] for c in whole_calls]
    # The path goes on from its last solution, and the fits get the new deadline.
    assert calls[1][2] is not None and calls[1][2].rows is not None
    assert calls[0][3] == 0.0 and all(c[3] is None for c in calls[1:])
    assert resumed.scores == whole.scores and resumed.best == whole.best


def test_a_search_counts_the_k_that_did_not_improve():
    from ldelib.models._selection import Search

    # K = 2 ties K = 1 (not better, not clearly worse): one stall; K = 3 improves.
    rows = {1: np.zeros(50), 2: np.linspace(-1, 1, 50), 3: np.ones(50)}
    search = Search(
        lambda k, reg, start, deadline: _Scored(rows[k]),
        np.zeros((50, 1)),
        [1, 2, 3],
        [0.1],
        0.0,
        False,
    )
    stalls = []
    run = search.fit

    def fit(k, reg, start, deadline):
        stalls.append(search.stalled)
        return run(k, reg, start, deadline)

    search.fit = fit
    assert search.run(None).finished and search.best == (3, 0.1)
    assert stalls == [0, 0, 1] and search.stalled == 0
    # What the last K to improve gained over the best before it (K = 1's, not K = 2's).
    assert search.last_gain == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("levels", "tried"),
    [
        ({80: 1.0, 160: None, 320: 2.0}, [80, 160]),  # 160 ties: 320 is not tried
        ({80: 1.0, 160: 2.0, 320: None, 640: 3.0}, [80, 160, 320]),  # 320 ties: the end
        ({80: 1.0, 160: 2.0, 320: 3.0, 640: 4.0}, [80, 160, 320, 640]),
    ],
)
def test_a_search_above_patient_k_goes_on_only_from_a_k_that_improved(levels, tried):
    from ldelib.models._selection import PATIENT_UP_TO, Search

    noise = np.random.default_rng(0).normal(0, 1, 50)
    fitted = []

    def fit(k, reg, start, deadline):
        fitted.append(k)
        if levels[k] is None:  # a tie: not better, and not clearly worse
            return _Scored(noise[::-1] + levels[fitted[-2]] - 1e-9)
        return _Scored(noise + levels[k])

    search = Search(fit, np.zeros((50, 1)), [80, 160, 320, 640], [0.1], 0.0, False)
    assert search.run(None).finished and fitted == tried
    assert PATIENT_UP_TO == 160


def test_a_search_knows_no_gain_before_a_second_k_improves():
    from ldelib.models._selection import Search

    search = Search(
        lambda k, reg, start, deadline: _Scored(np.full(50, float(k))),
        np.zeros((50, 1)),
        [1, 2, 4],
        [0.1],
        0.0,
        False,
    )
    assert search.run(0.0).last_gain is None  # paused after K = 1
    assert search.run(None).finished and search.last_gain == pytest.approx(2.0)


def test_a_search_times_the_fits_of_its_last_improving_k_not_its_pauses(monkeypatch):
    from types import SimpleNamespace

    from ldelib.models import _selection

    clock = [0.0]
    monkeypatch.setattr(_selection, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def fit(k, reg, start, deadline):
        clock[0] += k  # each fit of K takes K seconds
        return _Scored(np.full(50, k + reg))  # the stronger reg better: both are fitted

    search = _selection.Search(fit, np.zeros((50, 1)), [1, 2, 4], [0.1, 0.2], 0.0, True)
    search.run(None, fits=5)  # paused between K = 4's two fits
    assert search.last_s == pytest.approx(4.0)  # K = 2's two fits
    clock[0] += 100.0
    assert search.run(None).finished
    assert search.last_gain == pytest.approx(2.0) and search.last_s == pytest.approx(8.0)


def _cut_first_runs(monkeypatch) -> None:
    """The first run of the search, and of the averaging of its choice, find the
    deadline passed (after the search's first fit); later runs keep theirs."""
    from ldelib.models import _averaging, _selection

    for cls in (_selection.Search, _averaging.Averaging):
        calls: list[object] = []

        def cut_first(self, deadline, *args, _run=cls.run, _calls=calls, **kwargs):
            _calls.append(deadline)
            return _run(self, 0.0 if len(_calls) == 1 else deadline, *args, **kwargs)

        monkeypatch.setattr(cls, "run", cut_first)


def test_a_stalled_held_out_search_grows_the_average_of_its_best_first(mixture, monkeypatch):
    from ldelib.models._em import HeldOutSearch

    _, train, _ = mixture
    _cut_first_runs(monkeypatch)
    gmm = GMM("auto", reg_covar="auto", n_average=3, random_state=0)
    search = HeldOutSearch(gmm, train[:2000], train[2000:])
    inner = search._search
    assert inner is not None and inner.stalled == 0 and inner.best[0] == 1
    assert inner.averaging is not None and len(inner.averaging.kept) == 1
    tried, deadline = len(inner.scores), time.perf_counter() + 600
    inner.stalled = 1  # as after a K that did not beat K = 1
    assert search.improving
    for kept in (2, 3):  # one mixture a call, none of them a candidate
        larger = search.resume(deadline, fits=1)
        assert search.moved and len(inner.scores) == tried
        assert inner.averaging is not None and len(inner.averaging.kept) == kept
        assert larger is not None and larger.n_average_ == kept
        assert larger.n_components_ == kept  # K = 1 each
    # The average is full: the search goes on, and a new best is averaged afresh.
    search.resume(deadline, fits=1)
    assert len(inner.scores) == tried + 1
    larger = search.resume(deadline)
    assert search.finished and larger is not None and larger.n_components_ >= 3
    # The new best's average (at its weakest tied regularisation: a mixture of its path).
    assert inner.averaging is not None
    assert any(inner.averaging.kept[0] is m for _, m, _ in inner.best_path)
    assert larger.n_average_ == len(inner.averaging.kept) == 3


@pytest.mark.parametrize(("n_average", "improving"), [(1, False), (3, True), ("auto", True)])
def test_a_stalled_held_out_search_goes_on_only_to_average(
    mixture, monkeypatch, n_average, improving
):
    from ldelib.models._em import HeldOutSearch

    _, train, _ = mixture
    _cut_first_runs(monkeypatch)
    gmm = GMM("auto", reg_covar="auto", n_average=n_average, random_state=0)
    search = HeldOutSearch(gmm, train[:2000], train[2000:])
    assert search.improving  # cut after K = 1, which improved
    assert search._search is not None
    search._search.stalled = 1  # as after a K that did not improve
    assert search.improving is improving


def test_a_held_out_search_cut_by_its_budget_goes_on_when_resumed(mixture, monkeypatch):
    from ldelib.models import _selection
    from ldelib.models._em import HeldOutSearch, fit_held_out

    _, train, test = mixture
    Z, held_out = train[:2000], train[2000:]
    whole = fit_held_out(GMM("auto", reg_covar="auto", random_state=0), Z, held_out)

    # The first run's deadline has passed after one fit: the search stops at K = 1.
    run, runs = _selection.Search.run, []

    def cut_first(self, deadline, bar=None, fits=None):
        runs.append(deadline)
        return run(self, 0.0 if len(runs) == 1 else deadline, bar, fits)

    monkeypatch.setattr(_selection.Search, "run", cut_first)
    search = HeldOutSearch(GMM("auto", reg_covar="auto", random_state=0), Z, held_out)
    assert not search.finished and search.estimator.n_components_ == 1
    # One fit a call (the LDE's turns): one candidate more each time, the best so far.
    tried = len(search._search.scores)
    stepped = search.resume(time.perf_counter() + 600, fits=1)
    assert search.moved and len(search._search.scores) == tried + 1
    assert stepped is None or stepped.n_components_ > 1
    larger = search.resume(time.perf_counter() + 600)
    assert search.finished and larger is not None
    # The estimator keeps its fit; the copy holds the search's new choice.
    assert search.estimator.n_components_ == 1
    assert larger.n_components_ >= 3  # the target's three clusters
    assert len(larger.candidate_scores_) > len(search.estimator.candidate_scores_) == 1
    assert larger.score(test) > search.estimator.score(test) + 1.0
    # As good as the search that was never cut (its k-means starts draw differently).
    np.testing.assert_allclose(larger.score(test), whole.score(test), atol=0.02)
    assert search.resume(None) is None and not search.moved  # nothing left to search


def test_em_in_rounds_is_one_uninterrupted_em(mixture, monkeypatch):
    from ldelib.models import _selection

    train = mixture[1]
    whole = GaussianMixture(3, init_params="random", random_state=0, max_iter=60, tol=1e-8)
    whole.fit(train)
    monkeypatch.setattr(_selection, "_ROUND_S", 1e-12)  # one EM iteration per round
    rounds = _selection.fit_until(
        GaussianMixture(3, init_params="random", random_state=0, max_iter=60, tol=1e-8),
        train,
        time.perf_counter() + 1e3,
    )
    assert rounds.n_iter_ == whole.n_iter_ > 5
    assert rounds.converged_ == whole.converged_
    for name in ("weights_", "means_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(rounds, name), getattr(whole, name))
    assert rounds.lower_bound_ == whole.lower_bound_
    assert rounds.max_iter == 60 and not rounds.warm_start


def test_a_spent_budget_fits_one_candidate_once(mixture):
    train = mixture[1]
    model = GMM("auto", reg_covar="auto", max_time=1e-9, random_state=0).fit(train)
    # The first candidate: one component at the weakest ridge, one EM iteration on the
    # training part, then one on every row.
    assert model.candidate_scores_.keys() == {"K=1, reg_covar=0.0001"}
    assert (model.n_components_, model.reg_covar_, model.n_iter_) == (1, 1e-4, 1)
    assert np.isfinite(model.score_samples(train)).all()


def _timed_fit(train, per_component, fitted=None, deadlines=None):
    """Search fits of ``train`` that say their first round took ``per_component`` seconds
    per component; each records its K and deadline in ``fitted`` and ``deadlines``."""

    def fit(k, reg, start, deadline=None):
        if fitted is not None:
            fitted.append(k)
        if deadlines is not None:
            deadlines.append(deadline)
        gm = GaussianMixture(k, reg_covar=reg, random_state=0, max_iter=5).fit(train[:300])
        gm.first_round_s_ = per_component * k
        return gm

    return fit


@pytest.mark.parametrize(("budget_s", "tried"), [(15.0, [1]), (25.0, [1, 2]), (None, [1, 2])])
def test_no_new_k_starts_whose_first_round_would_end_past_the_deadline(mixture, budget_s, tried):
    # Each new K's first round (a k-means and one EM step) is said to take 10 s per
    # component: with 15 s left after K = 1, K = 2 (20 s) would overrun, with 25 s not.

    from ldelib.models import _selection

    _, train, test = mixture
    fitted = []
    fit = _timed_fit(train, 10.0, fitted)
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    _selection.Search(fit, test[:300], [1, 2], [1e-3], 0.0, False).run(deadline)
    assert fitted == tried


def test_the_search_leaves_time_for_the_refit_of_its_choice(mixture):
    # First rounds of 10 s per component, as in the test above; the refit of K = 1 is said
    # to take 20 s: with 25 s left, K = 2 would end 5 s before the deadline, 15 s into
    # the refit's time.
    from ldelib.models import _selection

    _, train, test = mixture
    fitted, deadlines = [], []
    fit = _timed_fit(train, 10.0, fitted, deadlines)
    deadline = time.perf_counter() + 25.0
    search = _selection.Search(
        fit, test[:300], [1, 2], [1e-3], 0.0, False, lambda best: 2.0 * best.first_round_s_
    )
    search.run(deadline)
    assert fitted == [1] and not search.finished
    # The first fit (no choice yet to refit) had the whole budget.
    assert deadlines == [deadline]


def test_a_larger_k_leaves_time_for_its_own_refit(mixture):
    # The refit of K = 1 is said to take 2 s; a K = 4 that beat it would take four times
    # that: its fit must end 8 s before the deadline, not 2 s.
    from ldelib.models import _selection

    _, train, test = mixture
    deadlines = []
    fit = _timed_fit(train, 1.0, deadlines=deadlines)
    deadline = time.perf_counter() + 60.0
    _selection.Search(
        fit, test[:300], [1, 4], [1e-3], 0.0, False, lambda best: 2.0 * best.first_round_s_
    ).run(deadline)
    assert deadlines == [deadline, pytest.approx(deadline - 8.0)]


def test_the_refit_estimate_scales_the_choices_first_round(mixture):
    from ldelib.models import _em

    _, train, test = mixture
    # Under a budget only: EM is then timed (without one, nothing needs the estimate).
    estimator = GMM("auto", reg_covar="auto", max_time=600, random_state=0)
    began = time.perf_counter()
    search = _em.HeldOutSearch(estimator, train, test)
    searched = time.perf_counter() - began
    # At most the double-precision cost of the whole search, and linear in the rows.
    once = search.refit_seconds(len(train))
    assert 0 < once < _em._DOUBLE_COST * searched
    assert search.refit_seconds(3 * len(train)) == pytest.approx(3 * once)


def test_em_on_small_matrices_runs_on_one_blas_thread(monkeypatch, mixture):
    """Threads cost more than they save on D x D products (see _em.em_threads)."""
    from threadpoolctl import threadpool_info

    import ldelib.models._em as em_module

    seen: list[set[int]] = []
    fit = em_module.GaussianMixture.fit

    def watching(self, X, y=None):
        seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
        return fit(self, X, y)

    monkeypatch.setattr(em_module.GaussianMixture, "fit", watching)
    before = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    GMM([1, 2], random_state=0).fit(mixture[1][:300])
    assert seen and all(threads == {1} for threads in seen)  # numpy and scipy: OpenBLAS
    after = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert after == before  # the limit is lifted afterwards
    assert em_module.em_threads(em_module._ONE_THREAD_MAX_DIM + 1).__class__.__name__ == (
        "nullcontext"
    )


def test_the_weakest_regularisation_tied_with_the_best_is_the_averages():
    from ldelib.models._selection import Search

    # K = 2 is best; along its path reg 0.01 ties 0.1 (within noise), 0.001 is clearly
    # worse; K = 1's weaker regs do not count.
    noise, other = np.random.default_rng(0).normal(size=(2, 200))
    rows = {
        (1, 0.001): np.full(200, -9.0),
        (1, 0.01): np.full(200, -8.0),
        (1, 0.1): np.full(200, -7.0),
        (1, 1.0): np.full(200, -7.5),
        (2, 0.001): noise - 1.0,
        (2, 0.01): other - 0.01 - other.mean() + noise.mean(),
        (2, 0.1): noise,
        (2, 1.0): noise - 3.0,
    }
    search = Search(
        lambda k, reg, start, deadline: _Scored(rows[k, reg]),
        np.zeros((200, 1)),
        [1, 2],
        [0.001, 0.01, 0.1, 1.0],
        0.0,
        True,
    )
    assert search.run(None).finished and search.best == (2, 0.1)
    reg, mixture, tied = search.weakest_tied()
    assert reg == 0.01 and np.array_equal(tied, rows[2, 0.01])
    assert np.array_equal(mixture.score_samples(None), rows[2, 0.01])


def test_an_averaged_gmm_averages_at_the_weakest_tied_regularisation(monkeypatch):
    from ldelib.models import _selection

    # One mixture's held-out score: a tie at the two weakest regularisations.
    calls = []
    tied = _selection.Search.weakest_tied

    def spy(self):
        calls.append(self.best)
        return tied(self)

    monkeypatch.setattr(_selection.Search, "weakest_tied", spy)
    X = np.random.default_rng(0).normal(size=(600, 3))
    same = {"reg_covar": "auto", "init_params": "kmeans", "random_state": 0}  # same search
    averaged = GMM(3, n_average=2, **same).fit(X)
    one = GMM(3, **same).fit(X)
    assert len(calls) == 1 and one.reg_covar_ == calls[0][1]  # not asked of one mixture
    assert averaged.reg_covar_ <= one.reg_covar_


def test_an_average_at_the_tied_regularisation_gives_way_when_it_does_not_beat_the_choice(
    monkeypatch,
):
    from ldelib.models import _averaging, _selection

    # The tied candidate scores below the choice, and its averaging ends at once.
    tied_regs = []

    def tied(self):
        weaker = min(r for r in self.regs if r != self.best[1])
        tied_regs.append(weaker)
        return weaker, self.best_mixture, self.best_rows - 1.0

    run = _averaging.Averaging.run

    def stalled(self, deadline, fits=None):
        if self.reg not in tied_regs:
            return run(self, deadline, fits)
        self.finished = True
        return self

    monkeypatch.setattr(_selection.Search, "weakest_tied", tied)
    monkeypatch.setattr(_averaging.Averaging, "run", stalled)
    X = np.random.default_rng(0).normal(size=(600, 3))
    same = {"reg_covar": "auto", "init_params": "kmeans", "random_state": 0}  # same search
    one = GMM(3, **same).fit(X)
    averaged = GMM(3, n_average="auto", **same).fit(X)
    assert tied_regs and tied_regs[0] != one.reg_covar_
    assert averaged.reg_covar_ == one.reg_covar_  # the choice's, not the tied one's


def test_a_held_out_search_leaves_the_refit_of_its_choice_to_its_caller(mixture, monkeypatch):
    from ldelib.models import _em
    from ldelib.models._em import HeldOutSearch

    _, train, _ = mixture
    rows = []
    fit_until = _em.fit_until

    def spy(estimator, X, deadline):
        rows.append(X.dtype)
        return fit_until(estimator, X, deadline)

    monkeypatch.setattr(_em, "fit_until", spy)
    kwargs = {"reg_covar": "auto", "n_average": 3, "random_state": 0}
    GMM("auto", **kwargs).fit(train)
    assert rows[-3:] == [np.float64] * 3  # GMM refits the three to every row, in double
    rows.clear()
    model = HeldOutSearch(GMM("auto", **kwargs), train[:2000], train[2000:]).estimator
    assert rows and np.float64 not in rows  # as fitted, in single precision
    # Normalised in double: the sum of n weights is within n roundings of one.
    n = len(model.weights_)
    assert model.n_average_ == 3
    assert model.weights_.sum() == pytest.approx(1.0, rel=0, abs=n * np.finfo(float).eps)
