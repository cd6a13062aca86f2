"""Fitting as a transaction: an estimator is either refitted or left exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["transaction"]


@contextmanager
def transaction(estimator: Any) -> Iterator[None]:
    """Run a block that sets attributes of ``estimator``; undo them all if it raises.

    Anything raised, ``KeyboardInterrupt`` included, puts the estimator's attributes back
    as they were (unfitted, or the previous fit) before it propagates. This is enough
    because ``fit`` only ever *assigns* attributes (a new module, new arrays): it never
    changes in place an object that an earlier fit left behind.

    Examples
    --------
    >>> class Model:
    ...     pass
    >>> m = Model()
    >>> try:
    ...     with transaction(m):
    ...         m.coef_ = 1.0
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> hasattr(m, "coef_")
    False
    """
    saved = dict(vars(estimator))
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(saved)
        raise
