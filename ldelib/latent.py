"""A density model on the latent space of any encoder/decoder pair.

:class:`LatentDensityEstimator` turns a trained autoencoder into a generative model
without retraining it: it encodes the data in batches, fits a density model on the
latent vectors, and samples new latents that the decoder turns into data. The encoder
and decoder are plain callables: a torch module, a bound method of one, or any numpy
function.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.utils.validation import check_is_fitted
from torch import Tensor
from typing_extensions import Self  # typing.Self is Python 3.11+

from ._arrays import RandomStateLike, check_n_samples
from ._batching import Codec, check_rows_of
from ._sources import is_batches, is_on_disk, open_rows
from ._summary import SummaryItem
from .base import BaseGenerativeModel
from .density import BaseDensityEstimator
from .models import MODELS, make_model
from .persistence import Persistent, register

__all__ = ["LatentDensityEstimator"]

ArrayLike = Any

_NO_LOG_PROB = (
    "{name} has no tractable density: it defines its distribution only through samples, "
    "so LatentDensityEstimator.{method} is not available with it. For a rough latent "
    "log-likelihood, fit a Parzen window to its samples: "
    "ldelib.metrics.parzen_log_likelihood(lde.sample(10000, decode=False), "
    "lde.encode(X_test), X_valid=lde.encode(X_valid)). Caveat: a Parzen estimate is far "
    "from the true log-likelihood beyond a few dimensions and can rank models wrongly. "
    "For an exact latent log-likelihood use density='mdn' or 'gmm'."
)


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------
@register("ldelib.LatentDensityEstimator")
class LatentDensityEstimator(Codec, Persistent, DensityMixin, BaseEstimator):
    r"""A density model fitted on the latent vectors of an encoder, with a decoder to sample.

    ``fit`` encodes the data in batches, :math:`z = E(x)`, and fits a density model
    :math:`p(z)` on the latents; ``sample`` draws latents from it and decodes them,
    :math:`x = G(z)`. This turns any trained (deterministic) autoencoder into a
    generative model without retraining it (Yoo et al., 2019; Ghosh et al., 2020).

    .. important::
       ``log_prob(X)`` is the **latent** log-likelihood :math:`\log p(E(x))`, in nats and
       in the units of the latent space. It is *not* a likelihood of the data
       :math:`\log p(x)` (an encoder is not invertible and has no Jacobian term), so it
       is not comparable with pixel-space likelihoods or bits per dimension.

    Parameters
    ----------
    density : estimator or {"mdn", "gmm", "gmmn"}
        The density model on the latents: an ldelib model such as
        :class:`~ldelib.CausalConvMDN`, :class:`~ldelib.GMM` or :class:`~ldelib.GMMN`
        (cloned at ``fit``, so the instance passed is never changed), or a short name
        for one with default parameters.
    encoder : callable or None, default=None
        Maps a batch of inputs of shape ``(batch, ...)`` to latents of shape
        ``(batch, D)``. A torch ``nn.Module``, or a bound method of one such as
        ``ae.encode``, receives tensors moved to the module's device and dtype and runs
        in eval mode under ``torch.no_grad()``; each submodule's train/eval mode is
        restored afterwards. Any other callable (a numpy function, a lambda) receives
        numpy arrays. Either may return a numpy array or a tensor. ``None``: the inputs
        already are latents of shape ``(n, D)``.
    decoder : callable or None, default=None
        Maps latents of shape ``(batch, D)`` to data of shape ``(batch, ...)``; called
        like ``encoder``. Needed only to decode samples, interpolations and
        reconstructions.
    batch_size : int, default=256
        Rows per call of ``encoder`` and ``decoder``.

    Attributes
    ----------
    density_ : estimator
        The fitted density model on the latents.
    latent_dim_ : int
        Number of latent dimensions :math:`D`.
    input_shape_ : tuple of int
        Shape of one input row seen at ``fit`` (``(D,)`` without an encoder).

    Notes
    -----
    Inputs may have any shape ``(n_samples, ...)``, e.g. images ``(n, C, H, W)``; only
    the encoder's output must be 2-D. Results (latents, decoded samples,
    log-likelihoods) are float64 numpy arrays, except ``log_prob`` of a tensor, which
    returns a differentiable tensor as the density models do: a latent prior or a loss.

    An error inside ``encoder`` or ``decoder`` is re-raised as a ``RuntimeError`` that
    names the failing batch and its rows; the original exception is its ``__cause__``.

    See Also
    --------
    ldelib.IncrementalAutoencoder : Trains an autoencoder whose ``encode``/``decode``
        plug in here directly.
    ldelib.metrics.parzen_log_likelihood : A (rough) log-likelihood for models that only
        sample, such as GMMN.

    References
    ----------
    .. [1] J. Yoo, H. Lee, N. Kwak. "Density Estimation and Incremental Learning of
       Latent Vector for Generative Autoencoders", arXiv:1902.04294, 2019.
    .. [2] P. Ghosh, M. S. M. Sajjadi, A. Vergari, M. Black, B. Schölkopf. "From
       Variational to Deterministic Autoencoders", ICLR 2020, arXiv:1903.12436.

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import GMM, LatentDensityEstimator
    >>> rng = np.random.default_rng(0)
    >>> W = rng.normal(size=(10, 3))
    >>> X = rng.normal(size=(300, 3)) @ W.T          # data on a 3-D subspace
    >>> lde = LatentDensityEstimator(
    ...     GMM(2, random_state=0),
    ...     encoder=lambda x: x @ np.linalg.pinv(W).T,
    ...     decoder=lambda z: z @ W.T,
    ... ).fit(X)
    >>> lde.log_prob(X[:4]).shape                    # latent log-likelihood
    (4,)
    >>> lde.sample(5).shape, lde.sample(5, decode=False).shape
    ((5, 10), (5, 3))
    >>> Z = rng.normal(size=(300, 3))                # latents already at hand
    >>> LatentDensityEstimator(GMM(2, random_state=0)).fit(Z).sample(7).shape
    (7, 3)
    >>> path, log_prob = lde.interpolate(X[0], X[1], steps=6)
    >>> path.shape, log_prob.shape
    ((6, 10), (6,))
    """

    def __init__(
        self,
        density: BaseGenerativeModel | str,
        encoder: Callable[[Any], Any] | None = None,
        decoder: Callable[[Any], Any] | None = None,
        batch_size: int = 256,
    ) -> None:
        self.density = density
        self.encoder = encoder
        self.decoder = decoder
        self.batch_size = batch_size

    # ------------------------------------------------------------------ checks
    def _make_density(self) -> BaseGenerativeModel:
        density = self.density
        if isinstance(density, str):
            if density.lower() not in MODELS:
                raise ValueError(
                    f"density must be a density model or one of {sorted(MODELS)}, got {density!r}."
                )
            return make_model(density)
        if not (
            hasattr(density, "get_params")
            and callable(getattr(density, "fit", None))
            and callable(getattr(density, "sample", None))
        ):
            raise TypeError(
                "density must be a density model with fit and sample (e.g. "
                f"ldelib.CausalConvMDN(), GMM(), GMMN()) or one of {sorted(MODELS)}, "
                f"got {density!r}."
            )
        return clone(density)

    # ----------------------------------------------------------------- summary
    @staticmethod
    def _summarise_training(params: Mapping[str, Any], a: Mapping[str, Any]) -> list[SummaryItem]:
        from .persistence.describe import Fitted, training_summary

        density = a.get("density_")
        if not isinstance(density, Fitted):
            return []
        return [SummaryItem("density", "density model", density.name), *training_summary(density)]

    # ------------------------------------------------------------ persistence
    _saved_attributes: ClassVar[tuple[str, ...]] = ("density_", "latent_dim_", "input_shape_")
    # Callables are code: the file holds the density, and load takes them back.
    _unsaved_params: ClassVar[tuple[str, ...]] = ("encoder", "decoder")

    input_shape_: tuple[int, ...]

    @classmethod
    def _from_file_params(
        cls,
        params: dict[str, Any],
        encoder: Callable[[Any], Any] | None = None,
        decoder: Callable[[Any], Any] | None = None,
        **extras: Any,
    ) -> Self:
        return super()._from_file_params(params, encoder=encoder, decoder=decoder, **extras)

    def _restored(self) -> None:
        self.input_shape_ = tuple(int(s) for s in self.input_shape_)
        if self.density_.n_features_in_ != self.latent_dim_:
            raise ValueError("the density's dimension differs from latent_dim_")

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: Any,
        encoder: Callable[[Any], Any] | None = None,
        decoder: Callable[[Any], Any] | None = None,
        map_location: str | torch.device | None = None,
    ) -> Self:
        """Load an estimator saved with :meth:`save`, giving back its encoder and decoder.

        The file holds the fitted density model and the shapes, not the callables
        (code is never stored or run): pass the same ``encoder`` and ``decoder`` again.

        Examples
        --------
        >>> import io
        >>> import numpy as np
        >>> from ldelib import GMM, LatentDensityEstimator
        >>> Z = np.random.default_rng(0).normal(size=(200, 3))
        >>> lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(Z)
        >>> buffer = io.BytesIO()
        >>> lde.save(buffer)
        >>> _ = buffer.seek(0)
        >>> loaded = LatentDensityEstimator.load(buffer)
        >>> bool(np.allclose(loaded.log_prob(Z[:5]), lde.log_prob(Z[:5])))
        True
        """
        return super().load(path, map_location, encoder=encoder, decoder=decoder)

    # --------------------------------------------------------------------- fit
    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        """Encode ``X`` in batches and fit the density model on the latents.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Training inputs (latents of shape (n_samples, D) without an encoder). Without
            an encoder, latents on disk (a ``.npy`` path or memmap) or a DataLoader of
            latent batches go to the density model as they are, never read whole (see the
            scaling guide); with one, a path or memmap of inputs is encoded batch by batch.
        y : ignored
            Present for scikit-learn API consistency.

        Returns
        -------
        self
        """
        density = self._make_density()
        if self.encoder is None and (is_on_disk(X) or is_batches(X)):
            density.fit(X)
            self.density_ = density
            self.latent_dim_ = int(density.n_features_in_)
            self.input_shape_ = (self.latent_dim_,)
            return self
        if is_on_disk(X):
            X = open_rows(X)
        X = check_rows_of(X, "X")
        Z = self.encode(X)
        density.fit(Z)
        self.density_ = density
        self.latent_dim_ = int(Z.shape[1])
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        return self

    # -------------------------------------------------------------- densities
    def _check_has_log_prob(self, method: str) -> None:
        check_is_fitted(self)
        if not isinstance(self.density_, BaseDensityEstimator):
            raise AttributeError(
                _NO_LOG_PROB.format(name=type(self.density_).__name__, method=method)
            )

    def _check_latent_width(self, width: int) -> None:
        if width != self.latent_dim_:
            raise ValueError(
                f"The encoder returned {width} latent dimensions, but the density was "
                f"fitted on {self.latent_dim_}."
            )

    def _latent_log_prob(self, Z: np.ndarray, n_dims: int | None = None) -> np.ndarray:
        self._check_latent_width(Z.shape[1])
        return np.asarray(self.density_.score_samples(Z, n_dims=n_dims), dtype=np.float64)

    def log_prob(self, X: ArrayLike, n_dims: int | None = None) -> Any:
        r"""Latent log-likelihood :math:`\log p(E(x))` of each input, in nats.

        This is the density of the *latent vector* under the fitted density model, not a
        likelihood of ``X`` itself: it carries no Jacobian of the encoder and is in the
        units of the latent space.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            A tensor is encoded in one call, with gradients: through a torch encoder
            (or directly, without one) to ``X``, and to the density's weights.
        n_dims : int, optional
            The marginal log-likelihood of the first ``n_dims`` latents of the density's
            ordering only (see the density's ``score_samples``): with an incremental
            autoencoder, how likely the coarse content of ``x`` is.

        Returns
        -------
        log_prob : ndarray or Tensor of shape (n_samples,)
            float64 numpy for array-like input; for a tensor, a tensor on its device and
            (if floating) in its dtype, differentiable, for use as a prior or a loss.

        Raises
        ------
        AttributeError
            If the density model has no tractable log-likelihood (GMMN); the message
            names the Parzen-window alternative.
        """
        self._check_has_log_prob("log_prob")
        if isinstance(X, Tensor):
            Z = self.encode_tensor(X)
            self._check_latent_width(Z.shape[1])
            log_prob = self.density_.log_prob(Z, n_dims=n_dims)
            return log_prob.to(X.dtype) if X.is_floating_point() else log_prob
        return self._latent_log_prob(self.encode(X), n_dims)

    def score_samples(self, X: ArrayLike, n_dims: int | None = None) -> Any:
        r"""Alias of :meth:`log_prob`: the latent log-likelihood :math:`\log p(E(x))`."""
        self._check_has_log_prob("score_samples")
        return self.log_prob(X, n_dims=n_dims)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean latent log-likelihood of the inputs (nats per row)."""
        self._check_has_log_prob("score")
        return float(self._latent_log_prob(self.encode(X)).mean())

    def ood_scores(self, X: ArrayLike, prefixes: Sequence[int] = ()) -> dict[str, np.ndarray]:
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

        Returns
        -------
        scores : dict of str to ndarray of shape (n_samples,)
        """
        self._check_has_log_prob("ood_scores")
        X = check_rows_of(X, "X")
        Z = self.encode(X)
        scores = {"log_prob": self._latent_log_prob(Z)}
        for k in prefixes:
            scores[f"log_prob_k{k}"] = self._latent_log_prob(Z, n_dims=k)
        if self.decoder is not None:
            inputs = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
            flat = inputs.reshape(len(inputs), -1).astype(np.float64)
            with np.errstate(over="ignore"):  # a runaway input: an infinite error
                error = np.square(self.decode(Z).reshape(len(flat), -1) - flat).mean(axis=1)
            scores["neg_reconstruction_error"] = -error
        return scores

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n_samples: int = 1,
        decode: bool | Literal["auto"] = "auto",
        random_state: RandomStateLike = None,
    ) -> np.ndarray:
        """Draw latents from the density and decode them when there is a decoder.

        Parameters
        ----------
        n_samples : int, default=1
        decode : bool or "auto", default="auto"
            ``"auto"`` decodes the latents when a decoder was given and returns them as
            they are otherwise; ``True`` requires a decoder; ``False`` returns latents.
        random_state : int, Generator or None, default=None
            ``None`` continues the density model's own stream, so successive calls
            differ; a seed gives reproducible draws.

        Returns
        -------
        X : ndarray of shape (n_samples, ...) or (n_samples, D)
            Decoded samples, or latents when nothing is decoded.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples, minimum=0)
        decode = self._decoding(decode, "decode samples")  # before drawing: keeps the stream
        Z = np.asarray(self.density_.sample(n_samples, random_state=random_state))
        if decode and n_samples == 0:  # the decoder's output shape, from one latent
            return self.decode(np.zeros((1, self.latent_dim_)))[:0]
        return self.decode(Z) if decode else Z

    def vary(
        self,
        x: ArrayLike,
        keep: int,
        n_samples: int = 8,
        decode: bool | Literal["auto"] = "auto",
        random_state: RandomStateLike = None,
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
        Z = np.asarray(density.sample(n_samples, random_state=random_state, given=given))
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
        log_prob = self._latent_log_prob(Z)
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
