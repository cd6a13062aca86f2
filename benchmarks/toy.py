"""Known-density benchmark: every model against the exact log-likelihood.

For each target with an exact density (2-D toys and a 16-D nonlinear chain), fits
ldelib's CausalConvMDN, GMM (10 full-covariance components, as scikit-learn users would
fit) and GMMN on the same training rows, and reports on the same held-out rows:

* test log-likelihood in nats per dimension, with its standard error, beside the truth
  (GMMN has no density: its row is a Parzen-window estimate, bandwidth chosen on a
  validation split, and is marked as such);
* the unbiased MMD² between 2,000 model samples and 2,000 held-out rows;
* fit time.

    python benchmarks/toy.py --out benchmarks/results/toy
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

import ldelib
from ldelib import GMM, GMMN, CausalConvMDN
from ldelib.datasets import make_target
from ldelib.metrics import mean_log_likelihood, mmd2_unbiased, parzen_log_likelihood

TARGETS = [
    ("banana", None),
    ("spiral", None),
    ("moons", None),
    ("ring", None),
    ("checkerboard", None),
    ("sine-chain", 16),
]


def models(seed: int) -> dict[str, object]:
    return {
        "CausalConvMDN": CausalConvMDN(random_state=seed, device="cpu"),
        "GMM (K=10, full)": GMM(10, covariance_type="full", random_state=seed),
        "GMMN": GMMN(random_state=seed, device="cpu"),
    }


def run(n_train: int, n_test: int, seed: int, only: list[str] | None) -> list[dict]:
    rows = []
    for name, d in TARGETS:
        if only and name not in only:
            continue
        target = make_target(name, d)
        train = target.sample(n_train, random_state=seed)
        valid = target.sample(n_test, random_state=seed + 1)
        test = target.sample(n_test, random_state=seed + 2)
        dims = target.n_features
        truth, truth_se = mean_log_likelihood(target.log_prob(test))
        rows.append(
            {
                "target": name,
                "D": dims,
                "model": "truth",
                "ll_per_dim": truth / dims,
                "se_per_dim": truth_se / dims,
                "estimate": "exact",
            }
        )
        for label, model in models(seed).items():
            start = time.perf_counter()
            model.fit(train)
            fit_s = time.perf_counter() - start
            samples = model.sample(10_000, random_state=seed)
            if hasattr(model, "score_samples"):
                ll, se = mean_log_likelihood(model.score_samples(test))
                estimate = "exact"
            else:
                parzen = parzen_log_likelihood(samples, test, X_valid=valid)
                ll, se, estimate = (
                    parzen.mean,
                    parzen.std_err,
                    f"Parzen (h={parzen.bandwidth:.3g})",
                )
            mmd = mmd2_unbiased(samples[:2000], test[:2000])
            rows.append(
                {
                    "target": name,
                    "D": dims,
                    "model": label,
                    "ll_per_dim": ll / dims,
                    "se_per_dim": se / dims,
                    "estimate": estimate,
                    "mmd2": mmd,
                    "fit_s": fit_s,
                }
            )
            print(
                f"{name:>12} {label:<18} {ll / dims:9.4f} ± {se / dims:.4f} nats/dim "
                f"(truth {truth / dims:.4f})  MMD² {mmd:.2e}  fit {fit_s:6.1f} s  [{estimate}]",
                flush=True,
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| target | D | model | test log-lik (nats/dim) | estimate | MMD² to test | fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mmd = f"{r['mmd2']:.1e}" if "mmd2" in r else ""
        fit = f"{r['fit_s']:.1f}" if "fit_s" in r else ""
        lines.append(
            f"| {r['target']} | {r['D']} | {r['model']} | {r['ll_per_dim']:.4f} ± "
            f"{r['se_per_dim']:.4f} | {r['estimate']} | {mmd} | {fit} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", nargs="*")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.n_train, args.n_test, args.seed, args.targets)
    meta = {
        "command": "python benchmarks/toy.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v and k != "targets"
        ),
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seed": args.seed,
        "wall_s": time.perf_counter() - start,
        "ldelib": ldelib.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        out.with_suffix(".md").write_text(f"`{meta['command']}`\n\n" + markdown(rows))


if __name__ == "__main__":
    main()
