"""Reading and writing the command line's files, and reading its ``--param`` values."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._atomic import atomic_path, resolve_target
from ..persistence.describe import jsonable
from ..persistence.files import article

__all__ = [
    "check_output",
    "check_param_names",
    "load_array",
    "load_model",
    "parameter_docs",
    "parse_params",
    "print_json",
    "save_array",
]


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as keyword arguments: values are JSON, else bare strings.

    A malformed pair is a ValueError (not SystemExit) so that it is reported like every
    other bad input, in one line by ``main``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE (e.g. max_epochs=50), got {pair!r}.")
        if key in params:
            raise ValueError(f"--param {key} is given twice; give each parameter once.")
        params[key] = parse_value(value)
    return params


def parse_value(value: str) -> Any:
    """A value given on the command line: JSON, else the bare string (``paper``, ``cat``)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_labels(path: str, n_rows: int | None) -> np.ndarray:
    """The labels (1-D) or context (2-D) of ``--labels``, checked against ``n_rows``."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"--labels {path!r} is not a readable .npy file: {error}") from error
    if n_rows is not None and (labels.ndim not in (1, 2) or len(labels) != n_rows):
        raise ValueError(
            f"--labels {path!r} must hold one label (shape ({n_rows},)) or one context row "
            f"(shape ({n_rows}, C)) per data row; it has shape {labels.shape}."
        )
    return labels


def check_param_names(model: str, params: dict[str, Any]) -> None:
    """Refuse a parameter the model does not have, naming the nearest one that it does."""
    import difflib

    from ..models import MODELS

    names = list(MODELS[model]().get_params())
    for key in params:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"{MODELS[model].__name__} has no parameter {key!r}{hint} "
                f"(`ldelib params {model}` lists them)."
            )


#: A reStructuredText role (``:class:`~a.B```: its last name) or literal (its text).
_ROLES = re.compile(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`|``([^`]+)``")


def parameter_docs(cls: type) -> dict[str, str]:
    """The first sentence of each parameter's description in ``cls``'s docstring."""
    lines = (cls.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Parameters"), None)
    if start is None:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    indent = len(lines[start]) - len(lines[start].lstrip())
    for line in lines[start + 2 :]:
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth == indent:
            if " : " not in line:  # the next section
                break
            names = [n.strip() for n in line.split(" : ")[0].split(",")]
            continue
        if names and line.strip():
            for name in names:
                docs[name] = f"{docs.get(name, '')} {line.strip()}".strip()
    # reStructuredText roles and literals read as plain text on a terminal.
    plain = {name: _ROLES.sub(lambda m: m[1] or m[2], text) for name, text in docs.items()}
    # "Up to the first full stop followed by a space" is the first sentence.
    return {name: text.split(". ")[0].rstrip(".") + "." for name, text in plain.items()}


def load_array(path: str) -> np.ndarray:
    """The 2-D numeric array of the ``.npy`` file at ``path``, memory-mapped and checked."""
    from .._sources import open_rows

    return open_rows(path)


def check_output(path: str) -> None:
    """Refuse an output path that cannot be written, before any work is spent on it.

    A fit can take hours: finding out only at the end that ``--out`` names a missing
    folder or an existing folder would waste them. Messages name ``path`` exactly as
    the user wrote it.
    """
    if not path:
        raise ValueError("The output path is empty; give a file name.")
    resolve_target(path)
    folder = os.path.dirname(os.path.realpath(path))
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"Cannot write {path!r}: the folder {folder!r} is not writable.")


def save_array(path: str, array: np.ndarray) -> str:
    """Write ``array`` to exactly ``path`` (numpy.save would append .npy); return it."""
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return path


def load_model(path: str) -> Any:
    """The object saved at ``path``, or a ValueError saying why the command line cannot.

    An autoencoder file holds weights, not the user's module classes, so ``load`` needs
    modules that only Python code can give (a LoadError): say so in command-line terms.
    """
    from ..persistence import LoadError, load, read_model_file, registered

    try:
        return load(path)
    except LoadError as error:
        name = registered(str(read_model_file(path)[0].get("class"))).__name__
        raise ValueError(
            f"{path!r} holds {article(name)} {name}, which loads only in Python, given the "
            f"modules or callables the file does not store ({error}). `ldelib info {path}` "
            "describes the file."
        ) from error


def print_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one line of strict JSON: the whole stdout of a ``--json`` run."""
    print(json.dumps(jsonable(payload), allow_nan=False))
