"""ldelib: exact density estimation on autoencoder latents.

Fit a density model on latent vectors (or any tabular data), get exact log-likelihoods
and samples, behind one scikit-learn compatible contract.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .base import BaseDensityEstimator, load
from .models import CausalConvMDN

__all__ = ["BaseDensityEstimator", "CausalConvMDN", "__version__", "load"]
