"""The registry of saveable classes: explicit, qualified names, no silent overwrites."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["LoadError", "name_of", "register", "registered"]

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
_NAMES: dict[type, str] = {}


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


def name_of(cls: type) -> str | None:
    """The name ``cls`` itself is registered under; ``None`` if it is not (a subclass of a
    registered class is not: only the exact class is saved under its name)."""
    return _NAMES.get(cls)
