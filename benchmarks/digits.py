"""Suite ``digits``: scikit-learn's digits, where flexible models can beat mixtures.

The 1,797 8x8 digit images (integers 0..16) are dequantised, x = (v + u) / 17 with
u ~ U(0, 1), so every model fits a continuous density on [0, 1]^64; per seed, a fresh
shuffle gives 1,000 training, 300 validation and 497 test rows. Three data sets share
those rows: the 64 pixels; the pixels pooled 2x2 (mean of four) to 16 dimensions; and
the 16 latents of a small autoencoder trained on the training images. Small and
high-dimensional, they complement the latent sets of MNIST, where mixtures are strong.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ldelib.datasets import load_digits
from ldelib.incremental import IncrementalAutoencoder

from ._comparison import Comparison, compares_models
from ._report import Report
from ._suite import Suite
from ._summary import summarise


def dequantised_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test rows of the dequantised digits for one seed."""
    rng = np.random.default_rng(seed)
    X = (load_digits() + rng.random((1797, 64))) / 17.0
    order = rng.permutation(len(X))
    return X[order[:1000]], X[order[1000:1300]], X[order[1300:]]


def pooled(X: np.ndarray) -> np.ndarray:
    """8x8 images as 4x4 means of 2x2 blocks: (n, 64) -> (n, 16)."""
    return X.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def autoencoder_latents(
    train: np.ndarray, *rows: np.ndarray, seed: int, epochs: int = 300
) -> list[np.ndarray]:
    """16-D latents of an MLP autoencoder (64-128-16-128-64) trained on ``train``."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16))
    decoder = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.Sigmoid())
    ae = IncrementalAutoencoder(
        encoder,
        decoder,
        latent_dim=16,
        warmup_epochs=0,
        batch_size=64,
        max_epochs=epochs,
        n_iter_no_change=epochs,  # a fixed budget; the best validation epoch is kept
        device="cpu",
        random_state=seed,
    ).fit(train.astype(np.float32))
    return [ae.encode(x.astype(np.float32)).astype(np.float64) for x in (train, *rows)]


#: The data sets of the suite: name -> how the dequantised pixels become rows.
DATA = ("digits", "pooled", "ae-latents")


@compares_models(full_budget=45.0)
def run(options: Comparison) -> Report:
    report = Report(
        "digits",
        options.quick,
        {
            "data": "sklearn load_digits (1797 x 64), (v + U(0,1)) / 17; digits: the 64 "
            "pixels; pooled: 2x2 means, 16-D; ae-latents: 16-D latents of an MLP "
            "autoencoder 64-128-16-128-64 (ReLU, sigmoid out, MSE, Adam 1e-3, batch 64, "
            f"{50 if options.quick else 300} epochs) trained on the training images",
            "splits": "per seed: shuffled 1000 train / 300 valid / 497 test",
            "seeds": options.seeds,
            "budget_s_per_neural_model": options.budget,
        },
    )
    for seed in options.seeds:
        images = dequantised_digits(seed)
        sets = {
            "digits": images,
            "pooled": tuple(pooled(x) for x in images),
            "ae-latents": tuple(
                autoencoder_latents(*images, seed=seed, epochs=50 if options.quick else 300)
            ),
        }
        for name in DATA:
            train, valid, test = sets[name]
            fitted = options.evaluate(report, train, valid, test, seed=seed, data=name)
            options.paired_leads(fitted, test)
    tabulate(report)
    options.note_missing(report)
    return report


def tabulate(report: Report) -> None:
    """Summaries, tables and notes of a digits report (also for merged runs)."""
    summarise(report, ("data",))
    seeds = report.config["seeds"]
    report.table(
        f"Test log-likelihood, nats per dimension (x64 or x16 for nats per vector; mean "
        f"over {len(seeds)} seed(s), ± their standard deviation)",
        ["data", "model", "ll_per_dim", "pm", "estimate", "fit_s", "epochs"],
        lambda r: r.get("kind") == "summary",
    )
    report.table(
        "Every run (nats per vector; lde_lead: the default LDE minus the model on the same "
        "test rows, with its paired standard error)",
        [
            "data",
            "seed",
            "model",
            "ll",
            "se",
            "lde_lead",
            "lde_lead_se",
            "estimate",
            "fit_s",
            "fit_peak_mb",
            "epochs",
        ],
        lambda r: r.get("kind") != "summary",
    )
    report.notes.append(
        "ll_per_dim in the first table is nats per dimension: multiply by 64 (digits) or "
        "16 (pooled, ae-latents) for nats per vector. GMMN rows are Parzen estimates "
        "(biased low)."
    )


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "digits",
    run,
    "64-D dequantised scikit-learn digits, pooled and encoded too",
    options=frozenset({"models"}),
    tabulate=tabulate,
)
