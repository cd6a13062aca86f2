"""A density model on the latent space of any encoder/decoder pair.

:class:`LatentDensityEstimator` turns a trained autoencoder into a generative model
without retraining it: it encodes the data in batches, fits a density model on the
latent vectors, and samples new latents that the decoder turns into data. The encoder
and decoder are plain callables: a torch module, a bound method of one, or any numpy
function.
"""

from __future__ import annotations

import inspect
import itertools
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from ._arrays import RandomStateLike, check_n_samples
from .base import BaseDensityEstimator
from .models import GMM, GMMN, CausalConvMDN

__all__ = ["LatentDensityEstimator"]

ArrayLike = Any

#: Default density models by short name.
_DENSITIES: dict[str, Callable[[], BaseDensityEstimator]] = {
    "mdn": CausalConvMDN,
    "gmm": GMM,
    "gmmn": GMMN,
}

_NO_LOG_PROB = (
    "{name} has no tractable density: it defines its distribution only through samples, "
    "so LatentDensityEstimator.{method} is not available with it. For a rough latent "
    "log-likelihood, fit a Parzen window to its samples: "
    "ldelib.metrics.parzen_log_likelihood(lde.sample(10000, decode=False), "
    "lde.encode(X_test), X_valid=lde.encode(X_valid)). Caveat: a Parzen estimate is far "
    "from the true log-likelihood beyond a few dimensions and can rank models wrongly. "
    "For an exact latent log-likelihood use density='mdn' or 'gmm'."
)


def _check_positive_int(value: Any, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------
# Running a user's callable in batches
# --------------------------------------------------------------------------------------
def _module_behind(fn: Callable[..., Any]) -> nn.Module | None:
    """The torch module ``fn`` runs: the module itself, or the owner of a bound method."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    if inspect.ismethod(fn) and isinstance(owner, nn.Module):
        return owner
    return None


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then give each its own previous mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter or buffer."""
    tensors = list(itertools.chain(module.parameters(), module.buffers()))
    for t in tensors:
        if t.is_floating_point():
            return t.device, t.dtype
    device = tensors[0].device if tensors else torch.device("cpu")
    return device, torch.get_default_dtype()


def _module_input(batch: Any, device: torch.device, dtype: torch.dtype, role: str) -> Tensor:
    if not isinstance(batch, Tensor):
        array = np.asarray(batch)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"The {role} is a torch module, so its input must be numeric; got an array "
                f"of dtype {array.dtype}."
            )
        # A writeable C-ordered array (copied only if needed): torch warns on others.
        batch = torch.from_numpy(np.require(array, requirements=["C", "W"]))
    if batch.is_complex():
        raise TypeError(f"The {role} input must be real-valued, got dtype {batch.dtype}.")
    return batch.detach().to(device=device, dtype=dtype)


def _to_numpy(out: Any, role: str, where: str) -> np.ndarray:
    if isinstance(out, (tuple, list)) and any(isinstance(o, Tensor) for o in out):
        raise TypeError(
            f"The {role} returned a {type(out).__name__} of {len(out)} items {where}; it must "
            "return a single array. For a VAE, wrap it to return the mean, e.g. "
            "encoder=lambda x: vae.encode(x)[0]."
        )
    if isinstance(out, Tensor):
        if out.is_complex():
            raise TypeError(f"The {role} returned a complex tensor {where}.")
        return out.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(out)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"The {role} returned {type(out).__name__} of dtype {array.dtype} {where}; it "
            "must return a real-valued numpy array or torch tensor."
        )
    return array.astype(np.float64, copy=False)


def _apply_batched(
    fn: Callable[[Any], Any],
    X: Any,
    *,
    batch_size: int,
    role: str,
    flat: bool,
) -> np.ndarray:
    """Run ``fn`` over ``X`` in batches of rows and concatenate the results.

    A torch module (or a bound method of one) gets tensors on its device and in its
    dtype, runs in eval mode under ``torch.no_grad()``, and has each submodule's
    train/eval mode restored afterwards; any other callable gets numpy arrays. Results
    come back as one float64 numpy array. With ``flat=True`` every output must have
    shape ``(batch, D)`` with one ``D`` for all batches.
    """
    module = _module_behind(fn)
    if module is None:
        if isinstance(X, Tensor):
            X = X.detach().cpu().numpy()
        device, dtype = torch.device("cpu"), torch.float64
    else:
        device, dtype = _placement(module)
    n = len(X)
    outputs: list[np.ndarray] = []
    with _eval_mode(module) if module is not None else nullcontext(), torch.no_grad():
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            batch = X[start:stop]
            if module is not None:
                batch = _module_input(batch, device, dtype, role)
            where = f"for batch {index} (rows {start}:{stop} of {n})"
            try:
                out = fn(batch)
            except Exception as error:
                raise RuntimeError(
                    f"The {role} failed {where}, input shape {tuple(batch.shape)}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            out = _to_numpy(out, role, where)
            if flat and out.ndim != 2:
                raise ValueError(
                    f"The {role} returned shape {out.shape} {where}; it must return a 2-D "
                    f"array of shape (batch, D), here ({stop - start}, D). Flatten its "
                    "output, e.g. encoder=lambda x: net(x).flatten(1)."
                )
            if out.ndim == 0 or len(out) != stop - start:
                raise ValueError(
                    f"The {role} returned shape {out.shape} {where}; its first axis must "
                    f"have one entry per input row ({stop - start})."
                )
            if flat and outputs and out.shape[1] != outputs[0].shape[1]:
                raise ValueError(
                    f"The {role} returned {out.shape[1]} latent dimensions {where} but "
                    f"{outputs[0].shape[1]} for batch 0; every batch must give the same D."
                )
            if flat and not np.isfinite(out).all():
                raise ValueError(
                    f"The {role} returned NaN or infinite values {where}; a density needs "
                    "finite latents."
                )
            outputs.append(out)
    return np.concatenate(outputs)


def _check_rows(X: Any, what: str) -> Any:
    """``X`` as something with rows: a tensor stays a tensor, the rest becomes numpy."""
    if not isinstance(X, Tensor):
        X = np.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(
            f"{what} must have at least one row (shape (n_samples, ...)), got shape "
            f"{tuple(X.shape)}."
        )
    return X


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------
class LatentDensityEstimator(DensityMixin, BaseEstimator):
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
    the encoder's output must be 2-D. Every result (latents, log-likelihoods, decoded
    samples) is a float64 numpy array, whatever the input type. For a differentiable
    latent prior, call ``density_.log_prob`` on a tensor of latents.

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
    >>> path, log_prob = lde.interpolate(X[0], X[1], steps=6)
    >>> path.shape, log_prob.shape
    ((6, 10), (6,))
    """

    def __init__(
        self,
        density: BaseDensityEstimator | str,
        encoder: Callable[[Any], Any] | None = None,
        decoder: Callable[[Any], Any] | None = None,
        batch_size: int = 256,
    ) -> None:
        self.density = density
        self.encoder = encoder
        self.decoder = decoder
        self.batch_size = batch_size

    # ------------------------------------------------------------------ checks
    def _make_density(self) -> BaseDensityEstimator:
        density = self.density
        if isinstance(density, str):
            key = density.lower()
            if key not in _DENSITIES:
                raise ValueError(
                    f"density must be a density model or one of {sorted(_DENSITIES)}, got "
                    f"{density!r}."
                )
            return _DENSITIES[key]()
        if not (
            hasattr(density, "get_params")
            and callable(getattr(density, "fit", None))
            and callable(getattr(density, "sample", None))
        ):
            raise TypeError(
                "density must be a density model with fit and sample (e.g. "
                f"ldelib.CausalConvMDN(), GMM(), GMMN()) or one of {sorted(_DENSITIES)}, "
                f"got {density!r}."
            )
        return clone(density)

    def _check_callables(self) -> None:
        for role in ("encoder", "decoder"):
            fn = getattr(self, role)
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"{role} must be callable (a torch module or a function) or None, got "
                    f"{type(fn).__name__}."
                )

    # ------------------------------------------------------------- encoding
    def encode(self, X: ArrayLike) -> np.ndarray:
        """Encode inputs to latents, in batches of ``batch_size`` rows.

        Needs no fitting: it only runs ``encoder``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs in whatever shape the encoder takes; latents of shape
            (n_samples, D) when there is no encoder.

        Returns
        -------
        Z : ndarray of shape (n_samples, D)
        """
        self._check_callables()
        batch_size = _check_positive_int(self.batch_size, "batch_size")
        X = _check_rows(X, "X")
        if self.encoder is None:
            Z = X.detach().cpu().numpy() if isinstance(X, Tensor) else X
            if Z.ndim != 2:
                raise ValueError(
                    f"Without an encoder the inputs must be latents of shape (n_samples, D), "
                    f"got shape {tuple(Z.shape)}. Pass encoder=... to encode other inputs."
                )
            if Z.dtype.kind not in "biuf":
                raise TypeError(f"Latents must be real numbers, got an array of dtype {Z.dtype}.")
            return np.array(Z, dtype=np.float64)
        return _apply_batched(self.encoder, X, batch_size=batch_size, role="encoder", flat=True)

    def decode(self, Z: ArrayLike) -> np.ndarray:
        """Decode latents to data, in batches of ``batch_size`` rows.

        Parameters
        ----------
        Z : array-like or Tensor of shape (n_samples, D)

        Returns
        -------
        X : ndarray of shape (n_samples, ...)
            The decoder's output, as float64.

        Raises
        ------
        ValueError
            If there is no decoder, or ``Z`` is not 2-D (or, once fitted, does not have
            ``latent_dim_`` columns).
        """
        self._check_callables()
        self._require_decoder("decode latents")
        batch_size = _check_positive_int(self.batch_size, "batch_size")
        Z = _check_rows(Z, "Z")
        if Z.ndim != 2:
            raise ValueError(f"Latents must have shape (n_samples, D), got {tuple(Z.shape)}.")
        expected = getattr(self, "latent_dim_", Z.shape[1])
        if Z.shape[1] != expected:
            raise ValueError(
                f"Latents have {Z.shape[1]} dimensions, but the density was fitted on {expected}."
            )
        return _apply_batched(self.decoder, Z, batch_size=batch_size, role="decoder", flat=False)

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
        """Encode then decode: ``decode(encode(X))``, shape like the decoder's output."""
        self._require_decoder("reconstruct inputs")
        return self.decode(self.encode(X))

    def _require_decoder(self, what: str) -> None:
        if self.decoder is None:
            raise ValueError(
                f"Cannot {what}: this LatentDensityEstimator has no decoder. Pass "
                "decoder=... when creating it, or use decode=False to get latents."
            )

    # --------------------------------------------------------------------- fit
    def fit(self, X: ArrayLike, y: Any = None) -> LatentDensityEstimator:
        """Encode ``X`` in batches and fit the density model on the latents.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Training inputs (latents of shape (n_samples, D) without an encoder).
        y : ignored
            Present for scikit-learn API consistency.

        Returns
        -------
        self
        """
        density = self._make_density()
        X = _check_rows(X, "X")
        Z = self.encode(X)
        density.fit(Z)
        self.density_ = density
        self.latent_dim_ = int(Z.shape[1])
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        return self

    # -------------------------------------------------------------- densities
    def _check_has_log_prob(self, method: str) -> None:
        check_is_fitted(self)
        if not hasattr(self.density_, "score_samples"):
            raise AttributeError(
                _NO_LOG_PROB.format(name=type(self.density_).__name__, method=method)
            )

    def _latent_log_prob(self, Z: np.ndarray) -> np.ndarray:
        if Z.shape[1] != self.latent_dim_:
            raise ValueError(
                f"The encoder returned {Z.shape[1]} latent dimensions, but the density was "
                f"fitted on {self.latent_dim_}."
            )
        return np.asarray(self.density_.score_samples(Z), dtype=np.float64)

    def log_prob(self, X: ArrayLike) -> np.ndarray:
        r"""Latent log-likelihood :math:`\log p(E(x))` of each input, in nats.

        This is the density of the *latent vector* under the fitted density model, not a
        likelihood of ``X`` itself: it carries no Jacobian of the encoder and is in the
        units of the latent space.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)

        Raises
        ------
        AttributeError
            If the density model has no tractable log-likelihood (GMMN); the message
            names the Parzen-window alternative.
        """
        self._check_has_log_prob("log_prob")
        return self._latent_log_prob(self.encode(X))

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        r"""Alias of :meth:`log_prob`: the latent log-likelihood :math:`\log p(E(x))`."""
        self._check_has_log_prob("score_samples")
        return self.log_prob(X)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean latent log-likelihood of the inputs (nats per row)."""
        self._check_has_log_prob("score")
        return float(self.log_prob(X).mean())

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n_samples: int = 1,
        decode: bool = True,
        random_state: RandomStateLike = None,
    ) -> np.ndarray:
        """Draw latents from the density and decode them.

        Parameters
        ----------
        n_samples : int, default=1
        decode : bool, default=True
            Decode the latents (needs a decoder); ``False`` returns the latents.
        random_state : int, Generator or None, default=None
            ``None`` continues the density model's own stream, so successive calls
            differ; a seed gives reproducible draws.

        Returns
        -------
        X : ndarray of shape (n_samples, ...) or (n_samples, D)
            Decoded samples, or latents with ``decode=False``.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        if decode:
            self._require_decoder("decode samples")  # before drawing: keeps the stream
        Z = np.asarray(self.density_.sample(n_samples, random_state=random_state))
        return self.decode(Z) if decode else Z

    def interpolate(
        self, x_a: ArrayLike, x_b: ArrayLike, steps: int = 8, decode: bool = True
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
        decode : bool, default=True
            Decode the path (needs a decoder); ``False`` returns the latents.

        Returns
        -------
        path : ndarray of shape (steps, ...) or (steps, D)
            The decoded path, or the latent path with ``decode=False``.
        log_prob : ndarray of shape (steps,)
            Latent log-likelihood of each point of the path.
        """
        check_is_fitted(self)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
            raise ValueError(f"steps must be an integer of at least 2, got {steps!r}.")
        if decode:
            self._require_decoder("decode the interpolation")
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
