"""Suite ``latents``: density models on the latents of trained autoencoders.

For each dataset (MNIST, Fashion-MNIST), latent size D and schedule (plain, IAE), the
reference conv autoencoder is trained once (cached); every model then fits the latents
of the autoencoder's training images, and is scored on the latents of test images.
The validation images' latents serve only the GMMN's Parzen window.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ldelib.metrics import mean_log_likelihood

from ._comparison import Comparison
from ._data import SPLITS, LatentGrid
from ._models import MODELS
from ._report import Report
from ._suite import Suite


def run(
    out: Path,
    quick: bool,
    seeds: list[int] | None,
    cache_dir: Path,
    budget_s: float | None = None,
    models: tuple[str, ...] | None = None,
    dims: list[int] | None = None,
) -> Report:
    grid = LatentGrid.of(quick)
    if dims:
        grid = dataclasses.replace(grid, dims=tuple(dims))
    options = Comparison.of(
        out, quick, seeds or [0], budget_s or (1.5 if quick else 45.0), models or MODELS
    )
    report = Report(
        "latents",
        quick,
        {
            "datasets": grid.datasets,
            "latent_dims": grid.dims,
            "n_train_images": grid.n_train,
            "n_valid_images": grid.n_valid,
            "n_test_images": grid.n_test,
            "autoencoder": f"reference conv AE, width 16, {grid.epochs} epochs, Adam 1e-3; "
            "IAE warm-up over the first half",
            "seeds": options.seeds,
            "splits": SPLITS,
            "budget_s_per_neural_model": options.budget,
        },
    )
    for dataset, seed, _, schedule, data, ae in grid.autoencoders(options.seeds, cache_dir):
        Z, Z_valid, Z_test = (ae.model.encode(x) for x in (data.train, data.valid, data.test))
        fitted = options.evaluate(
            report, Z, Z_valid, Z_test, seed=seed, dataset=dataset, ae=schedule, ae_fit_s=ae.fit_s
        )
        _paired_lead(fitted, Z_test)
        options.paired_leads(fitted, Z_test)
    tabulate(report)
    options.note_missing(report)
    return report


def _paired_lead(fitted: dict, Z_test: np.ndarray) -> None:
    """Add the LDE's lead over the GMM, row by row on the same test latents, to its row.

    Both models score the same rows, so the standard error of the mean difference is far
    smaller than either model's own: it says whether a lead is more than noise.
    """
    lde, gmm = fitted.get("LDE (CausalConvMDN)"), fitted.get("GMM (validated)")
    if lde is None or gmm is None:
        return
    diff = lde[1].score_samples(Z_test) - gmm[1].score_samples(Z_test)
    lde[0]["lead_over_gmm"], lde[0]["lead_se"] = mean_log_likelihood(diff)


def tabulate(report: Report) -> None:
    """Declare the tables and notes of a latents report (also for merged runs)."""
    report.table(
        "Test log-likelihood of latents (nats per latent vector; ± standard error)",
        [
            "dataset",
            "ae",
            "D",
            "seed",
            "model",
            "ll",
            "se",
            "ll_per_dim",
            "estimate",
            "fit_s",
            "epochs",
        ],
    )
    report.table(
        "The LDE's lead over the validated GMM on the same test latents (nats per vector; "
        "paired standard error)",
        ["dataset", "ae", "D", "seed", "lead_over_gmm", "lead_se"],
        lambda r: "lead_over_gmm" in r,
    )
    report.table(
        "The LDE's lead over every other exact model on the same test latents (nats per "
        "vector; paired standard error)",
        ["dataset", "ae", "D", "seed", "model", "lde_lead", "lde_lead_se"],
        lambda r: "lde_lead" in r,
    )
    report.table(
        "Cost",
        [
            "dataset",
            "ae",
            "D",
            "seed",
            "model",
            "fit_s",
            "fit_peak_mb",
            "logprob_per_s",
            "sample_per_s",
        ],
    )
    budget = report.config["budget_s_per_neural_model"]
    report.notes += [
        (
            "GMMN has no density: its row is a Parzen-window estimate from 10,000 samples, "
            "window chosen on the validation latents; it is biased low."
        ),
        (
            "Neural models (LDE, GMMN, zuko) share one training loop (Adam, 10% of the "
            "training latents held out for early stopping with patience 20, learning rate "
            f"halved after 10 stalled epochs) and a {budget:g} s wall-time budget each, "
            "which for the LDE includes the EM of its anchor mixture; the GMM chooses K and "
            "reg_covar on a 20% validation split and refits, KernelDensity its bandwidth on "
            "a 10% split."
        ),
        "fit_peak_mb is the growth of the process's resident memory during the fit.",
    ]


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "latents",
    run,
    "autoencoder latents of MNIST and Fashion-MNIST, D = 8 to 64",
    options=frozenset({"models", "dims"}),
    uses_autoencoders=True,
    tabulate=tabulate,
)
