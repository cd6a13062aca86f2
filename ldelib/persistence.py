"""Saving and loading: one file format and one code path for every ldelib object.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
tensors (arrays and module weights) in its body, and a JSON configuration (class,
parameters, fitted attributes) in its metadata. Reading one parses a JSON header and
copies raw numbers, so loading never unpickles anything and never runs code, on any
torch version. The class to rebuild is looked up in an explicit registry of public
names (``"ldelib.GMM"``...), never imported from a path stored in the file.

A saveable class inherits :class:`Persistent`, is registered with :func:`register`, and
lists the fitted attributes it saves in ``_saved_attributes``; everything else (the
encoding of arrays, modules and nested objects, devices, validation, atomic writes) is
done here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any, ClassVar, TypeVar

import numpy as np
import safetensors.torch
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from ._arrays import resolve_device
from ._constraints import Integral
from ._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadError",
    "Persistent",
    "convert",
    "load",
    "read_model_file",
    "register",
    "registered",
    "save",
    "write_model_file",
]

FORMAT = "ldelib"
FORMAT_VERSION = 2

File = str | os.PathLike[str] | IO[bytes]
T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
_NAMES: dict[type, str] = {}
# Names of format 1 (bare class names) and what they are called now.
_FORMAT_1_NAMES = {
    "GMM": "ldelib.GMM",
    "GMMN": "ldelib.GMMN",
    "CausalConvMDN": "ldelib.CausalConvMDN",
    "IncrementalAutoencoder": "ldelib.IncrementalAutoencoder",
}
_MAX_HEADER = 100 << 20


class LoadError(ValueError):
    """A file that is sound but cannot be loaded as asked (e.g. modules that do not match)."""


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`Persistent` class loadable under ``name``.

    Names are qualified (``"mypackage.MyModel"``) and unique: registering a second
    class under a taken name raises, so a subclass can never take over the files of
    the class it extends. Only the exact registered class is saved under its name.

    Examples
    --------
    >>> from ldelib import GMM
    >>> from ldelib.persistence import register
    >>> @register("mypackage.TiedGMM")
    ... class TiedGMM(GMM):
    ...     pass
    """

    def decorate(cls: T) -> T:
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(
                f"{name!r} is already the file name of {_REGISTRY[name].__qualname__}; "
                "register this class under another name."
            )
        if _NAMES.get(cls, name) != name:
            raise ValueError(f"{cls.__qualname__} is already registered as {_NAMES[cls]!r}.")
        _REGISTRY[name] = cls
        _NAMES[cls] = name
        return cls

    return decorate


def registered(name: str) -> type:
    """The class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"The model file holds an unknown estimator class {name!r}; known classes: "
            f"{sorted(_REGISTRY)}. Was it written by a newer ldelib, or is its class "
            "registered by a package that is not imported?"
        ) from None


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
    def _from_file_params(cls, params: dict[str, Any], **extras: Any) -> Persistent:
        """A new instance from the saved parameters and the arguments given to ``load``."""
        return cls(**params, **extras)

    def _load_module(self, name: str, state: dict[str, Tensor]) -> nn.Module:
        """Rebuild the module saved as attribute ``name`` and load ``state`` into it."""
        module: nn.Module = self._make_module()  # type: ignore[attr-defined]
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
    ) -> Any:
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
    if type(value) in _NAMES:
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
    if type(value) in _NAMES:
        params = {k: _encode_param(v) for k, v in value._file_params().items()}
        return {"__estimator__": _NAMES[type(value)], "params": params}
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
        cls = registered(str(value["__estimator__"]))
        return cls._from_file_params(
            {k: _decode_param(v, restore) for k, v in dict(value["params"]).items()}
        )
    return value


def _encode(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
    name = _NAMES.get(type(obj))
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
        cls = registered(str(config["class"]))
        params = {k: _decode_param(v, self) for k, v in dict(config["params"]).items()}
        # Extras (user callables) belong to the outermost object only.
        extras, self.extras = self.extras, {}
        obj = cls._from_file_params(params, **extras)
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
    where = _describe(file)
    config, tensors = read_model_file(file)
    cls = registered(str(config.get("class")))
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(
            f"{where} holds a {cls.__name__}, not {_article(expected.__name__)} "
            f"{expected.__name__}; load it with "
            f"{cls.__name__}.load or ldelib.load."
        )
    try:
        return _Restore(tensors, map_location, extras).decode(config, "")
    except LoadError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ValueError(f"{where} is a damaged {cls.__name__} file: {e}") from e


def write_model_file(file: File, config: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Write ``config`` (JSON-serialisable) and ``tensors`` as a safetensors file."""
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        # JSON text: human-readable, and nothing but strings can hide in it.
        "config": json.dumps(config, allow_nan=True),
    }
    # Copies: safetensors refuses tensors that share memory or are not contiguous.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = safetensors.torch.save(flat, metadata=metadata)
    if hasattr(file, "write"):
        file.write(data)  # type: ignore[union-attr]
        return
    _write_atomically(os.fspath(file), data)  # type: ignore[arg-type]


def _write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ldelib-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if not os.path.isdir(folder):
            reason = f"the folder {folder!r} does not exist"
        else:
            reason = e.strerror or str(e)
        raise type(e)(e.errno, f"Could not save to {path!r}: {reason}") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _article(noun: str) -> str:
    return "an" if noun[:1] in "AEIOU" else "a"


def _describe(file: File) -> str:
    if hasattr(file, "read") or hasattr(file, "write"):
        return repr(getattr(file, "name", "the file object"))
    return repr(os.fspath(file))  # type: ignore[arg-type]


def _read_bytes(file: File) -> bytes:
    if hasattr(file, "read"):
        return file.read()  # type: ignore[union-attr,no-any-return]
    path = os.fspath(file)  # type: ignore[arg-type]
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder, not a model file.")
    with open(path, "rb") as f:
        return f.read()


def read_model_file(file: File) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read a file written by :func:`write_model_file`: its config and its tensors.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is not an ldelib model file, is truncated or corrupt.
    """
    where = _describe(file)
    data = _read_bytes(file)
    if data.startswith(b"PK\x03\x04"):
        raise ValueError(
            f"{where} is a torch archive, not an ldelib model file: this ldelib reads only "
            "safetensors files, so it is not a readable ldelib model file as it is (nothing "
            "in it was run). If ldelib 0.1 wrote it (format 1), convert it once with "
            f"`ldelib convert {where.strip(chr(39))} NEW_FILE`."
        )
    if data.startswith(b"\x93NUMPY"):
        raise ValueError(f"{where} is a numpy array file (.npy), not an ldelib model file.")
    metadata = _metadata(data, where)
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{where} is a safetensors file but not an ldelib model file; save models with "
            "estimator.save(path)."
        )
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{where} uses model-file format version {metadata.get('format_version')!r}; "
            f"this ldelib reads version {FORMAT_VERSION}."
        )
    try:
        config = json.loads(metadata.get("config", ""))
        tensors = safetensors.torch.load(data)
    except (json.JSONDecodeError, safetensors.SafetensorError) as e:
        raise ValueError(f"{where} is not a readable ldelib model file (corrupt): {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{where} has a malformed config.")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{where} is damaged: tensor {name!r} holds NaN or infinity.")
    return config, tensors


def _metadata(data: bytes, where: str) -> dict[str, str]:
    unreadable = f"{where} is not a readable ldelib model file (corrupt or truncated)"
    if len(data) < 8:
        raise ValueError(f"{unreadable}: {len(data)} bytes.")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, _MAX_HEADER):
        raise ValueError(f"{unreadable}: its header runs past its end.")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{unreadable}: {e}") from e
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError(f"{unreadable}: malformed header.")
    return metadata


def convert(source: str | os.PathLike[str], target: File) -> None:
    """Rewrite a model file of format 1 (ldelib 0.1, a torch archive) in the current format.

    Format 1 was read with ``torch.load(weights_only=True)``, whose restricted unpickler
    builds only tensors and plain containers (safe since torch 2.6); this reads it once
    that way and writes the safetensors file every later load uses.
    """
    import pickle
    import zipfile

    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path!r} is not a readable format-1 ldelib model file: {e}") from e
    if not (
        isinstance(payload, dict)
        and payload.get("format") == "ldelib.model"
        and payload.get("format_version") == 1
    ):
        raise ValueError(f"{path!r} is not an ldelib model file of format 1.")
    config = json.loads(payload["config"])
    tensors = dict(payload["tensors"])
    bare = str(config.get("class"))
    if bare not in _FORMAT_1_NAMES:
        raise ValueError(f"{path!r} holds an unknown class {bare!r}.")
    config["class"] = _FORMAT_1_NAMES[bare]
    if bare == "IncrementalAutoencoder":
        # Format 1 kept the two modules outside the attributes, under short prefixes.
        for role in ("encoder", "decoder"):
            config["attributes"][f"{role}_"] = {"__module__": True}
            tensors = {
                (f"{role}_." + k[len(role) + 1 :] if k.startswith(f"{role}.") else k): v
                for k, v in tensors.items()
            }
        config["attributes"]["input_shape_"] = {"__tuple__": config["attributes"]["input_shape_"]}
    write_model_file(target, config, tensors)
