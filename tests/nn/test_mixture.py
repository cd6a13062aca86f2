from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from ldelib.nn.mixture import mixture_log_prob, mixture_params, mixture_sample

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics


def _params(seed: int, k: int = 4, shape: tuple[int, ...] = ()) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, 3 * k, generator=g, dtype=torch.float64)


@given(seed=st.integers(0, 10_000), x=st.floats(-50, 50), k=st.integers(1, 6))
@settings(max_examples=50, deadline=None)
def test_log_prob_matches_scipy(seed, x, k):
    params = mixture_params(_params(seed, k), k)
    log_w = params.log_weights.numpy()
    mu, sigma = params.means.numpy(), params.log_scales.exp().numpy()
    expected = special.logsumexp(log_w + stats.norm.logpdf(x, mu, sigma))
    got = mixture_log_prob(torch.tensor(x, dtype=torch.float64), params).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_log_prob_far_from_data_is_finite():
    params = mixture_params(_params(0), 4)
    x = torch.tensor([1e6, -1e6], dtype=torch.float64)
    assert torch.isfinite(
        mixture_log_prob(x, params.__class__(*(p.expand(2, -1) for p in params)))
    ).all()


@pytest.mark.parametrize("parametrization", ["softplus", "exp"])
def test_density_integrates_to_one(parametrization):
    params = mixture_params(_params(3), 4, parametrization=parametrization)

    def density(x: float) -> float:
        return mixture_log_prob(torch.tensor(x, dtype=torch.float64), params).exp().item()

    total, _ = integrate.quad(density, -np.inf, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_min_scale_bounds_the_scales():
    raw = torch.full((12,), -1e4, dtype=torch.float64)
    params = mixture_params(raw, 4, min_scale=1e-3)
    torch.testing.assert_close(
        params.log_scales.exp(), torch.full((4,), 1e-3, dtype=torch.float64)
    )


def test_sampling_matches_density():
    params = mixture_params(_params(5), 4)
    n = 20_000
    g = torch.Generator().manual_seed(0)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    e = torch.randn(n, generator=g, dtype=torch.float64)
    batch = params.__class__(*(p.expand(n, -1) for p in params))
    x = mixture_sample(batch, u, e).numpy()

    w = params.log_weights.exp().numpy()
    mu, sigma = params.means.numpy(), params.log_scales.exp().numpy()

    def cdf(v: np.ndarray) -> np.ndarray:
        return (w * stats.norm.cdf(v[:, None], mu, sigma)).sum(axis=1)

    assert stats.kstest(x, cdf).pvalue > 1e-3
    # The check has power: a sampler whose means are off by a tenth fails it.
    wrong = params.__class__(params.log_weights, params.means + 0.1, params.log_scales)
    x_wrong = mixture_sample(wrong.__class__(*(p.expand(n, -1) for p in wrong)), u, e).numpy()
    assert stats.kstest(x_wrong, cdf).pvalue < 1e-6


def test_unknown_parametrization():
    with pytest.raises(ValueError, match="parametrization"):
        mixture_params(_params(0), 4, parametrization="sigmoid")
