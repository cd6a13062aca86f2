"""The models every suite compares, and the one way each of them is measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ldelib.metrics import mean_log_likelihood, parzen_log_likelihood
from ldelib.models import GMM, CausalConvMDN
from ldelib.models import make_model as make

from ._report import Report, measure
from .peers import GridMixturePeer, KernelDensityPeer, ZukoFlowPeer, zuko_available

__all__ = [
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
    """A fresh estimator for ``label``; neural models get the wall-time ``budget`` (s)."""
    neural: dict[str, Any] = {"max_time": budget, "random_state": seed, "device": "cpu"}
    if label == "LDE (CausalConvMDN)":
        return make("mdn", **neural)
    if label == RANDOM_INIT:
        return make("mdn", init="random", **neural)
    if label == "LDE, paper network":
        return make("mdn", architecture="paper", **neural)
    if label == "GMM (validated)":
        return make(
            "gmm", n_components="auto", reg_covar="auto", max_time=budget, random_state=seed
        )
    if label == "sklearn GMM (grid)":
        return GridMixturePeer(max_time=budget, random_state=seed)
    if label == "GMMN (Parzen)":
        return make("gmmn", **neural)
    if label == "KernelDensity":
        return KernelDensityPeer(random_state=seed)
    if label == "zuko MAF":
        return ZukoFlowPeer("maf", **neural)
    if label == "zuko NSF":
        return ZukoFlowPeer("nsf", **neural)
    raise ValueError(f"unknown model {label!r}; choose from {MODELS}")


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
    d = train.shape[1]
    n_samples = QUICK_SAMPLES if quick else 10_000
    model = make_model(label, seed=seed, budget=budget)
    with measure() as fit:
        model.fit(train)
    with measure() as draw:
        samples = model.sample(n_samples, random_state=seed)
    row: dict[str, Any] = {**context, "model": label, "D": d, "seed": seed}
    if hasattr(model, "score_samples"):
        with measure() as score:
            log_prob = model.score_samples(test)
        ll, se = mean_log_likelihood(log_prob)
        row.update(estimate="exact", logprob_per_s=len(test) / score.seconds)
    else:
        parzen = parzen_log_likelihood(samples, test, X_valid=valid)
        ll, se = parzen.mean, parzen.std_err
        row.update(estimate=f"Parzen h={parzen.bandwidth:.3g}")
    row.update(
        ll=ll,
        se=se,
        ll_per_dim=ll / d,
        se_per_dim=se / d,
        fit_s=fit.seconds,
        fit_peak_mb=fit.peak_mb,
        sample_per_s=n_samples / draw.seconds,
        epochs=getattr(model, "n_iter_", None),
        budget_s=budget if label != "KernelDensity" else None,
    )
    if isinstance(model, (GMM, GridMixturePeer)):
        row["estimate"] = f"exact, K={model.n_components_}, reg={model.reg_covar_:g}"
    if isinstance(model, CausalConvMDN) and model.anchor_ is not None:
        row["estimate"] = f"exact, GMM K={model.n_components_} + {model.best_epoch_ + 1} epochs"
    elif getattr(model, "start_scores_", None):  # the race of two starts, won by the random one
        row["estimate"] = f"exact, random start + {model.best_epoch_ + 1} epochs"
    if isinstance(model, KernelDensityPeer):
        row["estimate"] = f"exact, h={model.bandwidth_:.3g}"
    row = report.add(**row)  # the stored row, so callers can add to it
    return row, model
