"""Tests for ldelib.nn.mmd, the one MMD implementation (GMMN loss and two-sample metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldelib.nn.mmd import (
    DEFAULT_BANDWIDTH_FACTORS,
    gaussian_kernel,
    median_distance,
    mmd2,
    mmd2_from_blocks,
    squared_distances,
)

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics


def test_kernel_is_the_same_with_and_without_autograd():
    z = 3.0 * torch.randn(60, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d2 = squared_distances(z, z)
    bw = [0.05, 0.5, 2.0]
    plain = gaussian_kernel(d2, bw)
    tracked = gaussian_kernel(d2.clone().requires_grad_(True), bw)
    assert tracked.requires_grad
    torch.testing.assert_close(plain, tracked.detach(), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(
            gaussian_kernel(d2.clone().requires_grad_(True), bw), plain, rtol=0, atol=0
        )
    expected = sum(np.exp(np.maximum(-d2.numpy() / (2 * s**2), -60.0)) for s in bw)
    np.testing.assert_allclose(plain.numpy(), expected, rtol=1e-14)
    assert plain.min() >= len(bw) * np.exp(-60.0) * (1 - 1e-12)  # the floor, never 0


@pytest.mark.parametrize("n", [2, 3, 4, 9, 10])
def test_median_distance_is_numpys_median(n):
    x = np.random.default_rng(n).normal(size=(n, 3))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    got = median_distance(torch.from_numpy(d**2))
    assert got == np.median(d[np.triu_indices(n, 1)])


def test_mmd2_is_mmd2_from_blocks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64)
    pairs = ((x, x), (y, y), (x, y))
    blocks = [gaussian_kernel(squared_distances(a, b), [1.0]) for a, b in pairs]
    for unbiased in (True, False):
        torch.testing.assert_close(
            mmd2(x, y, [1.0], unbiased=unbiased),
            mmd2_from_blocks(*blocks, unbiased=unbiased),
            rtol=1e-12,
            atol=1e-14,
        )


def test_default_bandwidth_factors():
    assert DEFAULT_BANDWIDTH_FACTORS == (0.25, 0.5, 1.0, 2.0, 4.0)
