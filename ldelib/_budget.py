"""The wall-clock budget of a fit: ``max_time`` counts from the call to ``fit``.

A model's ``fit`` does work before its own hook runs (validating the rows, the pass that
standardises a file, copying rows into memory); on a file of millions of rows that takes
seconds, and a budget that started only in the hook would not bound the fit.
:meth:`~ldelib.BaseGenerativeModel.fit` runs inside :func:`fit_clock`, and each
model asks :func:`fit_deadline` when its budget ends. A fit inside a fit (the LDE's
anchor mixture) has a clock of its own, restored when it returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["fit_clock", "fit_deadline"]

_began: ContextVar[float | None] = ContextVar("ldelib_fit_began", default=None)


@contextmanager
def fit_clock() -> Iterator[None]:
    """Start the clock of a fit; :func:`fit_deadline` counts from here until it ends."""
    token = _began.set(time.perf_counter())
    try:
        yield
    finally:
        _began.reset(token)


def fit_deadline(max_time: float | None) -> float | None:
    """The ``time.perf_counter()`` by which a fit with budget ``max_time`` must end.

    Counted from the start of the innermost running ``fit`` (from now outside one);
    ``None`` without a budget.
    """
    if max_time is None:
        return None
    began = _began.get()
    return (time.perf_counter() if began is None else began) + float(max_time)
