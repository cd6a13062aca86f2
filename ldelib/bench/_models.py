"""The models every suite compares, and the one way each of them is measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import mean_log_likelihood, parzen_log_likelihood
from ..models import GMM, GMMN, CausalConvMDN
from ._report import Report, measure
from .peers import KernelDensityPeer, ZukoFlowPeer, zuko_available

__all__ = ["MODELS", "available", "evaluate", "gmm_grid", "make_model"]

#: Labels of the compared models, in table order.
MODELS = (
    "LDE (CausalConvMDN)",
    "LDE, paper network",
    "GMM (K on validation)",
    "GMMN (Parzen)",
    "KernelDensity",
    "zuko MAF",
    "zuko NSF",
)

_K_GRID = (1, 2, 5, 10, 20, 40, 80, 160)


def gmm_grid(n_train: int, n_features: int) -> list[int]:
    """Candidate mixture sizes: up to one component per ``2 D`` training rows."""
    return [k for k in _K_GRID if k <= max(1, n_train // (2 * n_features))]


def make_model(label: str, *, seed: int, budget: float, n_train: int, n_features: int) -> Any:
    """A fresh estimator for ``label``; neural models get the wall-time ``budget`` (s)."""
    neural = {"max_time": budget, "random_state": seed, "device": "cpu"}
    if label == "LDE (CausalConvMDN)":
        return CausalConvMDN(**neural)
    if label == "LDE, paper network":
        return CausalConvMDN(architecture="paper", **neural)
    if label == "GMM (K on validation)":
        return GMM(gmm_grid(n_train, n_features), random_state=seed)
    if label == "GMMN (Parzen)":
        return GMMN(**neural)
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
    n_samples: int = 10_000,
    **context: Any,
) -> tuple[dict[str, Any], Any]:
    """Fit ``label`` on ``train`` and add one row of measurements to ``report``.

    The row holds the test log-likelihood (nats per row and per dimension, standard
    error of the mean), how it was obtained (exact, or a Parzen estimate from
    ``n_samples`` samples with the window chosen on ``valid`` for models without a
    density), fit time, peak memory of the fit, epochs run, and the throughput of
    ``log_prob`` and of ``sample``.
    """
    d = train.shape[1]
    model = make_model(label, seed=seed, budget=budget, n_train=len(train), n_features=d)
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
        budget_s=budget if label not in ("GMM (K on validation)", "KernelDensity") else None,
    )
    if isinstance(model, GMM):
        row["estimate"] = f"exact, K={model.n_components_}"
    if isinstance(model, KernelDensityPeer):
        row["estimate"] = f"exact, h={model.bandwidth_:.3g}"
    report.add(**row)
    return row, model
