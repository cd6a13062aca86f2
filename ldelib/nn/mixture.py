r"""Univariate Gaussian mixtures: the output layer of a mixture density network.

A network emits :math:`3K` numbers per position, read as mixture logits, means and
unconstrained scales. All densities are computed in log space,

.. math:: \log p(x) = \operatorname{logsumexp}_k \big[\log \pi_k
          + \log \mathcal{N}(x \mid \mu_k, \sigma_k^2)\big],

so nothing underflows however far :math:`x` lies from the data, and scales are bounded
below so that no component can collapse onto a point.

References:
    | Mixture Density Networks (Bishop, 1994)
    | https://publications.aston.ac.uk/id/eprint/373/
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SOFTPLUS_ONE", "MixtureParams", "mixture_log_prob", "mixture_params", "mixture_sample"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: softplus(SOFTPLUS_ONE) = 1: the raw scale that gives a unit standard deviation.
SOFTPLUS_ONE = math.log(math.e - 1)


class MixtureParams(NamedTuple):
    """Parameters of :math:`K`-component Gaussian mixtures, each of shape (..., K)."""

    log_weights: Tensor
    means: Tensor
    log_scales: Tensor


def mixture_params(
    raw: Tensor,
    n_components: int,
    min_scale: float = 1e-3,
    parametrization: Literal["softplus", "exp"] = "softplus",
) -> MixtureParams:
    r"""Split raw network outputs of shape (..., 3K) into mixture parameters.

    Arguments:
        raw: Outputs ordered as means, scales, logits (:math:`K` each).
        n_components: :math:`K`.
        min_scale: Lower bound on every :math:`\sigma_k` (``"softplus"`` only).
        parametrization: ``"softplus"`` gives :math:`\sigma = \sigma_{\min} +
            \operatorname{softplus}(s)`; ``"exp"`` gives the unbounded
            :math:`\sigma = e^s` of the original ARMDN, for reproduction only.

    Example:
        >>> p = mixture_params(torch.zeros(4, 6), n_components=2)
        >>> p.log_weights.exp()
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000],
                [0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    means, scales, logits = raw.split(n_components, dim=-1)
    if parametrization == "softplus":
        log_scales = torch.log(min_scale + F.softplus(scales))
    elif parametrization == "exp":
        log_scales = scales
    else:
        raise ValueError(f"Unknown parametrization {parametrization!r}.")
    return MixtureParams(torch.log_softmax(logits, dim=-1), means, log_scales)


def mixture_log_prob(x: Tensor, params: MixtureParams) -> Tensor:
    """Log-density of ``x`` (shape (...)) under mixtures with parameters (..., K)."""
    z = (x.unsqueeze(-1) - params.means) * torch.exp(-params.log_scales)
    log_normal = -0.5 * z.square() - params.log_scales - _HALF_LOG_2PI
    return torch.logsumexp(params.log_weights + log_normal, dim=-1)


def mixture_sample(params: MixtureParams, uniform: Tensor, normal: Tensor) -> Tensor:
    """Draw from mixtures of shape (..., K) given noise of shape (...).

    The component is picked by inverting the cumulative weights at ``uniform``, then the
    draw is ``mean + scale * normal``: the same noise always gives the same sample, which
    lets two evaluation orders be compared draw for draw.
    """
    cumulative = torch.cumsum(params.log_weights.exp(), dim=-1)
    k = (cumulative < uniform.unsqueeze(-1)).sum(dim=-1, keepdim=True)
    k = k.clamp(max=params.means.shape[-1] - 1)
    mean = params.means.gather(-1, k).squeeze(-1)
    log_scale = params.log_scales.gather(-1, k).squeeze(-1)
    return mean + torch.exp(log_scale) * normal
