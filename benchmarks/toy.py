"""Suite ``toy``: 2-D targets with exact densities, every model against the truth.

Each target gives independent train, validation and test draws per seed; every model
sees the same rows. Test log-likelihoods are exact except for the GMMN (a Parzen
estimate, marked). The figure repeats the paper's Figure 5: samples of the target,
of the GMMN, and of the LDE with K = 1, 3 and 10 mixture components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldelib.datasets import make_target
from ldelib.metrics import mean_log_likelihood
from ldelib.models import CausalConvMDN

from ._comparison import Comparison, compares_models
from ._report import Report
from ._suite import Suite
from ._summary import summarise

TARGETS = ("ring", "checkerboard", "moons", "spiral")


@compares_models(full_budget=30.0)
def run(options: Comparison) -> Report:
    seeds, budget = options.seeds, options.budget
    n_train, n_test = (1000, 1000) if options.quick else (5000, 5000)
    report = Report(
        "toy",
        options.quick,
        {
            "targets": TARGETS,
            "n_train": n_train,
            "n_valid": n_test,
            "n_test": n_test,
            "seeds": seeds,
            "budget_s_per_neural_model": budget,
            "splits": "train/valid/test: independent draws with seeds 3s, 3s+1, 3s+2",
        },
    )
    kept: dict[tuple[str, str], Any] = {}
    for name in TARGETS:
        target = make_target(name)
        for seed in seeds:
            train, valid, test = (
                target.sample(n, random_state=3 * seed + i)
                for i, n in enumerate((n_train, n_test, n_test))
            )
            truth, truth_se = mean_log_likelihood(target.log_prob(test))
            report.add(
                target=name,
                model="truth",
                D=2,
                seed=seed,
                estimate="exact",
                ll=truth,
                se=truth_se,
                ll_per_dim=truth / 2,
                se_per_dim=truth_se / 2,
            )
            fitted = options.evaluate(report, train, valid, test, seed=seed, target=name)
            options.paired_leads(fitted, test)
            if seed == seeds[0]:
                kept.update({(name, label): model for label, (_, model) in fitted.items()})
    tabulate(report)
    options.note_missing(report)
    _figure5(report, options.out, kept, seeds[0], n_train, budget)
    return report


def tabulate(report: Report) -> None:
    """Summaries, tables and notes of a toy report (also for merged runs)."""
    summarise(report, ("target",), with_truth=True)
    seeds = report.config["seeds"]
    budget = report.config["budget_s_per_neural_model"]
    report.table(
        f"Test log-likelihood, nats/dim (mean over {len(seeds)} seed(s); ± is the spread "
        "over seeds, or the standard error for one seed)",
        ["target", "model", "ll_per_dim", "pm", "gap_to_truth", "estimate", "fit_s", "epochs"],
        lambda r: r.get("kind") == "summary",
    )
    report.table(
        "Every run (lde_lead: the default LDE minus the model on the same test rows, nats "
        "per vector, with its paired standard error)",
        [
            "target",
            "seed",
            "model",
            "ll_per_dim",
            "se_per_dim",
            "lde_lead",
            "lde_lead_se",
            "estimate",
            "fit_s",
            "fit_peak_mb",
            "logprob_per_s",
            "sample_per_s",
            "epochs",
        ],
        lambda r: r.get("kind") != "summary",
    )
    report.notes += [
        (
            "GMMN has no density: its row is a Parzen-window estimate from 10,000 samples "
            "(window chosen on the validation draw), which is biased low."
        ),
        (
            "Neural models (LDE, GMMN, zuko) share one training loop: Adam, 10% of the "
            "training rows held out for early stopping (patience 20 epochs, learning rate "
            f"halved after 10), and a {budget:g} s wall-time budget each (for the LDE, its "
            "anchor mixture's EM included)."
        ),
    ]


def _figure5(
    report: Report, out: Path, kept: dict, seed: int, n_train: int, budget: float
) -> None:
    plt = report.pyplot()
    if plt is None:
        return
    columns = ["target", "GMMN", "LDE K=1", "LDE K=3", "LDE K=10"]
    fig, axes = plt.subplots(
        len(TARGETS),
        len(columns),
        figsize=(2.6 * len(columns), 2.6 * len(TARGETS)),
        squeeze=False,
        constrained_layout=True,
    )
    n_show = 3000
    for i, name in enumerate(TARGETS):
        target = make_target(name)
        train = target.sample(n_train, random_state=3 * seed)
        clouds = {"target": target.sample(n_show, random_state=99)}
        if (name, "GMMN (Parzen)") in kept:
            clouds["GMMN"] = kept[name, "GMMN (Parzen)"].sample(n_show, random_state=seed)
        for k in (1, 3, 10):
            # The suite's own LDE is reused only when it has K = 10 (its K is validated).
            model = kept.get((name, "LDE (CausalConvMDN)"))
            if model is None or getattr(model, "n_components_", None) != k:
                model = CausalConvMDN(k, max_time=budget, random_state=seed, device="cpu").fit(
                    train
                )
            clouds[f"LDE K={k}"] = model.sample(n_show, random_state=seed)
        lo, hi = np.percentile(clouds["target"], [0.5, 99.5], axis=0)
        pad = 0.2 * (hi - lo)
        for j, column in enumerate(columns):
            ax = axes[i, j]
            if column in clouds:
                ax.scatter(*clouds[column].T, s=1, alpha=0.4, color="k", rasterized=True)
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column)
            if j == 0:
                ax.set_ylabel(name)
    report.save_figure(fig, out, "toy-figure5")


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "toy",
    run,
    "2-D targets with exact densities: every model vs the truth",
    options=frozenset({"models"}),
    tabulate=tabulate,
)
