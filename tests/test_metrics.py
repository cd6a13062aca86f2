"""Tests for ldelib.metrics against direct (slow, obviously correct) computations."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ldelib.metrics import (
    MNIST_PARZEN_BANDWIDTHS,
    TFD_PARZEN_BANDWIDTHS,
    mean_log_likelihood,
    mmd2_unbiased,
    mmd_permutation_test,
    nats_per_dim,
    nats_to_bits_per_dim,
    parzen_log_likelihood,
)

# --------------------------------------------------------------------------- helpers


def scipy_parzen(samples, X, h):
    """Per-point Parzen log-likelihood, one scipy Gaussian per kernel centre."""
    d = samples.shape[1]
    comps = np.stack(
        [multivariate_normal(mean=s, cov=h**2 * np.eye(d)).logpdf(X) for s in samples]
    ).reshape(len(samples), len(X))
    return logsumexp(comps, axis=0) - math.log(len(samples))


def direct_parzen(samples, X, h):
    """Same quantity from explicit differences (no ||x||^2 - 2x.s + ||s||^2 expansion)."""
    d2 = ((X[:, None, :] - samples[None, :, :]) ** 2).sum(-1)
    d = samples.shape[1]
    return (
        logsumexp(-d2 / (2 * h**2), axis=1)
        - math.log(len(samples))
        - d / 2 * math.log(2 * math.pi * h**2)
    )


def loop_mmd2(X, Y, bandwidths):
    def k(a, b):
        return sum(math.exp(-np.sum((a - b) ** 2) / (2 * s**2)) for s in bandwidths)

    m, n = len(X), len(Y)
    xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(X[i], Y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def loop_median_distance(Z):
    return np.median(
        [np.linalg.norm(Z[i] - Z[j]) for i, j in itertools.combinations(range(len(Z)), 2)]
    )


# --------------------------------------------------------------------------- Parzen


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_parzen_matches_scipy(offset):
    rng = np.random.default_rng(0)
    samples = offset + rng.normal(size=(37, 5))
    X = offset + rng.normal(size=(23, 5))
    res = parzen_log_likelihood(samples, X, bandwidth=0.7)
    expected = scipy_parzen(samples, X, 0.7)
    np.testing.assert_allclose(res.log_likelihoods, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(direct_parzen(samples, X, 0.7), expected, rtol=0, atol=1e-10)
    assert res.mean == pytest.approx(expected.mean(), abs=1e-10)
    assert res.std_err == pytest.approx(expected.std() / math.sqrt(len(X)), abs=1e-10)
    assert res.bandwidth == 0.7 and res.bandwidths is None and res.validation_scores is None
    assert isinstance(res.mean, float) and isinstance(res.log_likelihoods, np.ndarray)


def test_parzen_far_test_points_do_not_underflow():
    # Every kernel value underflows in float64 here; the shifted log-sum-exp must not.
    samples = np.zeros((3, 2))
    X = np.array([[60.0, 0.0]])
    res = parzen_log_likelihood(samples, X, bandwidth=0.5)
    expected = -(60.0**2) / (2 * 0.25) - math.log(2 * math.pi * 0.25)
    assert res.log_likelihoods[0] == pytest.approx(expected, rel=1e-12)


def test_validation_scores_match_scipy_and_argmax():
    rng = np.random.default_rng(1)
    samples, X_valid, X_test = (rng.normal(size=(40, 3)) for _ in range(3))
    grid = [0.2, 0.35, 0.5, 0.7, 1.0, 1.5]
    res = parzen_log_likelihood(samples, X_test, X_valid=X_valid, bandwidths=grid)
    expected = np.array([scipy_parzen(samples, X_valid, h).mean() for h in grid])
    np.testing.assert_allclose(res.validation_scores, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(res.bandwidths, grid)
    assert res.bandwidth == grid[int(np.argmax(expected))]
    np.testing.assert_allclose(
        res.log_likelihoods, scipy_parzen(samples, X_test, res.bandwidth), atol=1e-10
    )


def test_bandwidth_selection_analytic_optimum():
    # One kernel centre at 0 and validation points all at radius r in D dims give
    # score(h) = -r^2 / (2 h^2) - D/2 log(2 pi h^2), maximised at exactly h = r / sqrt(D).
    # Test points sit at radius 2r, whose own optimum (2.0) is also on the grid, so
    # selecting on the wrong set, or by min instead of max, fails.
    d, r = 4, 2.0
    rng = np.random.default_rng(2)
    dirs = rng.normal(size=(50, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    grid = [0.25, 0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 2.0, 4.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = parzen_log_likelihood(
            np.zeros((1, d)), 2 * r * dirs, X_valid=r * dirs, bandwidths=grid
        )
    assert res.bandwidth == 1.0
    h = np.asarray(grid)
    analytic = -(r**2) / (2 * h**2) - d / 2 * np.log(2 * np.pi * h**2)
    np.testing.assert_allclose(res.validation_scores, analytic, rtol=1e-12)


def test_bandwidth_selection_gaussian_case_interior():
    rng = np.random.default_rng(3)
    samples, X_valid = rng.normal(0, 2.0, size=(2, 400, 2))
    grid = np.geomspace(0.05, 5.0, 15)
    res = parzen_log_likelihood(samples, X_valid[:5], X_valid=X_valid, bandwidths=grid)
    brute = np.array([direct_parzen(samples, X_valid, h).mean() for h in grid])
    best = int(np.argmax(brute))
    assert 0 < best < len(grid) - 1  # a genuine interior maximum, not a grid edge
    assert brute[best] - np.delete(brute, best).max() > 1e-3  # and a clear winner
    assert res.bandwidth == grid[best]


def test_default_grid_and_edge_warning():
    rng = np.random.default_rng(4)
    samples = 3.0 * rng.normal(size=(300, 2))
    res = parzen_log_likelihood(samples, samples[:10], X_valid=3.0 * rng.normal(size=(300, 2)))
    scale = math.sqrt(np.mean(np.var(samples, axis=0)))
    np.testing.assert_allclose(res.bandwidths, scale * np.logspace(-2, 0.5, 21))
    assert res.bandwidth in res.bandwidths[1:-1]
    with pytest.warns(UserWarning, match="edge of the grid"):
        parzen_log_likelihood(samples, samples[:10], X_valid=samples, bandwidths=[10.0, 20.0])


def test_batching_gives_same_answer():
    rng = np.random.default_rng(5)
    samples, X, V = rng.random((53, 6)), rng.random((29, 6)), rng.random((31, 6))
    grid = [0.1, 0.2, 0.3]
    results = [
        parzen_log_likelihood(samples, X, X_valid=V, bandwidths=grid, batch_size=b)
        for b in (1, 7, 16, 10_000)
    ]
    for r in results[1:]:
        np.testing.assert_allclose(r.log_likelihoods, results[0].log_likelihoods, atol=1e-12)
        np.testing.assert_allclose(r.validation_scores, results[0].validation_scores, atol=1e-12)
    # The multi-bandwidth path agrees with scoring the validation set at one bandwidth.
    for h, score in zip(grid, results[0].validation_scores, strict=True):
        assert parzen_log_likelihood(samples, V, bandwidth=h).mean == pytest.approx(score)


def test_torch_inputs_and_readonly_result():
    rng = np.random.default_rng(6)
    samples, X = rng.normal(size=(20, 3)), rng.normal(size=(10, 3))
    ref = parzen_log_likelihood(samples, X, bandwidth=0.5)
    res = parzen_log_likelihood(torch.from_numpy(samples), torch.from_numpy(X), bandwidth=0.5)
    np.testing.assert_allclose(res.log_likelihoods, ref.log_likelihoods, atol=1e-12)
    res32 = parzen_log_likelihood(torch.tensor(samples, dtype=torch.float32), X, bandwidth=0.5)
    np.testing.assert_allclose(res32.log_likelihoods, ref.log_likelihoods, atol=1e-4)
    assert not res.log_likelihoods.flags.writeable
    frozen_samples = samples.copy()
    frozen_samples.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ro = parzen_log_likelihood(frozen_samples, X, bandwidth=0.5)
    np.testing.assert_allclose(ro.log_likelihoods, ref.log_likelihoods, atol=1e-12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.mean = 0.0  # type: ignore[misc]
    assert "nats" in str(res)


def test_protocol_grids():
    assert len(MNIST_PARZEN_BANDWIDTHS) == 21
    assert MNIST_PARZEN_BANDWIDTHS[0] == 0.1 and MNIST_PARZEN_BANDWIDTHS[-1] == 0.3
    assert TFD_PARZEN_BANDWIDTHS[0] == 0.001 and TFD_PARZEN_BANDWIDTHS[-1] == 0.196
    np.testing.assert_allclose(np.diff(TFD_PARZEN_BANDWIDTHS), 0.005)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bandwidth": None}, "X_valid is required"),
        ({"bandwidth": 0.1, "X_valid": np.zeros((2, 3))}, "not both"),
        ({"bandwidth": 0.1, "bandwidths": [0.1]}, "not both"),
        ({"bandwidth": -1.0}, "strictly positive"),
        ({"bandwidth": [0.1, 0.2]}, "scalar"),
        ({"X_valid": np.zeros((2, 3)), "bandwidths": [0.1, np.nan]}, "strictly positive"),
        ({"X_valid": np.zeros((2, 3)), "bandwidths": []}, "non-empty"),
        ({"X_valid": np.zeros((2, 4))}, "same number of dimensions"),
        ({"bandwidth": 0.1, "batch_size": 0}, "batch_size"),
    ],
)
def test_parzen_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parzen_log_likelihood(np.ones((5, 3)), np.ones((4, 3)), **kwargs)


@pytest.mark.parametrize(
    ("samples", "X", "match"),
    [
        (np.ones((5, 3)), np.ones((4, 2)), "same number of dimensions"),
        (np.ones(5), np.ones((4, 1)), "2-D"),
        (np.ones((5, 3, 1)), np.ones((4, 3)), "2-D"),
        (np.ones((0, 3)), np.ones((4, 3)), "empty"),
        (np.ones((5, 3)), np.ones((4, 0)), "empty"),
        (np.full((5, 3), np.nan), np.ones((4, 3)), "NaN"),
        (np.ones((5, 3)), torch.full((4, 3), float("inf")), "NaN or infinite"),
        (np.ones((5, 3)), [["a", "b", "c"]], "numeric"),
    ],
)
def test_parzen_bad_arrays(samples, X, match):
    with pytest.raises(ValueError, match=match):
        parzen_log_likelihood(samples, X, bandwidth=0.1)


def test_default_grid_needs_spread():
    with pytest.raises(ValueError, match="identical"):
        parzen_log_likelihood(np.ones((5, 2)), np.ones((3, 2)), X_valid=np.ones((3, 2)))


# --------------------------------------------------------------------------- MMD


def test_mmd2_matches_double_loop():
    rng = np.random.default_rng(10)
    X, Y = rng.normal(size=(5, 3)), 0.5 + rng.normal(size=(7, 3))
    bw = [0.5, 2.0]
    assert mmd2_unbiased(X, Y, bandwidths=bw) == pytest.approx(loop_mmd2(X, Y, bw), abs=1e-12)
    sigma = loop_median_distance(np.vstack([X, Y]))
    default_bw = sigma * np.array([0.25, 0.5, 1, 2, 4])
    expected = loop_mmd2(X, Y, default_bw)
    assert mmd2_unbiased(X, Y) == pytest.approx(expected, abs=1e-12)
    res = mmd_permutation_test(X, Y, n_permutations=10, random_state=0)
    np.testing.assert_allclose(res.bandwidths, default_bw, rtol=1e-12)
    assert res.statistic == pytest.approx(expected, abs=1e-12)
    assert mmd2_unbiased(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(expected)


def test_mmd_matches_a_hand_written_reference_to_1e_12():
    # Explicit differences (no expanded ||a||^2 - 2a.b + ||b||^2), numpy's median and
    # the textbook U-statistic, against the torch kernel of ldelib.nn.mmd in float64.
    rng = np.random.default_rng(17)
    X, Y = rng.normal(size=(9, 3)), 2.0 + rng.normal(size=(11, 3))
    Z = np.vstack([X, Y])
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    sigma = np.median(np.sqrt(d2[np.triu_indices(len(Z), 1)]))
    bw = sigma * np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    K = sum(np.exp(-d2 / (2 * s**2)) for s in bw)
    m, n = len(X), len(Y)
    expected = (
        (K[:m, :m].sum() - np.trace(K[:m, :m])) / (m * (m - 1))
        + (K[m:, m:].sum() - np.trace(K[m:, m:])) / (n * (n - 1))
        - 2 * K[:m, m:].mean()
    )
    assert expected > 0.1  # far from 0, so a relative tolerance means something
    assert mmd2_unbiased(X, Y) == pytest.approx(expected, rel=1e-12)
    assert mmd2_unbiased(X, Y, bandwidths=bw) == pytest.approx(expected, rel=1e-12)
    res = mmd_permutation_test(X, Y, n_permutations=20, random_state=0)
    np.testing.assert_allclose(res.bandwidths, bw, rtol=1e-12)
    assert res.statistic == pytest.approx(expected, rel=1e-12)
    assert mmd2_unbiased(torch.from_numpy(X), Y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((4, 2), dtype=complex),
        torch.ones(4, 2, dtype=torch.complex64),
        np.array([[1.0, None], [2.0, 3.0]], dtype=object),
    ],
)
def test_metrics_refuse_non_real_input_with_value_error(bad):
    with pytest.raises(ValueError, match="real"):
        mmd2_unbiased(bad, np.ones((4, 2)))
    with pytest.raises(ValueError, match="real"):
        parzen_log_likelihood(np.ones((4, 2)), bad, bandwidth=0.1)


def test_mmd_takes_readonly_and_reversed_arrays_without_warnings():
    rng = np.random.default_rng(18)
    X, Y = rng.normal(size=(2, 12, 2))
    ref = mmd2_unbiased(X, Y)
    X_ro = X.copy()
    X_ro.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mmd2_unbiased(X_ro, Y[::-1]) == pytest.approx(ref, rel=1e-12)
        assert mmd2_unbiased(X.astype(np.float32), Y) == pytest.approx(ref, rel=1e-6)


def test_mmd2_same_distribution_near_zero_and_can_be_negative():
    rng = np.random.default_rng(11)
    values = [mmd2_unbiased(rng.normal(size=(60, 4)), rng.normal(size=(60, 4))) for _ in range(10)]
    assert max(abs(v) for v in values) < 0.05
    assert min(values) < 0  # an unbiased estimate of 0 must sometimes be negative
    assert mmd2_unbiased(rng.normal(size=(60, 4)), 1 + rng.normal(size=(60, 4))) > 0.2


def test_mmd2_is_unbiased():
    rng = np.random.default_rng(12)
    bw = [0.5, 1.0, 2.0]
    unbiased, biased = [], []
    for _ in range(400):
        X, Y = rng.normal(size=(2, 12, 2))
        unbiased.append(mmd2_unbiased(X, Y, bandwidths=bw))
        Z = np.vstack([X, Y])
        d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        K = sum(np.exp(-d2 / (2 * s**2)) for s in bw)
        biased.append(K[:12, :12].mean() + K[12:, 12:].mean() - 2 * K[:12, 12:].mean())
    u, b = np.array(unbiased), np.array(biased)
    assert abs(u.mean()) < 3 * u.std() / math.sqrt(len(u))
    # The same tolerance would reject the biased (V-statistic) estimator.
    assert b.mean() > 10 * b.std() / math.sqrt(len(b))


def test_permutation_test_detects_shift_and_accepts_null():
    rng = np.random.default_rng(13)
    X, Y, Y_shift = (rng.normal(size=(80, 3)) for _ in range(3))
    Y_shift[:, 0] += 1.5
    null = mmd_permutation_test(X, Y, random_state=0)
    alt = mmd_permutation_test(X, Y_shift, random_state=0)
    assert null.p_value >= 0.05
    assert alt.p_value < 0.01
    assert alt.p_value >= 1 / 501  # the +1 correction: never zero
    assert alt.statistic == pytest.approx(mmd2_unbiased(X, Y_shift), abs=1e-12)
    assert null.null_distribution.shape == (500,) and null.n_permutations == 500


def test_permutation_null_values_are_exact_split_statistics():
    # With m = n = 3 every relabelling is one of C(6, 3) = 20 splits; each vectorised null
    # value must equal the directly computed statistic of some split.
    rng = np.random.default_rng(14)
    Z = rng.normal(size=(6, 2))
    bw = [0.7, 1.5]
    exact = np.array(
        [
            loop_mmd2(Z[list(idx)], np.delete(Z, list(idx), axis=0), bw)
            for idx in itertools.combinations(range(6), 3)
        ]
    )
    res = mmd_permutation_test(Z[:3], Z[3:], n_permutations=200, bandwidths=bw, random_state=1)
    gaps = np.abs(res.null_distribution[:, None] - exact[None, :]).min(axis=1)
    assert gaps.max() < 1e-12
    expected_p = (1 + np.sum(res.null_distribution >= res.statistic - 1e-9)) / 201
    assert res.p_value == pytest.approx(expected_p)


def test_permutation_test_calibration():
    p_values = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        X, Y = rng.normal(size=(2, 25, 2))
        p_values.append(mmd_permutation_test(X, Y, n_permutations=200, random_state=seed).p_value)
    p = np.array(p_values)
    # Under H0 p is (discretised) uniform: expect ~4 of 40 below 0.1 and a mean near 0.5.
    assert np.sum(p < 0.1) <= 10
    assert np.sum(p < 0.5) >= 10
    assert 0.35 < p.mean() < 0.65


def test_permutation_test_rng_handling():
    rng = np.random.default_rng(15)
    X, Y = rng.normal(size=(2, 20, 2))
    state = np.random.get_state()  # noqa: NPY002 (checking it is untouched)
    a = mmd_permutation_test(X, Y, n_permutations=50, random_state=7)
    b = mmd_permutation_test(X, Y, n_permutations=50, random_state=np.random.default_rng(7))
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert a.p_value == b.p_value


@pytest.mark.parametrize(
    ("X", "Y", "kwargs", "match"),
    [
        (np.ones((1, 2)), np.ones((5, 2)), {}, "at least 2"),
        (np.ones((5, 2)), np.ones((5, 3)), {}, "same number of dimensions"),
        (np.ones((5, 2)), np.full((5, 2), np.nan), {}, "NaN"),
        (np.ones(5), np.ones((5, 1)), {}, "2-D"),
        (np.ones((5, 2)), np.ones((5, 2)), {}, "median"),
        (np.eye(3), np.eye(3), {"bandwidths": [0.0]}, "strictly positive"),
    ],
)
def test_mmd_bad_inputs(X, Y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmd2_unbiased(X, Y, **kwargs)
    with pytest.raises(ValueError, match=match):
        mmd_permutation_test(X, Y, n_permutations=5, **kwargs)


def test_mmd_bad_n_permutations():
    with pytest.raises(ValueError, match="n_permutations"):
        mmd_permutation_test(np.eye(3), np.eye(3) + 1, n_permutations=0)


# --------------------------------------------------------------------------- units


def test_unit_conversions():
    assert nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # An MNIST-scale NLL of 1000 nats over 784 pixels.
    assert nats_to_bits_per_dim(1000.0, 784) == pytest.approx(1000 / (784 * math.log(2)))
    assert nats_to_bits_per_dim(-5.0, 1) < 0  # the sign is kept
    np.testing.assert_allclose(
        nats_to_bits_per_dim(np.array([math.log(2), 2 * math.log(2)]), 1), [1.0, 2.0]
    )
    assert nats_per_dim(-16.0, 8) == -2.0
    assert isinstance(nats_per_dim(torch.tensor(-16.0), 8), float)
    assert nats_to_bits_per_dim(nats_per_dim(-80.0, 8) * 8, 8) == pytest.approx(
        -80 / (8 * math.log(2))
    )


def test_mean_log_likelihood():
    x = np.random.default_rng(16).normal(size=101)
    mean, se = mean_log_likelihood(x)
    assert mean == pytest.approx(x.mean()) and se == pytest.approx(x.std() / math.sqrt(101))
    _, se1 = mean_log_likelihood(torch.from_numpy(x), ddof=1)
    assert se1 == pytest.approx(x.std(ddof=1) / math.sqrt(101))
    assert mean_log_likelihood([3.0]) == (3.0, 0.0)


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (nats_to_bits_per_dim, (1.0, 0), "n_dims"),
        (nats_to_bits_per_dim, (1.0, True), "n_dims"),
        (nats_per_dim, (1.0, 2.5), "n_dims"),
        (nats_per_dim, (np.nan, 2), "NaN"),
        (mean_log_likelihood, ([],), "non-empty"),
        (mean_log_likelihood, ([1.0, -np.inf],), "infinite"),
        (mean_log_likelihood, (np.ones((2, 2)),), "1-D"),
        (mean_log_likelihood, ([1.0], 1), "ddof"),
    ],
)
def test_unit_helpers_bad_inputs(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)
