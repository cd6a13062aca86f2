"""The model file: a safetensors file with the JSON configuration in its metadata.

Reading parses a JSON header and copies raw numbers: nothing is unpickled, nothing runs.
Writing to a path is atomic (a temporary file in the same folder, synced, renamed): a symlink
is followed and kept, and a path that is not a regular file is never replaced.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

import safetensors.torch
import torch
from torch import Tensor

from .._atomic import atomic_path

__all__ = ["FORMAT", "FORMAT_VERSION", "File", "convert", "read_model_file", "write_model_file"]

#: The ``"format"`` entry of every model file's metadata.
FORMAT = "ldelib"
#: The version of the file format written; files of version 1 (ldelib 0.1, a torch
#: archive) are refused with the command that converts them (:func:`convert`).
FORMAT_VERSION = 2

File = str | os.PathLike[str] | IO[bytes]

# Names of format 1 (bare class names) and what they are called now.
_FORMAT_1_NAMES = {
    "GMM": "ldelib.GMM",
    "GMMN": "ldelib.GMMN",
    "CausalConvMDN": "ldelib.CausalConvMDN",
    "IncrementalAutoencoder": "ldelib.IncrementalAutoencoder",
}
_MAX_HEADER = 100 << 20


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
        file.write(data)
        return
    _write_atomically(os.fspath(file), data)


def _write_atomically(path: str, data: bytes) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
    except OSError as e:
        if e.errno is None:  # refused by resolve_target: its message says it all
            raise
        raise type(e)(e.errno, f"Could not save to {path!r}: {e.strerror or e}") from e


def article(noun: str) -> str:
    return "an" if noun[:1] in "AEIOU" else "a"


def describe_file(file: File) -> str:
    if hasattr(file, "read") or hasattr(file, "write"):
        return repr(getattr(file, "name", "the file object"))
    return repr(os.fspath(file))


def _read_bytes(file: File) -> bytes:
    if hasattr(file, "read"):
        return file.read()
    path = os.fspath(file)
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
    where = describe_file(file)
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
