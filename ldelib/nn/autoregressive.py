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

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .anchor import AnchorTerms, GaussianMixtureConditionals, anchored_log_prob, bounded
from .causal import PaperCausalNet, ResidualCausalNet, StepCache
from .chunks import chunk_rows, in_chunks
from .mixture import (
    SOFTPLUS_ONE,
    MixtureParams,
    mixture_log_prob,
    mixture_params,
    mixture_sample,
)

__all__ = ["AutoregressiveMDN"]

Architecture = Literal["residual", "paper"]
Parametrization = Literal["softplus", "exp"]


class AutoregressiveMDN(nn.Module):
    r"""Exact autoregressive density over :math:`D`-dimensional vectors.

    With ``anchored=True``, the conditionals are those of a full-covariance Gaussian
    mixture (``ldelib.nn.anchor.GaussianMixtureConditionals``, set through
    ``anchor.set_mixture``) plus corrections to every component's mean, log-scale and
    logit predicted by the causal network, whose output layer starts at zero: before
    training, the model *is* the mixture.

    Arguments:
        features: The number of dimensions :math:`D`.
        components: Mixture components :math:`K` per dimension.
        architecture: ``"residual"``, a constant-width residual causal stack with
            bounded scales (:class:`~ldelib.nn.causal.ResidualCausalNet`), or
            ``"paper"``, the original network with unbounded :math:`\sigma = e^s`
            (:class:`~ldelib.nn.causal.PaperCausalNet`).
        hidden_channels: Width of the residual stack.
        n_blocks: Residual blocks (default: just enough to see every dimension).
        min_scale: Lower bound on the mixture scales of the residual architecture
            without an anchor.
        dropout: Dropout probability inside the residual blocks (training mode only).
        anchored: Correct the conditionals of a Gaussian mixture (residual only).
        classes: Condition on class labels (codes ``0 .. classes - 1``): their one-hot
            code enters the network at every position (its first layer's weights are a
            learned embedding), and the anchor's components belong to classes
            (``component_class``): a row's conditionals are its class's components.
        context: Condition on a context vector of this width: it enters the network at
            every position (a linear map), and the anchor is a mixture over
            (context, z), context first, whose conditionals given the context are the
            ones of z. A global condition leaves the network causal in :math:`z`.

    Example:
        >>> mdn = AutoregressiveMDN(4, components=3)
        >>> mdn(torch.randn(10, 4)).shape
        torch.Size([10])
        >>> z, log_p = mdn.sample(5, torch.Generator().manual_seed(0))
        >>> torch.allclose(log_p, mdn(z), atol=1e-5)
        True
        >>> labelled = AutoregressiveMDN(4, components=3, classes=2)
        >>> labelled(torch.randn(10, 4), context=torch.randint(0, 2, (10,))).shape
        torch.Size([10])
    """

    #: The paper network's mask channel (a buffer of that architecture only).
    mask: Tensor
    #: The class of each anchor component (a buffer of anchored networks with classes).
    component_class: Tensor

    def __init__(
        self,
        features: int,
        components: int = 10,
        architecture: Architecture = "residual",
        hidden_channels: int = 64,
        n_blocks: int | None = None,
        min_scale: float = 1e-3,
        dropout: float = 0.0,
        anchored: bool = False,
        classes: int = 0,
        context: int = 0,
    ) -> None:
        super().__init__()
        if classes and context:
            raise ValueError("A network conditions on classes or on a context, not both.")
        self.features = features
        self.components = components
        self.classes, self.context = classes, context
        condition = classes or context  # input channels of the condition
        self.min_scale = min_scale
        self.anchor: GaussianMixtureConditionals | None = None
        self.net: PaperCausalNet | ResidualCausalNet
        self.parametrization: Parametrization
        out = 3 * components
        if architecture == "paper":
            if dropout or anchored:
                raise ValueError("The paper network has no dropout and no anchor.")
            self.net = PaperCausalNet(features, 2 + condition, out)
            self.n_pad = self.net.n_pad
            self.parametrization = "exp"
            # The paper's second input channel: 1 on real values, 0 on padding.
            self.register_buffer(
                "mask", torch.cat([torch.zeros(self.n_pad), torch.ones(features - 1)])
            )
        elif architecture == "residual":
            # One value channel (the position embedding tells padding apart); with an
            # anchor, also the components' responsibilities given z_<j, which tell the
            # network which cluster a row is in without inferring it from the values.
            in_channels = (1 + components if anchored else 1) + condition
            self.net = ResidualCausalNet(
                features, in_channels, out, hidden_channels, n_blocks, dropout, anchored
            )
            self.n_pad = 1
            self.parametrization = "softplus"
            if anchored:
                self.anchor = GaussianMixtureConditionals(context + features, components)
                if classes:
                    self.register_buffer(
                        "component_class", torch.zeros(components, dtype=torch.long)
                    )
            else:
                with torch.no_grad():
                    # Start from unit scales, equal weights and means spread over the bulk
                    # of a standardised variable, so no component starts out useless.
                    bias = self.net.output.bias
                    bias[:components] = torch.linspace(-1.5, 1.5, components)
                    bias[components : 2 * components] = SOFTPLUS_ONE
                    bias[2 * components :] = 0.0
        else:
            raise ValueError(f"architecture must be 'residual' or 'paper', got {architecture!r}.")

    def _condition(self, context: Tensor | None, like: Tensor) -> Tensor | None:
        """The condition's input channels, (B, classes or context), or ``None``."""
        if not (self.classes or self.context):
            if context is not None:
                raise ValueError("This network was built without a condition: pass no context.")
            return None
        if context is None:
            what = "class codes (B,)" if self.classes else f"a context (B, {self.context})"
            raise ValueError(f"This network is conditional: pass context, {what}.")
        if self.classes:
            return F.one_hot(context, self.classes).to(like.dtype)
        return context.to(like.dtype)

    def _inputs(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        value = torch.cat([z.new_zeros(z.shape[0], self.n_pad), z[:, :-1]], dim=1)
        if self.parametrization == "exp":
            x = torch.stack([value, self.mask.to(z.dtype).expand_as(value)], dim=-1)
        else:
            x = value.unsqueeze(-1)
        if condition is None:
            return x
        # The same channels at every position: global, so causal in z as before.
        return torch.cat([x, condition.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)

    def _anchored_inputs(
        self, z: Tensor, logits: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """Shifted values (and condition) and the anchor's responsibilities given
        :math:`z_{<j}`."""
        return torch.cat([self._inputs(z, condition), torch.softmax(logits, dim=-1)], dim=-1)

    def _step_input(self, z: Tensor, s: int, condition: Tensor | None = None) -> Tensor:
        """The network's input at sequence position ``s`` while drawing ``z``."""
        j = s - self.n_pad
        value = z[:, j] if j >= 0 else z.new_zeros(z.shape[0])
        if self.parametrization == "exp":
            x = torch.stack([value, torch.full_like(value, float(j >= 0))], dim=1)
        else:
            x = value.unsqueeze(-1)
        return x if condition is None else torch.cat([x, condition], dim=1)

    def _masked(self, logits: Tensor, codes: Tensor) -> Tensor:
        """Anchor logits (B, ..., K) with the components of other classes than each
        row's at minus infinity: the row's conditionals are its class's mixture's."""
        other = self.component_class != codes.unsqueeze(-1)  # (B, K)
        shape = (len(codes),) + (1,) * (logits.dim() - 2) + (self.components,)
        return logits.masked_fill(other.view(shape), -math.inf)

    def _anchor_terms(self, z: Tensor, context: Tensor | None) -> AnchorTerms:
        """The anchor's conditionals of the dimensions of ``z`` given the condition."""
        assert self.anchor is not None
        if self.context:
            assert context is not None  # _condition checked it
            P = self.context
            terms = self.anchor(torch.cat([context.to(z.dtype), z], dim=1))
            return AnchorTerms(terms.eps[:, P:], terms.log_scales[P:], terms.logits[:, P:])
        terms = self.anchor(z)
        if self.classes:
            assert context is not None
            return terms._replace(logits=self._masked(terms.logits, context))
        return terms

    def _anchor_conditionals(self, z: Tensor, context: Tensor | None) -> MixtureParams:
        assert self.anchor is not None
        if self.context:
            assert context is not None
            P = self.context
            params = self.anchor.conditionals(torch.cat([context.to(z.dtype), z], dim=1))
            return MixtureParams(*(p[:, P:] for p in params))
        params = self.anchor.conditionals(z)
        if self.classes:
            assert context is not None
            masked = self._masked(params.log_weights, context)
            return params._replace(log_weights=torch.log_softmax(masked, dim=-1))
        return params

    def _params(self, raw: Tensor) -> MixtureParams:
        return mixture_params(raw, self.components, self.min_scale, self.parametrization)

    def _corrected(self, anchor: MixtureParams, raw: Tensor) -> MixtureParams:
        """The anchor's conditionals (unnormalised logits) moved by the network's output."""
        mean_shift, log_scale_shift, logit_shift = raw.split(self.components, dim=-1)
        log_scale_shift = bounded(log_scale_shift)
        return MixtureParams(
            torch.log_softmax(anchor.log_weights + logit_shift, dim=-1),
            torch.addcmul(anchor.means, torch.exp(anchor.log_scales), mean_shift),
            anchor.log_scales + log_scale_shift,
        )

    def params(self, z: Tensor, context: Tensor | None = None) -> MixtureParams:
        """Mixture parameters of every conditional, each of shape (B, D, K)."""
        condition = self._condition(context, z)
        if self.anchor is None:
            return self._params(self.net(self._inputs(z, condition)))
        anchor = self._anchor_conditionals(z, context)
        raw = self.net(self._anchored_inputs(z, anchor.log_weights, condition))
        return self._corrected(anchor, raw)

    def idle(self) -> bool:
        """Whether the model is its anchor's mixture exactly: an anchored network whose
        output layer is zero (as it starts, and as a fit that no epoch improved leaves it),
        outside training. Scoring and drawing then skip the network."""
        if self.anchor is None or self.training:
            return False
        output = self.net.output
        return not (bool(output.weight.any()) or bool(output.bias.any()))

    def _mixture_only(self) -> bool:
        """Whether to score through the mixture alone: when idle and no gradient is asked
        of the network's weights (the full pass gives them one, even at zero)."""
        grads = torch.is_grad_enabled() and self.net.output.weight.requires_grad
        return self.idle() and not grads

    def _in_chunks(
        self, f: Callable[[Tensor, Tensor | None], Tensor], z: Tensor, context: Tensor | None
    ) -> Tensor:
        width = max(self.components, self.net.output.in_features)
        if context is None:
            return in_chunks(lambda rows: f(rows, None), z, width)
        rows = chunk_rows(z, width)
        if z.shape[0] <= rows:
            return f(z, context)
        return torch.cat(
            [f(a, b) for a, b in zip(z.split(rows), context.split(rows), strict=True)]
        )

    def _log_prob_per_dim(self, z: Tensor, context: Tensor | None) -> Tensor:
        condition = self._condition(context, z)
        if self.anchor is None:
            raw = self.net(self._inputs(z, condition))
            return mixture_log_prob(z, self._params(raw))
        terms = self._anchor_terms(z, context)
        if self._mixture_only():
            return anchored_log_prob(terms)
        raw = self.net(self._anchored_inputs(z, terms.logits, condition))
        mean_shift, log_scale_shift, logit_shift = raw.split(self.components, dim=-1)
        return anchored_log_prob(terms, mean_shift, bounded(log_scale_shift), logit_shift)

    def log_prob_per_dim(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log p(z_j \mid z_{<j})` (given ``context``, for a conditional
        network) for every dimension, shape (B, D)."""
        return self._in_chunks(self._log_prob_per_dim, z, context)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log p(z)` of rows of shape (B, D), shape (B,); for a conditional
        network :math:`\log p(z \mid c)`, given ``context``: class codes (B,) or a
        context (B, C)."""
        if self._mixture_only() and not (self.classes or self.context):
            assert self.anchor is not None  # idle() says there is one
            mixture = self.anchor
            return self._in_chunks(lambda rows, _: mixture.log_prob(rows), z, None)
        return self._in_chunks(
            lambda rows, c: self._log_prob_per_dim(rows, c).sum(dim=-1), z, context
        )

    def _noise(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        ref = self.net.output.weight
        shape = (n, self.features)
        uniform = torch.rand(shape, generator=generator, device=ref.device, dtype=ref.dtype)
        normal = torch.randn(shape, generator=generator, device=ref.device, dtype=ref.dtype)
        return uniform, normal

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        cached: bool = True,
        given: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Draw :math:`n` vectors one dimension at a time, with their log-densities.

        Arguments:
            n: Number of vectors.
            generator: Source of randomness (on the module's device).
            cached: Step through positions reusing cached activations (and, with an
                anchor, an incremental whitening), in :math:`O(D)` steps; ``False``
                re-runs the whole network on every prefix, in :math:`O(D^2)`. Both give
                the same samples for the same generator state.
            given: The first :math:`k` dimensions, shape (n, k): draw the others from
                :math:`p(z_{\ge k} \mid z_{<k})`. Cached, the prefix takes one parallel
                pass and the draw :math:`D - k` steps.
            context: For a conditional network, the condition of each draw: class
                codes (n,) or a context (n, C).

        An idle model (see :meth:`idle`) draws from its mixture directly, one component
        and one Gaussian per row, or with ``given`` from the mixture's conditionals
        alone: the same distribution, without the network.

        Returns:
            The samples, shape (n, D) (starting with ``given``), and :math:`\log p` of
            what was drawn, shape (n,): :math:`\log p(z)`, or with ``given``
            :math:`\log p(z_{\ge k} \mid z_{<k})`, accumulated from the conditionals.

        Example:
            >>> mdn = AutoregressiveMDN(4, components=3)
            >>> prefix = torch.randn(5, 1)
            >>> z, log_p = mdn.sample(5, given=prefix)
            >>> torch.equal(z[:, :1], prefix)
            True
            >>> log_marginal = mdn.log_prob_per_dim(z)[:, :1].sum(-1)
            >>> torch.allclose(log_marginal + log_p, mdn(z), atol=1e-5)
            True
        """
        k = 0 if given is None else given.shape[1]
        uniform, normal = self._noise(n, generator)
        # The anchor's rows: (context, z), context first; z is their view after it.
        P = self.context
        rows = uniform.new_zeros(n, P + self.features)
        z = rows[:, P:]
        condition = self._condition(context, z)
        if P:
            assert context is not None  # _condition checked it
            rows[:, :P] = context
        if given is not None:
            z[:, :k] = given
        conditioned = condition is not None
        if self.idle() and not conditioned:
            assert self.anchor is not None  # idle() says there is one
            if given is None:
                mixture = self.anchor
                z = mixture.sample(uniform[:, 0], normal)
                return z, self._in_chunks(lambda rows, _: mixture.log_prob(rows), z, None)
            return z, self.anchor.sample_rest(z, k, uniform, normal)
        log_p = uniform.new_zeros(n)
        if not cached:
            for j in range(k, self.features):
                params = MixtureParams(*(p[:, j] for p in self.params(z, context)))
                z[:, j] = mixture_sample(params, uniform[:, j], normal[:, j])
                log_p += mixture_log_prob(z[:, j], params)
            return z, log_p

        cache = StepCache(self.n_pad + self.features - 1)
        state = None if self.anchor is None else self.anchor.start(rows)
        if k > 0 or (state is not None and conditioned):
            # The given prefix in one parallel pass: the network's activations at the
            # positions before dimension k's, and the anchor's state after z_<k (and the
            # condition: its class's components, or the context's likelihood).
            first = self.n_pad + k - 1
            if state is not None:
                terms = self._anchor_terms(z, context)
                x = self._anchored_inputs(z, terms.logits, condition)[:, :first]
                if k < self.features:
                    state.logits.copy_(terms.logits[:, k])
            else:
                x = self._inputs(z, condition)[:, :first]
            if k > 0:
                self.net.prefill(x, cache)
        for s in range(cache.position, cache.length):
            j = s - self.n_pad + 1
            x = self._step_input(z, s, condition)
            if self.anchor is not None:
                assert state is not None  # started above whenever there is an anchor
                anchor = self.anchor.conditional(state, P + j)
                x = torch.cat([x, torch.softmax(anchor.log_weights, dim=-1)], dim=-1)
            out = self.net.step(x, cache)
            cache.advance()
            if j < 0:
                continue
            params = self._params(out) if self.anchor is None else self._corrected(anchor, out)
            z[:, j] = mixture_sample(params, uniform[:, j], normal[:, j])
            log_p += mixture_log_prob(z[:, j], params)
            if self.anchor is not None:
                assert state is not None
                self.anchor.update(state, z[:, j], anchor)
        return z, log_p
