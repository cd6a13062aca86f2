"""The density-model contract shared by every ldelib estimator.

:class:`BaseDensityEstimator` owns the public API (``fit``, ``score_samples``,
``log_prob``, ``score``, ``sample``, ``save``/``load``) and every input check; a model
fills in a few private hooks, in the manner of scikit-learn's ``BaseMixture``:

* ``_fit(Z, rng)`` fits on standardised rows ``Z`` (a float64 numpy array);
* ``_log_prob(Z)`` returns log-densities of standardised rows (a differentiable tensor);
* ``_sample(n, generator)`` draws standardised rows;
* ``_make_module()`` rebuilds an empty ``module_`` from the parameters, for loading.

Internal standardisation is exact: the base adds the log-determinant of the scaling
back, so every log-likelihood is in the units of the data the user passed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from . import __version__
from ._arrays import (
    Batch,
    RandomStateLike,
    check_n_samples,
    make_rng,
    resolve_device,
    torch_generator,
    validate_input,
)
from .io import read_model_file, register, registered, write_model_file

__all__ = ["BaseDensityEstimator", "load"]

ArrayLike = Any


class BaseDensityEstimator(DensityMixin, BaseEstimator, ABC):
    """Base class of ldelib's density models.

    Subclasses declare their parameters in ``__init__`` (which only stores them), and
    must have ``standardize``, ``random_state`` and ``verbose``; a ``device`` parameter
    makes the model live on that device.
    """

    #: Floating dtype of the model's computations.
    _dtype: ClassVar[torch.dtype] = torch.float32
    #: Whether to compute on the input tensor's device instead of the model's ``device_``.
    _follows_input_device: ClassVar[bool] = False
    #: Rows per forward pass on the numpy path: bounds memory for large inputs.
    _eval_batch: ClassVar[int] = 8192

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith(("Base", "_")):
            register(cls)

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _fit(self, Z: np.ndarray, rng: np.random.Generator) -> None:
        """Fit on standardised rows ``Z`` of shape (n, D), drawing randomness from ``rng``."""

    def _log_prob(self, Z: Tensor) -> Tensor:
        """Log-density of standardised rows, shape (n, D) -> (n,)."""
        raise NotImplementedError

    @abstractmethod
    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        """Draw ``n_samples`` standardised rows on the model's device."""

    def _sample_and_log_prob(
        self, n_samples: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        Z = self._sample(n_samples, generator)
        return Z, self._log_prob(Z)

    def _make_module(self) -> nn.Module:
        """A freshly initialised ``module_`` for this model's parameters and data size."""
        raise NotImplementedError

    def _check_params(self) -> None:
        """Validate constructor arguments (called at the start of ``fit``)."""

    # ------------------------------------------------------------ public API
    def fit(self, X: ArrayLike, y: Any = None) -> BaseDensityEstimator:
        """Fit the density model to the rows of ``X``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_features)
            Training data; at least 2 rows, all finite.
        y : ignored
            Present for scikit-learn API consistency.

        Returns
        -------
        self
        """
        self._check_params()
        if not isinstance(self.standardize, bool):
            raise TypeError(f"standardize must be True or False, got {self.standardize!r}.")
        device = resolve_device(getattr(self, "device", "cpu"))
        X = validate_input(self, X, reset=True).data.detach().to("cpu", torch.float64).numpy()
        if len(X) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to fit, got n_samples = {len(X)}."
            )
        rng = make_rng(self.random_state)
        self.device_ = str(device)
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1])
        if self.standardize:
            std = X.std(axis=0)
            # A constant feature keeps unit scale: dividing by ~0 would only blow it up.
            self.scale_ = np.where(std > 1e-12 * np.maximum(1.0, np.abs(self.mean_)), std, 1.0)
        else:
            self.scale_ = np.ones(X.shape[1])
        self._fit((X - self.mean_) / self.scale_, rng)
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63 - 1))
        return self

    def score_samples(self, X: ArrayLike) -> np.ndarray | Tensor:
        """Exact log-density of each row of ``X``, in nats and in the units of ``X``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or Tensor
            A float64 array for array input; for a tensor, a tensor on its device and in
            its dtype, differentiable with respect to ``X`` and the model.
        """
        check_is_fitted(self)
        batch = validate_input(self, X, reset=False)
        if batch.is_tensor:
            return batch.output(self._log_prob_user(batch))
        with torch.no_grad():
            parts = [
                self._log_prob_user(Batch(chunk, False, batch.device, batch.dtype))
                for chunk in batch.data.split(self._eval_batch)
            ]
        return batch.output(torch.cat(parts))

    def log_prob(self, X: ArrayLike) -> np.ndarray | Tensor:
        """Alias of :meth:`score_samples`, in the manner of ``torch.distributions``."""
        return self.score_samples(X)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` (nats per row)."""
        return float(self.score_samples(X).mean())

    def sample(self, n_samples: int = 1, random_state: RandomStateLike = None) -> np.ndarray:
        """Draw rows from the fitted density.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, Generator or None, default=None
            ``None`` continues the model's own stream, created at ``fit``, so successive
            calls differ; a seed gives reproducible draws without advancing that stream.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        return self._draw(n_samples, random_state, with_log_prob=False)[0]

    def sample_and_log_prob(
        self, n_samples: int = 1, random_state: RandomStateLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw rows together with their log-densities, as ``log_prob`` would give them.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        log_prob : ndarray of shape (n_samples,)
        """
        return self._draw(n_samples, random_state, with_log_prob=True)

    def _draw(
        self, n_samples: int, random_state: RandomStateLike, with_log_prob: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        rng = self._sample_rng_ if random_state is None else make_rng(random_state)
        device = torch.device(self.device_)
        generator = torch_generator(rng, device)
        with torch.no_grad():
            if with_log_prob:
                Z, log_prob = self._sample_and_log_prob(n_samples, generator)
                log_prob = log_prob.to("cpu", torch.float64) - self._log_scale_sum()
            else:
                Z, log_prob = self._sample(n_samples, generator), torch.empty(0)
        X = Z.to("cpu", torch.float64).numpy() * self.scale_ + self.mean_
        return X, log_prob.numpy()

    # ------------------------------------------------------------- internals
    def _log_scale_sum(self) -> float:
        return float(np.log(self.scale_).sum())

    def _log_prob_user(self, batch: Batch) -> Tensor:
        X = batch.data
        device = X.device if self._follows_input_device else torch.device(self.device_)
        # Standardise in the input's precision before any cast to the model dtype.
        mean = torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device)
        scale = torch.as_tensor(self.scale_, dtype=X.dtype, device=X.device)
        Z = ((X - mean) / scale).to(device=device, dtype=self._dtype)
        return self._log_prob(Z).to(X.dtype) - self._log_scale_sum()

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted model to ``path``: a JSON config plus tensors, no pickled code.

        Load it back with ``type(model).load(path)`` or :func:`ldelib.load`.
        """
        check_is_fitted(self)
        params = {k: _encode_param(v) for k, v in self.get_params(deep=False).items()}
        if not isinstance(params.get("random_state"), (int, type(None))):
            params["random_state"] = None  # a Generator cannot be written as JSON
        attributes: dict[str, Any] = {}
        tensors: dict[str, Tensor] = {}
        for name, value in vars(self).items():
            if name.startswith("_") or not name.endswith("_"):
                continue
            if isinstance(value, nn.Module):
                attributes[name] = {"__module__": True}
                tensors.update({f"{name}.{k}": v for k, v in value.state_dict().items()})
            elif isinstance(value, np.ndarray):
                attributes[name] = {"__array__": True}
                tensors[name] = torch.from_numpy(np.array(value))
            elif isinstance(value, np.generic):
                attributes[name] = value.item()
            else:
                attributes[name] = value
        config = {
            "class": type(self).__name__,
            "params": params,
            "attributes": attributes,
            "ldelib_version": __version__,
            "torch_version": torch.__version__,
        }
        try:
            write_model_file(path, config, tensors)
        except TypeError as e:
            raise TypeError(f"{type(self).__name__} holds state that cannot be saved: {e}") from e

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], map_location: str | torch.device | None = None
    ) -> BaseDensityEstimator:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        map_location : str or torch.device, optional
            Device to put the model on; by default the device it was saved from, or the
            CPU if that device is not available here.
        """
        config, tensors = read_model_file(path)
        target = registered(str(config.get("class")))
        if not issubclass(target, cls):
            raise ValueError(
                f"{os.fspath(path)!r} holds a {target.__name__}, not a {cls.__name__}; load it "
                f"with {target.__name__}.load or ldelib.load."
            )
        try:
            model = target(**{k: _decode_param(v) for k, v in config["params"].items()})
            model._restore(config["attributes"], tensors, map_location)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"{os.fspath(path)!r} is a damaged {target.__name__} file: {e}"
            ) from e
        return model

    def _restore(
        self,
        attributes: dict[str, Any],
        tensors: dict[str, Tensor],
        map_location: str | torch.device | None,
    ) -> None:
        saved = torch.device(attributes["device_"])
        if map_location is not None:
            device = resolve_device(map_location)
        elif saved.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        else:
            device = saved
        modules = []
        for name, value in attributes.items():
            if isinstance(value, dict) and value.get("__array__"):
                setattr(self, name, tensors[name].numpy())
            elif isinstance(value, dict) and value.get("__module__"):
                modules.append(name)
            else:
                setattr(self, name, value)
        self.device_ = str(device)
        for name in modules:
            module = self._make_module()
            prefix = f"{name}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(state, strict=True)
            setattr(self, name, module.to(device).eval())
        self._sample_rng_ = make_rng(self.random_state)


def _encode_param(value: Any) -> Any:
    # JSON has no tuples; tag them so get_params() is identical after a round trip.
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_param(v) for v in value]}
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _decode_param(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_decode_param(v) for v in value["__tuple__"])
    return value


def load(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> BaseDensityEstimator:
    """Load any ldelib model saved with ``model.save(path)``."""
    return BaseDensityEstimator.load(path, map_location)
