"""Suite ``mnist-pixels``: the MAF paper's unconditional MNIST density benchmark.

Pixels are dequantised, x = (p + u) / 256 with u ~ U(0, 1), and mapped to logit space,
y = logit(lambda + (1 - 2 lambda) x) with lambda = 1e-6; the reported number is the
mean test log-likelihood of y in nats (Papamakarios et al., 2017, Table 2), where
MADE MoG scored -1038.5 and MAF MoG (5) -1100.3. The LDE runs over all 784 pixels as
one autoregressive sequence, in raster order.

The full run (50,000 training, 10,000 validation and 10,000 test images) is meant for
a GPU (``device="auto"`` picks one); ``--quick`` trains on a small subset on the CPU and
reports the measured training throughput, from which the cost of the full run follows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldelib.datasets import load_mnist
from ldelib.metrics import mean_log_likelihood
from ldelib.models import CausalConvMDN

from ._report import Report, measure
from ._suite import Suite

PUBLISHED = (
    ("MADE MoG (Papamakarios et al., 2017)", -1038.5, 1.8 / 2),
    ("MAF MoG (5) (Papamakarios et al., 2017)", -1100.3, 1.6 / 2),
)
LAMBDA = 1e-6


def logit_dequantise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The MAF preprocessing of uint8 images, flattened to (n, 784) float64."""
    x = (
        pixels.reshape(len(pixels), -1).astype(np.float64)
        + rng.random((len(pixels), pixels[0].size))
    ) / 256.0
    s = LAMBDA + (1 - 2 * LAMBDA) * x
    return np.log(s) - np.log1p(-s)


def run(
    out: Path, quick: bool, seeds: list[int] | None = None, budget_s: float | None = None
) -> Report:
    seeds = seeds or [0]
    if quick:
        n_train, n_valid, n_test, budget, device = 300, 100, 300, 10.0, "cpu"
    else:
        n_train, n_valid, n_test, budget, device = 50_000, 10_000, 10_000, 4 * 3600.0, "auto"
    budget = budget_s or budget
    report = Report(
        "mnist-pixels",
        quick,
        {
            "n_train": n_train,
            "n_valid": n_valid,
            "n_test": n_test,
            "lambda": LAMBDA,
            "budget_s": budget,
            "seeds": seeds,
            "splits": "training split: first n_train train, next n_valid valid (shuffled with "
            "the seed); test split: first n_test",
        },
    )
    train_pool, test_pool = load_mnist("train")[0], load_mnist("test")[0]
    for seed in seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train_pool))
        train = logit_dequantise(train_pool[order[:n_train]], rng)
        valid = logit_dequantise(train_pool[order[n_train : n_train + n_valid]], rng)
        test = logit_dequantise(test_pool[:n_test], rng)
        # The training rows include the validation rows as the model's own held-out part.
        data = np.concatenate([train, valid])
        model = CausalConvMDN(
            max_time=budget,
            validation_fraction=len(valid) / len(data),
            random_state=seed,
            device=device,
        )
        with measure() as fit:
            model.fit(data)
        ll, se = mean_log_likelihood(model.score_samples(test))
        epochs = model.n_iter_
        report.add(
            model="LDE (CausalConvMDN)",
            seed=seed,
            ll=ll,
            se=se,
            fit_s=fit.seconds,
            epochs=epochs,
            # None when the budget ended before an epoch (the anchor mixture was kept).
            rows_per_s=epochs * n_train / fit.seconds if epochs else None,
            best_valid_ll=model.best_validation_score_,
            device=model.device_,
        )
    for name, value, se in PUBLISHED:
        report.add(model=f"{name}, published", ll=value, se=se)
    report.table(
        "MNIST test log-likelihood in logit space (nats; ± standard error)",
        ["model", "seed", "ll", "se", "best_valid_ll", "fit_s", "epochs", "rows_per_s", "device"],
    )
    rate = report.rows[0]["rows_per_s"]
    if rate:
        report.notes.append(
            f"Measured training throughput: {rate:.0f} rows/s on {report.rows[0]['device']}; "
            f"one epoch of the full 50,000-image training set takes about {50_000 / rate:.0f} s "
            "there, and training typically needs tens of epochs."
        )
    else:
        report.notes.append(
            f"No training epoch finished within the {budget:g} s budget (the anchor "
            "mixture's EM took it all), so the model is its anchor; raise --budget."
        )
    report.notes += [
        (
            "Published numbers use the same preprocessing and splits of the same sizes; they "
            "report ± two standard deviations, halved here to a standard error."
        ),
    ]
    if quick:
        report.notes.append(
            f"Quick mode: {n_train} training images and a {budget:g} s budget: a smoke test "
            "of the pipeline, far from a converged model."
        )
    return report


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite("mnist-pixels", run, "the MAF paper's 784-D dequantised MNIST in logit space")
