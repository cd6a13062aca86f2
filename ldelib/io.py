"""Model files: a JSON config and a flat dictionary of tensors, nothing else.

A file is written with :func:`torch.save` and read back with ``weights_only=True``,
whose unpickler only rebuilds tensors and plain containers: loading a model file can
never run code, whatever the file holds. The class to rebuild is looked up by name in a
registry of ldelib's own estimators, never imported from a path stored in the file.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from typing import Any

import torch

__all__ = ["FORMAT", "FORMAT_VERSION", "read_model_file", "register", "write_model_file"]

FORMAT = "ldelib.model"
FORMAT_VERSION = 1

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` loadable from model files (base-class hook for every estimator)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def registered(name: str) -> type:
    """The registered estimator class called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"The model file holds an unknown estimator class {name!r}; known classes: "
            f"{sorted(_REGISTRY)}. Was it written by a newer ldelib?"
        ) from None


def write_model_file(
    path: str | os.PathLike[str], config: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Write ``config`` (JSON-serialisable) and ``tensors`` to ``path``."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        # JSON text rather than nested containers: the config stays human-readable and
        # no Python object other than str can hide in it.
        "config": json.dumps(config, allow_nan=True),
        "tensors": {name: t.detach().cpu().contiguous() for name, t in tensors.items()},
    }
    torch.save(payload, os.fspath(path))


def read_model_file(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a file written by :func:`write_model_file`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an ldelib model file, is truncated or corrupt, or holds
        anything other than tensors and plain data (refused unread, never executed).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(
            f"{path!r} is not a readable ldelib model file (corrupt, truncated, or holding "
            f"objects other than tensors, which are refused without being run): {e}"
        ) from e
    if not (
        isinstance(payload, dict)
        and payload.get("format") == FORMAT
        and isinstance(payload.get("config"), str)
        and isinstance(payload.get("tensors"), dict)
    ):
        raise ValueError(
            f"{path!r} is a torch file but not an ldelib model file; save models with "
            "estimator.save(path)."
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} uses model-file format version {payload.get('format_version')!r}; "
            f"this ldelib reads version {FORMAT_VERSION}."
        )
    try:
        config = json.loads(payload["config"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} has a corrupt config: {e}") from e
    tensors = payload["tensors"]
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise ValueError(f"{path!r} has a malformed config or tensor table.")
    return config, tensors
