"""A full fit of 60,000 rows at large D, under a budget: the LDE against the mixtures.

    OMP_NUM_THREADS=1 python benchmarks/large_d.py MODEL D BUDGET [DATA [CACHE]]

``MODEL`` is ``lde`` (``CausalConvMDN(max_time=BUDGET)``), ``lde-diag`` or ``lde-auto``
(the same with ``covariance_type="diag"`` or ``"auto"``), or a covariance type of
``GMM("auto", reg_covar="auto", max_time=BUDGET)`` (``full``, ``diag``...). The data are
``make_target("gmm", D, n_components=20, seed=0)``: 60,000 training rows, 10,000 test
rows. With ``DATA`` ``mnist``: the D latents of the reference incremental autoencoder
(as the latents suite builds it, 12 epochs) trained on MNIST's 60,000 training images,
and of its 10,000 test images (no truth); the autoencoder is kept in ``CACHE`` (default
``bench-results/cache``). Prints one JSON line: the test log-likelihood (nats per vector)
with its standard error, the truth's, the fit's wall time and what the model chose.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

if not __package__:
    # Run as a script, its own folder comes first on sys.path: the package it belongs
    # to is importable from the folder above.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from ldelib.datasets import make_target
from ldelib.models import GMM, CausalConvMDN


def main() -> None:
    model, d, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    data = sys.argv[4] if len(sys.argv) > 4 else "gmm"
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    truth: float | None = None
    if data == "mnist":
        train, test = _mnist_latents(
            d, Path(sys.argv[5] if len(sys.argv) > 5 else "bench-results/cache")
        )
    else:
        target = make_target("gmm", d, n_components=20, seed=0)
        train, test = target.sample(60_000, random_state=0), target.sample(10_000, random_state=1)
        truth = round(float(target.log_prob(test).mean()), 3)
    began = time.perf_counter()
    chosen: dict[str, object]
    if model.startswith("lde"):
        covariance_type: Any = model.partition("-")[2] or "full"
        lde = CausalConvMDN(max_time=budget, covariance_type=covariance_type, random_state=0)
        lde.fit(train)
        anchor = lde.anchor_ or {}
        chosen = {
            "K": lde.n_components_,
            "covariances": anchor.get("covariance_type"),
            "covariance_scores": anchor.get("covariance_scores"),
            "epochs": lde.n_iter_,
            "best_epoch": lde.best_epoch_,
            "anchor_s": round(anchor.get("fit_s", 0.0), 1),
            "resumed_s": anchor.get("resumed_s"),
        }
        fitted: GMM | CausalConvMDN = lde
    else:
        gmm = GMM("auto", reg_covar="auto", max_time=budget, random_state=0)
        fitted = gmm.set_params(covariance_type=model).fit(train)
        chosen = {"K": gmm.n_components_, "reg": gmm.reg_covar_}
    fit_s = time.perf_counter() - began
    scores = fitted.score_samples(test)
    row = {
        "model": model,
        "D": d,
        "budget": budget,
        "ll": round(float(scores.mean()), 3),
        "se": round(float(scores.std() / len(scores) ** 0.5), 3),
        "data": data,
        "truth": truth,
        "fit_s": round(fit_s, 1),
        **chosen,
    }
    print(json.dumps(row), flush=True)


def _mnist_latents(d: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    from benchmarks._data import autoencoder, images

    im = images("mnist", 60_000, 0, 10_000, seed=0)
    ae = autoencoder(
        im,
        key="mnist-n60000",
        latent_dim=d,
        incremental=True,
        epochs=12,
        seed=0,
        cache_dir=cache,
        width=16,
    ).model
    return ae.encode(im.train).astype(np.float64), ae.encode(im.test).astype(np.float64)


if __name__ == "__main__":
    main()
