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

from .._summary import SummaryItem, format_value
from .files import read_model_file
from .registry import registered

__all__ = [
    "Fitted",
    "SummaryItem",
    "describe_model_file",
    "format_value",
    "jsonable",
    "training_summary",
]


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
    this one view, so that each model's training summary is defined once, by its class
    (:func:`training_summary`), and ``fit`` and ``info`` can never disagree.

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
    klass : type or None
        The class, whose ``_summarise_training`` describes its training.
    """

    name: str
    params: dict[str, Any]
    attributes: dict[str, Any]
    not_stored: tuple[str, ...] = ()
    klass: type | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, obj: Any) -> Fitted:
        """The view of a fitted object in memory."""
        from .objects import Persistent

        attributes: dict[str, Any] = {}
        for name in (*obj._saved_attributes, *obj._optional_attributes):
            if hasattr(obj, name):
                value = getattr(obj, name)
                attributes[name] = cls.of(value) if isinstance(value, Persistent) else value
        return cls(type(obj).__name__, obj.get_params(deep=False), attributes, klass=type(obj))

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
        return cls(klass.__name__, params, attributes, tuple(not_stored), klass)


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


def training_summary(fitted: Fitted) -> list[SummaryItem]:
    """What training produced, in the model's own terms and units (see ``ldelib._summary``).

    Each class describes itself (``_summarise_training``); for a class registered by
    another package without one, only what the attribute names promise.
    """
    summarise = getattr(fitted.klass, "_summarise_training", None)
    if summarise is not None:
        return list(summarise(fitted.params, fitted.attributes))
    a = fitted.attributes
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
