"""MNIST: prefix reconstruction error of an incremental vs a plain autoencoder, and the
latent test log-likelihood of CausalConvMDN vs a Gaussian mixture on both latent sets.

Both autoencoders share architecture, initial weights, data, seed and epoch budget; the
only difference is the incremental schedule (warmup_epochs > 0). Gaussian mixture
components are chosen on a validation split of the training latents.

    python benchmarks/mnist_ordering.py --n-train 10000 --epochs 12 --out benchmarks/results/mnist_ordering
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import ldelib
from ldelib import GMM, CausalConvMDN, IncrementalAutoencoder, make_conv_autoencoder
from ldelib.datasets import load_mnist
from ldelib.metrics import mean_log_likelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--warmup", type=float, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    start = time.perf_counter()

    train, _ = load_mnist("train")
    test, _ = load_mnist("test")
    X = train[: args.n_train, None].astype(np.float32) / 255.0
    X_test = test[: args.n_test, None].astype(np.float32) / 255.0
    d = args.latent_dim
    torch.manual_seed(args.seed)
    encoder, decoder = make_conv_autoencoder(28, 1, d, width=16)
    ks = list(range(1, d + 1))
    rows = {}
    for name, warmup in (("IAE", args.warmup), ("plain AE", 0)):
        t0 = time.perf_counter()
        ae = IncrementalAutoencoder(
            copy.deepcopy(encoder),
            copy.deepcopy(decoder),
            latent_dim=d,
            warmup_epochs=warmup,
            max_epochs=args.epochs,
            n_iter_no_change=args.epochs,
            random_state=args.seed,
        ).fit(X)
        prefix = ae.prefix_reconstruction_error(X_test, ks=ks).tolist()
        Z, Z_test = ae.encode(X), ae.encode(X_test)
        row = {"prefix_mse": prefix, "ae_fit_s": time.perf_counter() - t0}
        for label, model in (
            ("CausalConvMDN", CausalConvMDN(random_state=args.seed, device="cpu")),
            ("GMM", GMM([1, 2, 5, 10, 20, 40], random_state=args.seed)),
        ):
            t0 = time.perf_counter()
            model.fit(Z)
            ll, se = mean_log_likelihood(model.score_samples(Z_test))
            row[label] = {
                "ll": ll,
                "se": se,
                "ll_per_dim": ll / d,
                "fit_s": time.perf_counter() - t0,
            }
            if label == "GMM":
                row[label]["K"] = model.n_components_
        rows[name] = row
        print(name, "prefix MSE", " ".join(f"{e:.4f}" for e in prefix))
        print(
            name,
            "latent test LL: MDN {:.3f} ± {:.3f}, GMM {:.3f} ± {:.3f} (K={})".format(
                row["CausalConvMDN"]["ll"],
                row["CausalConvMDN"]["se"],
                row["GMM"]["ll"],
                row["GMM"]["se"],
                row["GMM"]["K"],
            ),
            flush=True,
        )
    meta = {
        "args": vars(args),
        "wall_s": time.perf_counter() - start,
        "ldelib": ldelib.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        lines = [
            (
                f"`python benchmarks/mnist_ordering.py --n-train {args.n_train} --epochs "
                f"{args.epochs} --warmup {args.warmup} --out {args.out}`"
            ),
            "",
            "| model | " + " | ".join(f"k={k}" for k in ks) + " |",
            "|---|" + "---|" * d,
        ]
        for name, row in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{e:.4f}" for e in row["prefix_mse"]) + " |")
        lines += [
            "",
            "| latents | CausalConvMDN (nats) | GMM (nats) | GMM K |",
            "|---|---|---|---|",
        ]
        for name, row in rows.items():
            m, g = row["CausalConvMDN"], row["GMM"]
            lines.append(
                f"| {name} | {m['ll']:.3f} ± {m['se']:.3f} | {g['ll']:.3f} ± {g['se']:.3f} | {g['K']} |"
            )
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
