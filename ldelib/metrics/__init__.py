"""Evaluation metrics: Parzen-window log-likelihood, kernel two-sample tests, unit helpers.

They score samples from any generator, including ones that never touched this library.

* :func:`parzen_log_likelihood` (``ldelib.metrics.parzen``) reproduces the
  Parzen-window protocol of GAN, GMMN and AAE papers: fit an isotropic Gaussian kernel
  density estimate to (typically 10,000) model samples, choose the window on a
  validation set, report the test mean and its standard error in nats.
* :func:`mmd2_unbiased` and :func:`mmd_permutation_test` (``ldelib.metrics.mmd``)
  compare two samples with the maximum mean discrepancy, computed by the same code as
  the GMMN loss (``ldelib.nn.mmd``).
* :func:`nats_to_bits_per_dim`, :func:`nats_per_dim` and :func:`mean_log_likelihood`
  (``ldelib.metrics.likelihood``) put log-likelihoods into the units different
  papers report.
* :func:`ood_metrics` (``ldelib.metrics.ood``): AUROC, AUPR and FPR at 95 % TPR of a
  score that should rank in-distribution inputs above out-of-distribution ones.
"""

from __future__ import annotations

from .likelihood import mean_log_likelihood, nats_per_dim, nats_to_bits_per_dim
from .mmd import MMDTestResult, mmd2_unbiased, mmd_permutation_test
from .ood import OODMetrics, ood_metrics
from .parzen import (
    MNIST_PARZEN_BANDWIDTHS,
    TFD_PARZEN_BANDWIDTHS,
    ParzenResult,
    parzen_log_likelihood,
)

__all__ = [
    "MNIST_PARZEN_BANDWIDTHS",
    "TFD_PARZEN_BANDWIDTHS",
    "MMDTestResult",
    "OODMetrics",
    "ParzenResult",
    "mean_log_likelihood",
    "mmd2_unbiased",
    "mmd_permutation_test",
    "nats_per_dim",
    "nats_to_bits_per_dim",
    "ood_metrics",
    "parzen_log_likelihood",
]
