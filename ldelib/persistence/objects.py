"""Saveable objects: what a file holds for an object, and how it is rebuilt and checked."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from typing_extensions import Self  # typing.Self is Python 3.11+

from .._arrays import resolve_device
from .._constraints import Integral
from .._version import __version__
from .files import File, article, describe_file, read_model_file, write_model_file
from .registry import LoadError, name_of, registered

__all__ = ["Persistent", "load", "save"]


class Persistent:
    """Mixin giving a class ``save`` and ``load`` through this module.

    A subclass sets ``_saved_attributes`` (the fitted attributes written to the file)
    and, where needed, ``_unsaved_params`` (parameters such as user callables that
    cannot be stored and are passed back to :meth:`load`); it may override the small
    hooks below.
    """

    _saved_attributes: ClassVar[tuple[str, ...]] = ()
    #: Fitted attributes saved when present (``feature_names_in_``...).
    _optional_attributes: ClassVar[tuple[str, ...]] = ()
    _unsaved_params: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------- hooks
    def _file_params(self) -> dict[str, Any]:
        """The constructor parameters, as written to the file."""
        params = self.get_params(deep=False)  # type: ignore[attr-defined]
        for name in self._unsaved_params:
            params.pop(name, None)
        if "random_state" in params and not Integral(0, None).is_satisfied_by(
            params["random_state"]
        ):
            params["random_state"] = None  # a Generator cannot be written as JSON
        return params

    @classmethod
    def _from_file_params(cls, params: dict[str, Any], **extras: Any) -> Self:
        """A new instance from the saved parameters and the arguments given to ``load``."""
        return cls(**params, **extras)

    def _load_module(self, name: str, state: dict[str, Tensor]) -> nn.Module:
        """Rebuild the module saved as attribute ``name`` and load ``state`` into it."""
        module: nn.Module = self._make_module()  # type: ignore[attr-defined]
        module.to(dtype=self._dtype)  # type: ignore[attr-defined]
        module.load_state_dict(state, strict=True)
        return module

    def _restored(self) -> None:
        """Check the restored attributes (raise ValueError) and finish the object."""

    # ----------------------------------------------------------- public API
    def save(self, file: File) -> None:
        """Save to a path or a binary file object: a JSON config plus tensors, no code.

        Writing to a path is atomic: the file is written next to it, synced, then
        renamed over it, so a failed save never damages a previous file. Load it back
        with ``type(obj).load(file)`` or :func:`ldelib.load`.
        """
        save(self, file)

    @classmethod
    def load(
        cls, file: File, map_location: str | torch.device | None = None, **extras: Any
    ) -> Self:
        """Load an object saved with :meth:`save`.

        Parameters
        ----------
        file : str, PathLike or binary file object
        map_location : str or torch.device, optional
            Device for the loaded modules; by default the device they were saved from,
            or the CPU if that device is not available here.
        **extras
            Parameters that are not stored (user callables such as an encoder), as
            the class's ``load`` documents.
        """
        return load(file, map_location=map_location, expected=cls, **extras)


# ----------------------------------------------------------------- encoding
def _encode_value(value: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """JSON for ``value``; arrays, modules and saveable objects go to ``tensors``."""
    if name_of(type(value)) is not None:
        config = _encode(value, f"{key}/", tensors)
        return {"__object__": config}
    if isinstance(value, nn.Module):
        for k, v in value.state_dict().items():
            tensors[f"{key}.{k}"] = v
        return {"__module__": True}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OUS":
            return {"__strings__": [str(v) for v in value.tolist()]}
        tensors[key] = torch.from_numpy(np.array(value))
        return {"__array__": True}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {
            "__tuple__": [_encode_value(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
        }
    if isinstance(value, list):
        return [_encode_value(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _encode_value(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key} is a {type(value).__name__}, which a model file cannot hold")


def _encode_param(value: Any) -> Any:
    """JSON for a constructor parameter, so that ``get_params()`` survives a round trip."""
    name = name_of(type(value))
    if name is not None:
        params = {k: _encode_param(v) for k, v in value._file_params().items()}
        return {"__estimator__": name, "params": params}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_param(v) for v in value]}
    if isinstance(value, list):
        return [_encode_param(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"parameter value {value!r} cannot be written to a model file")


def _decode_param(value: Any, restore: _Restore) -> Any:
    if isinstance(value, list):
        return [_decode_param(v, restore) for v in value]
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_decode_param(v, restore) for v in value["__tuple__"])
    if isinstance(value, dict) and set(value) == {"__estimator__", "params"}:
        cls: type[Persistent] = registered(str(value["__estimator__"]))
        return cls._from_file_params(
            {k: _decode_param(v, restore) for k, v in dict(value["params"]).items()}
        )
    return value


def _encode(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
    name = name_of(type(obj))
    if name is None:
        raise TypeError(
            f"{type(obj).__qualname__} is not registered for saving; decorate it with "
            "@ldelib.persistence.register('yourpackage.ClassName')."
        )
    missing = [a for a in obj._saved_attributes if not hasattr(obj, a)]
    if missing:
        raise AttributeError(f"{type(obj).__name__} has no fitted attribute(s) {missing}.")
    names = [*obj._saved_attributes, *(a for a in obj._optional_attributes if hasattr(obj, a))]
    return {
        "class": name,
        "params": {k: _encode_param(v) for k, v in obj._file_params().items()},
        "attributes": {a: _encode_value(getattr(obj, a), f"{prefix}{a}", tensors) for a in names},
    }


def _decode_value(value: Any, key: str, tensors: dict[str, Tensor], restore: _Restore) -> Any:
    if isinstance(value, list):
        return [_decode_value(v, f"{key}.{i}", tensors, restore) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if value.get("__array__") is True:
        return tensors[key].numpy()
    if "__tuple__" in value:
        items = value["__tuple__"]
        return tuple(_decode_value(v, f"{key}.{i}", tensors, restore) for i, v in enumerate(items))
    if "__strings__" in value:
        return np.asarray(value["__strings__"], dtype=object)
    if "__object__" in value:
        return restore.decode(value["__object__"], f"{key}/")
    if value.get("__module__") is True:
        return _MODULE
    return {k: _decode_value(v, f"{key}.{k}", tensors, restore) for k, v in value.items()}


_MODULE = object()  # placeholder for a module, rebuilt once the plain attributes are set


class _Restore:
    """Rebuilds objects from a decoded file, checking everything it restores."""

    def __init__(
        self,
        tensors: dict[str, Tensor],
        map_location: str | torch.device | None,
        extras: dict[str, Any],
    ) -> None:
        self.tensors, self.map_location, self.extras = tensors, map_location, extras

    def device(self, saved: str) -> torch.device:
        if self.map_location is not None:
            return resolve_device(self.map_location)
        device = torch.device(saved)
        if device.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        return device

    def decode(self, config: dict[str, Any], prefix: str) -> Any:
        cls: type[Persistent] = registered(str(config["class"]))
        params = {k: _decode_param(v, self) for k, v in dict(config["params"]).items()}
        # Extras (user callables) belong to the outermost object only.
        extras, self.extras = self.extras, {}
        # Any: the attributes set below by name are the class's own, not Persistent's.
        obj: Any = cls._from_file_params(params, **extras)
        attributes = dict(config["attributes"])
        allowed = {*cls._saved_attributes, *cls._optional_attributes}
        for name in attributes:
            if name not in allowed or hasattr(cls, name):
                raise ValueError(f"unexpected attribute {name!r} for {cls.__name__}")
        modules = []
        for name, value in attributes.items():
            decoded = _decode_value(value, f"{prefix}{name}", self.tensors, self)
            if decoded is _MODULE:
                modules.append(name)
            else:
                setattr(obj, name, decoded)
        device = None
        if isinstance(attributes.get("device_"), str):
            device = self.device(attributes["device_"])
            obj.device_ = str(device)
        for name in modules:
            head = f"{prefix}{name}."
            state = {k[len(head) :]: v for k, v in self.tensors.items() if k.startswith(head)}
            module = obj._load_module(name, state)
            setattr(obj, name, module.to(device or "cpu").eval())
        missing = set(cls._saved_attributes) - set(attributes)
        if missing:
            raise ValueError(f"missing attribute(s) {sorted(missing)}")
        obj._restored()
        return obj


# ------------------------------------------------------------------- files
def save(obj: Persistent, file: File) -> None:
    """Save a fitted :class:`Persistent` object to a path or a binary file object."""
    check_is_fitted(obj)
    tensors: dict[str, Tensor] = {}
    try:
        config = _encode(obj, "", tensors)
    except TypeError as e:
        raise TypeError(f"{type(obj).__name__} holds state that cannot be saved: {e}") from e
    config["ldelib_version"] = __version__
    config["torch_version"] = torch.__version__
    write_model_file(file, config, tensors)


def load(
    file: File,
    map_location: str | torch.device | None = None,
    *,
    expected: type | None = None,
    **extras: Any,
) -> Any:
    """Load any object saved by ldelib (models, autoencoders, latent density estimators).

    Parameters
    ----------
    file : str, PathLike or binary file object
    map_location : str or torch.device, optional
        Device for the loaded modules (default: where they were saved, or the CPU).
    expected : type, optional
        Refuse a file holding anything but this class or a subclass.
    **extras
        Parameters the file does not store, such as ``encoder=``/``decoder=`` modules.

    Raises
    ------
    FileNotFoundError
        If there is no file at the path.
    ValueError
        If the file is not an ldelib model file, is damaged, or holds another class.
    """
    where = describe_file(file)
    config, tensors = read_model_file(file)
    cls = registered(str(config.get("class")))
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(
            f"{where} holds a {cls.__name__}, not {article(expected.__name__)} "
            f"{expected.__name__}; load it with "
            f"{cls.__name__}.load or ldelib.load."
        )
    try:
        return _Restore(tensors, map_location, extras).decode(config, "")
    except LoadError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ValueError(f"{where} is a damaged {cls.__name__} file: {e}") from e
