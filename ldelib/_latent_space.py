"""What a fitted latent density does in the latent space besides scoring and sampling:
variations of an input, interpolations between two, and out-of-distribution scores.
The base of :class:`~ldelib.LatentDensityEstimator`, which encodes, decodes and holds
the density."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from ._arrays import RandomStateLike, check_n_samples
from ._batching import check_rows_of
from .density import BaseDensityEstimator

__all__ = ["LatentSpace"]

ArrayLike = Any


class LatentSpace:
    """Variations, interpolations and OOD scores of a fitted latent density."""

    density_: Any
    latent_dim_: int
    input_shape_: tuple[int, ...]
    decoder: Any

    # Of LatentDensityEstimator and its codec, which come first in its bases.
    def encode(self, X: ArrayLike) -> np.ndarray:
        raise NotImplementedError

    def decode(self, Z: ArrayLike) -> np.ndarray:
        raise NotImplementedError

    def _require_decoder(self, what: str) -> Any:
        raise NotImplementedError

    def _check_has_log_prob(self, method: str) -> None:
        raise NotImplementedError

    def _latent_log_prob(
        self, Z: np.ndarray, n_dims: int | None = None, y: Any = None
    ) -> np.ndarray:
        raise NotImplementedError

    def _draw_latents(
        self, n_samples: int, random_state: RandomStateLike, y: Any, given: Any = None
    ) -> Any:
        raise NotImplementedError

    def ood_scores(
        self, X: ArrayLike, prefixes: Sequence[int] = (), *, y: Any = None
    ) -> dict[str, np.ndarray]:
        r"""Per-input scores for out-of-distribution detection, higher = more typical.

        Encodes (and, with a decoder, reconstructs) ``X`` once and returns:

        * ``"log_prob"``: the latent log-likelihood :math:`\log p(E(x))`;
        * ``"log_prob_k{k}"`` for each ``k`` in ``prefixes``: the marginal
          log-likelihood of the first ``k`` latents (the coarse content, with an
          incremental autoencoder);
        * ``"neg_reconstruction_error"`` (with a decoder): minus the mean squared error
          of :math:`G(E(x))` per input value.

        Any one of them is a score for :func:`ldelib.metrics.ood_metrics`; an input can
        also be out of distribution by being *too* likely (Nalisnick et al., 2019), which
        :class:`ldelib.ood.LatentOODScore` (``method="typicality"``) catches by modelling
        these scores jointly on in-distribution data.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
        prefixes : sequence of int, default=()
            Prefix lengths ``k`` (from 1 to ``latent_dim_``) whose marginal to add.
        y : array-like, optional
            For a density fitted with ``y``: the labels or context of each input, which
            the log-likelihoods are then conditioned on.

        Returns
        -------
        scores : dict of str to ndarray of shape (n_samples,)
        """
        self._check_has_log_prob("ood_scores")
        X = check_rows_of(X, "X")
        Z = self.encode(X)
        scores = {"log_prob": self._latent_log_prob(Z, y=y)}
        for k in prefixes:
            scores[f"log_prob_k{k}"] = self._latent_log_prob(Z, n_dims=k, y=y)
        if self.decoder is not None:
            inputs = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
            flat = inputs.reshape(len(inputs), -1).astype(np.float64)
            with np.errstate(over="ignore"):  # a runaway input: an infinite error
                error = np.square(self.decode(Z).reshape(len(flat), -1) - flat).mean(axis=1)
            scores["neg_reconstruction_error"] = -error
        return scores

    def vary(
        self,
        x: ArrayLike,
        keep: int,
        n_samples: int = 8,
        decode: bool | Literal["auto"] = "auto",
        random_state: RandomStateLike = None,
        *,
        y: Any = None,
    ) -> np.ndarray:
        r"""Variations of one input: keep its first ``keep`` latents, redraw the rest.

        Encodes ``x``, keeps the first ``keep`` latents of the density's ordering and
        draws the others from their exact conditional
        :math:`p(z_{\ge k} \mid z_{<k})` (``density.sample(given=...)``), then decodes.
        With an :class:`~ldelib.IncrementalAutoencoder`, whose early latents carry the
        coarse content, small ``keep`` gives varied inputs of the same kind and large
        ``keep`` near-copies: ``keep=0`` is an ordinary sample, ``keep=D`` the
        reconstruction.

        Parameters
        ----------
        x : array-like or Tensor
            One input, of the shape of one training row (or with a leading axis of 1).
        keep : int
            Latents kept, from 0 to ``latent_dim_``.
        n_samples : int, default=8
        decode : bool or "auto", default="auto"
            As in :meth:`sample`.
        random_state : int, Generator or None, default=None
            As in :meth:`sample`.
        y : label or context, optional
            For a density fitted with ``y``, required: the rest is drawn given it too
            (the input's coarse content, redrawn as another class).

        Returns
        -------
        X : ndarray of shape (n_samples, ...) or (n_samples, D)
            Decoded variations, or their latents when nothing is decoded.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        d = self.latent_dim_
        if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or not 0 <= keep <= d:
            raise ValueError(f"keep must be an integer from 0 to {d} (latents), got {keep!r}.")
        decode = self._decoding(decode, "decode the variations")
        density = self.density_
        if not isinstance(density, BaseDensityEstimator):
            raise TypeError(
                f"{type(density).__name__} has no conditionals, so it cannot draw latents "
                "given the first ones: vary needs density='mdn' or 'gmm'."
            )
        z = self.encode(self._one_row(x, "x"))[0]
        given = z[density.prefix_columns(int(keep))]
        Z = np.asarray(self._draw_latents(n_samples, random_state, y, given=given))
        return self.decode(Z) if decode else Z

    def _decoding(self, decode: bool | Literal["auto"], what: str) -> bool:
        """Whether to decode, for ``decode`` = True / False / "auto"; checks the decoder."""
        if isinstance(decode, str) and decode == "auto":
            return self.decoder is not None
        if not isinstance(decode, (bool, np.bool_)):
            raise ValueError(f'decode must be True, False or "auto"; got {decode!r}.')
        if decode:
            self._require_decoder(what)
        return bool(decode)

    def interpolate(
        self,
        x_a: ArrayLike,
        x_b: ArrayLike,
        steps: int = 8,
        decode: bool | Literal["auto"] = "auto",
        *,
        y: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Decode the straight latent path between two inputs, with its latent log-likelihood.

        The path is :math:`z_t = (1 - t)\,E(x_a) + t\,E(x_b)` for ``steps`` evenly spaced
        :math:`t \in [0, 1]`; its end points are exactly the encodings of ``x_a`` and
        ``x_b``. A dip of :math:`\log p(z_t)` along the path shows it leaving the region
        of latent space the data occupies (the interpolation experiment of Yoo et al.).

        Parameters
        ----------
        x_a, x_b : array-like or Tensor
            One input each, of the shape of one training row (a leading axis of length 1
            is also accepted).
        steps : int, default=8
            Number of points on the path, end points included (at least 2).
        decode : bool or "auto", default="auto"
            ``"auto"`` decodes the path when a decoder was given; ``True`` requires a
            decoder; ``False`` returns the latent path.
        y : label or context, optional
            For a density fitted with ``y``, required: the path is scored given it.

        Returns
        -------
        path : ndarray of shape (steps, ...) or (steps, D)
            The decoded path, or the latent path when nothing is decoded.
        log_prob : ndarray of shape (steps,)
            Latent log-likelihood of each point of the path.
        """
        check_is_fitted(self)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
            raise ValueError(f"steps must be an integer of at least 2, got {steps!r}.")
        decode = self._decoding(decode, "decode the interpolation")
        self._check_has_log_prob("interpolate")
        z_a, z_b = (
            self.encode(self._one_row(x, name)) for x, name in ((x_a, "x_a"), (x_b, "x_b"))
        )
        t = np.linspace(0.0, 1.0, int(steps))[:, None]
        Z = (1.0 - t) * z_a + t * z_b
        if y is not None:  # one label or context for every point of the path
            y = np.asarray(y)
            y = np.broadcast_to(y, (len(Z), *y.shape[1 if y.ndim == 2 else 0 :]))
        log_prob = self._latent_log_prob(Z, y=y)
        return (self.decode(Z) if decode else Z), log_prob

    def _one_row(self, x: ArrayLike, name: str) -> Any:
        if not isinstance(x, Tensor):
            x = np.asarray(x)
        shape = tuple(x.shape)
        if shape == self.input_shape_:
            return x[None]
        if shape == (1, *self.input_shape_):
            return x
        raise ValueError(
            f"{name} must be one input of shape {self.input_shape_} (the shape of a training "
            f"row), got shape {shape}."
        )
