"""Prefix marginals (log_prob(X, n_dims=k)) and conditional draws (sample(given=...))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.exceptions import NotFittedError

from ldelib import GMM, GMMN, BaseDensityEstimator, CausalConvMDN
from ldelib.nn.causal import ResidualCausalNet

TRAIN = {"max_epochs": 8, "hidden_channels": 16, "device": "cpu", "random_state": 0}


def three_d(n: int = 900, seed: int = 0) -> np.ndarray:
    """Two correlated clusters in 3-D, columns in very different units."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n // 2, 3)) @ np.array([[1, 0.6, 0.2], [0, 1, -0.4], [0, 0, 1]]) + 2
    b = rng.normal(size=(n - n // 2, 3)) * [0.5, 1.5, 0.7] - 1
    # Column 2 has the largest spread: the "variance" ordering starts with it.
    return np.concatenate([a, b]) * [1.0, 0.1, 30.0]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return three_d()


MODELS = {
    "gmm-full": lambda: GMM(3, random_state=0),
    "gmm-diag": lambda: GMM(3, covariance_type="diag", random_state=0),
    "gmm-tied": lambda: GMM(2, covariance_type="tied", random_state=0),
    "gmm-spherical": lambda: GMM(2, covariance_type="spherical", random_state=0),
    "mdn-anchored": lambda: CausalConvMDN(n_components=3, ordering="variance", **TRAIN),
    "mdn-random": lambda: CausalConvMDN(n_components=3, init="random", **TRAIN),
    "mdn-paper": lambda: CausalConvMDN(n_components=3, architecture="paper", max_epochs=3),
}


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request, data):
    return MODELS[request.param]().fit(data)


def prefix(model, X: np.ndarray, k: int) -> np.ndarray:
    return X[:, model.prefix_columns(k)]


def test_prefix_columns_follow_the_ordering(fitted, data):
    order = getattr(fitted, "ordering_", np.arange(3))
    for k in range(4):
        columns = fitted.prefix_columns(k)
        assert columns.dtype == np.int64
        np.testing.assert_array_equal(columns, order[:k])
    if isinstance(fitted, CausalConvMDN) and fitted.ordering == "variance":
        assert fitted.prefix_columns(1).tolist() == [2]  # the largest spread first


@pytest.mark.parametrize("n_dims", [-1, 4, 1.0, True, None])
def test_bad_prefix_columns(n_dims, data):
    model = GMM(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match="from 0 to 3"):
        model.prefix_columns(n_dims)
    with pytest.raises(NotFittedError):
        GMM(2).prefix_columns(1)


# ----------------------------------------------------------------- marginals
def test_all_dimensions_is_the_full_density(fitted, data):
    np.testing.assert_array_equal(fitted.log_prob(data[:50], n_dims=3), fitted.log_prob(data[:50]))


def test_rows_of_the_prefix_or_of_full_width_agree(fitted, data):
    for k in (1, 2):
        wide = fitted.log_prob(data[:50], n_dims=k)
        narrow = fitted.log_prob(prefix(fitted, data[:50], k), n_dims=k)
        np.testing.assert_allclose(narrow, wide, rtol=1e-6, atol=1e-6)
        # Full-width rows: the columns outside the prefix are never read.
        other = data[:50].copy()
        other[:, fitted._ordering()[k:]] = 1e6
        np.testing.assert_allclose(fitted.log_prob(other, n_dims=k), wide, rtol=1e-6, atol=1e-6)


def test_a_one_dimensional_marginal_integrates_to_one(fitted, data):
    column = fitted._ordering()[0]
    lo, hi = data[:, column].min(), data[:, column].max()
    pad = 3 * (hi - lo)

    def density(t: float) -> float:
        return float(np.exp(fitted.log_prob(np.array([[t]]), n_dims=1)[0]))

    total, _ = integrate.quad(density, lo - pad, hi + pad, limit=400)
    assert total == pytest.approx(1.0, abs=2e-3)


def test_a_two_dimensional_marginal_integrates_to_one(fitted, data):
    cols = fitted._ordering()[:2]
    lo, hi = data[:, cols].min(0), data[:, cols].max(0)
    pad = 2.5 * (hi - lo)
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 500)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 500)
    grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(fitted.log_prob(grid, n_dims=2)).reshape(len(g0), len(g1))
    total = integrate.trapezoid(integrate.trapezoid(density, g1, axis=1), g0)
    assert total == pytest.approx(1.0, abs=5e-3)


def test_the_prefix_density_is_the_marginal_of_the_full_density(fitted, data):
    """Monte Carlo over the integrated-out dimension, with a wide Gaussian proposal."""
    order = fitted._ordering()
    rest = order[2]
    mean, sd = data[:, rest].mean(), 3 * data[:, rest].std()
    rng = np.random.default_rng(1)
    draws = rng.normal(mean, sd, 200_000)
    log_q = stats.norm(mean, sd).logpdf(draws)
    for row in data[:3]:
        full = np.repeat(row[None], len(draws), axis=0)
        full[:, rest] = draws
        weights = np.exp(fitted.log_prob(full) - log_q)
        estimate = np.log(weights.mean())
        error = weights.std() / weights.mean() / np.sqrt(len(draws))
        assert error < 0.01
        assert fitted.log_prob(row[None], n_dims=2)[0] == pytest.approx(estimate, abs=5 * error)


def test_a_tensor_gives_a_differentiable_tensor(fitted, data):
    x = torch.tensor(prefix(fitted, data[:7], 2), requires_grad=True)
    log_prob = fitted.log_prob(x, n_dims=2)
    assert isinstance(log_prob, torch.Tensor) and log_prob.shape == (7,)
    np.testing.assert_allclose(
        log_prob.detach().numpy(), fitted.log_prob(data[:7], n_dims=2), rtol=1e-5, atol=1e-5
    )
    log_prob.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_scoring_to_a_file_takes_n_dims(fitted, data, tmp_path):
    out = fitted.score_samples(data[:20], out=tmp_path / "ll.npy", n_dims=2)
    np.testing.assert_allclose(out, fitted.log_prob(data[:20], n_dims=2))


@pytest.mark.parametrize(
    ("n_dims", "match"),
    [(0, "from 1 to 3"), (4, "from 1 to 3"), (True, "from 1 to 3"), ("2", "from 1 to 3")],
)
def test_bad_n_dims(n_dims, match, data):
    model = GMM(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match=match):
        model.log_prob(data[:2], n_dims=n_dims)


def test_rows_of_another_width_are_refused(data):
    model = GMM(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match="rows of the 1 prefix dimensions or of all 3"):
        model.log_prob(data[:2, :2], n_dims=1)
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob([[np.nan]], n_dims=1)


# ----------------------------------------------------------- conditional draws
def exact_conditional(model: GMM, a: np.ndarray):
    """Weights, means and covariances of p(x_{k:} | x_{:k} = a) of a GMM fitted without
    standardisation, written out independently of the model's code."""
    k = len(a)
    weights, means, covs = [], [], []
    for w, mu, cov in zip(model.weights_, model.means_, model._full_covariances(), strict=True):
        gain = cov[k:, :k] @ np.linalg.inv(cov[:k, :k])
        weights.append(w * stats.multivariate_normal(mu[:k], cov[:k, :k]).pdf(a))
        means.append(mu[k:] + gain @ (a - mu[:k]))
        covs.append(cov[k:, k:] - gain @ cov[:k, k:])
    weights = np.array(weights) / np.sum(weights)
    return weights, np.array(means), np.array(covs)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_conditional_draws_match_the_exact_conditional(data, covariance_type):
    model = GMM(3, covariance_type=covariance_type, standardize=False, random_state=0)
    model.fit(data / [1.0, 0.1, 30.0])
    a = np.array([0.5])
    weights, means, covs = exact_conditional(model, a)
    draws = model.sample(20_000, random_state=0, given=a)
    np.testing.assert_array_equal(draws[:, 0], 0.5)
    mean = weights @ means
    cov = sum(
        w * (c + np.outer(m - mean, m - mean))
        for w, m, c in zip(weights, means, covs, strict=True)
    )
    np.testing.assert_allclose(draws[:, 1:].mean(0), mean, atol=4 * np.sqrt(cov.max() / 20_000))
    # About 5 standard errors of a covariance estimate from 20,000 mixture draws.
    np.testing.assert_allclose(np.cov(draws[:, 1:].T), cov, rtol=0.05, atol=0.05)

    # The last dimension given the first two: a 1-D mixture, checked by its CDF.
    a2 = np.array([0.5, -0.2])
    weights, means, covs = exact_conditional(model, a2)
    draws = model.sample(5_000, random_state=1, given=a2)[:, 2]

    def cdf(x: np.ndarray) -> np.ndarray:
        parts = [
            w * stats.norm(m[0], np.sqrt(c[0, 0])).cdf(x)
            for w, m, c in zip(weights, means, covs, strict=True)
        ]
        return np.sum(parts, axis=0)

    assert stats.kstest(draws, cdf).pvalue > 0.01


def test_mdn_conditional_draws_follow_its_own_conditional_density(data):
    """p(x_2 | x_0, x_1) = p(x) / p(x_0, x_1), from the model's two log_probs."""
    model = CausalConvMDN(n_components=3, **TRAIN).fit(data)
    a = data[5, :2]
    draws = model.sample(4_000, random_state=0, given=a)
    np.testing.assert_array_equal(draws[:, :2], np.broadcast_to(a, (4_000, 2)))
    grid = np.linspace(data[:, 2].min() - 200, data[:, 2].max() + 200, 20_001)
    rows = np.column_stack([np.full((len(grid), 2), a), grid])
    density = np.exp(model.log_prob(rows) - model.log_prob(a[None], n_dims=2))
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-3)
    assert stats.kstest(draws[:, 2], lambda x: np.interp(x, grid, cdf)).pvalue > 0.01


def test_one_prefix_per_draw_and_reproducible_draws(fitted, data):
    given = prefix(fitted, data[:6], 2)
    draws = fitted.sample(6, random_state=3, given=given)
    np.testing.assert_array_equal(prefix(fitted, draws, 2), given)
    np.testing.assert_array_equal(draws, fitted.sample(6, random_state=3, given=given))
    assert np.isfinite(draws).all()
    # The whole row given (in the model's order): returned as it is; an empty prefix:
    # an ordinary draw.
    whole = fitted.sample(2, given=data[0, fitted._ordering()])
    np.testing.assert_array_equal(whole, np.broadcast_to(data[0], (2, 3)))
    np.testing.assert_array_equal(
        fitted.sample(4, random_state=5, given=np.empty(0)), fitted.sample(4, random_state=5)
    )


def test_a_cached_conditional_draw_takes_one_step_per_remaining_dimension(monkeypatch):
    X = np.random.default_rng(0).normal(size=(300, 8))
    # A network that draws (an anchored one that no epoch improved draws as its mixture).
    model = CausalConvMDN(n_components=2, init="random", **TRAIN).fit(X)
    calls = {"step": 0}
    step = ResidualCausalNet.step

    def counting(self, x, cache):
        calls["step"] += 1
        return step(self, x, cache)

    monkeypatch.setattr(ResidualCausalNet, "step", counting)
    model.sample(5, given=X[0, :3])
    assert calls["step"] == 8 - 3
    calls["step"] = 0
    model.sample(5)
    assert calls["step"] == 8


@pytest.mark.parametrize(
    ("given", "error", "match"),
    [
        (np.zeros(4), ValueError, r"shape \(k,\) or \(n_samples, k\)"),
        (np.zeros((3, 2)), ValueError, r"\(5, k\)"),
        (np.zeros((1, 1, 1)), ValueError, "shape"),
        ([np.nan], ValueError, "NaN"),
        (["a"], TypeError, "real numbers"),
    ],
)
def test_bad_given(data, given, error, match):
    model = GMM(2, random_state=0).fit(data)
    with pytest.raises(error, match=match):
        model.sample(5, given=given)


def test_a_model_without_conditionals_says_so(data):
    model = GMMN(hidden_sizes=(8,), noise_dim=2, max_epochs=1, random_state=0).fit(data)
    # A generative model without a density has no conditionals, nor the keyword.
    assert not isinstance(model, BaseDensityEstimator)
    with pytest.raises(TypeError, match="given"):
        model.sample(2, given=data[0, :1])
