"""Pure torch building blocks: causal convolution stacks and mixture heads."""

from .autoregressive import AutoregressiveMDN
from .causal import CausalConv1d, PaperCausalNet, ResidualCausalNet, StepCache
from .mixture import MixtureParams, mixture_log_prob, mixture_params, mixture_sample

__all__ = [
    "AutoregressiveMDN",
    "CausalConv1d",
    "MixtureParams",
    "PaperCausalNet",
    "ResidualCausalNet",
    "StepCache",
    "mixture_log_prob",
    "mixture_params",
    "mixture_sample",
]
