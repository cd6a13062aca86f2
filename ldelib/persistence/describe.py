"""What a model file holds, described without rebuilding the object.

``ldelib info`` reads a file's JSON configuration and reports the class, every
constructor parameter, D, a training summary and the versions that wrote it. Nothing
is rebuilt: an autoencoder or latent density estimator needs no modules or callables,
and nothing from the file runs. ``ldelib fit`` describes the model it has just fitted
through the same view (:class:`Fitted`), so the two can never disagree.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .files import read_model_file
from .registry import registered

__all__ = ["Fitted", "SummaryItem", "describe_model_file", "jsonable", "training_summary"]


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite numbers as null, anything else as its repr.

    Strict (no NaN or Infinity literals) because ``--json`` output is for other programs,
    and many JSON readers refuse those literals.
    """
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, _Estimator):
        return {"class": value.name, "params": jsonable(value.params)}
    return repr(value)


# --------------------------------------------------------------------------------------
# What a fitted object is: from memory (fit) or from its file (info)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Estimator:
    """A nested estimator parameter read from a file (``density=GMM(...)``), not rebuilt."""

    name: str
    params: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # As scikit-learn prints estimators: only the parameters that differ from defaults.
        changed = (
            f"{k}={v!r}"
            for k, v in self.params.items()
            if k not in self.defaults or self.defaults[k] != v
        )
        return f"{self.name}({', '.join(changed)})"


@dataclass(frozen=True)
class Fitted:
    """A fitted object as the command line describes it: class, parameters, attributes.

    ``fit`` has the model in memory; ``info`` reads the file's configuration without
    rebuilding the object (which, for an autoencoder, would need the user's modules, and
    for any file would run the model's checks and allocate its network). Both go through
    this one view, so that each model's training summary is defined once, in
    :func:`training_summary`, and ``fit`` and ``info`` can never disagree.

    Attributes
    ----------
    name : str
        The class name (``"CausalConvMDN"``).
    params : dict
        Every constructor parameter; those the file cannot hold (code such as an encoder)
        are None and listed in ``not_stored``.
    attributes : dict
        Plain fitted attributes (numbers, lists, dicts, tuples); nested saved objects are
        ``Fitted`` too; arrays and modules are left out.
    not_stored : tuple of str
        Parameters the file does not hold: they are given back to ``load`` in Python.
    """

    name: str
    params: dict[str, Any]
    attributes: dict[str, Any]
    not_stored: tuple[str, ...] = ()

    @classmethod
    def of(cls, obj: Any) -> Fitted:
        """The view of a fitted object in memory."""
        from .objects import Persistent

        attributes: dict[str, Any] = {}
        for name in (*obj._saved_attributes, *obj._optional_attributes):
            if hasattr(obj, name):
                value = getattr(obj, name)
                attributes[name] = cls.of(value) if isinstance(value, Persistent) else value
        return cls(type(obj).__name__, obj.get_params(deep=False), attributes)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Fitted:
        """The view of the object a model file's configuration describes.

        Raises
        ------
        ValueError
            For an unknown class (the registry's message).
        KeyError, TypeError, AttributeError
            For a malformed configuration (``describe_model_file`` words them).
        """
        klass = registered(str(config["class"]))
        saved = dict(config["params"])
        params: dict[str, Any] = {}
        not_stored: list[str] = []
        for name in _param_names(klass):
            if name in saved:
                params[name] = _decode_param(saved[name])
            else:
                params[name] = None
                not_stored.append(name)
        attributes: dict[str, Any] = {}
        for name, value in dict(config["attributes"]).items():
            decoded = _decode_attribute(value)
            if decoded is not _OMITTED:
                attributes[str(name)] = decoded
        return cls(klass.__name__, params, attributes, tuple(not_stored))


_OMITTED = object()  # an array or module: not part of a description


def _param_names(klass: type) -> list[str]:
    """Constructor parameters in the order the signature gives them (not sorted)."""
    signature = inspect.signature(klass.__init__)  # type: ignore[misc]
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _param_defaults(klass: type) -> dict[str, Any]:
    signature = inspect.signature(klass.__init__)  # type: ignore[misc]
    return {p.name: p.default for p in signature.parameters.values() if p.default is not p.empty}


def _decode_param(value: Any) -> Any:
    """A parameter as written by the persistence layer, as plain Python values."""
    if isinstance(value, list):
        return [_decode_param(v) for v in value]
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_decode_param(v) for v in value["__tuple__"])
    if isinstance(value, dict) and set(value) == {"__estimator__", "params"}:
        klass = registered(str(value["__estimator__"]))
        params = {str(k): _decode_param(v) for k, v in dict(value["params"]).items()}
        return _Estimator(klass.__name__, params, _param_defaults(klass))
    return value


def _decode_attribute(value: Any) -> Any:
    """A fitted attribute as written by the persistence layer; arrays/modules omitted."""
    if isinstance(value, list):
        return [_decode_attribute(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("__array__") is True or value.get("__module__") is True:
        return _OMITTED
    if "__tuple__" in value:
        return tuple(_decode_attribute(v) for v in value["__tuple__"])
    if "__strings__" in value:
        return [str(v) for v in value["__strings__"]]
    if "__object__" in value:
        return Fitted.from_config(value["__object__"])
    return {str(k): _decode_attribute(v) for k, v in value.items()}


@dataclass(frozen=True)
class SummaryItem:
    """One fact of a training summary: a JSON key, words for people, a value, its unit."""

    key: str
    label: str
    value: Any
    unit: str = ""

    def text(self) -> str:
        """The value for people: numbers to 6 significant digits, with the unit."""
        shown = format_value(self.value)
        return f"{shown} {self.unit}" if self.unit and self.value is not None else shown


def format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or "none"
    return str(value)


def _negated(value: Any) -> float | None:
    return None if value is None else -float(value)


def training_summary(fitted: Fitted) -> list[SummaryItem]:
    """What training produced, in each model's own terms and units.

    The models share the attribute name ``best_validation_score_`` but not its meaning:
    a CausalConvMDN's is a held-out log-likelihood (nats/row, data units); a GMMN's is
    *minus* a held-out MMD² (not a likelihood at all); an IncrementalAutoencoder's is
    minus its reconstruction loss. Printing them under one label would mislead, so each
    class is described here, once, for both ``fit`` and ``info``.
    """
    a, p = fitted.attributes, fitted.params
    if fitted.name == "LatentDensityEstimator":
        density = a.get("density_")
        if not isinstance(density, Fitted):
            return []
        return [
            SummaryItem("density", "density model", density.name),
            *training_summary(density),
        ]
    if fitted.name == "CausalConvMDN":
        return [
            SummaryItem(
                "n_components", "mixture components per conditional", a.get("n_components_")
            ),
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem("best_epoch", "epoch kept (-1: the anchor)", a.get("best_epoch_")),
            SummaryItem(
                "best_validation_log_likelihood",
                "best validation log-likelihood",
                a.get("best_validation_score_"),
                "nats/row",
            ),
        ]
    if fitted.name == "GMMN":
        return [
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem(
                "best_validation_mmd2",
                "best validation MMD²",
                _negated(a.get("best_validation_score_")),
            ),
        ]
    if fitted.name == "GMM":
        items = [
            SummaryItem("n_components", "components", a.get("n_components_")),
            SummaryItem("covariance_type", "covariance type", p.get("covariance_type")),
            SummaryItem("reg_covar", "covariance regularisation", a.get("reg_covar_")),
            SummaryItem("converged", "EM converged", a.get("converged_")),
            SummaryItem("n_iter", "EM iterations", a.get("n_iter_")),
            SummaryItem(
                "lower_bound",
                "training log-likelihood (EM lower bound)",
                a.get("lower_bound_"),
                "nats/row",
            ),
        ]
        if a.get("candidate_scores_"):
            by_bic = p.get("selection") == "bic"
            items += [
                SummaryItem("selection", "chosen by", p.get("selection")),
                SummaryItem(
                    "candidate_scores",
                    "BIC of each candidate"
                    if by_bic
                    else "validation log-likelihood of each candidate",
                    a.get("candidate_scores_"),
                    "" if by_bic else "nats/row",
                ),
            ]
        return items
    if fitted.name == "IncrementalAutoencoder":
        return [
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem("n_warmup_epochs", "warm-up epochs", a.get("n_warmup_epochs_")),
            SummaryItem("best_epoch", "epoch kept", a.get("best_epoch_")),
            SummaryItem(
                "best_validation_loss",
                f"best validation reconstruction loss ({p.get('loss')})",
                _negated(a.get("best_validation_score_")),
            ),
        ]
    # A class registered by another package: only what the names promise.
    items = []
    if "n_iter_" in a:
        items.append(SummaryItem("n_iter", "iterations", a["n_iter_"]))
    if "best_validation_score_" in a:
        items.append(
            SummaryItem(
                "best_validation_score", "best validation score", a["best_validation_score_"]
            )
        )
    return items


def n_features(fitted: Fitted) -> int | None:
    """D, the dimension of the rows the density describes (the latents, for an LDE/IAE)."""
    for value in (
        fitted.attributes.get("n_features_in_"),
        fitted.attributes.get("latent_dim_"),
        fitted.params.get("latent_dim"),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def read_description(path: str) -> tuple[Fitted, dict[str, Any]]:
    """The view of the object in the model file at ``path``, and the file's versions.

    It reads the configuration the file holds and never rebuilds the object, so it works
    without the modules or callables an autoencoder or a latent density estimator is
    loaded with, and runs nothing from the file.
    """
    import safetensors

    config, _ = read_model_file(path)  # refuses anything but a sound model file
    with safetensors.safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    try:
        fitted = Fitted.from_config(config)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path!r} is a damaged model file: its configuration has {e!r}") from e
    version = str(metadata.get("format_version"))
    file = {
        "format": metadata.get("format"),
        "format_version": int(version) if version.isdigit() else version,
        "ldelib_version": config.get("ldelib_version"),
        "torch_version": config.get("torch_version"),
    }
    return fitted, file


def describe_model_file(path: str) -> dict[str, Any]:
    """Everything ``ldelib info --json`` reports about a model file, as JSON-ready data.

    Returns
    -------
    dict
        ``path``; ``class``; ``params``: every constructor parameter, those the file does
        not hold (code, such as an encoder) None and listed in ``not_stored``;
        ``n_features``: D, the dimension of the rows the density describes (the latents,
        for an autoencoder or latent density estimator); ``input_shape``: the shape of one
        input row, None for density models; ``training``: the training summary by key
        (see :func:`training_summary`); ``file``: ``format``, ``format_version``,
        ``ldelib_version`` and ``torch_version`` that wrote it.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        For a missing path or a folder.
    ValueError
        For a file that is not an ldelib model file, or is damaged.
    """
    fitted, file = read_description(path)
    input_shape = fitted.attributes.get("input_shape_")
    description = {
        "path": path,
        "class": fitted.name,
        "params": fitted.params,
        "not_stored": list(fitted.not_stored),
        "n_features": n_features(fitted),
        "input_shape": list(input_shape) if isinstance(input_shape, tuple) else None,
        "training": {item.key: item.value for item in training_summary(fitted)},
        "file": file,
    }
    return dict(jsonable(description))
