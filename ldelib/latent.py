"""A density model on the latent space of any encoder/decoder pair.

:class:`LatentDensityEstimator` turns a trained autoencoder into a generative model
without retraining it: it encodes the data in batches, fits a density model on the
latent vectors, and samples new latents that the decoder turns into data. The encoder
and decoder are plain callables: a torch module, a bound method of one, or any numpy
function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted
from torch import Tensor
from typing_extensions import Self  # typing.Self is Python 3.11+

from ._arrays import RandomStateLike, check_n_samples
from ._batching import Codec, check_rows_of
from ._latent_space import LatentSpace
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


def _fitted_on_labels(lde: LatentDensityEstimator) -> bool:
    """Whether the classifier's methods exist: only with a density fitted on labels."""
    if not hasattr(getattr(lde, "density_", None), "classes_"):
        raise AttributeError(
            "LatentDensityEstimator classifies only with a density fitted on class labels: "
            "give it one created with conditional=True and fit it with fit(X, y)."
        )
    return True


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------
@register("ldelib.LatentDensityEstimator")
class LatentDensityEstimator(Codec, LatentSpace, Persistent, DensityMixin, BaseEstimator):
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
    def _make_density(self, conditional: bool = False) -> BaseGenerativeModel:
        """The density to fit: a clone of ``density``, or the named model with its
        defaults (``conditional``: fitted with ``y``, as a name cannot ask for it)."""
        density = self.density
        if isinstance(density, str):
            if density.lower() not in MODELS:
                raise ValueError(
                    f"density must be a density model or one of {sorted(MODELS)}, got {density!r}."
                )
            if not conditional:
                return make_model(density)
            if "conditional" not in make_model(density).get_params():
                raise ValueError(
                    f"density={density!r} cannot be fitted given y: use 'mdn' or 'gmm'."
                )
            return make_model(density, conditional=True)
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
        r"""Encode ``X`` in batches and fit the density model on the latents.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Training inputs (latents of shape (n_samples, D) without an encoder). Without
            an encoder, latents on disk (a ``.npy`` path or memmap) or a DataLoader of
            latent batches go to the density model as they are, never read whole (see the
            scaling guide); with one, a path or memmap of inputs is encoded batch by batch.
        y : array-like of shape (n_samples,) or (n_samples, n_context_features), optional
            For a density created with ``conditional=True``, or named (``"mdn"``,
            ``"gmm"``): the class labels or context of each input, and the density fits
            :math:`p(z \mid y)` (the inputs then in memory). A density model created
            without it ignores ``y``, as scikit-learn's unsupervised estimators do.

        Returns
        -------
        self
        """
        density = self._make_density(conditional=y is not None)
        if self.encoder is None and (is_on_disk(X) or is_batches(X)):
            density.fit(X, y)
            self.density_ = density
            self.latent_dim_ = int(density.n_features_in_)
            self.input_shape_ = (self.latent_dim_,)
            return self
        if is_on_disk(X):
            X = open_rows(X)
        X = check_rows_of(X, "X")
        Z = self.encode(X)
        density.fit(Z, y)
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

    def _latent_log_prob(
        self, Z: np.ndarray, n_dims: int | None = None, y: Any = None
    ) -> np.ndarray:
        self._check_latent_width(Z.shape[1])
        return np.asarray(self.density_.score_samples(Z, y, n_dims=n_dims), dtype=np.float64)

    def log_prob(self, X: ArrayLike, y: Any = None, *, n_dims: int | None = None) -> Any:
        r"""Latent log-likelihood :math:`\log p(E(x))` of each input, in nats.

        This is the density of the *latent vector* under the fitted density model, not a
        likelihood of ``X`` itself: it carries no Jacobian of the encoder and is in the
        units of the latent space.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            A tensor is encoded in one call, with gradients: through a torch encoder
            (or directly, without one) to ``X``, and to the density's weights.
        y : array-like, optional
            For a density fitted with ``y``, required: the labels or context of each
            input, and the result is :math:`\log p(E(x) \mid y)`.
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
            log_prob = self.density_.log_prob(Z, y, n_dims=n_dims)
            return log_prob.to(X.dtype) if X.is_floating_point() else log_prob
        return self._latent_log_prob(self.encode(X), n_dims, y)

    def score_samples(self, X: ArrayLike, y: Any = None, *, n_dims: int | None = None) -> Any:
        r"""Alias of :meth:`log_prob`: the latent log-likelihood :math:`\log p(E(x))`."""
        self._check_has_log_prob("score_samples")
        return self.log_prob(X, y, n_dims=n_dims)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean latent log-likelihood of the inputs (nats per row): given ``y`` for a
        density fitted with it, which otherwise ignores ``y``."""
        self._check_has_log_prob("score")
        conditional = getattr(self.density_, "_condition", lambda: None)() is not None
        return float(self._latent_log_prob(self.encode(X), y=y if conditional else None).mean())

    @available_if(_fitted_on_labels)
    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        r"""Posterior probability of each class given each input, from the density
        fitted on labels: :math:`p(y \mid E(x)) \propto p(y)\,p(E(x) \mid y)`;
        columns in the order of ``density_.classes_``."""
        return np.asarray(self.density_.predict_proba(self.encode(X)))

    @available_if(_fitted_on_labels)
    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each input under :meth:`predict_proba`."""
        return np.asarray(self.density_.predict(self.encode(X)))

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n_samples: int = 1,
        decode: bool | Literal["auto"] = "auto",
        random_state: RandomStateLike = None,
        *,
        y: Any = None,
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
        y : label, context, or one per draw, optional
            For a density fitted with ``y``, required: ``sample(n, y=7)`` draws latents
            of class 7 (or of one context vector), an array one per draw.

        Returns
        -------
        X : ndarray of shape (n_samples, ...) or (n_samples, D)
            Decoded samples, or latents when nothing is decoded.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples, minimum=0)
        decode = self._decoding(decode, "decode samples")  # before drawing: keeps the stream
        Z = np.asarray(self._draw_latents(n_samples, random_state, y))
        if decode and n_samples == 0:  # the decoder's output shape, from one latent
            return self.decode(np.zeros((1, self.latent_dim_)))[:0]
        return self.decode(Z) if decode else Z

    def _draw_latents(
        self, n_samples: int, random_state: RandomStateLike, y: Any, given: Any = None
    ) -> Any:
        """The density's draws; ``y`` and ``given`` only when set (GMMN takes neither)."""
        extra = {name: v for name, v in (("y", y), ("given", given)) if v is not None}
        return self.density_.sample(n_samples, random_state=random_state, **extra)
