"""What every model does with ``y``: the attributes of a conditional fit, the checks of
each ``y`` a fitted model is given, and the generative classifier of a model fitted on
class labels.

:class:`Conditioning` is a base of every model: a model fitted without ``y`` refuses
one, a model fitted with one requires it, and what the model's hooks receive is always
encoded (label codes, or the standardised context; see :mod:`ldelib._conditions`). A
model that can be fitted with ``y`` has a ``conditional`` parameter and fills
``_fit_conditional`` (and, with a density, ``_log_prob_conditional`` and
``_sample_conditional``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.utils.metaestimators import available_if
from torch import Tensor

from ._arrays import validate_input
from ._conditions import Context, Labels, no_condition
from ._sources import RowSource

__all__ = ["CONDITION_ATTRIBUTES", "Conditioning", "GenerativeClassifier"]

#: What a conditional fit conditions on (see :mod:`ldelib._conditions`): labels, or a context.
CONDITION_ATTRIBUTES = (
    "classes_",
    "class_prior_",
    "n_context_features_",
    "context_mean_",
    "context_scale_",
)


def _fitted_on_labels(model: Any) -> bool:
    """Whether the generative classifier's methods exist: only on a model fitted on
    class labels, so that scikit-learn sees no ``predict`` on the others."""
    if not hasattr(model, "classes_"):
        raise AttributeError(
            f"{type(model).__name__} is a classifier only once fitted on class labels: "
            "create it with conditional=True and fit it with fit(X, y), y of shape "
            "(n_samples,)."
        )
    return True


class Conditioning:
    """The ``y`` of a model: what a conditional fit keeps, and the checks of later ones."""

    classes_: np.ndarray
    class_prior_: np.ndarray
    n_context_features_: int
    context_mean_: np.ndarray
    context_scale_: np.ndarray
    device_: str

    @property
    def _dtype(self) -> torch.dtype:
        raise NotImplementedError

    def _fit_conditional(self, rows: RowSource, y: np.ndarray, rng: np.random.Generator) -> None:
        """Fit :math:`p(x \\mid y)` on the training rows and their encoded ``y`` (label
        codes of shape (n,), or the standardised context of shape (n, C)); only models
        with a ``conditional`` parameter have it."""
        raise NotImplementedError

    def _keep_condition(self, condition: Labels | Context, encoded: np.ndarray) -> None:
        """Set the fitted attributes that say what the model is conditioned on."""
        if isinstance(condition, Labels):
            self.classes_ = condition.classes
            counts = np.bincount(encoded, minlength=len(condition.classes))
            self.class_prior_ = counts / counts.sum()
        else:
            self.n_context_features_ = condition.width
            self.context_mean_, self.context_scale_ = condition.mean, condition.scale

    def _condition(self) -> Labels | Context | None:
        """What the fitted model is conditioned on, or ``None``."""
        if hasattr(self, "classes_"):
            return Labels(self.classes_)
        if hasattr(self, "context_mean_"):
            return Context(self.context_mean_, self.context_scale_)
        return None

    def _sample_conditional(
        self, c: Tensor, prefix: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Standardised draws given the encoded ``c``, one per row (see
        :class:`~ldelib.BaseDensityEstimator`); models fitted with ``y`` have it."""
        raise NotImplementedError

    def _as_condition(self, encoded: np.ndarray, device: torch.device) -> Tensor:
        """An encoded ``y`` as the hooks take it: int64 codes, or the context in the
        model's dtype, on ``device``."""
        if encoded.ndim == 1:
            return torch.as_tensor(encoded, dtype=torch.int64, device=device)
        return torch.as_tensor(encoded, dtype=self._dtype, device=device)

    def _check_y(self, y: Any) -> Labels | Context | None:
        """What the fitted model is conditioned on, after refusing a ``y`` it cannot
        take and asking for one it needs."""
        condition = self._condition()
        if condition is None:
            no_condition(y, type(self).__name__)
        elif y is None:
            raise ValueError(self._needs_y())
        return condition

    def _needs_y(self) -> str:
        if isinstance(self._condition(), Labels):
            shown = self.classes_[:12].tolist()
            more = ", ..." if len(self.classes_) > 12 else ""
            what = f"class labels (classes_ = {str(shown)[:-1]}{more}])"
        else:
            width = self.n_context_features_
            what = f"a context of {width} feature{'s' if width > 1 else ''}"
        return (
            f"{type(self).__name__} was fitted on {what}: pass y, the labels or context "
            "this call conditions on."
        )

    def _encoded(self, y: Any, n: int, shared: bool = False) -> Tensor | None:
        """``y`` encoded for the model's hooks (label codes, or the standardised
        context in the model's dtype), on its device; ``None`` for a model fitted
        without ``y``. ``shared``: one label or context may stand for all ``n`` rows."""
        condition = self._condition()
        if condition is None:
            return None
        if isinstance(condition, Labels):
            encoded = condition.one(y, n) if shared else condition.codes(y, n)
        else:
            encoded = condition.one(y, n) if shared else condition.encode(y, n)
        return self._as_condition(encoded, torch.device(self.device_))


class GenerativeClassifier:
    """:math:`p(y \\mid x) \\propto p(y)\\,p(x \\mid y)` of a density fitted on class
    labels. Its methods exist only on such a model (scikit-learn then sees no
    ``predict`` on the others, which are density estimators)."""

    classes_: np.ndarray
    class_prior_: np.ndarray

    def score_samples(self, X: Any, y: Any = None) -> Any:
        raise NotImplementedError

    @available_if(_fitted_on_labels)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-posterior of each class given each row, :math:`\\log p(y \\mid x)`, from
        the class frequencies :math:`p(y)` (``class_prior_``) and the fitted
        :math:`p(x \\mid y)`: a generative classifier, for models fitted on labels.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        X = validate_input(self, X, reset=False).data.detach().to("cpu", torch.float64).numpy()
        joint = np.stack(
            [
                self.score_samples(X, np.full(len(X), label, dtype=self.classes_.dtype))
                for label in self.classes_
            ],
            axis=1,
        ) + np.log(self.class_prior_)
        return joint - logsumexp(joint, axis=1, keepdims=True)

    @available_if(_fitted_on_labels)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each class given each row (see
        :meth:`predict_log_proba`); columns in the order of ``classes_``."""
        return np.exp(self.predict_log_proba(X))

    @available_if(_fitted_on_labels)
    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row under :meth:`predict_proba`."""
        return self.classes_[np.argmax(self.predict_log_proba(X), axis=1)]
