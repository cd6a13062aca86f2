"""What a valid parameter value is: the constraints of :mod:`ldelib._validation`.

Each constraint answers ``is_satisfied_by(value)`` and describes itself for messages.
numpy scalars are accepted wherever Python ones are (grid searches pass them), ``bool``
is never taken for a number, and NaN is never a valid number. The tables at the end are
shared by several estimators.
"""

from __future__ import annotations

import abc
import math
import numbers
import reprlib
from collections.abc import Collection
from typing import Any, Literal

import numpy as np
import torch

Closed = Literal["left", "right", "both", "neither"]

short_repr = reprlib.Repr()
short_repr.maxstring = short_repr.maxother = 80
short_repr.maxlist = short_repr.maxtuple = 8


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a wrong type or value.

    A subclass of both ``ValueError`` and ``TypeError``, like scikit-learn's error of
    the same name, so either ``except`` clause catches it.
    """


# --------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------
def join_words(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


class Constraint(abc.ABC):
    """One way for a parameter value to be valid."""

    @abc.abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` satisfies the constraint."""

    @abc.abstractmethod
    def describe(self, plural: bool = False) -> str:
        """What a valid value is, e.g. "an int in the range [1, inf)" (or "ints in ...")."""

    def __str__(self) -> str:
        return self.describe()


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def describe(self, plural: bool = False) -> str:
        return "None"


class _Interval(Constraint):
    """Numbers between two bounds; ``None`` bounds are infinite."""

    _singular: str
    _plural: str

    def __init__(
        self, low: float | None = None, high: float | None = None, *, closed: Closed = "both"
    ) -> None:
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(
                f"closed must be 'left', 'right', 'both' or 'neither', got {closed!r}."
            )
        if low is not None and high is not None and low > high:
            raise ValueError(f"Empty interval: low={low} > high={high}.")
        self.low, self.high, self.closed = low, high, closed

    @abc.abstractmethod
    def _has_type(self, value: Any) -> bool: ...

    def _closed(self, side: str, bound: float | None) -> bool:
        """Whether the interval holds its ``side`` bound (an infinite one only for reals)."""
        return self.closed in (side, "both") and (bound is not None or isinstance(self, Real))

    def is_satisfied_by(self, value: Any) -> bool:
        if not self._has_type(value):
            return False
        if not isinstance(value, numbers.Integral) and math.isnan(value):
            return False
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        above = value >= low if self._closed("left", self.low) else value > low
        below = value <= high if self._closed("right", self.high) else value < high
        return bool(above and below)

    def describe(self, plural: bool = False) -> str:
        kind = self._plural if plural else self._singular
        if self.low is not None and self.low == self.high:
            return f"{kind} equal to {self.low}"
        left = "[" if self._closed("left", self.low) else "("
        right = "]" if self._closed("right", self.high) else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        return f"{kind} in the range {left}{low}, {high}{right}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.low!r}, {self.high!r}, closed={self.closed!r})"


class Integral(_Interval):
    """Integers (Python or numpy, never ``bool``) from ``low`` to ``high``.

    ``None`` bounds are infinite; ``closed`` says which finite bounds are included.

    Example:
        >>> Integral(1, None).is_satisfied_by(np.int64(3)), Integral(1, None).describe()
        (True, 'an int in the range [1, inf)')
    """

    _singular, _plural = "an int", "ints"

    def _has_type(self, value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Real(_Interval):
    """Real numbers (ints included; never ``bool``, never NaN) from ``low`` to ``high``.

    ``None`` bounds are infinite, and ``closed`` applies to them too: with
    ``closed="left"``, ``Real(0, None)`` is [0, inf) and refuses ``inf``;
    ``closed="both"`` makes it [0, inf] and takes ``inf``.

    Example:
        >>> Real(0, 1, closed="neither").describe()
        'a float in the range (0, 1)'
        >>> Real(0, None, closed="left").is_satisfied_by(float("inf"))
        False
    """

    _singular, _plural = "a float", "floats"

    def _has_type(self, value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class Options(Constraint):
    """One of a few strings.

    Example:
        >>> Options("mlp", "paper").describe()
        "one of 'mlp' or 'paper'"
    """

    def __init__(self, *options: str) -> None:
        self.options = tuple(dict.fromkeys(options))

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def describe(self, plural: bool = False) -> str:
        quoted = [repr(o) for o in self.options]
        if len(quoted) == 1:
            return f"strs equal to {quoted[0]}" if plural else quoted[0]
        listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return f"strs among {listed}" if plural else f"one of {listed}"

    def __repr__(self) -> str:
        return f"Options{self.options!r}"


class Boolean(Constraint):
    """``True`` or ``False`` (Python or numpy)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def describe(self, plural: bool = False) -> str:
        return "bools" if plural else "a bool"


class Callable(Constraint):
    """Anything callable."""

    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value)

    def describe(self, plural: bool = False) -> str:
        return "callables" if plural else "a callable"


class InstanceOf(Constraint):
    """An instance of any of ``types``; ``name`` says what that is in messages.

    Example:
        >>> InstanceOf(np.random.Generator).describe()
        'an instance of Generator'
    """

    def __init__(self, *types: type, name: str | None = None) -> None:
        self.types = types
        self.name = name

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def describe(self, plural: bool = False) -> str:
        if self.name is not None:
            return self.name
        names = " or ".join(t.__name__ for t in self.types)
        return f"instances of {names}" if plural else f"an instance of {names}"


class HasMethods(Constraint):
    """An object with all of the named methods (duck typing).

    Example:
        >>> HasMethods("fit", "sample").describe()
        'an object with methods fit and sample'
    """

    def __init__(self, *methods: str) -> None:
        self.methods = methods

    def is_satisfied_by(self, value: Any) -> bool:
        return all(callable(getattr(value, m, None)) for m in self.methods)

    def describe(self, plural: bool = False) -> str:
        what = "objects" if plural else "an object"
        *rest, last = self.methods
        names = f"{', '.join(rest)} and {last}" if rest else last
        return f"{what} with method{'s' if rest else ''} {names}"

    def __repr__(self) -> str:
        return f"HasMethods{self.methods!r}"


class SequenceOf(Constraint):
    """A list, tuple (or other ``types``) whose every item satisfies any of ``items``.

    Arguments:
        *items: Constraints on each item (``None`` allows ``None`` items).
        min_len, max_len: Bounds on the length (``max_len=None``: no bound).
        types: The sequence types accepted (never ``str``).

    Example:
        >>> SequenceOf(Integral(1, None), min_len=1).describe()
        'a non-empty list or tuple of ints in the range [1, inf)'
        >>> SequenceOf(Real(0, 1, closed="left"), min_len=2, max_len=2).describe()
        'a list or tuple of 2 floats in the range [0, 1)'
    """

    def __init__(
        self,
        *items: Constraint | None,
        min_len: int = 0,
        max_len: int | None = None,
        types: tuple[type[Collection[Any]], ...] = (list, tuple),
    ) -> None:
        self.items = [make_constraint(c) for c in items]
        self.min_len, self.max_len, self.types = min_len, max_len, types

    def is_satisfied_by(self, value: Any) -> bool:
        if not isinstance(value, self.types) or isinstance(value, (str, bytes)):
            return False
        if isinstance(value, np.ndarray) and value.ndim != 1:
            return False
        n = len(value)
        if n < self.min_len or (self.max_len is not None and n > self.max_len):
            return False
        return all(any(c.is_satisfied_by(v) for c in self.items) for v in value)

    def describe(self, plural: bool = False) -> str:
        kinds = {list: "list", tuple: "tuple", np.ndarray: "1-D array"}
        names = [kinds.get(t, t.__name__) for t in self.types]
        container = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        if self.max_len is not None and self.max_len == self.min_len:
            size = f"{self.min_len} "
        elif self.min_len == 1 and self.max_len is None:
            container = f"non-empty {container}"
            size = ""
        elif self.min_len or self.max_len is not None:
            high = "" if self.max_len is None else f" and at most {self.max_len}"
            size = f"at least {self.min_len}{high} "
        else:
            size = ""
        what = join_words([c.describe(plural=True) for c in self.items])
        article = "" if plural else ("an " if container[0] in "aeiou" else "a ")
        suffix = "s" if plural else ""
        return f"{article}{container}{suffix} of {size}{what}"

    def __repr__(self) -> str:
        return f"SequenceOf({', '.join(map(repr, self.items))}, min_len={self.min_len})"


class Device(Constraint):
    """``"auto"``, or a device that ``torch.device`` understands (its availability is
    checked later, when the device is used)."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, torch.device) or (isinstance(value, str) and value == "auto"):
            return True
        if not isinstance(value, str):
            return False
        try:
            torch.device(value)
        except (RuntimeError, TypeError, ValueError):
            return False
        return True

    def describe(self, plural: bool = False) -> str:
        one = "'auto', 'cpu', 'cuda', 'cuda:1'... or a torch.device"
        return f"devices ({one})" if plural else f"a device: {one}"


def make_constraint(constraint: Constraint | None) -> Constraint:
    if constraint is None:
        return _NoneConstraint()
    if isinstance(constraint, Constraint):
        return constraint
    raise TypeError(f"Not a constraint: {constraint!r}.")


#: Constraints of ``random_state``: None, a non-negative int seed, or a numpy generator.
RANDOM_STATE: list[Constraint | None] = [
    None,
    Integral(0, None),
    InstanceOf(
        np.random.Generator, np.random.RandomState, name="a numpy Generator or RandomState"
    ),
]
#: Constraints of ``verbose``: a non-negative int or a bool.
VERBOSE: list[Constraint | None] = [Integral(0, None), Boolean()]
#: Constraints of ``max_time``: None (no limit) or a positive number of seconds.
MAX_TIME: list[Constraint | None] = [None, Real(0, None, closed="right")]
#: Constraints of the parameters of a model trained by ``ldelib.training.train_module``.
TRAINING_PARAMS: dict[str, list[Constraint | None]] = {
    "batch_size": [Integral(1, None)],
    "max_epochs": [Integral(1, None)],
    "validation_fraction": [Real(0, 1, closed="left")],
    "n_iter_no_change": [Integral(1, None)],
    "device": [Device()],
}
