"""Does ``max_time`` bound the whole fit? Wall times of budgeted fits on a large file.

    python benchmarks/budget.py --out benchmarks/results/budget.md

Writes (once) a memory-mapped ``.npy`` of 2,000,000 x 64 float32 rows of a clustered
density (20 full-covariance Gaussians) next to ``--data``, then fits the default
``CausalConvMDN`` and ``GMM("auto", reg_covar="auto")`` on the file with each budget,
and reports each fit's wall time beside its budget, the mixture's share of it, and the
log-likelihood of 20,000 further rows of the same density that no fit sees.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from ldelib import GMM, CausalConvMDN

ROWS, DIM, CLUSTERS, HELD_OUT = 2_000_000, 64, 20, 20_000


def make_file(path: Path) -> None:
    """A clustered 64-D density, written in blocks of 100,000 rows."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (CLUSTERS, DIM))
    mixing = rng.normal(size=(CLUSTERS, DIM, DIM)) / 8
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, DIM))
    for start in range(0, ROWS, 100_000):
        k = rng.integers(CLUSTERS, size=100_000)
        noise = rng.normal(size=(100_000, DIM))
        out[start : start + 100_000] = (
            centres[k] + np.einsum("nij,nj->ni", mixing[k], noise) + 0.1 * noise
        )
    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("budget-rows.npy"))
    parser.add_argument("--budgets", type=float, nargs="+", default=[30.0, 120.0])
    parser.add_argument("--out", type=Path, default=Path("budget.md"))
    args = parser.parse_args()
    if not args.data.exists():
        make_file(args.data)
    rows = np.load(args.data, mmap_mode="r")
    # A slice of a memmap is a memmap: the fits read it from disk in chunks.
    path, test = rows[: ROWS - HELD_OUT], np.asarray(rows[ROWS - HELD_OUT :], np.float64)
    lines = [
        "# Budgeted fits on 1,980,000 x 64 rows read from a file",
        "",
        f"Command: `python benchmarks/budget.py --budgets {' '.join(map(str, args.budgets))}`  ",
        (
            f"Machine: {platform.processor() or platform.machine()}, "
            "torch and BLAS threads as set by the environment"
        ),
        "",
        (
            "| model | max_time (s) | wall (s) | over budget (s) | mixture (s) | epochs | "
            "kept | test ll (nats/row) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget in args.budgets:
        for model in (
            CausalConvMDN(max_time=budget, random_state=0, device="cpu"),
            GMM("auto", reg_covar="auto", max_time=budget, random_state=0),
        ):
            began = time.perf_counter()
            model.fit(path)
            wall = time.perf_counter() - began
            anchor = getattr(model, "anchor_", None)
            scores = getattr(model, "start_scores_", None)
            kept = (
                f"K={model.n_components_}, reg={model.reg_covar_:g}"
                if isinstance(model, GMM)
                else ("gmm" if anchor is not None else "random") + " start"
            )
            if scores:
                kept += f" (valid {scores})"
            mixture = anchor["fit_s"] if anchor else (wall if isinstance(model, GMM) else None)
            lines.append(
                f"| {type(model).__name__} | {budget:g} | {wall:.1f} | {wall - budget:+.1f} | "
                f"{'' if mixture is None else f'{mixture:.1f}'} | "
                f"{getattr(model, 'n_iter_', '')} | {kept} | {model.score(test):.3f} |"
            )
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
