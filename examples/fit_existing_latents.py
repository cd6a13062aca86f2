"""Fit a density model on latent vectors stored in a .npy file; score and sample.

    python examples/fit_existing_latents.py latents.npy --out-dir out/
    python examples/fit_existing_latents.py --quick          # synthetic latents, ~1 minute

Holds out 20% of the rows as a test set, fits CausalConvMDN and a Gaussian mixture
(components chosen on a validation split) on the rest, prints each model's test
log-likelihood with its standard error, and saves the better model and 1,000 samples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ldelib import GMM, CausalConvMDN
from ldelib.datasets import make_target
from ldelib.metrics import mean_log_likelihood


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("latents", nargs="?", help="an (n, D) .npy array")
    parser.add_argument("--quick", action="store_true", help="small synthetic run")
    parser.add_argument("--out-dir", default="out/latents")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.latents:
        Z = np.load(args.latents, allow_pickle=False)
    elif args.quick:
        Z = make_target("sine-chain", 8).sample(3000, random_state=args.seed)
    else:
        parser.error("give a .npy file of latents, or --quick for a synthetic run")
    order = np.random.default_rng(args.seed).permutation(len(Z))
    n_test = len(Z) // 5
    Z_test, Z_train = Z[order[:n_test]], Z[order[n_test:]]
    print(f"{len(Z_train)} training and {len(Z_test)} test rows of {Z.shape[1]} dimensions")

    models = {
        "CausalConvMDN": CausalConvMDN(
            random_state=args.seed, max_epochs=60 if args.quick else 200
        ),
        "GMM": GMM([1, 2, 5, 10, 20], random_state=args.seed),
    }
    scores = {}
    for name, model in models.items():
        model.fit(Z_train)
        mean, se = mean_log_likelihood(model.score_samples(Z_test))
        scores[name] = mean
        print(
            f"{name:<14} test log-likelihood {mean:9.3f} ± {se:.3f} nats "
            f"({mean / Z.shape[1]:.4f} nats/dim)"
        )
    print(f"GMM chose K = {models['GMM'].n_components_}")

    best = max(scores, key=scores.get)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models[best].save(out / "model.ldelib")
    np.save(out / "samples.npy", models[best].sample(1000, random_state=args.seed))
    print(f"saved the {best} model and 1000 samples in {out}/")
    return scores


if __name__ == "__main__":
    main()
