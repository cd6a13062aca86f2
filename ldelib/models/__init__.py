"""The models, one estimator per module, and the short names that select them."""

from __future__ import annotations

from typing import Any

from ..base import BaseGenerativeModel
from .gmm import GMM
from .gmmn import GMMN
from .mdn import CausalConvMDN

__all__ = ["GMM", "GMMN", "MODELS", "CausalConvMDN", "make_model"]

#: The models by short name: the one table the command line
#: (``--model``), :class:`~ldelib.LatentDensityEstimator` (``density=``) and the
#: benchmarks use. A new model is added here.
MODELS: dict[str, type[BaseGenerativeModel]] = {
    "mdn": CausalConvMDN,
    "gmm": GMM,
    "gmmn": GMMN,
}


def make_model(name: str, **params: Any) -> BaseGenerativeModel:
    """A new model from its short name (see :data:`MODELS`) and its parameters.

    Examples
    --------
    >>> make_model("gmm", n_components=3)
    GMM(n_components=3)
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[key](**params)
