"""The options and the model loop of the suites that compare density models on rows."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ldelib.metrics import mean_log_likelihood

from ._models import MODELS, RANDOM_INIT, available, evaluate
from ._report import Report

__all__ = ["Comparison", "compares_models"]


@dataclass(frozen=True)
class Comparison:
    """A suite's resolved options: seeds, budget per neural model, models to run."""

    out: Path
    quick: bool
    seeds: list[int]
    budget: float
    labels: list[str]
    missing: list[str]

    @classmethod
    def of(
        cls, out: Path, quick: bool, seeds: list[int], budget: float, models: Sequence[str]
    ) -> Comparison:
        """Options that run those of ``models`` whose package is installed."""
        labels, missing = available(models)
        return cls(out, quick, seeds, budget, labels, missing)

    def evaluate(
        self,
        report: Report,
        train: np.ndarray,
        valid: np.ndarray,
        test: np.ndarray,
        *,
        seed: int,
        **context: Any,
    ) -> dict[str, tuple[dict[str, Any], Any]]:
        """Fit and score every model on the same rows: its row and fitted model, by label.

        One row per model is added to ``report``, in order (see ``_models.evaluate``).
        """
        fitted = {}
        for label in self.labels:
            try:
                fitted[label] = evaluate(
                    report,
                    label,
                    train,
                    valid,
                    test,
                    seed=seed,
                    budget=self.budget,
                    quick=self.quick,
                    **context,
                )
            except FloatingPointError as error:
                # A model that diverges is a result to report, not the end of a run of
                # hours (the paper network's unbounded scales, on heavy-tailed rows).
                where = ", ".join(f"{k}={v}" for k, v in {**context, "seed": seed}.items())
                note = f"{label} failed ({where}): {error}"
                print(f"[{report.suite}] {note}", file=sys.stderr, flush=True)
                report.notes.append(note)
        return fitted

    @staticmethod
    def paired_leads(fitted: dict[str, tuple[dict[str, Any], Any]], test: np.ndarray) -> None:
        """Add the default LDE's lead over each other exact model to that model's row.

        ``lde_lead`` is the mean over test rows of the LDE's log-density minus the
        model's, ``lde_lead_se`` its paired standard error: both score the same rows, so
        it is far smaller than either model's own, and says whether a lead is noise.
        """
        lde = fitted.get(MODELS[0])
        if lde is None:
            return
        ours = lde[1].score_samples(test)
        for label, (row, model) in fitted.items():
            if label != MODELS[0] and row["estimate"].startswith("exact"):
                diff = ours - model.score_samples(test)
                row["lde_lead"], row["lde_lead_se"] = mean_log_likelihood(diff)

    def note_missing(self, report: Report) -> None:
        """Note the models left out because their package is not installed."""
        if self.missing:
            report.notes.append(f"Not run (package missing): {', '.join(self.missing)}.")


def compares_models(
    full_budget: float,
) -> Callable[[Callable[[Comparison], Report]], Callable[..., Report]]:
    """Turn ``body(options)`` into a suite's ``run``, as :func:`~benchmarks.run_suite` calls it.

    The options of a model comparison on rows (``toy``, ``digits``): seeds default to
    [0] in quick runs and [0, 1, 2] in full ones; the budget per neural model is
    ``budget_s``, else 1.5 s quick and ``full_budget`` full; the models are ``models``,
    else every model and the randomly initialised LDE.
    """

    def decorate(body: Callable[[Comparison], Report]) -> Callable[..., Report]:
        def run(
            out: Path,
            quick: bool,
            seeds: list[int] | None = None,
            budget_s: float | None = None,
            models: tuple[str, ...] | None = None,
        ) -> Report:
            return body(
                Comparison.of(
                    out,
                    quick,
                    seeds or ([0] if quick else [0, 1, 2]),
                    budget_s or (1.5 if quick else full_budget),
                    models or (*MODELS, RANDOM_INIT),
                )
            )

        return run

    return decorate
