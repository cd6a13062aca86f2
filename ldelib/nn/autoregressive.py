r"""The autoregressive mixture density network over vector dimensions.

.. math:: p(z) = \prod_{j=0}^{D-1} p(z_j \mid z_{<j}), \qquad
          p(z_j \mid z_{<j}) = \sum_{k=1}^K \pi_{jk}\,
          \mathcal{N}(z_j \mid \mu_{jk}, \sigma_{jk}^2),

where a causal convolution network running along the dimensions of :math:`z` gives the
:math:`3K` mixture parameters of dimension :math:`j` from :math:`z_{<j}` alone. The
input is the shifted sequence :math:`(0, \dots, 0, z_0, \dots, z_{D-2})` with a second,
mask channel that is 1 on real values and 0 on padding, so that a latent value of zero
and the padding stay distinguishable. The log-density takes one parallel pass; sampling
takes :math:`D` sequential steps, each reusing cached activations.

References:
    | Density Estimation and Incremental Learning of Latent Vector for Generative
      Autoencoders (Yoo et al., 2019)
    | https://arxiv.org/abs/1902.04294
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .causal import PaperCausalNet, ResidualCausalNet, StepCache
from .mixture import (
    SOFTPLUS_ONE,
    MixtureParams,
    mixture_log_prob,
    mixture_params,
    mixture_sample,
)

__all__ = ["AutoregressiveMDN"]

Architecture = Literal["residual", "paper"]


class AutoregressiveMDN(nn.Module):
    r"""Exact autoregressive density over :math:`D`-dimensional vectors.

    Arguments:
        features: The number of dimensions :math:`D`.
        components: Mixture components :math:`K` per dimension.
        architecture: ``"residual"``, a constant-width residual causal stack with
            bounded scales (:class:`~ldelib.nn.causal.ResidualCausalNet`), or
            ``"paper"``, the original network with unbounded :math:`\sigma = e^s`
            (:class:`~ldelib.nn.causal.PaperCausalNet`).
        hidden_channels: Width of the residual stack.
        n_blocks: Residual blocks (default: just enough to see every dimension).
        min_scale: Lower bound on the mixture scales of the residual architecture.
        dropout: Dropout probability inside the residual blocks (training mode only).

    Example:
        >>> mdn = AutoregressiveMDN(4, components=3)
        >>> mdn(torch.randn(10, 4)).shape
        torch.Size([10])
        >>> z, log_p = mdn.sample(5, torch.Generator().manual_seed(0))
        >>> torch.allclose(log_p, mdn(z), atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        components: int = 10,
        architecture: Architecture = "residual",
        hidden_channels: int = 64,
        n_blocks: int | None = None,
        min_scale: float = 1e-3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.components = components
        self.min_scale = min_scale
        out = 3 * components
        if architecture == "paper":
            if dropout:
                raise ValueError("The paper network has no dropout; use dropout=0.")
            self.net: nn.Module = PaperCausalNet(features, 2, out)
            self.n_pad = self.net.n_pad
            self.parametrization = "exp"
        elif architecture == "residual":
            self.net = ResidualCausalNet(features, 2, out, hidden_channels, n_blocks, dropout)
            self.n_pad = 1
            self.parametrization = "softplus"
            with torch.no_grad():
                # Start from unit scales, equal weights and means spread over the bulk of a
                # standardised variable, so no component starts out useless.
                bias = self.net.output.bias
                bias[:components] = torch.linspace(-1.5, 1.5, components)
                bias[components : 2 * components] = SOFTPLUS_ONE
                bias[2 * components :] = 0.0
        else:
            raise ValueError(f"architecture must be 'residual' or 'paper', got {architecture!r}.")
        self.register_buffer(
            "mask", torch.cat([torch.zeros(self.n_pad), torch.ones(features - 1)])
        )

    def _inputs(self, z: Tensor) -> Tensor:
        value = torch.cat([z.new_zeros(z.shape[0], self.n_pad), z[:, :-1]], dim=1)
        return torch.stack([value, self.mask.to(z.dtype).expand_as(value)], dim=-1)

    def _params(self, raw: Tensor) -> MixtureParams:
        return mixture_params(raw, self.components, self.min_scale, self.parametrization)

    def params(self, z: Tensor) -> MixtureParams:
        """Mixture parameters of every conditional, each of shape (B, D, K)."""
        return self._params(self.net(self._inputs(z)))

    def log_prob_per_dim(self, z: Tensor) -> Tensor:
        r""":math:`\log p(z_j \mid z_{<j})` for every dimension, shape (B, D)."""
        return mixture_log_prob(z, self.params(z))

    def forward(self, z: Tensor) -> Tensor:
        r""":math:`\log p(z)` of rows of shape (B, D), shape (B,)."""
        return self.log_prob_per_dim(z).sum(dim=-1)

    def _noise(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        ref = self.mask
        shape = (n, self.features)
        uniform = torch.rand(shape, generator=generator, device=ref.device, dtype=ref.dtype)
        normal = torch.randn(shape, generator=generator, device=ref.device, dtype=ref.dtype)
        return uniform, normal

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, cached: bool = True
    ) -> tuple[Tensor, Tensor]:
        r"""Draw :math:`n` vectors one dimension at a time, with their log-densities.

        Arguments:
            n: Number of vectors.
            generator: Source of randomness (on the module's device).
            cached: Step through positions reusing cached activations, in
                :math:`O(D \cdot L)` layer evaluations; ``False`` re-runs the whole
                network on every prefix, in :math:`O(D^2 \cdot L)`. Both give the same
                samples for the same generator state.

        Returns:
            The samples, shape (n, D), and :math:`\log p` of each, shape (n,),
            accumulated from the conditionals as they are drawn.
        """
        uniform, normal = self._noise(n, generator)
        z = uniform.new_zeros(n, self.features)
        log_p = uniform.new_zeros(n)
        if not cached:
            for j in range(self.features):
                params = MixtureParams(*(p[:, j] for p in self.params(z)))
                z[:, j] = mixture_sample(params, uniform[:, j], normal[:, j])
                log_p += mixture_log_prob(z[:, j], params)
            return z, log_p

        cache = StepCache(self.n_pad + self.features - 1)
        x = z.new_zeros(n, 2)
        for s in range(cache.length):
            if s >= self.n_pad:
                x = torch.stack([z[:, s - self.n_pad], torch.ones_like(log_p)], dim=1)
            out = self.net.step(x, cache)
            cache.advance()
            j = s - self.n_pad + 1
            if j >= 0:
                params = self._params(out)
                z[:, j] = mixture_sample(params, uniform[:, j], normal[:, j])
                log_p += mixture_log_prob(z[:, j], params)
        return z, log_p
