"""Suite ``variations``: keep an image's first k latents, redraw the rest, and judge.

For each dataset and latent size, the plain and the incremental reference autoencoder
(cached, shared with ``latents`` and ``ordering``) get an LDE (CausalConvMDN) on their
training latents. Each of a set of test images is encoded, its first k latents kept and
the others drawn from the LDE's exact conditional ``p(z_k.. | z_<k)``
(:meth:`LatentDensityEstimator.vary`), then decoded, for k = 0, 1, 2, 4, ..., D. A
logistic regression trained on real images judges whether the variations keep the
class of their source; pixel distances measure how much they vary. An incremental
autoencoder puts the coarse content (the class) into its first latents, so a few kept
latents should keep the class while the rest of the image varies.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ldelib import BaseDensityEstimator
from ldelib.datasets import load_fashion_mnist, load_mnist
from ldelib.latent import LatentDensityEstimator
from ldelib.models import CausalConvMDN

from ._data import SCHEDULES, SPLITS, LatentGrid
from ._report import Report
from ._suite import Suite

#: Quantities tabulated against k, with the title of each table.
QUANTITIES = {
    "class_kept": "Class kept: share of variations the classifier puts in the class it "
    "gives the source image",
    "class_kept_true_label": "Share of variations the classifier puts in the source's true class",
    "class_kept_vs_reconstruction": "Share of variations the classifier puts in the class "
    "it gives the source's reconstruction",
    "pixel_distance_to_source": "Mean per-pixel |variation - reconstruction of the source| "
    "([0, 1] pixels)",
    "pixel_distance_between": "Mean per-pixel |variation - variation| between the "
    "variations of one source ([0, 1] pixels)",
}

_FIGURE_SOURCES = 3
_FIGURE_VARIATIONS = 6


@dataclasses.dataclass
class _Judge:
    """A logistic regression on flattened real pixels, with the labelled test split."""

    model: LogisticRegression
    test_images: np.ndarray  # (n, 1, 28, 28) float32 in [0, 1]
    test_labels: np.ndarray
    accuracy: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(1, user_api="blas"):
            return np.asarray(self.model.predict(np.asarray(X).reshape(len(X), -1)))


def _judge(dataset: str, n_train: int, max_iter: int, seed: int = 0) -> tuple[_Judge, float]:
    """Fit the classifier on a seeded subset of the official training split."""
    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    X, y = loader("train")
    X_test, y_test = loader("test")
    rows = np.random.default_rng(seed).choice(len(X), n_train, replace=False)
    start = time.perf_counter()
    # One BLAS thread: the matrices are small, and more threads on a busy machine are
    # many times slower, not faster.
    with threadpool_limits(1, user_api="blas"):
        model = LogisticRegression(C=0.1, max_iter=max_iter).fit(
            X[rows].reshape(n_train, -1) / 255.0, y[rows]
        )
    fit_s = time.perf_counter() - start
    test_images = X_test[:, None].astype(np.float32) / 255.0
    judge = _Judge(model, test_images, y_test.astype(np.int64), 0.0)
    judge.accuracy = float(np.mean(judge.predict(test_images) == judge.test_labels))
    return judge, fit_s


def keeps(d: int) -> list[int]:
    """k = 0, then the powers of two up to D, and D itself."""
    return sorted({0, d, *(2**i for i in range(d.bit_length()) if 2**i <= d)})


def vary_many(
    lde: LatentDensityEstimator,
    X: np.ndarray,
    keep: int,
    n_samples: int,
    random_state: int | np.random.Generator | None = None,
) -> np.ndarray:
    """``lde.vary(x, keep, n_samples)`` for every row x of ``X`` in one batch.

    The same steps as :meth:`LatentDensityEstimator.vary` (encode, keep the first
    ``keep`` latents of the density's ordering, draw the rest from their conditional,
    decode), with one conditional draw for all rows instead of a call per row.
    Returns shape ``(len(X), n_samples, ...)``; one row and a seed give exactly
    ``lde.vary``'s draws.
    """
    density = lde.density_
    if not isinstance(density, BaseDensityEstimator):
        raise TypeError(f"{type(density).__name__} has no conditionals to vary latents with.")
    Z = lde.encode(X)
    columns = density.prefix_columns(keep)
    given = np.repeat(Z[:, columns], n_samples, axis=0)
    draws = np.asarray(density.sample(len(given), random_state=random_state, given=given))
    decoded = lde.decode(draws)
    return decoded.reshape(len(X), n_samples, *decoded.shape[1:])


def _pixel_distances(V: np.ndarray, recon: np.ndarray) -> tuple[float, float]:
    """Mean per-pixel |variation - reconstruction|, and between variations of one source."""
    n, m = V.shape[:2]
    flat = V.reshape(n, m, -1)
    to_source = float(np.abs(flat - recon.reshape(n, 1, -1)).mean())
    a, b = np.triu_indices(m, 1)
    between = float(np.abs(flat[:, a] - flat[:, b]).mean()) if len(a) else 0.0
    return to_source, between


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
    # The full grid has D = 8 ... 64; by default two sizes, where D/4 latents are 4 and 8.
    grid = dataclasses.replace(grid, dims=tuple(dims or (grid.dims if quick else (16, 32))))
    budget = budget_s or (3.0 if quick else 60.0)
    n_sources, n_variations = (30, 8) if quick else (200, 8)
    n_classifier, max_iter = (2000, 200) if quick else (10_000, 300)
    report = Report(
        "variations",
        quick,
        {
            "datasets": grid.datasets,
            "latent_dims": grid.dims,
            "n_train_images": grid.n_train,
            "epochs": grid.epochs,
            "seeds": seeds,
            "splits": SPLITS,
            "autoencoder": "reference conv AE, width 16; IAE warm-up over the first half",
            "density": "CausalConvMDN on the autoencoder's training latents",
            "lde_budget_s": budget,
            "n_sources": n_sources,
            "n_variations": n_variations,
            "classifier": f"LogisticRegression(C=0.1, max_iter={max_iter}) on flattened "
            f"pixels of {n_classifier} images of the official training split (seed 0)",
            "sources": "a seeded subset (seed = the autoencoder's seed) of the official "
            "test split, the same images for both autoencoders",
        },
    )
    judges: dict[str, _Judge] = {}
    for dataset in grid.datasets:
        judge, fit_s = _judge(dataset, n_classifier, max_iter)
        judges[dataset] = judge
        report.add(
            kind="classifier",
            dataset=dataset,
            n_train=n_classifier,
            n_test=len(judge.test_labels),
            test_accuracy=judge.accuracy,
            n_iter=int(np.max(judge.model.n_iter_)),
            fit_s=fit_s,
        )
    shown: dict[tuple[str, str], list[np.ndarray]] = {}
    for dataset, seed, d, schedule, data, ae in grid.autoencoders(seeds, cache_dir):
        judge = judges[dataset]
        start = time.perf_counter()
        # One BLAS thread for the mixture's EM (D x D matrices): on a busy machine, more
        # are several times slower at the same result.
        with threadpool_limits(1, user_api="blas"):
            lde = LatentDensityEstimator(
                CausalConvMDN(random_state=seed, max_time=budget, device="cpu"),
                encoder=ae.model.encode,
                decoder=ae.model.decode,
            ).fit(data.train)
        lde_fit_s = time.perf_counter() - start
        sources = np.random.default_rng(seed).choice(len(judge.test_labels), n_sources, False)
        X, labels = judge.test_images[sources], judge.test_labels[sources]
        source_class = judge.predict(X)
        recon = lde.decode(lde.encode(X))
        recon_class = judge.predict(recon)
        report.add(
            kind="density",
            dataset=dataset,
            D=d,
            ae=schedule,
            seed=seed,
            ae_fit_s=ae.fit_s,
            ae_cached=ae.cached,
            lde_fit_s=lde_fit_s,
            lde_test_ll=lde.score(data.test),
            recon_mse=float(np.mean((recon - X) ** 2)),
            recon_class_kept=float(np.mean(recon_class == source_class)),
        )
        for k in keeps(d):
            start = time.perf_counter()
            V = vary_many(
                lde, X, k, n_variations, random_state=np.random.default_rng([seed, d, k])
            )
            vary_s = time.perf_counter() - start
            predicted = judge.predict(V.reshape(-1, *V.shape[2:])).reshape(n_sources, -1)
            kept = (predicted == source_class[:, None]).mean(axis=1)
            to_source, between = _pixel_distances(V, recon)
            report.add(
                kind="variations",
                dataset=dataset,
                D=d,
                ae=schedule,
                seed=seed,
                k=k,
                class_kept=float(kept.mean()),
                class_kept_se=float(kept.std() / np.sqrt(n_sources)),
                class_kept_true_label=float(np.mean(predicted == labels[:, None])),
                class_kept_vs_reconstruction=float(np.mean(predicted == recon_class[:, None])),
                pixel_distance_to_source=to_source,
                pixel_distance_between=between,
                n_sources=n_sources,
                n_variations=n_variations,
                vary_s=vary_s,
            )
        if seed == seeds[0] and d == grid.dims[0]:
            shown[dataset, schedule] = _strips(
                lde, X[:_FIGURE_SOURCES], recon[:_FIGURE_SOURCES], keeps(d), seed
            )
    _tabulate(report)
    _targets(report, grid.datasets, grid.dims)
    report.notes.append(
        "Class kept: the share of a source's variations that the classifier puts in the "
        "class it gives the source image itself (the real image, not its reconstruction), "
        "averaged over sources; class_kept_true_label compares with the true label "
        "instead, and class_kept_vs_reconstruction with the class of the source's "
        "reconstruction (1 at k = D: it discounts the blur of the autoencoder itself, "
        "which recon_class_kept measures). class_kept_se: standard error over sources."
    )
    report.notes.append(
        "Pixel distances compare with the source's reconstruction (all latents kept), so "
        "k = D gives 0 up to float rounding; distances are mean absolute differences of "
        "[0, 1] pixels."
    )
    report.notes.append(
        "Variations are drawn in one batch per (autoencoder, k): the steps of "
        "LatentDensityEstimator.vary for every source at once (the figure calls vary "
        "itself). k = 0 is an ordinary sample of the LDE."
    )
    _figures(report, out, shown, grid, seeds[0])
    return report


def _strips(
    lde: LatentDensityEstimator, X: np.ndarray, recon: np.ndarray, ks: list[int], seed: int
) -> list[np.ndarray]:
    """Per source, rows = k of [source, reconstruction, variations...] (through ``vary``)."""
    blocks = []
    for i, (x, r) in enumerate(zip(X, recon, strict=True)):
        rows = []
        for k in ks:
            rng = np.random.default_rng([seed, i, k])
            V = lde.vary(x, keep=k, n_samples=_FIGURE_VARIATIONS, random_state=rng)
            rows.append(np.concatenate([x[None], r[None], V])[:, 0])
        blocks.append(np.asarray(rows))  # (len(ks), 2 + variations, 28, 28)
    return blocks


def _mean_over_seeds(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def _by_k(quantity: str) -> Callable[[dict[str, Any]], bool]:
    return lambda row: row["kind"] == "by_k" and row["quantity"] == quantity


def _tabulate(report: Report) -> None:
    runs = [r for r in report.rows if r["kind"] == "variations"]
    columns = [f"k={k}" for k in sorted({r["k"] for r in runs})]
    groups: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {}
    for row in runs:
        groups.setdefault((row["dataset"], row["D"], row["ae"], row["seed"]), []).append(row)
    for quantity in QUANTITIES:
        for (dataset, d, schedule, seed), rows in groups.items():
            report.rows.append(
                {
                    "kind": "by_k",
                    "quantity": quantity,
                    "dataset": dataset,
                    "D": d,
                    "ae": schedule,
                    "seed": seed,
                    **{f"k={r['k']}": r[quantity] for r in rows},
                }
            )
    report.table(
        "Classifier (judge) on real test images",
        ["dataset", "n_train", "n_test", "test_accuracy", "n_iter", "fit_s"],
        lambda r: r["kind"] == "classifier",
    )
    report.table(
        "Autoencoders and LDEs (recon_class_kept: the classifier's agreement between a "
        "source and its reconstruction)",
        [
            "dataset",
            "D",
            "ae",
            "seed",
            "ae_fit_s",
            "lde_fit_s",
            "lde_test_ll",
            "recon_mse",
            "recon_class_kept",
        ],
        lambda r: r["kind"] == "density",
    )
    for quantity, title in QUANTITIES.items():
        report.table(
            f"{title}, against k latents kept",
            ["dataset", "D", "ae", "seed", *columns],
            _by_k(quantity),
        )
    report.table(
        "Every (autoencoder, k)",
        [
            "dataset",
            "D",
            "ae",
            "seed",
            "k",
            "class_kept",
            "class_kept_se",
            "class_kept_true_label",
            "class_kept_vs_reconstruction",
            "pixel_distance_to_source",
            "pixel_distance_between",
            "n_sources",
            "n_variations",
            "vary_s",
        ],
        lambda r: r["kind"] == "variations",
    )


def _targets(report: Report, datasets: Sequence[str], dims: Sequence[int]) -> None:
    """One line per (dataset, D): IAE class kept at k = D/4 >= 90% and above the plain AE."""
    runs = [r for r in report.rows if r["kind"] == "variations"]
    for dataset in datasets:
        for d in dims:
            k = max(1, d // 4)
            kept = {
                schedule: _mean_over_seeds(
                    [
                        r
                        for r in runs
                        if (r["dataset"], r["D"], r["ae"], r["k"]) == (dataset, d, schedule, k)
                    ],
                    "class_kept",
                )
                for schedule in SCHEDULES
            }
            iae, plain = kept["IAE"], kept["plain"]
            holds = iae >= 0.9 and iae > plain
            report.notes.append(
                f"Target ({dataset}, D={d}): with the IAE, class kept at k = D/4 = {k} >= 90% "
                f"and higher than the plain AE at the same k: "
                f"{'holds' if holds else 'fails'} (IAE {iae:.1%}, plain {plain:.1%})."
            )


def _mosaic(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks of (rows, columns, 28, 28) images stacked, with a blank line between blocks."""
    tiles = []
    for block in blocks:
        rows, cols = block.shape[:2]
        tiles.append(block.transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28))
        tiles.append(np.full((8, cols * 28), np.nan))
    return np.concatenate(tiles[:-1])


def _figures(
    report: Report,
    out: Path,
    shown: dict[tuple[str, str], list[np.ndarray]],
    grid: LatentGrid,
    seed: int,
) -> None:
    plt = report.pyplot()
    if plt is None:
        return
    d = grid.dims[0]
    ks = keeps(d)
    n_sets = len(grid.datasets)
    height = _FIGURE_SOURCES * len(ks) * 0.45 + 1.0
    fig, axes = plt.subplots(
        n_sets, 2, figsize=(12, height * n_sets), squeeze=False, constrained_layout=True
    )
    for row, dataset in enumerate(grid.datasets):
        for ax, schedule in zip(axes[row], ("plain", "IAE"), strict=True):
            blocks = shown.get((dataset, schedule))
            ax.axis("off")
            if blocks is None:
                continue
            cmap = plt.get_cmap("gray").with_extremes(bad="white")
            ax.imshow(_mosaic(blocks), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(
                f"{dataset}, D={d}, {schedule} (seed {seed}): rows k = {', '.join(map(str, ks))}"
                "; columns source, reconstruction, variations",
                fontsize=8,
            )
    report.save_figure(fig, out, "variations")

    runs = [r for r in report.rows if r["kind"] == "variations"]
    fig, axes = plt.subplots(
        n_sets, 3, figsize=(15, 3.8 * n_sets), squeeze=False, constrained_layout=True
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = (
        ("class_kept", "class kept"),
        ("pixel_distance_to_source", "pixel distance to reconstruction"),
        ("pixel_distance_between", "pixel distance between variations"),
    )
    for row, dataset in enumerate(grid.datasets):
        for ax, (key, label) in zip(axes[row], panels, strict=True):
            for colour, dim in zip(colours, grid.dims, strict=False):
                for schedule, style in (("IAE", "-"), ("plain", "--")):
                    ks = keeps(dim)
                    ys = [
                        _mean_over_seeds(
                            [
                                r
                                for r in runs
                                if (r["dataset"], r["D"], r["ae"], r["k"])
                                == (dataset, dim, schedule, k)
                            ],
                            key,
                        )
                        for k in ks
                    ]
                    ax.plot(
                        ks, ys, style, marker="o", ms=3, color=colour, label=f"D={dim} {schedule}"
                    )
            ax.set_xscale("symlog", base=2, linthresh=1)
            all_ks = keeps(max(grid.dims))
            ax.set_xticks(all_ks, [str(k) for k in all_ks])
            ax.set_xlabel("latents kept k")
            ax.set_ylabel(label)
            ax.set_title(dataset)
            ax.legend(fontsize=7)
    report.save_figure(fig, out, "variations-curves")


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "variations",
    run,
    "variations keeping an image's first k latents, IAE vs plain AE",
    options=frozenset({"dims"}),
    uses_autoencoders=True,
)
