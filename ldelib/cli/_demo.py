"""``ldelib demo``: fit the LDE and a mixture to a 2-D target with a known density."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DPI", "demo", "draw"]


def demo(args: argparse.Namespace) -> int:
    from ..datasets import make_target
    from ..metrics import mean_log_likelihood
    from ..models import GMM, CausalConvMDN

    target = make_target(args.target)
    n_train = 2000 if args.quick else args.n_train
    train = target.sample(n_train, random_state=args.seed)
    test = target.sample(n_train, random_state=args.seed + 1)
    d = target.n_features
    truth, truth_se = mean_log_likelihood(target.log_prob(test))
    rows: list[tuple[str, float, float, float | None]] = [
        ("truth (exact density)", truth, truth_se, None)
    ]
    models = {
        "CausalConvMDN": CausalConvMDN(
            random_state=args.seed, max_epochs=40 if args.quick else 200
        ),
        "GMM (10 full-covariance)": GMM(10, covariance_type="full", random_state=args.seed),
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(train)
        elapsed = time.perf_counter() - start
        mean, se = mean_log_likelihood(model.score_samples(test))
        rows.append((name, mean, se, elapsed))

    print(f"target {target.name!r} ({d}-D): {n_train} training rows, {len(test)} test rows")
    print(f"{'model':<28}{'test log-lik (nats/row)':>26}{'nats/dim':>10}{'fit (s)':>9}")
    for name, mean, se, fit_s in rows:
        fit = "" if fit_s is None else f"{fit_s:.1f}"
        print(f"{name:<28}{mean:>17.4f} ± {se:<6.4f}{mean / d:>10.4f}{fit:>9}")

    if args.out:
        save_figure(target, models, Path(args.out), args.seed)
        print(f"wrote {args.out}")
    return 0


def save_figure(target: Any, models: dict[str, Any], path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(target, models, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


#: Resolution of the demo's figure; with its size (8 x 8 inches), 800 pixels a side.
DPI = 100


def draw(target: Any, models: dict[str, Any], seed: int) -> Any:
    """The demo's figure: the true density, the two fitted ones and samples, 2 x 2.

    Two by two rather than in a row, and with 14-point titles, so that the figure is
    still readable shrunk to the width of a page (about 700 pixels).
    """
    import matplotlib.pyplot as plt

    from ..plot import plot_density_2d, plot_samples_2d

    data = target.sample(20_000, random_state=seed + 2)
    lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    bounds = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    mdn = models["CausalConvMDN"]
    fig, grid = plt.subplots(2, 2, figsize=(8, 8), constrained_layout=True)
    axes = grid.ravel()
    plot_density_2d(target.log_prob, bounds, axes[0], title="true density")
    for ax, (name, model) in zip(axes[1:3], models.items(), strict=True):
        plot_density_2d(model.score_samples, bounds, ax, title=f"{name} density")
    plot_samples_2d(
        mdn.sample(5000, random_state=seed), bounds, axes[3], title="CausalConvMDN samples"
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.title.set_fontsize(14)
    return fig
