"""What a benchmark suite declares: its name, how it runs, the options it takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._report import Report

__all__ = ["Suite"]

#: The options that only some suites take (every suite takes ``--seeds`` and ``--budget``;
#: ``--cache`` goes with ``uses_autoencoders``).
OPTIONAL = frozenset({"models", "dims"})


@dataclass(frozen=True)
class Suite:
    """A benchmark suite, as :func:`~benchmarks.run_suite` and ``python -m benchmarks`` run it.

    Parameters
    ----------
    name : str
        The name the command line takes.
    run : callable
        ``run(out=, quick=, seeds=, budget_s=, ...)`` returns the suite's report; ``None``
        seeds or budget mean the suite's own. It is also given ``cache_dir`` when the
        suite uses autoencoders, and each of ``models`` and ``dims`` that it takes and
        the user gave.
    doc : str
        What the suite measures, in one line (``python -m benchmarks --help`` lists it).
    options : frozenset of str, default=frozenset()
        Which of ``"models"`` and ``"dims"`` the suite takes.
    uses_autoencoders : bool, default=False
        Whether the suite trains autoencoders; they are kept in a folder that suites
        share (``--cache``, by default ``OUT/cache``).
    tabulate : callable or None, default=None
        ``tabulate(report)`` rebuilds a report's tables from its rows, so that
        ``benchmarks/merge.py`` can join runs made side by side; None where the tables
        are not rebuilt from rows.
    """

    name: str
    run: Callable[..., Report]
    doc: str
    options: frozenset[str] = frozenset()
    uses_autoencoders: bool = False
    tabulate: Callable[[Report], None] | None = None

    def __post_init__(self) -> None:
        # A misspelt option would make the command line refuse it without a word on why.
        unknown = self.options - OPTIONAL
        if unknown:
            raise ValueError(
                f"suite {self.name!r}: unknown options {sorted(unknown)}; "
                f"choose from {sorted(OPTIONAL)}."
            )

    @property
    def takes(self) -> frozenset[str]:
        """Every option of the command line this suite takes, besides ``--quick`` and
        ``--out``, by its name without dashes."""
        cache = {"cache"} if self.uses_autoencoders else set()
        return frozenset({"seeds", "budget", *self.options, *cache})
