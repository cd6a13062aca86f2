"""Suite ``ordering``: reconstruction error against the number of active latents.

For each dataset and latent size, the plain and the incremental autoencoder (same
initial weights, data and budget; cached, shared with the other suites) reconstruct
test images from their first k latents only (the rest set to 0), k = 1 ... D. The
incremental schedule should make every prefix more informative (Yoo et al., Fig. 3).
"""

from __future__ import annotations

from pathlib import Path

from ._data import SPLITS, LatentGrid
from ._report import Report
from ._suite import Suite


def run(
    out: Path, quick: bool, seeds: list[int] | None, cache_dir: Path, budget_s: float | None = None
) -> Report:
    seeds = seeds or [0]
    grid = LatentGrid.of(quick)
    report = Report(
        "ordering",
        quick,
        {
            "datasets": grid.datasets,
            "latent_dims": grid.dims,
            "n_train_images": grid.n_train,
            "n_test_images": grid.n_test,
            "epochs": grid.epochs,
            "seeds": seeds,
            "splits": SPLITS,
            "autoencoder": "reference conv AE, width 16; IAE warm-up over the first half",
        },
    )
    curves: dict[tuple[str, int, str], list[float]] = {}
    for dataset, seed, d, schedule, data, ae in grid.autoencoders(seeds, cache_dir):
        ks = list(range(1, d + 1))
        errors = ae.model.prefix_reconstruction_error(data.test, ks).tolist()
        curves[dataset, d, schedule] = errors
        marks = [2**i for i in range(d.bit_length()) if 2**i <= d]
        report.add(
            dataset=dataset,
            D=d,
            ae=schedule,
            seed=seed,
            ae_fit_s=ae.fit_s,
            mse=errors,
            **{f"k={k}": errors[k - 1] for k in marks},
        )
    marks = sorted(
        {k for r in report.rows for k in r if k.startswith("k=")}, key=lambda s: int(s[2:])
    )
    report.table(
        "Test reconstruction MSE ([0, 1] pixels) with only the first k latents",
        ["dataset", "D", "ae", "seed", *marks],
    )
    _figure(report, out, curves, grid.datasets, grid.dims)
    return report


def _figure(report: Report, out: Path, curves: dict, datasets: tuple, dims: tuple) -> None:
    plt = report.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False, constrained_layout=True
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for colour, d in zip(colours, dims, strict=False):
            for schedule, style in (("IAE", "-"), ("plain", "--")):
                errors = curves.get((dataset, d, schedule))
                if errors is not None:
                    ax.plot(
                        range(1, d + 1), errors, style, color=colour, label=f"D={d} {schedule}"
                    )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("active latents k (first k kept)")
        ax.set_ylabel("test MSE")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    report.save_figure(fig, out, "ordering")


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "ordering",
    run,
    "reconstruction error against active latents, IAE vs plain AE",
    uses_autoencoders=True,
)
