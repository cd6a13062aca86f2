r"""A Gaussian mixture conditioned on class labels or on a context vector.

*Labels.* One mixture per class, chosen and fitted as the unconditional
:class:`~ldelib.GMM` would be on that class's rows. They are kept as one mixture whose
components carry their class (``component_class_``) and whose weights are
:math:`p(y)\,p(k \mid y)`: :math:`p(x \mid y)` is the mixture of the class's components,
and the whole is the marginal :math:`p(x) = \sum_y p(y)\,p(x \mid y)`.

*Context.* One mixture over the joint :math:`(c, x)`, context first, fitted as the
unconditional mixture would be. :math:`p(x \mid c)` follows exactly by Gaussian
conditioning, through the prefix marginals and conditional draws the mixture already
has: :math:`\log p(x \mid c) = \log p(c, x) - \log p(c)`, and a draw is the rest of a
row whose prefix is :math:`c`. Its components' weights given :math:`c` are their
responsibilities for :math:`c`, and their means move linearly with it.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from typing_extensions import Self

from .._budget import fit_clock
from .._sources import RowSource
from .._summary import SummaryItem
from ..base import DegenerateDataWarning
from ._em import EMMixture, HeldOutSearch
from ._packed import packed_rows

__all__ = ["ConditionalMixture"]


class ConditionalMixture(EMMixture):
    """The conditional half of :class:`~ldelib.GMM` (``conditional=True``): its fit on
    labels or a context, and its conditional densities and draws."""

    conditional: bool
    covariances_: np.ndarray
    component_class_: np.ndarray

    # -------------------------------------------------------------------- fit
    def _fit_conditional(self, rows: RowSource, y: np.ndarray, rng: np.random.Generator) -> None:
        if y.ndim == 1:
            self._fit_labels(rows.all(), y, rng)
        else:  # the joint rows (c, x), fitted as any rows are (max_fit_rows included)
            super()._fit(packed_rows(rows, y), rng)

    def _em_log_det(self) -> float:
        # The joint mixture's likelihoods are of (context, x): both were standardised.
        context = np.log(self.context_scale_).sum() if hasattr(self, "context_scale_") else 0.0
        return super()._em_log_det() + float(context)

    def fit_per_class(
        self,
        Z: np.ndarray,
        codes: np.ndarray,
        n_classes: int,
        held_out: np.ndarray | None = None,
        held_out_codes: np.ndarray | None = None,
    ) -> Self:
        """Fit to standardised rows ``Z`` of classes ``codes`` (``0 .. n_classes - 1``,
        the classes), each class's candidates chosen on its rows of ``held_out`` when it
        has some (a ``HeldOutSearch`` per class): for a caller whose
        rows are standardised and whose validation split every later choice shares (the
        LDE's anchor). Within ``max_time``, counted from this call."""
        with fit_clock():
            self._check_params()
            rng = self._fit_rng(torch.device("cpu"))
            d = Z.shape[1]
            # The rows come standardised: the identity stands in for the standardisation.
            self.n_features_in_, self.device_ = d, "cpu"
            self.mean_, self.scale_ = np.zeros(d), np.ones(d)
            self.classes_ = np.arange(n_classes)
            self.class_prior_ = np.bincount(codes, minlength=n_classes) / len(codes)
            self._fit_labels(Z, codes, rng, held_out, held_out_codes)
        return self

    def _fit_labels(
        self,
        Z: np.ndarray,
        codes: np.ndarray,
        rng: np.random.Generator,
        held_out: np.ndarray | None = None,
        held_out_codes: np.ndarray | None = None,
    ) -> None:
        """One mixture per class, each with the budget's share of its rows."""
        if self.covariance_type == "tied":
            raise ValueError(
                "covariance_type='tied' shares one covariance among all components, which "
                "mixtures fitted per class cannot; use 'full', 'diag' or 'spherical' with "
                "class labels (a continuous context takes any type)."
            )
        if self.n_average not in (1, "auto"):
            raise ValueError(
                f"n_average={self.n_average!r} averages mixtures, which a fit per class does "
                "not: use n_average=1 or 'auto' (one mixture per class) with class labels, "
                "or a continuous context."
            )
        deadline, left = self._deadline(), len(Z)
        parts: list[EMMixture] = []
        for code, label in enumerate(self.classes_.tolist()):
            Z_c = Z[codes == code]
            budget = None
            if deadline is not None:
                budget = max((deadline - time.perf_counter()) * len(Z_c) / left, 1e-9)
            left -= len(Z_c)
            part = self._one_class(budget, int(rng.integers(2**31 - 1)))
            mine = None if held_out is None else held_out[held_out_codes == code]
            try:
                with warnings.catch_warnings():
                    # Said once, for the whole model, after its fit.
                    warnings.simplefilter("ignore", DegenerateDataWarning)
                    if mine is not None and len(mine):
                        part = HeldOutSearch(part, Z_c, mine).estimator
                    else:
                        part.fit(Z_c)
            except ValueError as error:
                raise ValueError(f"Class {label!r} ({len(Z_c)} rows): {error}") from error
            parts.append(part)
        self._merge(parts)

    def _one_class(self, budget: float | None, seed: int) -> EMMixture:
        """An unfitted unconditional copy of this mixture, for one class's standardised
        rows."""
        params: dict[str, Any] = {
            **self.get_params(),
            "conditional": False,
            "n_average": 1,
            "standardize": False,
            "max_time": budget,
            "random_state": seed,
        }
        return type(self)(**params)

    def _merge(self, parts: list[EMMixture]) -> None:
        """The class mixtures as one, in data units where the attributes are."""
        log_det, prior = self._log_scale_sum(), self.class_prior_
        labels = [str(label) for label in self.classes_.tolist()]
        self.n_components_ = sum(p.n_components_ for p in parts)
        self.component_class_ = np.concatenate(
            [np.full(p.n_components_, code, dtype=np.int64) for code, p in enumerate(parts)]
        )
        self.weights_ = np.concatenate([w * p.weights_ for w, p in zip(prior, parts, strict=True)])
        for name in ("means_", "covariances_", "precisions_cholesky_"):
            setattr(self, name, np.concatenate([getattr(p, name) for p in parts]))
        # Per class (documented): the one attribute whose type a label fit changes.
        self.reg_covar_ = {c: p.reg_covar_ for c, p in zip(labels, parts, strict=True)}  # type: ignore[assignment]
        self.candidate_scores_ = {
            f"{c}: {key}": score - log_det
            for c, p in zip(labels, parts, strict=True)
            for key, score in p.candidate_scores_.items()
        }
        self.n_average_, self.average_scores_ = 1, []  # one mixture per class
        self.converged_ = all(p.converged_ for p in parts)
        self.n_iter_ = max(p.n_iter_ for p in parts)
        # Each part's bound is in its (standardised) units; the classes' mean, in the data's.
        bounds = [p.lower_bound_ for p in parts]
        self.lower_bound_ = float(np.dot(prior, bounds)) - log_det

    def _restored_labels(self) -> None:
        n_classes, K = len(self.classes_), self.n_components_
        codes = getattr(self, "component_class_", None)
        if not (isinstance(codes, np.ndarray) and codes.shape == (K,) and codes.dtype.kind == "i"):
            raise ValueError(f"component_class_ must be an integer array of shape ({K},)")
        if not np.array_equal(np.unique(codes), np.arange(n_classes)):
            raise ValueError(f"component_class_ must name each of the {n_classes} classes")
        if self.covariance_type == "tied":
            raise ValueError("a model fitted on labels has no tied covariance")

    # -------------------------------------------------------------- views
    def _view(self, **arrays: Any) -> Self:
        """This mixture with other parameters, unconditioned: a copy that shares
        everything else, for the unconditional hooks to compute with."""
        view = copy.copy(self)
        for name in ("classes_", "class_prior_", "context_mean_", "context_scale_"):
            view.__dict__.pop(name, None)
        view.__dict__.update(arrays)
        return view

    def _class_view(self, code: int) -> Self:
        """:math:`p(x \\mid y)` of one class: its components, weights renormalised."""
        mine = self.component_class_ == code
        weights = self.weights_[mine]
        return self._view(
            n_components_=int(mine.sum()),
            weights_=weights / weights.sum(),
            means_=self.means_[mine],
            covariances_=self.covariances_[mine],
            precisions_cholesky_=self.precisions_cholesky_[mine],
        )

    def refitted_classes(
        self, Z: np.ndarray, codes: np.ndarray, rng: np.random.Generator, deadline: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each class's mixture refitted by EM to its rows of ``Z`` (standardised, with
        class ``codes``) from its own solution, as :meth:`refitted` refits one mixture.
        Returns the weights (the classes' shares of ``Z`` times their components'
        weights), means and covariances, components in this mixture's order."""
        labels = [str(label) for label in self.classes_.tolist()]
        share = np.bincount(codes, minlength=len(labels)) / len(codes)
        weights, means, covariances = [], [], []
        for code, label in enumerate(labels):
            view = self._class_view(code)
            view.reg_covar_ = float(self.reg_covar_[label])  # type: ignore[index]
            em = view.refitted(Z[codes == code], rng, deadline)
            weights.append(share[code] * em.weights_)
            means.append(em.means_)
            covariances.append(em.covariances_)
        return np.concatenate(weights), np.concatenate(means), np.concatenate(covariances)

    def _joint_view(self) -> Self:
        """The mixture over (context, x), of ``C + D`` dimensions."""
        return self._view(n_features_in_=self.n_context_features_ + self.n_features_in_)

    # ------------------------------------------------------------- densities
    def _log_prob_conditional(self, Z: Tensor, c: Tensor, k: int | None) -> Tensor:
        if c.dtype == torch.int64:
            out = Z.new_zeros(len(Z))
            for code in torch.unique(c).tolist():
                rows = (c == code).nonzero().squeeze(1)
                view = self._class_view(int(code))
                part = view._log_prob(Z[rows]) if k is None else view._log_prob_prefix(Z[rows], k)
                out = out.index_put((rows,), part)
            return out
        C, joint = c.shape[1], self._joint_view()
        rows = torch.cat([c.to(Z.dtype), Z], dim=1)
        whole = joint._log_prob(rows) if k is None else joint._log_prob_prefix(rows, C + k)
        return whole - joint._log_prob_prefix(rows, C)

    def _sample_conditional(
        self, c: Tensor, prefix: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        d = self.n_features_in_
        if c.dtype == torch.int64:
            Z = torch.empty(len(c), d, dtype=self._dtype, device=c.device)
            for code in torch.unique(c).tolist():
                rows = (c == code).nonzero().squeeze(1)
                view = self._class_view(int(code))
                if prefix is None:
                    Z[rows] = view._sample(len(rows), generator).to(Z.dtype)
                else:
                    Z[rows] = view._sample_given(prefix[rows], generator).to(Z.dtype)
            return Z
        given = c if prefix is None else torch.cat([c, prefix.to(c.dtype)], dim=1)
        return self._joint_view()._sample_given(given, generator)[:, c.shape[1] :]


def condition_summary(a: Mapping[str, Any]) -> list[SummaryItem]:
    """What a fitted model's attributes ``a`` say it is conditioned on, for ``ldelib info``."""
    classes, width = a.get("classes_"), a.get("n_context_features_")
    if classes is not None:
        shown = ", ".join(str(c) for c in list(classes))
        return [SummaryItem("classes", "conditioned on the classes", shown)]
    if width is not None:
        return [SummaryItem("context", "conditioned on a context of", width, "features")]
    return []
