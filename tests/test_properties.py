"""Property tests: shapes, array types and dtypes, finiteness far from the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ldelib import CausalConvMDN

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics

FAST = {"max_epochs": 3, "hidden_channels": 8, "n_components": 3, "device": "cpu"}
DIMS = (1, 3, 6)


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], CausalConvMDN]:
    rng = np.random.default_rng(0)
    return {
        (arch, d): CausalConvMDN(
            **{**FAST, "hidden_channels": 8 if arch == "residual" else None},
            architecture=arch,
            random_state=0,
        ).fit(rng.normal(size=(120, d)) * np.arange(1, d + 1))
        for arch in ("residual", "paper")
        for d in DIMS
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, np.ndarray]:
    d = draw(st.sampled_from(DIMS))
    n = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bound = 1e4 if dtype == np.float32 else 1e6
    values = st.floats(-bound, bound, allow_nan=False, width=32 if dtype == np.float32 else 64)
    return d, draw(arrays(dtype, (n, d), elements=values))


@given(batch=batches(), arch=st.sampled_from(["residual", "paper"]), as_tensor=st.booleans())
@settings(max_examples=60, deadline=None)
def test_log_prob_shape_type_and_finiteness(models, batch, arch, as_tensor):
    d, X = batch
    model = models[(arch, d)]
    out = model.log_prob(torch.from_numpy(X) if as_tensor else X)
    if as_tensor:
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.from_numpy(X).dtype
        out = out.detach().numpy()
    else:
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float64
    assert out.shape == (len(X),)
    if arch == "residual":
        # Bounded scales: the density is finite everywhere, however far from the data.
        assert np.isfinite(out).all()
    else:
        assert not np.isnan(out).any()


@given(batch=batches())
@settings(max_examples=30, deadline=None)
def test_rows_are_scored_independently(models, batch):
    d, X = batch
    model = models[("residual", d)]
    full = model.score_samples(X)
    # Another batch blocks the float32 network's products differently, and a row's score
    # moves by rounding: each of the D conditionals' parameters accumulates kernel-2 taps x
    # 8 channels + a bias = 17 products a layer, on terms up to the score's magnitude (or
    # of order 1: log scales and weights).
    tol = (2 * FAST["hidden_channels"] + 1) * d * np.finfo(np.float32).eps
    np.testing.assert_allclose(model.score_samples(X[::-1]), full[::-1], rtol=tol, atol=tol)
    np.testing.assert_allclose(model.score_samples(X[:1]), full[:1], rtol=tol, atol=tol)


@given(n=st.integers(1, 64), d=st.sampled_from(DIMS), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_sample_shapes_and_consistency(models, n, d, seed):
    model = models[("residual", d)]
    X, log_prob = model.sample_and_log_prob(n, random_state=seed)
    assert X.shape == (n, d)
    assert X.dtype == np.float64
    np.testing.assert_allclose(log_prob, model.score_samples(X), rtol=1e-4, atol=1e-3)
