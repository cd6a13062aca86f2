"""Suite ``ood``: out-of-distribution detection from autoencoder latents.

Train on one dataset (Fashion-MNIST, then MNIST), score its test images (in
distribution) against the other dataset's test images (out of distribution), and report
AUROC, AUPR and FPR at 95 % TPR (:func:`ldelib.metrics.ood_metrics`) of each score:

* the latent log-likelihood log p(E(x)) under the LDE, the validated GMM and zuko's MAF,
  each fitted on the training images' latents;
* the LDE's prefix marginal of the first D/4 latents, and the reconstruction error alone;
* those scores combined (:class:`ldelib.ood.LatentOODScore`), calibrated on held-out
  **in-distribution** validation images only: their standardised mean, and their
  typicality (log-density under a mixture). The standardised mean is the score this
  library recommends: chosen without any out-of-distribution data, with one model and no
  background model.

Published pixel-space figures for Fashion-MNIST -> MNIST (Ren et al., 2019) are listed as
context: a PixelCNN++ likelihood gives MNIST *higher* likelihood (AUROC 0.089); their
likelihood ratio, which needs a second, background model, reaches 0.994.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from ldelib.latent import LatentDensityEstimator
from ldelib.metrics import ood_metrics
from ldelib.ood import LatentOODScore

from ._data import SCHEDULES, SPLITS, LatentGrid, autoencoder, images
from ._models import available, make_model
from ._report import Report
from ._suite import Suite

#: (trained on, out of distribution).
PAIRS = (("fashion", "mnist"), ("mnist", "fashion"))
NAMES = {"fashion": "Fashion-MNIST", "mnist": "MNIST"}
DENSITIES = ("LDE (CausalConvMDN)", "GMM (validated)", "zuko MAF")

#: Ren et al. (2019), Table 1, Fashion-MNIST -> MNIST, pixel space.
PUBLISHED = (
    ("PixelCNN++ likelihood, pixels (Ren et al., 2019)", 0.089),
    ("likelihood ratio with a background model, pixels (Ren et al., 2019)", 0.994),
)


def run(
    out: Path,
    quick: bool,
    seeds: list[int] | None,
    cache_dir: Path,
    budget_s: float | None = None,
    dims: list[int] | None = None,
) -> Report:
    seeds = seeds or [0]
    grid = LatentGrid.of(quick)
    latent_dims = tuple(dims) if dims else ((8,) if quick else (16, 32))
    budget = budget_s or (1.5 if quick else 45.0)
    schedules = ("IAE",) if quick else SCHEDULES
    models, missing = available(DENSITIES)
    report = Report(
        "ood",
        quick,
        {
            "pairs": [f"{NAMES[a]} -> {NAMES[b]}" for a, b in PAIRS],
            "latent_dims": latent_dims,
            "n_train_images": grid.n_train,
            "n_valid_images": grid.n_valid,
            "n_test_images_each": grid.n_test,
            "autoencoder": f"reference conv AE, width 16, {grid.epochs} epochs; IAE warm-up "
            "over the first half (shared with the latents suite)",
            "schedules": schedules,
            "seeds": seeds,
            "splits": SPLITS + "; out-of-distribution images: a seeded subset of the other "
            "dataset's official test split",
            "budget_s_per_neural_model": budget,
            "models": models,
        },
    )
    histograms: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for inside, outside in PAIRS:
        pair = f"{NAMES[inside]} -> {NAMES[outside]}"
        for seed in seeds:
            data = images(inside, grid.n_train, grid.n_valid, grid.n_test, seed=seed)
            other = images(outside, 0, 0, grid.n_test, seed=seed).test
            for d, schedule in itertools.product(latent_dims, schedules):
                ae = autoencoder(
                    data,
                    key=f"{inside}-n{grid.n_train}",
                    latent_dim=d,
                    incremental=schedule == "IAE",
                    epochs=grid.epochs,
                    seed=seed,
                    cache_dir=cache_dir,
                    width=16,  # the latents suite's autoencoders, shared through the cache
                )
                where = {"pair": pair, "D": d, "ae": schedule, "seed": seed}
                scores = _scores(ae.model, models, data, other, d, seed, budget)
                for name, (s_in, s_out) in scores.items():
                    m = ood_metrics(s_in, s_out)
                    report.add(
                        **where,
                        score=name,
                        auroc=m.auroc,
                        aupr_in=m.aupr_in,
                        aupr_out=m.aupr_out,
                        fpr95=m.fpr_at_95_tpr,
                        mean_in=float(np.mean(s_in)),
                        mean_out=float(np.mean(s_out)),
                    )
                if schedule == "IAE" and seed == seeds[0] and d == latent_dims[0]:
                    histograms[pair, "latent log-likelihood"] = scores[_LL]
                    histograms[pair, "combined score"] = scores[_COMBINED["sum"]]
        if inside == "fashion":
            for name, auroc in PUBLISHED:
                report.add(pair=pair, score=name, auroc=auroc, published=True)
    if missing:
        report.notes.append(f"Not run (package missing): {', '.join(missing)}.")
    tabulate(report)
    _figure(report, out, histograms)
    return report


_LL = "LDE: latent log-likelihood"
_COMBINED = {
    "sum": "LDE: combined scores (sum, calibrated on in-distribution validation)",
    "typicality": "LDE: typicality of the scores (density, same calibration)",
}


def _scores(
    ae: Any,
    models: list[str],
    data: Any,
    other: np.ndarray,
    d: int,
    seed: int,
    budget: float,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each score of the in- and out-of-distribution test images (higher = more typical)."""
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    k = max(1, d // 4)
    for label in models:
        short = {"LDE (CausalConvMDN)": "LDE", "GMM (validated)": "GMM"}.get(label, label)
        lde = LatentDensityEstimator(
            make_model(label, seed=seed, budget=budget),
            encoder=ae.encode,
            decoder=ae.decode,
            batch_size=500,
        ).fit(data.train)
        prefixes = [k] if short in ("LDE", "GMM") else []  # a flow has no prefix marginals
        pieces = {
            name: lde.ood_scores(x, prefixes=prefixes)
            for name, x in (("in", data.test), ("out", other))
        }
        if short == "LDE":
            scores[_LL] = pieces["in"]["log_prob"], pieces["out"]["log_prob"]
            scores[f"LDE: prefix log-likelihood, first {k} latents"] = (
                pieces["in"][f"log_prob_k{k}"],
                pieces["out"][f"log_prob_k{k}"],
            )
            scores["reconstruction error alone"] = (
                pieces["in"]["neg_reconstruction_error"],
                pieces["out"]["neg_reconstruction_error"],
            )
        else:
            scores[f"{short}: latent log-likelihood"] = (
                pieces["in"]["log_prob"],
                pieces["out"]["log_prob"],
            )
        if short in ("LDE", "GMM"):
            for method in ("sum", "typicality") if short == "LDE" else ("sum",):
                combined = LatentOODScore(lde, method, prefixes=[k], random_state=seed)
                combined.fit(data.valid)
                name = _COMBINED[method].replace("LDE", short)
                scores[name] = combined.score_samples(data.test), combined.score_samples(other)
    return scores


def tabulate(report: Report) -> None:
    """Declare the tables and notes of an ood report (also for re-rendered results)."""
    report.table(
        "Out-of-distribution detection (AUROC: in-distribution test images scored above "
        "out-of-distribution ones; FPR95: out-of-distribution images accepted at 95 % TPR)",
        ["pair", "D", "ae", "seed", "score", "auroc", "aupr_in", "aupr_out", "fpr95"],
        lambda r: not r.get("published"),
    )
    report.table(
        "Published pixel-space figures, for context (not run here)",
        ["pair", "score", "auroc"],
        lambda r: bool(r.get("published")),
    )
    target = [
        r
        for r in report.rows
        if r.get("score") == _COMBINED["sum"]
        and r["pair"].startswith("Fashion")
        and not r.get("published")
    ]
    if target:
        met = [r for r in target if r["auroc"] >= 0.99]
        each = "; ".join(
            f"D={r['D']} {r['ae']} seed {r['seed']}: {r['auroc']:.4f}" for r in target
        )
        report.notes.append(
            f"Target (Fashion-MNIST -> MNIST AUROC >= 0.99 with one model, no background "
            f"model), by the LDE's combined score: met by {len(met)} of {len(target)} "
            f"autoencoders ({each})."
        )
    report.notes += [
        (
            "Every score is oriented so that higher means more in-distribution: a "
            "log-likelihood, minus the mean squared reconstruction error per pixel, the "
            "log-density of the score vector (typicality)."
        ),
        (
            "Combined scores (ldelib.ood.LatentOODScore): the latent log-likelihood, the "
            "prefix log-likelihood of the first D/4 latents and minus the reconstruction "
            "error, each standardised by its mean and standard deviation over the "
            "in-distribution validation images (which neither the autoencoder nor the density "
            "saw), then averaged ('sum'); or the log-density of the three under a validated "
            "Gaussian mixture fitted to those validation images ('typicality', which also "
            "flags inputs that are too likely). No out-of-distribution image is used to "
            "choose or fit anything."
        ),
    ]


def _figure(
    report: Report, out: Path, histograms: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
) -> None:
    plt = report.pyplot()
    if plt is None or not histograms:
        return
    pairs = sorted({p for p, _ in histograms})
    kinds = ("latent log-likelihood", "combined score")
    fig, axes = plt.subplots(
        len(kinds),
        len(pairs),
        figsize=(5.5 * len(pairs), 7),
        squeeze=False,
        constrained_layout=True,
    )
    for j, pair in enumerate(pairs):
        inside, outside = pair.split(" -> ")
        for i, kind in enumerate(kinds):
            s_in, s_out = histograms[pair, kind]
            both = np.concatenate([s_in, s_out])
            both = both[np.isfinite(both)]
            lo, hi = np.percentile(both, [0.5, 99.5])
            bins = np.linspace(lo, hi, 60)
            ax = axes[i, j]
            ax.hist(np.clip(s_in, lo, hi), bins, alpha=0.6, density=True, label=f"{inside} (in)")
            ax.hist(
                np.clip(s_out, lo, hi), bins, alpha=0.6, density=True, label=f"{outside} (out)"
            )
            auroc = ood_metrics(s_in, s_out).auroc
            ax.set_title(f"trained on {inside}: LDE {kind} (AUROC {auroc:.3f})", fontsize=9)
            ax.set_xlabel(kind)
            ax.legend(fontsize=8)
    report.save_figure(fig, out, "ood")


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "ood",
    run,
    "out-of-distribution detection between Fashion-MNIST and MNIST",
    options=frozenset({"dims"}),
    uses_autoencoders=True,
    tabulate=tabulate,
)
