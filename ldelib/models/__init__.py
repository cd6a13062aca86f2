"""Density models, one estimator per module."""

from .gmm import GMM
from .gmmn import GMMN
from .mdn import CausalConvMDN

__all__ = ["GMM", "GMMN", "CausalConvMDN"]
