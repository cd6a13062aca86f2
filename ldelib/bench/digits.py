"""Suite ``digits``: 64-D scikit-learn digits, the regime where flows beat mixtures.

The 1,797 8x8 digit images (integers 0..16) are dequantised, x = (v + u) / 17 with
u ~ U(0, 1), so every model fits a continuous density on [0, 1]^64; per seed, a fresh
shuffle gives 1,000 training, 300 validation and 497 test rows. Small and
high-dimensional, it complements the latent sets, where Gaussian mixtures are strong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets import load_digits
from ._models import MODELS, RANDOM_INIT, available, evaluate
from ._report import Report
from ._summary import summarise


def dequantised_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test rows of the dequantised digits for one seed."""
    rng = np.random.default_rng(seed)
    X = (load_digits() + rng.random((1797, 64))) / 17.0
    order = rng.permutation(len(X))
    return X[order[:1000]], X[order[1000:1300]], X[order[1300:]]


def run(
    out: Path,
    quick: bool,
    seeds: list[int] | None = None,
    budget_s: float | None = None,
    models: tuple[str, ...] | None = None,
) -> Report:
    seeds = seeds or ([0] if quick else [0, 1, 2])
    budget = 1.5 if quick else 45.0
    budget = budget_s or budget
    labels, missing = available(models or (*MODELS, RANDOM_INIT))
    report = Report(
        "digits",
        quick,
        {
            "data": "sklearn load_digits (1797 x 64), (v + U(0,1)) / 17",
            "splits": "per seed: shuffled 1000 train / 300 valid / 497 test",
            "seeds": seeds,
            "budget_s_per_neural_model": budget,
        },
    )
    for seed in seeds:
        train, valid, test = dequantised_digits(seed)
        for label in labels:
            evaluate(
                report,
                label,
                train,
                valid,
                test,
                seed=seed,
                budget=budget,
                quick=quick,
                data="digits",
            )
    tabulate(report)
    if missing:
        report.notes.append(f"Not run (package missing): {', '.join(missing)}.")
    return report


def tabulate(report: Report) -> None:
    """Summaries, tables and notes of a digits report (also for merged runs)."""
    summarise(report, ("data",))
    seeds = report.config["seeds"]
    report.table(
        f"Test log-likelihood, nats per dimension (x64 for nats per image; mean over "
        f"{len(seeds)} seed(s))",
        ["model", "ll_per_dim", "pm", "estimate", "fit_s", "epochs"],
        lambda r: r.get("kind") == "summary",
    )
    report.table(
        "Every run (nats per image)",
        ["seed", "model", "ll", "se", "estimate", "fit_s", "fit_peak_mb", "epochs"],
        lambda r: r.get("kind") != "summary",
    )
    report.notes.append(
        "ll_per_dim in the first table is nats per dimension; multiply by 64 for nats per "
        "image. GMMN rows are Parzen estimates (biased low)."
    )
