"""The contract of ldelib's density models: a generative model with an exact density.

:class:`BaseDensityEstimator` adds to :class:`~ldelib.base.BaseGenerativeModel`
(``fit``, ``sample``, ``save``/``load``) what a density gives: ``score_samples``,
``log_prob`` and ``score`` (exact, in the units of the data), ``sample_and_log_prob``,
prefix marginals (``n_dims``) and conditional draws (``sample(given=...)``), and the
checks of a fit for degenerate data. A model fills in ``_log_prob(Z)`` (log-densities
of standardised rows, a differentiable tensor) besides the hooks of the base, and
``_log_prob_prefix`` and ``_sample_given`` if it has prefix marginals.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from abc import abstractmethod
from typing import Any, ClassVar, overload

import numpy as np
import torch
from sklearn.base import DensityMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor
from tqdm.auto import tqdm

from ._arrays import Batch, RandomStateLike, check_n_samples, validate_input
from ._conditioning import GenerativeClassifier
from ._prefix import check_given, check_n_dims, prefix_columns, prefix_input
from ._soundness import held_out_collapse, repeated_values
from ._sources import chunks, describe, is_on_disk, open_rows, result_file
from .base import ArrayLike, BaseGenerativeModel, DegenerateDataWarning

__all__ = ["BaseDensityEstimator"]


class BaseDensityEstimator(GenerativeClassifier, DensityMixin, BaseGenerativeModel):
    """Base class of ldelib's density models: a :class:`BaseGenerativeModel` with an
    exact log-density (``score_samples``, ``log_prob``, ``score``,
    ``sample_and_log_prob``), prefix marginals and conditional draws (``n_dims``,
    ``sample(given=...)``), and checks of its fit for degenerate data.
    """

    #: Whether to compute on the input tensor's device instead of the model's ``device_``.
    _follows_input_device: ClassVar[bool] = False
    #: Rows per forward pass on the numpy path: bounds memory for large inputs.
    _eval_batch: ClassVar[int] = 8192

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _log_prob(self, Z: Tensor) -> Tensor:
        """Log-density of standardised rows, shape (n, D) -> (n,)."""

    def _sample_and_log_prob(
        self, n_samples: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        Z = self._sample(n_samples, generator)
        return Z, self._log_prob(Z)

    # ------------------------------------------------------------ public API
    @overload
    def score_samples(
        self, X: Tensor, y: Any = None, out: None = None, *, n_dims: int | None = None
    ) -> Tensor: ...
    @overload
    def score_samples(
        self,
        X: ArrayLike,
        y: Any = None,
        out: str | os.PathLike[str] | None = None,
        *,
        n_dims: int | None = None,
    ) -> np.ndarray: ...
    def score_samples(
        self,
        X: ArrayLike,
        y: Any = None,
        out: str | os.PathLike[str] | None = None,
        *,
        n_dims: int | None = None,
    ) -> np.ndarray | Tensor:
        """Exact log-density of each row of ``X``, in nats and in the units of ``X``.

        Parameters
        ----------
        X : array-like, Tensor, path of a ``.npy`` file or memmap, shape (n_samples, n_features)
            A path or memmap is read in chunks, never whole (see the scaling guide). With
            ``n_dims=k``, rows may also have just the ``k`` prefix columns.
        y : array-like of shape (n_samples,) or (n_samples, n_context_features), optional
            For a model fitted with ``y`` (``conditional=True``), required: the labels or
            context of each row, and the result is :math:`\\log p(x \\mid y)`. A model
            fitted without ``y`` refuses one.
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
        k = check_n_dims(n_dims, self.n_features_in_)
        self._check_y(y)
        if out is not None or is_on_disk(X):
            return self._score_in_chunks(X, out, k, y)
        batch = (
            validate_input(self, X, reset=False)
            if k is None
            else prefix_input(self, X, self.prefix_columns(k), self.mean_)
        )
        c = self._encoded(y, len(batch.data))
        if batch.is_tensor:
            return batch.output(self._log_prob_user(batch, k, c))
        with torch.no_grad():
            parts = [
                self._log_prob_user(
                    Batch(chunk, False, batch.device, batch.dtype),
                    k,
                    None if c is None else c[start : start + len(chunk)],
                )
                for start, chunk in zip(
                    range(0, len(batch.data), self._eval_batch),
                    batch.data.split(self._eval_batch),
                    strict=True,
                )
            ]
        return batch.output(torch.cat(parts))

    def _score_in_chunks(
        self, X: Any, out: str | os.PathLike[str] | None, k: int | None, y: Any = None
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
        c = self._encoded(y, len(rows))
        with result_file(out, len(rows)) as result:
            bar = tqdm(total=len(rows), desc="score", unit="rows", disable=self.verbose <= 0)
            with torch.no_grad(), bar:
                for start, chunk in chunks(rows, where, self._eval_batch):
                    data = torch.from_numpy(chunk)
                    batch = Batch(data, False, data.device, data.dtype)
                    part = None if c is None else c[start : start + len(chunk)]
                    result[start : start + len(chunk)] = self._log_prob_user(
                        batch, k, part
                    ).numpy()
                    bar.update(len(chunk))
        return np.load(os.fspath(out), mmap_mode="r") if out is not None else result

    @overload
    def log_prob(self, X: Tensor, y: Any = None, *, n_dims: int | None = None) -> Tensor: ...
    @overload
    def log_prob(
        self, X: ArrayLike, y: Any = None, *, n_dims: int | None = None
    ) -> np.ndarray: ...
    def log_prob(
        self, X: ArrayLike, y: Any = None, *, n_dims: int | None = None
    ) -> np.ndarray | Tensor:
        """Alias of :meth:`score_samples`, in the manner of ``torch.distributions``."""
        return self.score_samples(X, y, n_dims=n_dims)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` (nats per row), a float: of
        :math:`p(x \\mid y)` for a model fitted with ``y``; otherwise ``y`` is ignored,
        as scikit-learn's model selection passes it to every estimator."""
        log_prob = self.score_samples(X, y if self._condition() is not None else None)
        if isinstance(log_prob, Tensor):  # a float, never a graph: no gradient to keep
            return float(log_prob.detach().double().mean())
        return float(log_prob.mean())

    def sample(
        self,
        n_samples: int = 1,
        random_state: RandomStateLike = None,
        *,
        given: Any = None,
        y: Any = None,
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
        y : label, context vector, or one per draw, optional
            For a model fitted with ``y`` (``conditional=True``), required: draws come
            from :math:`p(x \\mid y)`. One label (or context vector of
            ``n_context_features_``) is shared by every draw; an array of
            ``n_samples`` labels (or rows) gives one per draw.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        condition = self._check_y(y)
        if given is None and condition is None:
            return super().sample(n_samples, random_state)
        n_samples = check_n_samples(n_samples, minimum=0)
        c = None if condition is None else self._encoded(y, n_samples, shared=True)
        if given is None:
            given = np.empty((n_samples, 0))
        given = check_given(given, n_samples, self.n_features_in_)
        k = given.shape[1]
        if c is None and k == 0:
            return super().sample(n_samples, random_state)
        if c is None and type(self)._sample_given is BaseDensityEstimator._sample_given:
            self._sample_given(torch.empty(0, k), torch.Generator())  # raises: it says why
        columns = self.prefix_columns(k)
        prefix = torch.as_tensor(
            (given - self.mean_[columns]) / self.scale_[columns],
            dtype=self._dtype,
            device=torch.device(self.device_),
        )

        def draw(n: int, generator: torch.Generator) -> Tensor:
            if c is None:
                return self._sample_given(prefix, generator)
            return self._sample_conditional(c, prefix if k else None, generator)

        X = self._draw(n_samples, random_state, draw)
        X[:, columns] = given  # exactly as given, without a round trip through the scaling
        return X

    def sample_and_log_prob(
        self, n_samples: int = 1, random_state: RandomStateLike = None, *, y: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw rows together with their log-densities, as ``log_prob`` would give them
        (given ``y``, as ``sample`` takes it, for a model fitted with ``y``).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        log_prob : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if self._check_y(y) is not None:
            X = self.sample(n_samples, random_state, y=y)
            c = self._encoded(y, len(X), shared=True)
            rows = torch.from_numpy(X)
            with torch.no_grad():
                log_prob = self._log_prob_user(
                    Batch(rows, False, rows.device, rows.dtype), None, c
                )
            return X, log_prob.numpy()
        drawn: list[Tensor] = []

        def draw(n: int, generator: torch.Generator) -> Tensor:
            Z, log_prob = self._sample_and_log_prob(n, generator)
            drawn.append(log_prob)
            return Z

        X = self._draw(n_samples, random_state, draw)
        if not drawn:
            return X, np.empty(0)
        log_prob = drawn[0].to("cpu", torch.float64) - self._log_scale_sum()
        return X, log_prob.numpy()

    def prefix_columns(self, n_dims: int) -> np.ndarray:
        """The data columns of the first ``n_dims`` dimensions of the model's ordering.

        They are the columns whose marginal ``score_samples(X, n_dims=n_dims)`` gives,
        and that ``sample(n, given=values)`` fixes (``values`` of width ``n_dims`` hold
        them in this order): ``ordering_[:n_dims]`` of :class:`~ldelib.CausalConvMDN`,
        the first ``n_dims`` columns otherwise.

        Parameters
        ----------
        n_dims : int
            From 0 (no columns) to ``n_features_in_``.

        Returns
        -------
        columns : ndarray of shape (n_dims,), int64

        Examples
        --------
        >>> import numpy as np
        >>> from ldelib import GMM
        >>> X = np.random.default_rng(0).normal(size=(200, 3))
        >>> GMM(2, random_state=0).fit(X).prefix_columns(2)
        array([0, 1])
        """
        check_is_fitted(self)
        d = self.n_features_in_
        integral = isinstance(n_dims, numbers.Integral) and not isinstance(n_dims, bool)
        if not (integral and 0 <= int(n_dims) <= d):
            raise ValueError(
                f"n_dims must be an integer from 0 to {d} (the model's dimensions), "
                f"got {n_dims!r}."
            )
        return prefix_columns(self._ordering(), int(n_dims))

    # ------------------------------------------------------------- internals
    def _held_out_score(self) -> float | None:
        """The fitted model's mean log-likelihood of held-out rows (nats per row, data
        units), or ``None`` if the fit held none out."""
        return None

    def _warn_degenerate(self, repeated: str | None, Z: np.ndarray) -> None:
        """Warn, once, if the data or the fit is degenerate (see DegenerateDataWarning)."""
        collapse = held_out_collapse(self._held_out_score(), self._log_scale_sum(), Z)
        reasons = [r for r in (repeated, collapse) if r is not None]
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
            stacklevel=4,  # the user's call of fit (fit -> _fit_any -> here)
        )

    def _degenerate_data(self, X: np.ndarray) -> str | None:
        return repeated_values(X)

    def _training_score(self, Z: np.ndarray, y: np.ndarray | None = None) -> float | None:
        device = torch.device(self.device_)
        rows = torch.as_tensor(Z[:1024], dtype=self._dtype, device=device)
        with torch.no_grad():
            if y is None:
                log_prob = self._log_prob(rows)
            else:
                log_prob = self._log_prob_conditional(
                    rows, self._as_condition(y[:1024], device), None
                )
            return float(log_prob.mean()) / Z.shape[1]

    def _log_scale_sum(self, columns: np.ndarray | None = None) -> float:
        scale = self.scale_ if columns is None else self.scale_[columns]
        return float(np.log(scale).sum())

    def _ordering(self) -> np.ndarray:
        """The dimensions in the order the model factorises them (prefixes follow it)."""
        return np.arange(self.n_features_in_)

    def _log_prob_user(
        self, batch: Batch, n_dims: int | None = None, c: Tensor | None = None
    ) -> Tensor:
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
            columns = self.prefix_columns(n_dims)
        if columns is not None:  # a marginal never reads the other columns: zero them
            keep = torch.zeros(Z.shape[1], dtype=torch.bool, device=Z.device)
            keep[torch.as_tensor(columns, device=Z.device)] = True
            Z = torch.where(keep, Z, 0.0)
        k = None if columns is None else len(columns)
        if c is not None:
            c = c.to(device)
        return self._log_prob_in(Z, k, device, self._dtype, c) - self._log_scale_sum(columns)

    def _log_prob_in(
        self,
        Z: Tensor,
        k: int | None,
        device: torch.device,
        dtype: torch.dtype,
        c: Tensor | None = None,
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
        if c is not None:
            inner = self._log_prob_conditional(
                near, c if c.dtype == torch.int64 else c.to(dtype), k
            )
        elif k is None:
            inner = self._log_prob(near)
        else:
            inner = self._log_prob_prefix(near, k)
        inner, far = inner.to(Z.dtype), far.to(device)
        if dtype != torch.float64 and bool(far.any()):
            rows = far.nonzero().squeeze(1)
            c_far = None if c is None else c[rows]
            again = self._log_prob_in(Z[rows.to(Z.device)], k, device, torch.float64, c_far)
            return inner.index_put((rows,), again.to(inner.dtype))
        return inner.masked_fill(far, -math.inf)

    def _log_prob_prefix(self, Z: Tensor, k: int) -> Tensor:
        """Marginal log-density of the first ``k`` dimensions of the ordering, from
        standardised rows ``Z`` of full width (the other columns are zero)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no prefix marginals (n_dims); CausalConvMDN and "
            "GMM have them."
        )

    def _log_prob_conditional(self, Z: Tensor, c: Tensor, k: int | None) -> Tensor:
        """:math:`\\log p(z \\mid c)` of standardised rows (or of their prefix of ``k``
        dimensions, as ``_log_prob_prefix``), given the encoded ``c``: label codes
        (int64, (n,)) or the standardised context ((n, C), in ``Z``'s dtype)."""
        raise NotImplementedError

    def _sample_given(self, prefix: Tensor, generator: torch.Generator) -> Tensor:
        """Standardised rows (n, D) whose first ``k`` dimensions of the ordering are
        ``prefix`` (n, k), the others drawn from their conditional given them."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot sample given a prefix; CausalConvMDN and GMM can."
        )
