"""Suite ``digits``: 64-D scikit-learn digits, the regime where flows beat mixtures.

The 1,797 8x8 digit images (integers 0..16) are dequantised, x = (v + u) / 17 with
u ~ U(0, 1), so every model fits a continuous density on [0, 1]^64; per seed, a fresh
shuffle gives 1,000 training, 300 validation and 497 test rows. Small and
high-dimensional, it complements the latent sets, where Gaussian mixtures are strong.
"""

from __future__ import annotations

import numpy as np

from ..datasets import load_digits
from ._comparison import Comparison, compares_models
from ._report import Report
from ._summary import summarise


def dequantised_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test rows of the dequantised digits for one seed."""
    rng = np.random.default_rng(seed)
    X = (load_digits() + rng.random((1797, 64))) / 17.0
    order = rng.permutation(len(X))
    return X[order[:1000]], X[order[1000:1300]], X[order[1300:]]


@compares_models(full_budget=45.0)
def run(options: Comparison) -> Report:
    report = Report(
        "digits",
        options.quick,
        {
            "data": "sklearn load_digits (1797 x 64), (v + U(0,1)) / 17",
            "splits": "per seed: shuffled 1000 train / 300 valid / 497 test",
            "seeds": options.seeds,
            "budget_s_per_neural_model": options.budget,
        },
    )
    for seed in options.seeds:
        train, valid, test = dequantised_digits(seed)
        options.evaluate(report, train, valid, test, seed=seed, data="digits")
    tabulate(report)
    options.note_missing(report)
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
