"""Suite ``warped``: mixtures pushed through known bijections, D = 8 to 64, against the truth.

The targets are ``make_target("warped")`` (8 full-covariance Gaussian clusters) and
``make_target("warped-heavy")`` (the same with Student-t clusters of 3 degrees of
freedom), both with ``seed=0``: rotations, elementwise sinh-arcsinh maps (skew, tail
weight) and tanh shears bend and skew the clusters, so a Gaussian mixture needs many
components, while the change of variables keeps the density exact. For each D and run
seed ``s``, one draw of the largest training size (seed ``3s``) gives the training rows
of every size (its first ``n`` rows), and independent draws give the validation
(``3s + 1``) and test (``3s + 2``) rows. Besides the log-likelihood, each model's
"gap closed" is the share of the validated GMM's gap to the truth that it closes:
``(ll - ll_GMM) / (ll_truth - ll_GMM)``: 1 is the truth, 0 the GMM, below 0 worse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldelib.datasets import make_target
from ldelib.metrics import mean_log_likelihood

from ._comparison import Comparison, compares_models
from ._models import MODELS, RANDOM_INIT
from ._report import Report
from ._suite import Suite
from ._summary import summarise

VARIANTS = ("warped", "warped-heavy")

#: The models run by default: every model with a density, and the randomly initialised
#: LDE (the GMMN's Parzen estimate says little at D = 64; ``--models gmmn`` adds it).
DEFAULT_MODELS = (*(m for m in MODELS if m != "GMMN (Parzen)"), RANDOM_INIT)

GMM = "GMM (validated)"

#: Seconds of training per neural model in full runs: 60,000 rows of 64 features take
#: a few seconds an epoch on two cores.
FULL_BUDGET = 120.0


@dataclass(frozen=True)
class Grid:
    """Sizes of a run: latent dimensions, training sizes, validation and test rows."""

    dims: tuple[int, ...]
    n_train: tuple[int, ...]
    n_valid: int
    n_test: int


FULL = Grid(dims=(8, 16, 32, 64), n_train=(10_000, 60_000), n_valid=10_000, n_test=10_000)
QUICK = Grid(dims=(8,), n_train=(2_000,), n_valid=1_000, n_test=1_000)


def run(
    out: Path,
    quick: bool,
    seeds: list[int] | None = None,
    budget_s: float | None = None,
    models: tuple[str, ...] | None = None,
    dims: list[int] | None = None,
) -> Report:
    """Run the suite; ``dims`` replaces the grid's dimensions (to split a full run)."""

    @compares_models(full_budget=FULL_BUDGET)
    def body(options: Comparison) -> Report:
        grid = QUICK if options.quick else FULL
        return _run(options, dataclasses.replace(grid, dims=tuple(dims)) if dims else grid)

    return body(out, quick, seeds, budget_s, models or DEFAULT_MODELS)


def _run(options: Comparison, grid: Grid) -> Report:
    report = Report(
        "warped",
        options.quick,
        {
            "targets": [f'make_target("{v}", n_features=D, seed=0)' for v in VARIANTS],
            "dims": list(grid.dims),
            "n_train": list(grid.n_train),
            "n_valid": grid.n_valid,
            "n_test": grid.n_test,
            "seeds": options.seeds,
            "budget_s_per_neural_model": options.budget,
            "splits": "per seed s: train = first n rows of one draw (seed 3s), "
            "valid and test independent draws (seeds 3s+1, 3s+2)",
        },
    )
    for variant in VARIANTS:
        for d in grid.dims:
            target = make_target(variant, n_features=d, seed=0)
            for seed in options.seeds:
                pool = target.sample(max(grid.n_train), random_state=3 * seed)
                valid = target.sample(grid.n_valid, random_state=3 * seed + 1)
                test = target.sample(grid.n_test, random_state=3 * seed + 2)
                truth, truth_se = mean_log_likelihood(target.log_prob(test))
                for n in grid.n_train:
                    report.add(
                        target=variant,
                        n_train=n,
                        model="truth",
                        D=d,
                        seed=seed,
                        estimate="exact",
                        ll=truth,
                        se=truth_se,
                        ll_per_dim=truth / d,
                        se_per_dim=truth_se / d,
                    )
                    options.evaluate(
                        report, pool[:n], valid, test, seed=seed, target=variant, n_train=n
                    )
    tabulate(report)
    options.note_missing(report)
    return report


def gap_closed(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Add ``gap_closed`` to every row whose group (``keys``) has a truth and a GMM row.

    ``(ll - ll_GMM) / (ll_truth - ll_GMM)`` from ``ll_per_dim``; left out where the GMM
    is not below the truth, since the share of a gap that is not there means nothing.
    """
    groups: dict[tuple, dict[str, float]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), {})[row["model"]] = row["ll_per_dim"]
    for row in rows:
        lls = groups[tuple(row.get(k) for k in keys)]
        if "truth" in lls and GMM in lls and lls["truth"] > lls[GMM]:
            row["gap_closed"] = (row["ll_per_dim"] - lls[GMM]) / (lls["truth"] - lls[GMM])


def tabulate(report: Report) -> None:
    """Summaries, gap-closed shares, tables and notes of a warped report."""
    keys = ("target", "D", "n_train")
    summarise(report, keys, with_truth=True)
    runs = [r for r in report.rows if r.get("kind") != "summary"]
    gap_closed(runs, (*keys, "seed"))
    gap_closed([r for r in report.rows if r.get("kind") == "summary"], keys)
    seeds = report.config["seeds"]
    report.table(
        f"Test log-likelihood, nats/dim (mean over {len(seeds)} seed(s); ± is the spread "
        "over seeds, or the standard error for one seed), and the share of the GMM's gap "
        "to the truth each model closes",
        [
            "target",
            "D",
            "n_train",
            "model",
            "ll_per_dim",
            "pm",
            "gap_to_truth",
            "gap_closed",
            "estimate",
            "fit_s",
            "epochs",
        ],
        lambda r: r.get("kind") == "summary",
    )
    report.table(
        "Every run",
        [
            "target",
            "D",
            "n_train",
            "seed",
            "model",
            "ll_per_dim",
            "se_per_dim",
            "gap_closed",
            "estimate",
            "fit_s",
            "fit_peak_mb",
            "logprob_per_s",
            "sample_per_s",
            "epochs",
        ],
        lambda r: r.get("kind") != "summary",
    )
    budget = report.config["budget_s_per_neural_model"]
    report.notes += [
        (
            "gap_closed = (ll - ll_GMM) / (ll_truth - ll_GMM): 1 is the exact density, 0 the "
            "validated GMM, negative worse than it; blank where the GMM did not run or is "
            "not below the truth."
        ),
        (
            "warped-heavy has Student-t clusters (3 degrees of freedom) whose tails the "
            "sinh-arcsinh maps thicken further: a few far rows weigh on every fit."
        ),
        (
            "Neural models (LDE, zuko) share one training loop: Adam, 10% of the training "
            "rows held out for early stopping (patience 20 epochs, learning rate halved "
            f"after 10), and a {budget:g} s wall-time budget each (for the LDE, its anchor "
            "mixture's EM included)."
        ),
    ]


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "warped",
    run,
    "mixtures through known bijections, D = 8 to 64, vs the truth",
    options=frozenset({"models", "dims"}),
    tabulate=tabulate,
)
