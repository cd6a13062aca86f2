"""Reproducible benchmarks of ldelib: ``python -m benchmarks SUITE [--quick] [--out DIR]``.

Each suite returns a report whose ``write(out)`` writes ``<suite>.json`` (every
measured row, the configuration, machine, versions and wall time), ``<suite>.md``
(tables) and its PNG figures into the output folder. ``--quick`` runs a reduced
configuration in a few minutes on two cores; the committed results under
``benchmarks/results/`` are full runs, each with the command that produced it.

The package is not part of the ldelib wheel: it lives in the repository, beside its
results. Run it from a checkout, after ``pip install -e ".[bench]"``.

Suites:

* ``toy``: 2-D targets with exact densities, all models vs the truth, Figure 5.
* ``latents``: autoencoder latents of MNIST and Fashion-MNIST, D = 8 to 64.
* ``parzen``: the paper's Parzen-window protocol on decoded MNIST samples.
* ``ordering``: reconstruction error against active latents, IAE vs plain AE.
* ``interpolation``: latent log-likelihood along within- and cross-domain paths.
* ``mnist-pixels``: the MAF paper's 784-D dequantised MNIST in logit space.
* ``digits``: 64-D dequantised scikit-learn digits, a small high-dimensional set.
* ``warped``: mixtures pushed through known bijections (exact densities), D = 8 to 64,
  10,000 and 60,000 rows, Gaussian and heavy-tailed clusters; the share of the GMM's gap
  to the truth each model closes.
* ``speed``: rows per second of ``log_prob``, ``sample`` and training, D = 8 to 128,
  and the LDE's cached sampling against the naive loop.
* ``ood``: out-of-distribution detection, Fashion-MNIST vs MNIST both ways, from the
  latent likelihood, prefix marginals, reconstruction error and their typicality.
* ``variations``: images varied by redrawing all but their first k latents: how often
  the class is kept and how far the images move, plain vs incremental autoencoder.
* ``scale``: out-of-core fits and scoring of 1 to 10 million 64-D rows read from disk:
  peak memory, seconds per million rows, test log-likelihood against the truth.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from ._models import select_models

__all__ = ["SUITES", "run_suite"]

#: The suites by the name ``python -m benchmarks`` takes, each with the module of
#: ``benchmarks`` that runs it.
SUITES = {
    "toy": "toy",
    "latents": "latents",
    "parzen": "parzen",
    "ordering": "ordering",
    "interpolation": "interpolation",
    "mnist-pixels": "mnist_pixels",
    "digits": "digits",
    "warped": "warped",
    "speed": "speed",
    "scale": "scale",
    "ood": "ood",
    "variations": "variations",
}


def run_suite(
    name: str,
    out: str | os.PathLike[str],
    quick: bool = False,
    seeds: list[int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    budget_s: float | None = None,
    models: list[str] | None = None,
    dims: list[int] | None = None,
) -> Any:
    """Run suite ``name``; its report's ``write(out)`` writes the files.

    ``cache_dir`` keeps trained autoencoders between suites (default ``out/cache``);
    ``budget_s`` replaces the suite's wall-time budget per neural model (ignored by
    ``ordering``, which fits no density model); ``models`` (command-line names, see
    ``SHORT_NAMES``) runs only those models, and ``dims`` only those latent sizes, in
    the suites that compare models / latent sizes.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}.")
    module = importlib.import_module(f".{SUITES[name]}", __name__)
    out = Path(out)
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}.")
    kwargs: dict[str, Any] = {"out": out, "quick": quick, "seeds": seeds, "budget_s": budget_s}
    if getattr(module, "USES_AUTOENCODERS", False):
        kwargs["cache_dir"] = Path(cache_dir) if cache_dir is not None else out / "cache"
    accepted = inspect.signature(module.run).parameters
    for option, value in (("models", models), ("dims", dims)):
        if value is None:
            continue
        if option not in accepted:
            raise ValueError(f"suite {name!r} has no --{option} option.")
        kwargs[option] = select_models(models) if option == "models" else value
    return module.run(**kwargs)
