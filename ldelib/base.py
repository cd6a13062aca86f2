"""The contract shared by every ldelib model.

:class:`BaseGenerativeModel` owns ``fit``, ``sample`` and ``save``/``load`` and every
input check; :class:`~ldelib.BaseDensityEstimator` adds the density
(``score_samples``, ``log_prob``, ``score``, prefix marginals, conditional draws). A
model fills in a few private hooks, in the manner of scikit-learn's ``BaseMixture``:

* ``_fit(rows, rng)`` fits on the training rows, a ``RowSource`` that reads them
  standardised (from memory or from a file);
* ``_sample(n, generator)`` draws standardised rows;
* ``_log_prob(Z)`` (density models) returns log-densities of standardised rows (a
  differentiable tensor);
* ``_make_module()`` rebuilds an empty ``module_`` from the parameters, for loading;
* ``_saved_attributes`` lists the fitted attributes a model file holds
  (see :mod:`ldelib.persistence`).

Internal standardisation is exact: the base adds the log-determinant of the scaling
back, so every log-likelihood is in the units of the data the user passed.
"""

from __future__ import annotations

import math
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from typing_extensions import Self  # typing.Self is Python 3.11+

from . import distributed
from ._arrays import (
    RandomStateLike,
    check_n_samples,
    make_rng,
    resolve_device,
    torch_generator,
    validate_input,
)
from ._budget import fit_clock
from ._conditioning import CONDITION_ATTRIBUTES, Conditioning
from ._conditions import fit_condition
from ._soundness import check_sound
from ._sources import (
    InMemory,
    OnDisk,
    RowSource,
    Standardizer,
    chunks,
    describe,
    is_batches,
    is_on_disk,
    open_rows,
    spooled,
)
from ._transaction import transaction
from ._validation import (
    RANDOM_STATE,
    VERBOSE,
    Boolean,
    Constraint,
    IgnoredWhen,
    Integral,
    When,
    validate_params,
)
from .persistence import Persistent
from .persistence import load as _load

__all__ = ["BaseGenerativeModel", "DegenerateDataWarning", "load"]

ArrayLike = Any


class DegenerateDataWarning(UserWarning):
    """The training data make a fitted density degenerate: its log-likelihoods are not
    to be trusted.

    Issued by ``fit`` of the models with a density (not :class:`~ldelib.GMMN`) when
    columns of the data are constant or take few distinct values (discrete data: on
    average each value is repeated, in an evenly spaced sample of at most 2,048 rows),
    or when the model's held-out log-likelihood is more than 10 nats per dimension
    below that of a Gaussian with the data's means and variances. A density fitted by
    maximum likelihood can put ever narrower peaks on repeated values: the likelihood
    is unbounded and its value measures the regularisation, not the data. Dequantise
    discrete data (add uniform noise of one quantisation step), drop constant columns,
    or raise ``reg_covar`` (:class:`~ldelib.GMM`).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from ldelib import GMM, DegenerateDataWarning
    >>> X = np.random.default_rng(0).integers(0, 4, size=(200, 2)).astype(float)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = GMM(2, random_state=0).fit(X)
    >>> [w.category.__name__ for w in caught]
    ['DegenerateDataWarning']
    >>> X += np.random.default_rng(1).uniform(size=X.shape)  # dequantised
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", DegenerateDataWarning)
    ...     _ = GMM(2, random_state=0).fit(X)
    """


class BaseGenerativeModel(Conditioning, Persistent, BaseEstimator, ABC):
    """Base class of ldelib's models: ``fit``, ``sample``, ``save`` and ``load``.

    Subclasses declare their parameters in ``__init__`` (which only stores them), and
    must have ``standardize``, ``random_state`` and ``verbose``; a ``device`` parameter
    makes the model live on that device. A model with a density derives from
    :class:`~ldelib.BaseDensityEstimator`; :class:`~ldelib.GMMN`, which defines its
    distribution only through samples, from this class alone.
    """

    #: Fitted attributes every model saves; a model adds its own.
    _saved_attributes: ClassVar[tuple[str, ...]] = ("n_features_in_", "device_", "mean_", "scale_")
    _optional_attributes: ClassVar[tuple[str, ...]] = ("feature_names_in_", *CONDITION_ATTRIBUTES)

    @property
    def _dtype(self) -> torch.dtype:
        """Floating dtype of the model's computations: its ``dtype`` parameter, if any."""
        return torch.float64 if getattr(self, "dtype", "float32") == "float64" else torch.float32

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        """Fit on the training rows, drawing randomness from ``rng``: ``rows.all()`` are
        the standardised rows, shape (n, D); a model that can stream or subsample
        (``CausalConvMDN``, ``GMM``) reads only what it needs of a file."""

    @abstractmethod
    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        """Draw ``n_samples`` standardised rows on the model's device."""

    def _make_module(self) -> nn.Module:
        """A freshly initialised ``module_`` for this model's parameters and data size."""
        raise NotImplementedError

    #: Valid values of each constructor parameter, checked at ``fit``: any one of its
    #: constraints (see :mod:`ldelib._validation`). A model lists every parameter.
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "standardize": [Boolean()],
        "random_state": RANDOM_STATE,
        "verbose": VERBOSE,
    }
    #: Rules between parameters (:class:`~ldelib._validation.When`, ``IgnoredWhen``).
    _parameter_rules: ClassVar[tuple[When | IgnoredWhen, ...]] = ()

    def _check_params(self) -> None:
        """Validate constructor arguments (called at the start of ``fit``).

        Checks ``_parameter_constraints`` and ``_parameter_rules``; a model overrides it
        only to add a check that the tables cannot express, after calling this one.
        """
        validate_params(self, self._parameter_constraints, self._parameter_rules)

    # ------------------------------------------------------------ public API
    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        """Fit the density model to the rows of ``X``.

        Parameters
        ----------
        X : array-like, Tensor, ``.npy`` path, memmap or iterable of batches
            Training rows, shape (n_samples, n_features), all finite; at least 2, or
            more for a model that holds rows out (the error says how many). A path
            or memmap is read in chunks, never whole; a DataLoader or iterator of row
            batches is written once to a temporary file and read the same way (see the
            scaling guide).
        y : array-like of shape (n_samples,) or (n_samples, n_context_features), optional
            With ``conditional=True`` (models that have it), what the density is
            conditioned on: class labels (1-D) or a continuous context (2-D), then
            required; ``X`` must then be in memory. Otherwise ignored, as scikit-learn's
            unsupervised estimators ignore it.

        Returns
        -------
        self

        Warns
        -----
        DegenerateDataWarning
            If columns of ``X`` are constant or take few distinct values, or the
            held-out log-likelihood is absurdly low: the fitted density's
            log-likelihoods are then not to be trusted.
        """
        with fit_clock():  # max_time counts from here (see ldelib._budget)
            return self._fit_any(X, y)

    def _fit_any(self, X: ArrayLike, y: Any = None) -> Self:
        self._check_params()
        device = resolve_device(getattr(self, "device", "cpu"))
        if distributed.context().is_distributed:  # under torchrun: this rank's GPU, if any
            device = distributed.local_device(device, distributed.context())
        with transaction(self):
            for name in self._optional_attributes:  # a previous fit's (validation sets
                if name != "feature_names_in_":  # the names, or removes them)
                    self.__dict__.pop(name, None)
            if getattr(self, "conditional", False):
                if is_batches(X) or is_on_disk(X):
                    raise ValueError(
                        "A conditional fit takes X in memory (an array or tensor), with y "
                        "beside it, not a file or a stream of batches: load the rows "
                        "first (np.load(path))."
                    )
                memory = self._open_array(X)
                condition, encoded = fit_condition(y, len(memory), bool(self.standardize))
                self._keep_condition(condition, encoded)
                repeated, Z = self._fit_source(memory, device, encoded)
            elif is_batches(X):
                with spooled(X) as rows:
                    repeated, Z = self._fit_source(self._open_file(rows), device)
            else:
                source = self._open_file(X) if is_on_disk(X) else self._open_array(X)
                repeated, Z = self._fit_source(source, device)
            # Inside the transaction: a warning made an error undoes the fit.
            self._warn_degenerate(repeated, Z)
        return self

    def _open_array(self, X: ArrayLike) -> InMemory:
        """Rows in memory as a source, checked (``n_features_in_`` is set)."""
        X = validate_input(self, X, reset=True).data.detach().to("cpu", torch.float64).numpy()
        self._check_enough_rows(len(X), f"got n_samples = {len(X)}")
        if not self.standardize:
            self._check_unstandardised(float(np.abs(X).max()), "X")
        standardizer = (
            Standardizer.of_array(X) if self.standardize else Standardizer.identity(X.shape[1])
        )
        return InMemory(X, standardizer)

    def _open_file(self, X: str | os.PathLike[str] | np.memmap) -> OnDisk:
        """Rows on disk as a source, checked in streaming passes (``n_features_in_`` is
        set)."""
        rows = open_rows(X)
        where = describe(X)
        if self.standardize:
            st = Standardizer.of_rows(rows, where)
        else:
            largest = 0.0
            for _, chunk in chunks(rows, where):  # the finiteness check, and the largest
                largest = max(largest, float(np.abs(chunk).max()))
            st = Standardizer.identity(rows.shape[1])
        # In the order of rows in memory: NaN first, then too few rows, then too large.
        self._check_enough_rows(len(rows), f"{where} has {len(rows)}")
        if not self.standardize:
            self._check_unstandardised(largest, where)
        self.n_features_in_ = rows.shape[1]
        return OnDisk(rows, st, where)

    def _fit_source(
        self, source: RowSource, device: torch.device, y: np.ndarray | None = None
    ) -> tuple[str | None, np.ndarray]:
        """The one fit path, whatever holds the rows: the model's ``_fit`` hook (or
        ``_fit_conditional``, given the encoded ``y``) between the standardisation and
        the checks of its result. Returns what ``_warn_degenerate`` needs."""
        self.device_ = str(device)
        self.mean_ = source.standardizer.data_mean
        self.scale_ = source.standardizer.data_scale
        repeated = self._degenerate_data(source.rows)
        rng = self._fit_rng(device)
        if y is None:
            self._fit(source, rng)
        else:
            self._fit_conditional(source, y, rng)
        Z = source.for_checks()
        self._check_sound(Z, None if y is None else y[: len(Z)])
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63 - 1))
        return repeated, Z

    def sample(self, n_samples: int = 1, random_state: RandomStateLike = None) -> np.ndarray:
        """Draw rows from the fitted model.

        Parameters
        ----------
        n_samples : int, default=1
            Draws to make; 0 gives an empty array of shape (0, n_features).
        random_state : int, Generator or None, default=None
            ``None`` continues the model's own stream, created at ``fit``, so successive
            calls differ; a seed gives reproducible draws without advancing that stream.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        return self._draw(n_samples, random_state, self._sample)

    def _draw(
        self,
        n_samples: int,
        random_state: RandomStateLike,
        draw: Callable[[int, torch.Generator], Tensor],
    ) -> np.ndarray:
        """``draw(n, generator)``'s standardised rows, in the units of the data."""
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples, minimum=0)
        if n_samples == 0:  # nothing drawn: the sampling stream stays where it is
            return np.empty((0, self.n_features_in_))
        rng = self._sample_rng_ if random_state is None else make_rng(random_state)
        generator = torch_generator(rng, torch.device(self.device_))
        try:
            with torch.no_grad():
                Z = draw(n_samples, generator)
        except (MemoryError, RuntimeError) as error:
            if not isinstance(error, MemoryError) and "allocate" not in str(error):
                raise
            gigabytes = n_samples * self.n_features_in_ * 8 / 1e9
            raise MemoryError(
                f"Not enough memory to draw {n_samples} samples of {self.n_features_in_} "
                f"dims ({gigabytes:.3g} GB as float64); draw them in smaller batches."
            ) from error
        with np.errstate(over="ignore"):
            X = Z.to("cpu", torch.float64).numpy() * self.scale_ + self.mean_
        # Data near float64's limit can have samples beyond it: keep them at the limit.
        limit = np.finfo(np.float64).max
        return np.clip(X, -limit, limit)

    # ------------------------------------------------------------- internals
    def _fit_rng(self, device: torch.device) -> np.random.Generator:
        """The fit's random stream; under ``torchrun``, the same one on every rank."""
        if not distributed.context().is_distributed:
            return make_rng(self.random_state)
        ctx = distributed.init(device)
        if self.random_state is None:
            # Every rank must draw the same split and shuffles: rank 0's entropy for all.
            return np.random.default_rng(distributed.broadcast_int(secrets.randbits(62), ctx))
        return make_rng(self.random_state)

    def _min_rows(self) -> tuple[int, str]:
        """The fewest rows ``fit`` takes with these parameters, and why: a sentence, or
        ``""`` for the two that every model needs (one row has no spread to fit)."""
        return 2, ""

    def _check_enough_rows(self, n: int, got: str) -> None:
        # Up front, in the user's terms: otherwise a split deep inside the fit leaves too
        # few rows and an inner estimator complains about a row count never passed.
        minimum, why = self._min_rows()
        if n < minimum:
            raise ValueError(
                f"{type(self).__name__} needs at least {minimum} samples to fit, {got}."
                + (f" {why}" if why else "")
            )

    def _check_unstandardised(self, largest: float, where: str) -> None:
        # Standardised rows are of order 1 whatever the data; raw ones are squared as
        # they are (variances, distances), and overflow deep inside with no word of why.
        limit = math.sqrt(torch.finfo(self._dtype).max) / 1e3
        if largest > limit:
            raise ValueError(
                f"{where} holds values up to {largest:.3g}, and with standardize=False "
                f"{type(self).__name__} computes with them as they are: beyond about "
                f"{limit:.2g} their squares overflow {str(self._dtype).removeprefix('torch.')}. "
                "Use standardize=True (the default), which fits any finite data."
            )

    def _degenerate_data(self, X: np.ndarray) -> str | None:
        """Why the raw training rows ``X`` make the fit degenerate, or ``None``; a model
        with a likelihood says so (see DegenerateDataWarning)."""
        return None

    def _warn_degenerate(self, repeated: str | None, Z: np.ndarray) -> None:
        """Warn, once, if the data or the fit is degenerate (see DegenerateDataWarning)."""

    def _training_score(self, Z: np.ndarray, y: np.ndarray | None = None) -> float | None:
        """The model's mean log-density of the standardised rows ``Z`` (given their
        encoded ``y``) per dimension, or ``None`` without a density: the soundness check
        compares it to a Gaussian's."""
        return None

    def _check_sound(self, Z: np.ndarray, y: np.ndarray | None = None) -> None:
        """Raise FloatingPointError if training left a numerically broken model (rows
        ``Z`` in standard units; with ``y``, their encoded condition, drawn given the
        first rows' condition)."""
        device = torch.device(self.device_)
        generator = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            if y is None:
                drawn = self._sample(256, generator)
            else:
                c = self._as_condition(y[:256], device)
                drawn = self._sample_conditional(c, None, generator)
            samples = drawn.to("cpu", torch.float64).numpy()
        problem = check_sound(samples, self._training_score(Z, y), Z)
        if problem is not None:
            lr = getattr(self, "learning_rate", None)
            hint = f" (now {lr})" if lr is not None else ""
            raise FloatingPointError(
                f"{type(self).__name__} diverged while training: {problem}. Lower "
                f"learning_rate{hint}, or check the data for extreme values."
            )

    # ------------------------------------------------------------ persistence
    def _restored(self) -> None:
        self._check_params()
        d = self.n_features_in_
        if not Integral(1, None).is_satisfied_by(d):
            raise ValueError(f"n_features_in_ = {d!r} is not a positive integer")
        for name in ("mean_", "scale_"):
            value = getattr(self, name)
            if not (isinstance(value, np.ndarray) and value.shape == (d,)):
                raise ValueError(f"{name} must be an array of shape ({d},)")
        if not (self.scale_ > 0).all():
            raise ValueError("scale_ must be positive")
        self._sample_rng_ = make_rng(self.random_state)


def load(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None, **extras: Any
) -> Any:
    """Load any ldelib object saved with ``obj.save(path)``.

    Models load from the file alone; an :class:`~ldelib.IncrementalAutoencoder` or a
    :class:`~ldelib.LatentDensityEstimator` also takes the ``encoder=``/``decoder=``
    it was saved with (callables are not stored).
    """
    return _load(path, map_location, **extras)
