"""Suite ``interpolation``: latent log-likelihood along straight latent paths.

One autoencoder is trained on MNIST and Fashion-MNIST together (plain, and with the
incremental schedule), an LDE fits its training latents, and the latent path
z_t = (1 - t) E(x_a) + t E(x_b) is scored between pairs of test images from the same
domain (digit-digit, garment-garment) and across domains (digit-garment). Paths that
leave the data's region of latent space show as a dip of log p(z_t) (Yoo et al.).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldelib.models import CausalConvMDN

from ._data import SPLITS, both_schedules, images
from ._report import Report
from ._suite import Suite

PAIRS = (("MNIST-MNIST", 0, 0), ("Fashion-Fashion", 1, 1), ("MNIST-Fashion", 0, 1))


def run(
    out: Path, quick: bool, seeds: list[int] | None, cache_dir: Path, budget_s: float | None = None
) -> Report:
    seeds = seeds or [0]
    if quick:
        n_train, n_valid, n_test, epochs, budget, n_pairs, d = 2000, 500, 1000, 3, 1.5, 50, 8
    else:
        n_train, n_valid, n_test, epochs, budget, n_pairs, d = (
            20_000,
            1000,
            4000,
            12,
            60.0,
            500,
            16,
        )
    budget = budget_s or budget
    steps = 11
    t = np.linspace(0.0, 1.0, steps)
    report = Report(
        "interpolation",
        quick,
        {
            "datasets": "MNIST + Fashion-MNIST (half each)",
            "latent_dim": d,
            "n_train_images": n_train,
            "n_test_images": n_test,
            "epochs": epochs,
            "pairs_per_kind": n_pairs,
            "steps": steps,
            "seeds": seeds,
            "splits": SPLITS,
            "lde_budget_s": budget,
        },
    )
    paths: dict[tuple[str, str], np.ndarray] = {}
    strips: dict[str, np.ndarray] = {}
    for seed in seeds:
        data = images("mnist+fashion", n_train, n_valid, n_test, seed=seed)
        rng = np.random.default_rng(seed)
        for schedule, ae in both_schedules(
            data, f"mnist+fashion-n{n_train}", d, epochs=epochs, seed=seed, cache_dir=cache_dir
        ):
            lde = CausalConvMDN(max_time=budget, random_state=seed, device="cpu")
            lde.fit(ae.model.encode(data.train))
            Z_test = ae.model.encode(data.test)
            test_ll = lde.score_samples(Z_test)
            for kind, a, b in PAIRS:
                pool_a = np.flatnonzero(data.test_domain == a)
                pool_b = np.flatnonzero(data.test_domain == b)
                ia, ib = rng.choice(pool_a, n_pairs), rng.choice(pool_b, n_pairs)
                za, zb = Z_test[ia], Z_test[ib]
                path = (1 - t)[None, :, None] * za[:, None] + t[None, :, None] * zb[:, None]
                ll = lde.score_samples(path.reshape(-1, d)).reshape(n_pairs, steps)
                # The dip: how far the path's lowest point falls below its end points.
                ends = np.minimum(ll[:, 0], ll[:, -1])
                dip = ends - ll.min(axis=1)
                paths[schedule, kind] = ll.mean(axis=0)
                report.add(
                    ae=schedule,
                    pairs=kind,
                    seed=seed,
                    ll_ends=float(ll[:, [0, -1]].mean()),
                    ll_midpoint=float(ll[:, steps // 2].mean()),
                    ll_min=float(ll.min(axis=1).mean()),
                    dip=float(dip.mean()),
                    dip_se=float(dip.std() / np.sqrt(n_pairs)),
                    test_ll_mnist=float(test_ll[data.test_domain == 0].mean()),
                    test_ll_fashion=float(test_ll[data.test_domain == 1].mean()),
                )
                if kind == "MNIST-Fashion":
                    strips[schedule] = ae.model.decode(path[:4].reshape(-1, d))
    report.table(
        "Mean latent log-likelihood along test-pair paths (nats; dip = mean of "
        "min(end points) - min(path))",
        [
            "ae",
            "pairs",
            "seed",
            "ll_ends",
            "ll_midpoint",
            "ll_min",
            "dip",
            "dip_se",
            "test_ll_mnist",
            "test_ll_fashion",
        ],
    )
    _figure(report, out, t, paths, strips, steps)
    return report


def _figure(
    report: Report, out: Path, t: np.ndarray, paths: dict, strips: dict, steps: int
) -> None:
    plt = report.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(
        1, 3, figsize=(16, 4), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.2, 1.2]}
    )
    for (schedule, kind), ll in paths.items():
        axes[0].plot(t, ll, "-" if schedule == "IAE" else "--", label=f"{schedule}: {kind}")
    axes[0].set_xlabel("t")
    axes[0].set_ylabel("mean log p(z_t) (nats)")
    axes[0].legend(fontsize=7)
    for ax, schedule in zip(axes[1:], ("plain", "IAE"), strict=True):
        if schedule in strips:
            rows = strips[schedule].reshape(-1, steps, 28, 28)
            ax.imshow(np.concatenate([np.concatenate(list(r), axis=1) for r in rows]), cmap="gray")
        ax.set_title(f"{schedule}: digit to garment paths")
        ax.axis("off")
    report.save_figure(fig, out, "interpolation")


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "interpolation",
    run,
    "latent log-likelihood along within- and cross-domain paths",
    uses_autoencoders=True,
)
