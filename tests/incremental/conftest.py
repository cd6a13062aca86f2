"""Fixtures of the incremental autoencoder tests: small modules and data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ldelib.datasets import load_digits
from ldelib.incremental import IncrementalAutoencoder

D = 8


def _make_modules(seed: int = 0, n_in: int = 64, latent: int = D, hidden: int = 64):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, latent))
    decoder = nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_in), nn.Sigmoid()
    )
    return encoder, decoder


def _small_iae(**kwargs) -> IncrementalAutoencoder:
    encoder, decoder = _make_modules(0, n_in=6, hidden=16)
    params = {
        "latent_dim": D,
        "warmup_epochs": 2,
        "batch_size": 10,
        "max_epochs": 3,
        "validation_fraction": 0.0,
        "device": "cpu",
        "random_state": 0,
    }
    params.update(kwargs)
    return IncrementalAutoencoder(encoder, decoder, **params)


@pytest.fixture
def make_modules():
    return _make_modules


@pytest.fixture
def small_iae():
    return _small_iae


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits() / 16.0).astype(np.float32)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return np.random.default_rng(0).random((40, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(digits) -> IncrementalAutoencoder:
    encoder, decoder = _make_modules(0)
    return IncrementalAutoencoder(
        encoder, decoder, D, warmup_epochs=4, max_epochs=8, device="cpu", random_state=0
    ).fit(digits[:600])
