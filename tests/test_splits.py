"""ldelib._splits: training/validation splits, and torch seeded from a fit's stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldelib._splits import seeded, split_positions, train_validation_split


def test_split_keeps_rows_on_both_sides():
    X = np.arange(20.0).reshape(10, 2)
    train, valid = train_validation_split(X, 0.2, np.random.default_rng(0))
    assert len(train) == 8 and len(valid) == 2
    assert sorted(np.concatenate([train, valid])[:, 0]) == list(X[:, 0])
    train, valid = train_validation_split(X[:2], 0.1, np.random.default_rng(0))
    assert len(train) == 1 and len(valid) == 1
    assert train_validation_split(X, 0.0, np.random.default_rng(0))[1] is None


@pytest.mark.parametrize(("n", "fraction", "n_valid"), [(10, 0.2, 2), (10, 0.01, 1), (3, 0.9, 2)])
def test_split_positions_partition_the_rows(n, fraction, n_valid):
    train, valid = split_positions(n, fraction, np.random.default_rng(0))
    assert valid is not None and len(valid) == n_valid
    assert sorted([*train, *valid]) == list(range(n))
    again = split_positions(n, fraction, np.random.default_rng(0))
    assert np.array_equal(again[0], train) and np.array_equal(again[1], valid)


def test_seeded_draws_from_the_stream_and_puts_torch_back():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    default = torch.get_default_dtype()
    with seeded(np.random.default_rng(7), torch.device("cpu"), torch.float64):
        first = torch.randn(4)
        assert first.dtype == torch.float64  # modules built here take the fit's dtype
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_default_dtype() == default
    with seeded(np.random.default_rng(7), torch.device("cpu"), torch.float64):
        assert torch.equal(torch.randn(4), first)  # the same stream, the same draws
    with seeded(np.random.default_rng(8), torch.device("cpu")):
        assert not torch.equal(torch.randn(4).double(), first)


def test_seeded_puts_the_default_dtype_back_after_an_error():
    default = torch.get_default_dtype()
    with (
        pytest.raises(RuntimeError),
        seeded(np.random.default_rng(0), torch.device("cpu"), torch.float64),
    ):
        raise RuntimeError
    assert torch.get_default_dtype() == default
