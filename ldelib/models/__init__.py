"""Density models, one estimator per module."""

from .mdn import CausalConvMDN

__all__ = ["CausalConvMDN"]
