"""What training produced, in a model's own terms: the items ``ldelib fit`` and ``info`` print.

The models share attribute names such as ``best_validation_score_`` but not their
meaning: a CausalConvMDN's is a held-out log-likelihood (nats/row, data units), a
GMMN's *minus* a held-out MMD² (not a likelihood at all), an IncrementalAutoencoder's
minus its reconstruction loss. Printing them under one label would mislead, so each
class summarises its own training in a ``_summarise_training(params, attributes)``
static method. It reads the constructor parameters and fitted attributes as plain
values, so a model file's configuration is summarised without rebuilding the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SummaryItem", "format_value", "negated"]


@dataclass(frozen=True)
class SummaryItem:
    """One fact of a training summary: a JSON key, words for people, a value, its unit."""

    key: str
    label: str
    value: Any
    unit: str = ""

    def text(self) -> str:
        """The value for people: numbers to 6 significant digits, with the unit."""
        shown = format_value(self.value)
        return f"{shown} {self.unit}" if self.unit and self.value is not None else shown


def format_value(value: Any) -> str:
    """A value as ``ldelib info`` shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or "none"
    return str(value)


def negated(value: Any) -> float | None:
    """``-value``, for scores stored as minus a loss; ``None`` stays ``None``."""
    return None if value is None else -float(value)
