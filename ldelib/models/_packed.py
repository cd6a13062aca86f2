"""Rows that carry their condition: how a conditional LDE trains on ``train_module``.

A conditional fit packs each row's encoded condition in front of its values (a label's
code as one float column, or the standardised context's columns), so the training loop,
the validation split, the shuffles and the checks handle one array as they do for an
unconditional fit. :class:`Packed` unpacks them for the network.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from .._sources import InMemory, RowSource, Standardizer
from ..nn.autoregressive import AutoregressiveMDN

__all__ = ["Packed", "packed_codes", "packed_rows"]


class Packed(nn.Module):
    """``network`` over packed rows: the first ``width`` columns are the condition
    (one column of class codes, stored as floats, or the context), the rest ``z``."""

    def __init__(self, network: AutoregressiveMDN, width: int, labels: bool) -> None:
        super().__init__()
        self.network, self.width, self.labels = network, width, labels

    def condition(self, rows: Tensor) -> Tensor:
        c = rows[:, : self.width]
        if not self.labels:
            return c
        # Codes below 2**24 are exact in float32, far more classes than a model takes;
        # the clamp is for the timing probe's random rows (training rows are codes).
        return c[:, 0].round().long().clamp(0, self.network.classes - 1)

    def forward(self, rows: Tensor) -> Tensor:
        return self.network(rows[:, self.width :], context=self.condition(rows))


def packed_codes(rows: np.ndarray) -> np.ndarray:
    """The class codes in front of packed label rows (stored as floats), as integers."""
    return rows[:, 0].round().astype(np.int64)


def packed_rows(rows: RowSource, y: np.ndarray) -> InMemory:
    """The standardised rows of an in-memory ``rows`` with the encoded ``y`` in front,
    as a source that reads them as they are; constant columns stay marked constant."""
    condition = y[:, None] if y.ndim == 1 else y
    packed = np.concatenate([condition.astype(np.float64), rows.all()], axis=1)
    width = condition.shape[1]
    ones = np.ones(packed.shape[1])
    equal = np.concatenate([np.zeros(width, dtype=bool), rows.standardizer.equal])
    return InMemory(packed, Standardizer(ones, np.zeros_like(ones), ones, equal))
