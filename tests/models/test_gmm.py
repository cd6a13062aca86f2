from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from scipy import integrate
from sklearn.mixture import GaussianMixture

import ldelib
from ldelib import GMM
from ldelib._validation import InvalidParameterError
from ldelib.datasets import make_target
from ldelib.metrics import mmd_permutation_test

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def mixture():
    target = make_target("gmm", 4, n_components=3)
    return target, target.sample(3000, 0), target.sample(3000, 1)


@pytest.fixture(scope="module")
def fits(mixture):
    _, train, _ = mixture
    return {ct: GMM(3, covariance_type=ct, random_state=0).fit(train) for ct in COVARIANCE_TYPES}


def as_sklearn(model: GMM) -> GaussianMixture:
    """A scikit-learn mixture holding the model's (standardised) parameters."""
    gm = GaussianMixture(model.n_components_, covariance_type=model.covariance_type)
    gm.weights_ = model.weights_
    gm.means_ = model.means_
    gm.covariances_ = model.covariances_
    gm.precisions_cholesky_ = model.precisions_cholesky_
    return gm


def sklearn_log_prob(model: GMM, X: np.ndarray) -> np.ndarray:
    Z = (X - model.mean_) / model.scale_
    return as_sklearn(model).score_samples(Z) - np.log(model.scale_).sum()


# ------------------------------------------------------------------ log-density
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_matches_sklearn(fits, mixture, covariance_type):
    model = fits[covariance_type]
    _, _, test = mixture
    X = np.concatenate([test[:500], 3.0 * test[:50]])  # include points far from the data
    assert np.abs(model.score_samples(X) - sklearn_log_prob(model, X)).max() < 1e-10


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_unstandardised_fit_is_sklearns_fit(mixture, covariance_type):
    _, train, test = mixture
    model = GMM(2, covariance_type=covariance_type, standardize=False, random_state=0).fit(train)
    # The first draw of the fit's generator seeds the one EM run.
    seed = int(np.random.default_rng(0).integers(2**31 - 1))
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=seed).fit(train)
    np.testing.assert_allclose(model.means_, gm.means_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.precisions_cholesky_, gm.precisions_cholesky_, rtol=1e-12)
    assert np.abs(model.score_samples(test) - gm.score_samples(test)).max() < 1e-10
    assert model.lower_bound_ == pytest.approx(gm.lower_bound_, abs=1e-12)
    assert model.n_iter_ == gm.n_iter_
    assert model.converged_ is bool(gm.converged_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tensor_path_agrees_and_is_differentiable(fits, mixture, covariance_type):
    model = fits[covariance_type]
    X = mixture[2][:40]
    Xt = torch.tensor(X, requires_grad=True)
    out = model.log_prob(Xt)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float64
    assert np.abs(out.detach().numpy() - model.score_samples(X)).max() < 1e-10
    out.sum().backward()
    grad = Xt.grad.numpy()
    assert np.isfinite(grad).all()
    # Each row's log-density depends on that row only: one central difference per column.
    h = 1e-6
    fd = np.empty_like(X)
    for j in range(X.shape[1]):
        step = np.zeros(X.shape[1])
        step[j] = h
        fd[:, j] = (model.score_samples(X + step) - model.score_samples(X - step)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_float32_tensor_in_float32_out(fits, mixture):
    X = torch.tensor(mixture[2][:5], dtype=torch.float32)
    out = fits["full"].log_prob(X)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), fits["full"].score_samples(X.double().numpy()), 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_stays_on_cuda(fits, mixture):
    X = torch.tensor(mixture[2][:100], device="cuda", requires_grad=True)
    out = fits["full"].log_prob(X)
    assert out.device.type == "cuda"
    assert (
        np.abs(out.detach().cpu().numpy() - fits["full"].score_samples(mixture[2][:100])).max()
        < 1e-10
    )
    out.sum().backward()
    assert torch.isfinite(X.grad).all()


def test_log_prob_is_finite_far_from_the_data(fits):
    far = np.array([[1e6, -1e6, 0.0, 0.0], [-1e4, 1e4, 1e4, 1e4], [0.0, 1e5, 0.0, 0.0]])
    for model in fits.values():
        assert np.isfinite(model.score_samples(far)).all()


def test_log_likelihood_is_in_the_users_units(mixture):
    _, train, test = mixture
    a, b = np.array([3.0, 0.5, 10.0, 0.1]), np.array([5.0, -2.0, 100.0, 0.0])
    base = GMM(3, random_state=1).fit(train)
    moved = GMM(3, random_state=1).fit(train * a + b)
    np.testing.assert_allclose(
        moved.score_samples(test * a + b), base.score_samples(test) - np.log(a).sum(), atol=1e-8
    )


def test_one_feature():
    X = np.random.default_rng(0).normal(size=(300, 1)) * 3 + 1
    for ct in COVARIANCE_TYPES:
        model = GMM(2, covariance_type=ct, random_state=0).fit(X)
        assert np.abs(model.score_samples(X) - sklearn_log_prob(model, X)).max() < 1e-10
        assert model.sample(5).shape == (5, 1)


# --------------------------------------------------------------------- fitting
def test_recovers_a_known_mixture(fits, mixture):
    target, _, test = mixture
    model = fits["full"]
    truth = target.log_prob(test).mean()
    assert model.score(test) == pytest.approx(truth, abs=0.02)
    assert model.lower_bound_ == pytest.approx(model.score(mixture[1]), abs=1e-3)
    # The parameters too, matched by nearest mean, in data units.
    means = model.mean_ + model.scale_ * model.means_
    match = np.argmin(np.linalg.norm(target.means[:, None] - means[None], axis=-1), axis=1)
    assert sorted(match) == [0, 1, 2]
    np.testing.assert_allclose(means[match], target.means, atol=0.05)
    np.testing.assert_allclose(model.weights_[match], target.weights, atol=0.02)
    covariances = model.covariances_ * np.outer(model.scale_, model.scale_)
    np.testing.assert_allclose(covariances[match], target.covariances, atol=0.05)


@pytest.mark.parametrize("selection", ["likelihood", "bic"])
def test_model_selection_finds_the_true_number_of_components(selection):
    # In 8-D a spare full-covariance component costs 44 parameters, so held-out
    # likelihood separates K = 3 from K > 3 clearly (in 4-D the scores of K >= 3 lie
    # within split noise of each other).
    target = make_target("gmm", 8, n_components=3)
    train, test = target.sample(3000, 0), target.sample(2000, 1)
    model = GMM([1, 2, 3, 4, 5], selection=selection, random_state=0).fit(train)
    assert model.n_components_ == 3
    assert model.weights_.shape == (3,)
    assert set(model.candidate_scores_) == {"1", "2", "3", "4", "5"}
    scores = model.candidate_scores_
    best = max if selection == "likelihood" else min
    assert best(scores, key=scores.get) == "3"
    # The chosen K is refitted on all rows: about (parameters / 2n) nats below the truth.
    assert model.score(test) == pytest.approx(target.log_prob(test).mean(), abs=0.05)


def test_held_out_scores_are_in_data_units(mixture):
    target, train, _ = mixture
    a = np.array([10.0, 10.0, 0.1, 1.0])
    base = GMM([2, 3], random_state=0).fit(train)
    moved = GMM([2, 3], random_state=0).fit(train * a)
    for k in ("2", "3"):
        assert moved.candidate_scores_[k] == pytest.approx(
            base.candidate_scores_[k] - np.log(a).sum(), abs=1e-8
        )
    # The held-out score of the true K is an honest log-likelihood of unseen rows.
    assert base.candidate_scores_["3"] == pytest.approx(target.log_prob(train).mean(), abs=0.1)


def test_single_k_does_no_selection(fits):
    assert fits["full"].candidate_scores_ == {}
    assert fits["full"].n_components_ == 3


def test_candidates_are_deduplicated_and_sorted(mixture):
    model = GMM((3, 1, 3), selection="bic", random_state=0).fit(mixture[1])
    assert list(model.candidate_scores_) == ["1", "3"]


def test_same_seed_same_model(mixture):
    _, train, test = mixture
    one = GMM([2, 3], random_state=5).fit(train)
    two = GMM([2, 3], random_state=5).fit(train)
    np.testing.assert_array_equal(one.score_samples(test), two.score_samples(test))
    np.testing.assert_array_equal(one.sample(5, random_state=1), two.sample(5, random_state=1))
    assert one.candidate_scores_ == two.candidate_scores_


def test_global_random_state_is_untouched(mixture):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    model = GMM([1, 2], random_state=None).fit(mixture[1][:300])
    model.sample(10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(x, y) for x, y in zip(numpy_state, after, strict=True))


def test_verbose_shows_a_progress_bar(mixture, capsys):
    GMM([1, 2], random_state=0, verbose=0).fit(mixture[1][:300])
    assert capsys.readouterr().err == ""
    GMM([1, 2], random_state=0, verbose=1).fit(mixture[1][:300])
    err = capsys.readouterr().err
    assert "GMM" in err and "valid ll=" in err and "nats/row" in err


def test_verbose_reports_nats_per_row_of_the_data(mixture, capsys):
    """One fit: a finished bar with the training log-likelihood in the data's units."""
    X = mixture[1][:300] * 100.0
    model = GMM(2, random_state=0, verbose=1).fit(X)
    err = capsys.readouterr().err
    assert "0it" not in err and "1/1" in err
    shown = float(re.search(r"train ll=(\S+) nats/row", err).group(1))
    assert shown == pytest.approx(model.score(X), abs=0.01)


# -------------------------------------------------------------------- sampling
def test_samples_are_in_random_order(fits):
    model = fits["full"]
    X = model.sample(4000, random_state=0)
    assert X.shape == (4000, 4)
    labels = as_sklearn(model).predict((X - model.mean_) / model.scale_)
    assert not np.all(np.diff(labels) >= 0)
    # As many label changes as independent draws give, not K - 1.
    expected_changes = (len(X) - 1) * (1 - np.sum(model.weights_**2))
    assert np.count_nonzero(np.diff(labels)) > 0.9 * expected_changes
    first, second = (np.bincount(half, minlength=3) / len(half) for half in np.split(labels, 2))
    np.testing.assert_allclose(first, second, atol=0.05)
    np.testing.assert_allclose(np.bincount(labels) / len(labels), model.weights_, atol=0.03)


def full_covariances(model: GMM) -> np.ndarray:
    cov, k, d = model.covariances_, model.n_components_, model.n_features_in_
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: cov[:, None, None] * np.eye(d),
    }[model.covariance_type]()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_samples_have_the_fitted_moments(fits, covariance_type):
    model = fits[covariance_type]
    Z = (model.sample(30000, random_state=0) - model.mean_) / model.scale_
    labels = as_sklearn(model).predict(Z)
    covariances = full_covariances(model)
    for k in range(model.n_components_):
        rows = Z[labels == k]
        np.testing.assert_allclose(rows.mean(0), model.means_[k], atol=0.02)
        np.testing.assert_allclose(np.cov(rows.T), covariances[k], atol=0.02)


def test_sampling_is_reproducible(fits):
    model = fits["diag"]
    np.testing.assert_array_equal(model.sample(7, random_state=3), model.sample(7, random_state=3))
    assert not np.array_equal(model.sample(7), model.sample(7))


def test_samples_pass_a_two_sample_test(fits, mixture):
    _, _, test = mixture
    samples = fits["full"].sample(500, random_state=0)
    assert mmd_permutation_test(samples, test[:500], random_state=0).p_value > 0.01
    # The test has power here: a mixture with too few components fails it.
    wrong = GMM(2, random_state=0).fit(mixture[1]).sample(500, random_state=0)
    assert mmd_permutation_test(wrong, test[:500], random_state=0).p_value < 0.01


def test_density_integrates_to_one_in_2d():
    target = make_target("gmm", 2, n_components=3)
    X = target.sample(2000, 0)
    model = GMM(3, random_state=0).fit(X)
    lo, hi = X.min(0) - 3.0, X.max(0) + 3.0
    g0, g1 = np.linspace(lo[0], hi[0], 301), np.linspace(lo[1], hi[1], 301)
    a, b = np.meshgrid(g0, g1, indexing="ij")
    density = np.exp(model.score_samples(np.stack([a.ravel(), b.ravel()], 1))).reshape(a.shape)
    total = integrate.simpson(integrate.simpson(density, x=g1, axis=1), x=g0)
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_and_log_prob_agree_with_log_prob(fits, covariance_type):
    model = fits[covariance_type]
    X, log_prob = model.sample_and_log_prob(500, random_state=3)
    assert X.shape == (500, 4)
    np.testing.assert_allclose(log_prob, model.score_samples(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(X, model.sample(500, random_state=3))


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n_components", 0),
        ("n_components", -2),
        ("n_components", []),
        ("n_components", [2, 0]),
        ("n_components", 2.5),
        ("n_components", "3"),
        ("n_components", True),
        ("n_components", [2, 2.0]),
        ("n_components", None),
        ("covariance_type", "banana"),
        ("selection", "aic"),
        ("validation_fraction", 0.0),
        ("validation_fraction", 1.0),
        ("validation_fraction", -0.1),
        ("validation_fraction", "0.2"),
        ("n_init", 0),
        ("max_iter", 0),
        ("reg_covar", -1e-6),
        ("reg_covar", []),
        ("reg_covar", "x"),
        ("reg_covar", [1e-3, -1.0]),
        ("reg_covar", True),
        ("tol", -1.0),
        ("init_params", "spectral"),
        ("random_state", "seed"),
        ("random_state", -1),
        ("tol", float("nan")),
        ("n_init", np.float64(2.0)),
        ("standardize", "yes"),
        ("verbose", None),
        ("verbose", -1),
    ],
)
def test_bad_parameters(mixture, param, value):
    model = GMM(2).set_params(**{param: value})
    with pytest.raises(ValueError, match=param):
        model.fit(mixture[1][:50])
    assert not hasattr(model, "n_components_")  # nothing fitted is left behind


@pytest.mark.parametrize(
    ("params", "first", "members"),
    [
        ({}, "kmeans", None),  # one mixture: k-means' start
        ({"n_average": 3}, "kmeans", "k-means++"),  # the mixtures added: varied starts
        (
            {"n_average": 3, "n_components": [1, 2], "reg_covar": [1e-4, 1e-2]},
            "kmeans",
            "k-means++",
        ),
        ({"n_average": 3, "init_params": "kmeans"}, "kmeans", "kmeans"),
        ({"n_average": 3, "init_params": "random"}, "random", "random"),
    ],
)
def test_auto_initialisation_seeds_the_mixtures_added_to_an_average_by_kmeans_plus_plus(
    mixture, monkeypatch, params, first, members
):
    from ldelib.models import _averaging, _em

    inits = []
    fit_until = _em.fit_until

    def spy(em, X, deadline):
        # Starts from a solution (refits) are "random_from_data", whose draws are unused.
        if em.init_params != "random_from_data":
            inits.append(em.init_params)
        return fit_until(em, X, deadline)

    monkeypatch.setattr(_em, "fit_until", spy)
    added = []
    run = _averaging.Averaging.run

    def counted(self, deadline, fits=None):
        before = len(inits)
        run(self, deadline, fits)
        added.extend(inits[before:])
        return self

    monkeypatch.setattr(_averaging.Averaging, "run", counted)
    model = GMM(**{"n_components": 2, "random_state": 0, **params}).fit(mixture[1][:500])
    if members is None:
        assert inits == [first] and model.n_average_ == 1
        return
    if "reg_covar" in params:  # a search by likelihood: its candidates, then the average
        assert model.n_average_ == 3 and added == [members, members]
        assert set(inits[: len(inits) - 2]) == {first}
    else:  # a fixed K: the first mixture, then two more
        assert inits == [first, members, members] and model.n_average_ == 3


@pytest.mark.parametrize("searched", [True, False])
def test_the_search_stops_em_early_only_where_a_refit_follows(mixture, monkeypatch, searched):
    from ldelib.models import _em

    tols = {"start": [], "member": [], "refit": []}
    fit_until = _em.fit_until

    def spy(em, X, deadline):
        kind = {"random_from_data": "refit", "k-means++": "member"}.get(em.init_params, "start")
        tols[kind].append(em.tol)
        return fit_until(em, X, deadline)

    monkeypatch.setattr(_em, "fit_until", spy)
    params = {"n_components": [1, 2], "reg_covar": [1e-4, 1e-2]} if searched else {}
    model = GMM(**{"n_components": 2, "n_average": 3, "tol": 1e-4, "random_state": 0, **params})
    model.fit(mixture[1][:500])
    assert model.n_average_ == 3
    if searched:
        # Every fit of the search (candidates, the warm starts along a K's
        # regularisations, mixtures averaged) at 10 x tol; its choice, each of the
        # three mixtures, refitted to every row at tol from where it stopped.
        assert tols["start"] == [pytest.approx(1e-3)] * 2
        assert tols["member"] == [pytest.approx(1e-3)] * 2
        assert tols["refit"][-3:] == [1e-4] * 3
        assert tols["refit"][:-3] == [pytest.approx(1e-3)] * (len(tols["refit"]) - 3)
    else:  # fitted to every row at once: no refit follows
        assert tols["start"] == [1e-4] and tols["member"] == [1e-4] * 2 and tols["refit"] == []


def test_bic_cannot_choose_the_regularisation(mixture):
    model = GMM([2, 3], selection="bic", reg_covar=[1e-4, 1e-2])
    with pytest.raises(ValueError, match="BIC cannot choose reg_covar"):
        model.fit(mixture[1][:50])
    assert not hasattr(model, "reg_covar_")


@pytest.mark.parametrize("reg_covar", ["auto", (1e-4, 1e-2)])
def test_bic_refuses_regularisation_candidates_in_any_form(mixture, reg_covar):
    model = GMM([2, 3], selection="bic", reg_covar=reg_covar)
    with pytest.raises(InvalidParameterError, match="BIC cannot choose reg_covar") as info:
        model.fit(mixture[1][:50])
    assert "parameter reg_covar must be" in str(info.value)
    assert "selection='bic'" in str(info.value)


def test_a_bad_parameter_says_what_is_valid(mixture):
    with pytest.raises(InvalidParameterError) as info:
        GMM(covariance_type="banana").fit(mixture[1][:50])
    assert str(info.value) == (
        "The GMM parameter covariance_type must be one of 'full', 'tied', 'diag' or "
        "'spherical'; got 'banana'."
    )


def test_numpy_scalars_work_as_python_ones(mixture, tmp_path):
    # A grid search passes numpy scalars: as candidates too, and through a save.
    train = mixture[1][:600]
    model = GMM(
        [np.int64(1), np.int64(3)],
        reg_covar=[np.float32(1e-4), np.float64(1e-2)],
        n_init=np.int32(1),
        max_iter=np.int64(50),
        tol=np.float32(1e-3),
        validation_fraction=np.float64(0.25),
        random_state=np.int64(0),
    ).fit(train)
    assert model.n_components_ == 3 and type(model.n_components_) is int
    assert type(model.reg_covar_) is float
    path = tmp_path / "gmm.ldelib"
    model.save(path)
    np.testing.assert_array_equal(
        ldelib.load(path).score_samples(train[:5]), model.score_samples(train[:5])
    )


def test_more_components_than_rows_is_refused():
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="needs at least 6 samples to fit, got n_samples = 5"):
        GMM(6).fit(X)
    # Selection by likelihood fits on the rows left after the held-out part.
    with pytest.raises(ValueError, match=r"must hold at least 5 \(one per component"):
        GMM([2, 5], random_state=0).fit(X)
    assert GMM([2, 5], selection="bic", random_state=0).fit(X).n_components_ in (2, 5)


# ------------------------------------------------------------------ persistence
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_save_load_round_trip(tmp_path, mixture, covariance_type):
    _, train, test = mixture
    model = GMM([2, 3], covariance_type=covariance_type, random_state=0).fit(train[:1000])
    path = tmp_path / "gmm.ldelib"
    model.save(path)
    for loaded in (GMM.load(path), ldelib.load(path)):
        assert isinstance(loaded, GMM)
        assert loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.score_samples(test), model.score_samples(test))
        np.testing.assert_array_equal(
            loaded.sample(6, random_state=1), model.sample(6, random_state=1)
        )
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
        for name in ("n_components_", "candidate_scores_", "converged_", "n_iter_"):
            assert getattr(loaded, name) == getattr(model, name)
        assert loaded.lower_bound_ == model.lower_bound_


def test_pickle_round_trip(fits, mixture):
    model = fits["tied"]
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.score_samples(mixture[2]), model.score_samples(mixture[2]))
    # The sampling stream travels too: the next draws are the same.
    np.testing.assert_array_equal(copy.sample(5), model.sample(5))
