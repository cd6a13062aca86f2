"""The models every suite compares, and the one way each of them is measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ldelib import compare
from ldelib.peers import zuko_available

from ._report import Report, measure

__all__ = [
    "AVERAGED",
    "MODELS",
    "RANDOM_INIT",
    "SHORT_NAMES",
    "available",
    "evaluate",
    "make_model",
    "select_models",
]

#: Labels of the compared models, in table order.
MODELS = (
    "LDE (CausalConvMDN)",
    "LDE, paper network",
    "GMM (validated)",
    "sklearn GMM (grid)",
    "GMMN (Parzen)",
    "KernelDensity",
    "zuko MAF",
    "zuko NSF",
)

#: Samples drawn per model in ``--quick`` runs (10,000 in full runs): enough for the
#: throughput and the GMMN's Parzen estimate of a smoke test, at a fraction of the time
#: of the slow samplers (NSF's inverse, the paper network).
QUICK_SAMPLES = 1000

#: The LDE without its mixture anchor (the default before anchoring), for the suites
#: where it is the better model.
RANDOM_INIT = "LDE, random init"

#: The validated mixture averaged over initialisations (``GMM(n_average="auto")``), the
#: LDE's anchor: beside the LDE, what its network adds.
AVERAGED = "GMM (averaged)"

#: Command-line names of the models (``python -m benchmarks --models``).
SHORT_NAMES = {
    **dict(
        zip(
            ("lde", "lde-paper", "gmm", "gmm-grid", "gmmn", "kde", "maf", "nsf"),
            MODELS,
            strict=True,
        )
    ),
    "lde-random": RANDOM_INIT,
    "gmm-avg": AVERAGED,
}


def select_models(names: Sequence[str] | None) -> tuple[str, ...]:
    """The labels of the models named on the command line (all of them for ``None``)."""
    if names is None:
        return MODELS
    unknown = [n for n in names if n not in SHORT_NAMES]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(SHORT_NAMES)}.")
    return tuple(label for name, label in SHORT_NAMES.items() if name in names)


def make_model(label: str, *, seed: int, budget: float) -> Any:
    """A fresh estimator for ``label``; every model but KernelDensity gets ``budget`` (s)."""
    return compare.make_model(label, seed=seed, budget=budget)


def available(labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split labels into those that can run here and those whose package is missing."""
    missing = [m for m in labels if m.startswith("zuko") and not zuko_available()]
    return [m for m in labels if m not in missing], missing


def evaluate(
    report: Report,
    label: str,
    train: np.ndarray,
    valid: np.ndarray,
    test: np.ndarray,
    *,
    seed: int,
    budget: float,
    quick: bool = False,
    **context: Any,
) -> tuple[dict[str, Any], Any]:
    """Fit ``label`` on ``train`` and add one row of measurements to ``report``.

    The row holds the test log-likelihood (nats per row and per dimension, standard
    error of the mean), how it was obtained (exact, or for models without a density a
    Parzen estimate from 10,000 samples, ``QUICK_SAMPLES`` when ``quick``, with the
    window chosen on ``valid``), fit time, peak memory of the fit, epochs run, and the
    throughput of ``log_prob`` and of ``sample``.
    """
    row, model, _ = compare.measure_model(
        label,
        train,
        test,
        seed=seed,
        budget=budget,
        valid=valid,
        n_samples=QUICK_SAMPLES if quick else compare.N_SAMPLES,
        timer=measure,
    )
    row = report.add(**context, **row)  # the stored row, so callers can add to it
    return row, model
