"""ldelib: exact density estimation on autoencoder latents.

Fit a density model on latent vectors (or any tabular data), get exact log-likelihoods
and samples, behind one scikit-learn compatible contract.
"""

from __future__ import annotations

from ._version import __version__
from .autoencoders import ConvDecoder, ConvEncoder, make_conv_autoencoder
from .base import BaseGenerativeModel, DegenerateDataWarning, load
from .density import BaseDensityEstimator
from .incremental import IncrementalAutoencoder, active_dims
from .latent import LatentDensityEstimator
from .models import GMM, GMMN, CausalConvMDN

__all__ = [
    "GMM",
    "GMMN",
    "BaseDensityEstimator",
    "BaseGenerativeModel",
    "CausalConvMDN",
    "ConvDecoder",
    "ConvEncoder",
    "DegenerateDataWarning",
    "IncrementalAutoencoder",
    "LatentDensityEstimator",
    "__version__",
    "active_dims",
    "load",
    "make_conv_autoencoder",
]
