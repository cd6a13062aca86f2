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
* ``conditional``: conditional densities p(x | y) on a target with an exact density
  (classes, and a context that moves and warps the clusters), and on MNIST latents per
  digit: likelihood, generative-classifier accuracy, judged class-conditional samples.
* ``scale``: out-of-core fits and scoring of 1 to 10 million 64-D rows read from disk:
  peak memory, seconds per million rows, test log-likelihood against the truth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import (
    conditional,
    digits,
    interpolation,
    latents,
    mnist_pixels,
    ood,
    ordering,
    parzen,
    scale,
    speed,
    toy,
    variations,
    warped,
)
from ._models import select_models
from ._suite import Suite

__all__ = ["SUITES", "Suite", "run_suite"]

#: The suites by the name ``python -m benchmarks`` takes, in the order ``--help`` lists
#: them; each module declares its own.
SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        toy.SUITE,
        latents.SUITE,
        parzen.SUITE,
        ordering.SUITE,
        interpolation.SUITE,
        mnist_pixels.SUITE,
        digits.SUITE,
        warped.SUITE,
        speed.SUITE,
        scale.SUITE,
        ood.SUITE,
        variations.SUITE,
        conditional.SUITE,
    )
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
    the suites that compare models / latent sizes. An option the suite does not take
    (see :class:`Suite`) is a ValueError.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}.")
    suite = SUITES[name]
    out = Path(out)
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}.")
    for option, value in (("models", models), ("dims", dims), ("cache", cache_dir)):
        if value is not None and option not in suite.takes:
            raise ValueError(f"suite {name!r} has no --{option} option.")
    kwargs: dict[str, Any] = {"out": out, "quick": quick, "seeds": seeds, "budget_s": budget_s}
    if suite.uses_autoencoders:
        kwargs["cache_dir"] = Path(cache_dir) if cache_dir is not None else out / "cache"
    if models is not None:
        kwargs["models"] = select_models(models)
    if dims is not None:
        kwargs["dims"] = dims
    return suite.run(**kwargs)
