"""Splitting rows into training and validation parts, and seeding torch from a fit's stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["seeded", "split_positions", "train_validation_split"]


def split_positions(
    n: int, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shuffled positions of the training and the validation rows among ``n``.

    With ``validation_fraction=0`` there is no validation part. At least one row is kept
    on each side, so two rows are the minimum.
    """
    if validation_fraction == 0:
        return np.arange(n), None
    n_valid = min(max(1, round(validation_fraction * n)), n - 1)
    order = rng.permutation(n)
    return order[n_valid:], order[:n_valid]


def train_validation_split(
    X: np.ndarray, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shuffle-split rows into a training and a validation part (see :func:`split_positions`)."""
    if validation_fraction == 0:
        return X, None
    train, valid = split_positions(len(X), validation_fraction, rng)
    assert valid is not None
    return X[train], X[valid]


@contextmanager
def seeded(
    rng: np.random.Generator, device: torch.device, dtype: torch.dtype | None = None
) -> Iterator[None]:
    """Run a block with torch's global RNG seeded from ``rng``, then put it back.

    Module constructors and dropout draw from torch's global generator; forking it keeps
    fits reproducible without changing the user's random state. With ``dtype``, modules
    built in the block are initialised in that dtype whatever the user's default dtype
    (so a float32 model draws the same initial weights either way); the default is put
    back afterwards.
    """
    devices = [device] if device.type == "cuda" else []
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)
