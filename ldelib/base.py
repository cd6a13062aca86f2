"""The density-model contract shared by every ldelib estimator.

:class:`BaseDensityEstimator` owns the public API (``fit``, ``score_samples``,
``log_prob``, ``score``, ``sample``, ``save``/``load``) and every input check; a model
fills in a few private hooks, in the manner of scikit-learn's ``BaseMixture``:

* ``_fit(Z, rng)`` fits on standardised rows ``Z`` (a float64 numpy array);
* ``_log_prob(Z)`` returns log-densities of standardised rows (a differentiable tensor);
* ``_sample(n, generator)`` draws standardised rows;
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
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar, overload

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from tqdm.auto import tqdm
from typing_extensions import Self  # typing.Self is Python 3.11+

from . import distributed
from ._arrays import (
    Batch,
    RandomStateLike,
    check_n_samples,
    make_rng,
    resolve_device,
    torch_generator,
    validate_input,
)
from ._budget import fit_clock
from ._prefix import check_given, check_n_dims, prefix_columns, prefix_input
from ._soundness import check_sound, held_out_collapse, repeated_values
from ._sources import (
    OnDisk,
    Standardizer,
    chunks,
    describe,
    is_batches,
    is_on_disk,
    open_rows,
    result_file,
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

__all__ = ["BaseDensityEstimator", "DegenerateDataWarning", "load"]

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


class BaseDensityEstimator(Persistent, DensityMixin, BaseEstimator, ABC):
    """Base class of ldelib's density models.

    Subclasses declare their parameters in ``__init__`` (which only stores them), and
    must have ``standardize``, ``random_state`` and ``verbose``; a ``device`` parameter
    makes the model live on that device.
    """

    #: Whether to compute on the input tensor's device instead of the model's ``device_``.
    _follows_input_device: ClassVar[bool] = False
    #: Rows per forward pass on the numpy path: bounds memory for large inputs.
    _eval_batch: ClassVar[int] = 8192

    #: Fitted attributes every model saves; a model adds its own.
    _saved_attributes: ClassVar[tuple[str, ...]] = ("n_features_in_", "device_", "mean_", "scale_")
    _optional_attributes: ClassVar[tuple[str, ...]] = ("feature_names_in_",)

    @property
    def _dtype(self) -> torch.dtype:
        """Floating dtype of the model's computations: its ``dtype`` parameter, if any."""
        return torch.float64 if getattr(self, "dtype", "float32") == "float64" else torch.float32

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
        y : ignored
            Present for scikit-learn API consistency.

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
            return self._fit_any(X)

    def _fit_any(self, X: ArrayLike) -> Self:
        self._check_params()
        device = resolve_device(getattr(self, "device", "cpu"))
        if distributed.context().is_distributed:  # under torchrun: this rank's GPU, if any
            device = distributed.local_device(device, distributed.context())
        with transaction(self):
            if is_on_disk(X):
                repeated, Z = self._fit_from_disk(X, device, self._fit_rng(device))
            elif is_batches(X):
                with spooled(X) as rows:
                    repeated, Z = self._fit_from_disk(rows, device, self._fit_rng(device))
            else:
                repeated, Z = self._fit_array(X, device)
            # Inside the transaction: a warning made an error undoes the fit.
            self._warn_degenerate(repeated, Z)
        return self

    def _fit_array(self, X: ArrayLike, device: torch.device) -> tuple[str | None, np.ndarray]:
        """Fit on rows in memory; return what ``_warn_degenerate`` needs."""
        X = validate_input(self, X, reset=True).data.detach().to("cpu", torch.float64).numpy()
        self._check_enough_rows(len(X), f"got n_samples = {len(X)}")
        repeated = repeated_values(X) if self._has_log_prob() else None
        if not self.standardize:
            self._check_unstandardised(float(np.abs(X).max()), "X")
        rng = self._fit_rng(device)
        self.device_ = str(device)
        self.mean_, self.scale_, Z = _standardize(X, self.standardize)
        self._fit(Z, rng)
        self._check_sound(Z)
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63 - 1))
        return repeated, Z

    @overload
    def score_samples(
        self, X: Tensor, out: None = None, *, n_dims: int | None = None
    ) -> Tensor: ...
    @overload
    def score_samples(
        self, X: ArrayLike, out: str | os.PathLike[str] | None = None, *, n_dims: int | None = None
    ) -> np.ndarray: ...
    def score_samples(
        self, X: ArrayLike, out: str | os.PathLike[str] | None = None, *, n_dims: int | None = None
    ) -> np.ndarray | Tensor:
        """Exact log-density of each row of ``X``, in nats and in the units of ``X``.

        Parameters
        ----------
        X : array-like, Tensor, path of a ``.npy`` file or memmap, shape (n_samples, n_features)
            A path or memmap is read in chunks, never whole (see the scaling guide). With
            ``n_dims=k``, rows may also have just the ``k`` prefix columns.
        out : path, optional
            Write the log-likelihoods to this ``.npy`` file, chunk by chunk, and return
            it memory-mapped. The file appears only once every row is scored.
        n_dims : int, optional
            The exact *marginal* log-density of the first ``n_dims`` dimensions of the
            model's ordering (``ordering_`` of :class:`~ldelib.CausalConvMDN`, the
            column order otherwise), the others integrated out: a coarse-to-fine
            likelihood for latents ordered by importance. Rows of width ``n_dims`` hold
            those dimensions in that order; of full width, the other columns are
            ignored. ``n_dims = n_features`` is the full density.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or Tensor
            A float64 array for array input; for a tensor, a tensor on its device and in
            its dtype, differentiable with respect to ``X`` and the model.
        """
        check_is_fitted(self)
        k = check_n_dims(self, n_dims)
        if out is not None or is_on_disk(X):
            return self._score_in_chunks(X, out, k)
        batch = validate_input(self, X, reset=False) if k is None else prefix_input(self, X, k)
        if batch.is_tensor:
            return batch.output(self._log_prob_user(batch, k))
        with torch.no_grad():
            parts = [
                self._log_prob_user(Batch(chunk, False, batch.device, batch.dtype), k)
                for chunk in batch.data.split(self._eval_batch)
            ]
        return batch.output(torch.cat(parts))

    def _score_in_chunks(
        self, X: Any, out: str | os.PathLike[str] | None, k: int | None
    ) -> np.ndarray:
        if is_on_disk(X):
            rows, where = open_rows(X), describe(X)
        else:
            rows = validate_input(self, X, reset=False).data.detach().to("cpu").numpy()
            where = "X"
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{where} has {rows.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        with result_file(out, len(rows)) as result:
            bar = tqdm(total=len(rows), desc="score", unit="rows", disable=self.verbose <= 0)
            with torch.no_grad(), bar:
                for start, chunk in chunks(rows, where, self._eval_batch):
                    data = torch.from_numpy(chunk)
                    batch = Batch(data, False, data.device, data.dtype)
                    result[start : start + len(chunk)] = self._log_prob_user(batch, k).numpy()
                    bar.update(len(chunk))
        return np.load(os.fspath(out), mmap_mode="r") if out is not None else result

    @overload
    def log_prob(self, X: Tensor, n_dims: int | None = None) -> Tensor: ...
    @overload
    def log_prob(self, X: ArrayLike, n_dims: int | None = None) -> np.ndarray: ...
    def log_prob(self, X: ArrayLike, n_dims: int | None = None) -> np.ndarray | Tensor:
        """Alias of :meth:`score_samples`, in the manner of ``torch.distributions``."""
        return self.score_samples(X, n_dims=n_dims)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` (nats per row), a float."""
        log_prob = self.score_samples(X)
        if isinstance(log_prob, Tensor):  # a float, never a graph: no gradient to keep
            return float(log_prob.detach().double().mean())
        return float(log_prob.mean())

    def sample(
        self, n_samples: int = 1, random_state: RandomStateLike = None, *, given: Any = None
    ) -> np.ndarray:
        """Draw rows from the fitted density, or from its conditional given a prefix.

        Parameters
        ----------
        n_samples : int, default=1
            Draws to make; 0 gives an empty array of shape (0, n_features).
        random_state : int, Generator or None, default=None
            ``None`` continues the model's own stream, created at ``fit``, so successive
            calls differ; a seed gives reproducible draws without advancing that stream.
        given : array-like of shape (k,) or (n_samples, k), optional
            Values of the first ``k`` dimensions of the model's ordering (see
            ``score_samples``' ``n_dims``): the other dimensions are drawn from their
            exact conditional given them, and the prefix is returned as given. One row
            is shared by every draw. For :class:`~ldelib.CausalConvMDN` the prefix
            takes one parallel pass and the draw ``D - k`` steps.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        return self._draw(n_samples, random_state, with_log_prob=False, given=given)[0]

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
        self, n_samples: int, random_state: RandomStateLike, with_log_prob: bool, given: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples, minimum=0)
        if given is not None:
            given = check_given(self, given, n_samples)
        if n_samples == 0:  # nothing drawn: the sampling stream stays where it is
            if (
                given is not None
                and type(self)._sample_given is BaseDensityEstimator._sample_given
            ):
                self._sample_given(torch.empty(0, given.shape[1]), torch.Generator())  # raises
            return np.empty((0, self.n_features_in_)), np.empty(0)
        rng = self._sample_rng_ if random_state is None else make_rng(random_state)
        device = torch.device(self.device_)
        generator = torch_generator(rng, device)
        try:
            with torch.no_grad():
                if given is not None and given.shape[1] > 0:
                    columns = prefix_columns(self, given.shape[1])
                    prefix = (given - self.mean_[columns]) / self.scale_[columns]
                    prefix_t = torch.as_tensor(prefix, dtype=self._dtype, device=device)
                    Z, log_prob = self._sample_given(prefix_t, generator), torch.empty(0)
                elif with_log_prob:
                    Z, log_prob = self._sample_and_log_prob(n_samples, generator)
                    log_prob = log_prob.to("cpu", torch.float64) - self._log_scale_sum()
                else:
                    Z, log_prob = self._sample(n_samples, generator), torch.empty(0)
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
        X = np.clip(X, -limit, limit)
        if given is not None:  # exactly as given, without a round trip through the scaling
            X[:, prefix_columns(self, given.shape[1])] = given
        return X, log_prob.numpy()

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

    def _fit_from_disk(
        self, X: str | os.PathLike[str] | np.memmap, device: torch.device, rng: np.random.Generator
    ) -> tuple[str | None, np.ndarray]:
        """Fit on rows on disk; return what ``_warn_degenerate`` needs."""
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
        self.device_ = str(device)
        self.mean_, self.scale_ = st.data_mean, st.data_scale
        source = OnDisk(rows, st, where)
        repeated = repeated_values(rows) if self._has_log_prob() else None
        self._fit_on_disk(source, rng)
        Z = source.take(np.arange(min(len(rows), 4096)))
        self._check_sound(Z)
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63 - 1))
        return repeated, Z

    def _fit_on_disk(self, source: OnDisk, rng: np.random.Generator) -> None:
        """Fit on rows on disk; by default, read them all into memory and ``_fit``.

        A model that can stream (``CausalConvMDN``) or subsample (``GMM``) overrides it.
        """
        self._fit(source.take(np.arange(len(source))), rng)

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

    def _held_out_score(self) -> float | None:
        """The fitted model's mean log-likelihood of held-out rows (nats per row, data
        units), or ``None`` if the fit held none out."""
        return None

    def _warn_degenerate(self, repeated: str | None, Z: np.ndarray) -> None:
        """Warn, once, if the data or the fit is degenerate (see DegenerateDataWarning)."""
        if not self._has_log_prob():
            return
        reasons = [r for r in (repeated, held_out_collapse(self, Z)) if r is not None]
        if not reasons:
            return
        hints = [
            "Dequantise discrete data (add uniform noise of one quantisation step)",
            "drop constant columns",
        ]
        if hasattr(self, "reg_covar"):
            hints.append(f"raise reg_covar (now {self.reg_covar!r})")
        hint = ", ".join(hints[:-1]) + f" or {hints[-1]}"
        warnings.warn(
            f"{type(self).__name__}: {' '.join(reasons)} {hint}.",
            DegenerateDataWarning,
            stacklevel=4,  # the user's call to fit (through fit and _fit_any)
        )

    def _check_sound(self, Z: np.ndarray) -> None:
        """Raise FloatingPointError if training left a numerically broken model."""
        check_sound(self, Z)

    @classmethod
    def _has_log_prob(cls) -> bool:
        """Whether the model has a tractable density (GMMN does not)."""
        return cls._log_prob is not BaseDensityEstimator._log_prob

    def _log_scale_sum(self, columns: np.ndarray | None = None) -> float:
        scale = self.scale_ if columns is None else self.scale_[columns]
        return float(np.log(scale).sum())

    def _ordering(self) -> np.ndarray:
        """The dimensions in the order the model factorises them (prefixes follow it)."""
        return np.arange(self.n_features_in_)

    def _log_prob_user(self, batch: Batch, n_dims: int | None = None) -> Tensor:
        X = batch.data
        device = X.device if self._follows_input_device else torch.device(self.device_)
        # Standardise in the input's precision before any cast to the model dtype.
        mean = torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device)
        scale = torch.as_tensor(self.scale_, dtype=X.dtype, device=X.device)
        Z = (X - mean) / scale
        # Near float64's limit X - mean can overflow where the standardised value does
        # not (data of +-1.7e308 has a scale of that size too): those entries, divided
        # first. Elsewhere the difference first, which is exact for nearby values.
        Z = torch.where(torch.isfinite(Z), Z, X / scale - mean / scale)
        columns = None
        if n_dims is not None and n_dims < self.n_features_in_:
            columns = prefix_columns(self, n_dims)
        if columns is not None:  # a marginal never reads the other columns: zero them
            keep = torch.zeros(Z.shape[1], dtype=torch.bool, device=Z.device)
            keep[torch.as_tensor(columns, device=Z.device)] = True
            Z = torch.where(keep, Z, 0.0)
        k = None if columns is None else len(columns)
        return self._log_prob_in(Z, k, device, self._dtype) - self._log_scale_sum(columns)

    def _log_prob_in(
        self, Z: Tensor, k: int | None, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """``_log_prob`` (or the prefix marginal of ``k`` dimensions) of standardised rows
        computed in ``dtype`` on ``device``, returned in ``Z``'s dtype.

        Rows too far out for ``dtype`` (their squares overflow it, and the density
        underflows to 0 in it) are rescored in float64, the others stay in the model's
        faster dtype; rows too far out even for float64 get -inf, never a NaN from
        inf - inf inside.
        """
        limit = math.sqrt(torch.finfo(dtype).max) / 1e3
        far = ~(Z.abs() <= limit).all(dim=1)
        near = torch.where(far[:, None], 0.0, Z).to(device=device, dtype=dtype)
        inner = self._log_prob(near) if k is None else self._log_prob_prefix(near, k)
        inner, far = inner.to(Z.dtype), far.to(device)
        if dtype != torch.float64 and bool(far.any()):
            rows = far.nonzero().squeeze(1)
            again = self._log_prob_in(Z[rows.to(Z.device)], k, device, torch.float64)
            return inner.index_put((rows,), again.to(inner.dtype))
        return inner.masked_fill(far, -math.inf)

    def _log_prob_prefix(self, Z: Tensor, k: int) -> Tensor:
        """Marginal log-density of the first ``k`` dimensions of the ordering, from
        standardised rows ``Z`` of full width (the other columns are zero)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no prefix marginals (n_dims); CausalConvMDN and "
            "GMM have them."
        )

    def _sample_given(self, prefix: Tensor, generator: torch.Generator) -> Tensor:
        """Standardised rows (n, D) whose first ``k`` dimensions of the ordering are
        ``prefix`` (n, k), the others drawn from their conditional given them."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot sample given a prefix; CausalConvMDN and GMM can."
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


def _standardize(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means, scales and the standardised rows, for any finite float64 ``X``.

    See :class:`ldelib._sources.Standardizer`: no sum or square overflows or underflows
    whatever the units (1e-300 or 1e300), and constant columns keep unit scale.
    """
    st = Standardizer.of_array(X) if standardize else Standardizer.identity(X.shape[1])
    return st.data_mean, st.data_scale, st.transform(X)


def load(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None, **extras: Any
) -> Any:
    """Load any ldelib object saved with ``obj.save(path)``.

    Models load from the file alone; an :class:`~ldelib.IncrementalAutoencoder` or a
    :class:`~ldelib.LatentDensityEstimator` also takes the ``encoder=``/``decoder=``
    it was saved with (callables are not stored).
    """
    return _load(path, map_location, **extras)
