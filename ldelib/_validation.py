"""Declarative checks of estimator parameters.

A small equivalent of scikit-learn's private ``sklearn.utils._param_validation``: each
estimator declares, for every constructor parameter, the list of constraints a valid
value satisfies (any one of them, see :mod:`ldelib._constraints`), plus the few rules
that tie one parameter to another, and :func:`validate_params` checks them all at
``fit`` with one message form::

    The CausalConvMDN parameter learning_rate must be None or a float in the range
    (0, inf); got 'x'.

:func:`to_python` turns numpy scalars back into Python ones for code that hands values
to torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._constraints import (
    MAX_TIME,
    RANDOM_STATE,
    TRAINING_PARAMS,
    VERBOSE,
    Boolean,
    Callable,
    Constraint,
    Device,
    HasMethods,
    InstanceOf,
    Integral,
    InvalidParameterError,
    Options,
    Real,
    SequenceOf,
    join_words,
    make_constraint,
    short_repr,
)

__all__ = [
    "MAX_TIME",
    "RANDOM_STATE",
    "TRAINING_PARAMS",
    "VERBOSE",
    "Boolean",
    "Callable",
    "Constraint",
    "Device",
    "HasMethods",
    "IgnoredWhen",
    "InstanceOf",
    "Integral",
    "InvalidParameterError",
    "Options",
    "Real",
    "SequenceOf",
    "When",
    "python_params",
    "to_python",
    "validate_params",
]


# --------------------------------------------------------------------------------------
# Rules between parameters
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class When:
    """While every parameter of ``condition`` has its value there, ``param`` must also
    satisfy ``constraints``; ``reason`` (a sentence) ends the message.

    Example:
        >>> rule = When({"architecture": "paper"}, "dropout", [None, Real(0, 0)],
        ...             "The paper network has no dropout.")
    """

    condition: Mapping[str, Any]
    param: str
    constraints: Sequence[Constraint | None]
    reason: str = ""


@dataclass(frozen=True)
class IgnoredWhen:
    """While every parameter of ``condition`` has its value there, the model ignores
    ``params``: each must stay at its default (from the signature of ``__init__``),
    so that a value that would silently do nothing raises instead.

    Example:
        >>> rule = IgnoredWhen({"architecture": "paper"}, ("hidden_channels", "n_blocks"),
        ...                    "The paper network has fixed widths.")
    """

    condition: Mapping[str, Any]
    params: tuple[str, ...]
    reason: str = ""


class _Default(Constraint):
    def __init__(self, default: Any) -> None:
        self.default = default

    def is_satisfied_by(self, value: Any) -> bool:
        return _same(value, self.default)

    def describe(self, plural: bool = False) -> str:
        return f"{self.default!r} (its default)"


def _same(a: Any, b: Any) -> bool:
    """Equality that treats lists, tuples and 1-D arrays alike and never broadcasts."""
    sequences = (list, tuple, np.ndarray)
    if isinstance(a, sequences) or isinstance(b, sequences):
        return (
            isinstance(a, sequences)
            and isinstance(b, sequences)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------
def _check(
    owner: str,
    name: str,
    value: Any,
    constraints: Iterable[Constraint | None],
    when: str = "",
    reason: str = "",
) -> None:
    made = [make_constraint(c) for c in constraints]
    if any(c.is_satisfied_by(value) for c in made):
        return
    message = (
        f"The {owner} parameter {name} must be {join_words([c.describe() for c in made])}{when}; "
        f"got {short_repr.repr(value)}."
    )
    raise InvalidParameterError(f"{message} {reason}".rstrip())


def _active(estimator: Any, condition: Mapping[str, Any]) -> bool:
    return all(_same(getattr(estimator, k), v) for k, v in condition.items())


def _describe_condition(condition: Mapping[str, Any]) -> str:
    return " and ".join(f"{k}={v!r}" for k, v in condition.items())


def validate_params(
    estimator: Any,
    constraints: Mapping[str, Sequence[Constraint | None]],
    rules: Iterable[When | IgnoredWhen] = (),
) -> dict[str, Any]:
    """Check an estimator's parameters against ``constraints`` and ``rules``.

    Parameters are checked in the order of ``constraints``. A parameter that a rule
    in force restricts is checked against that rule first, so its message names the
    reason; then against its own constraints, any one of which makes it valid.

    Parameters
    ----------
    estimator : object
        Holds each parameter as an attribute of the same name.
    constraints : dict of str to list of Constraint or None
        The valid values of each parameter: any of the constraints, ``None`` meaning
        that ``None`` is allowed.
    rules : iterable of When or IgnoredWhen
        Rules between parameters.

    Returns
    -------
    dict of str to object
        Every checked parameter, with numpy scalars turned into Python ones
        (see :func:`to_python`).

    Raises
    ------
    InvalidParameterError
        For the first parameter that breaks a rule or none of its constraints, as
        "The GMM parameter tol must be a float in the range [0, inf); got -1.0.".
    """
    owner = type(estimator).__name__
    restricted: dict[str, list[tuple[str, list[Constraint | None], str]]] = {}
    defaults = None
    for rule in rules:
        if not _active(estimator, rule.condition):
            continue
        when = f" when {_describe_condition(rule.condition)}"
        if isinstance(rule, When):
            restricted.setdefault(rule.param, []).append(
                (when, list(rule.constraints), rule.reason)
            )
            continue
        if defaults is None:
            defaults = inspect.signature(type(estimator).__init__).parameters
        for name in rule.params:
            restricted.setdefault(name, []).append(
                (f"{when}, which ignores it", [_Default(defaults[name].default)], rule.reason)
            )
    for name in (*constraints, *(n for n in restricted if n not in constraints)):
        value = getattr(estimator, name)
        for when, rule_constraints, reason in restricted.get(name, ()):
            _check(owner, name, value, rule_constraints, when, reason)
        if name in constraints:
            _check(owner, name, value, constraints[name])
    return {name: to_python(getattr(estimator, name)) for name in constraints}


def to_python(value: Any) -> Any:
    """``value`` with numpy scalars made Python ones, inside lists and tuples too.

    Example:
        >>> to_python((np.int64(2), [np.float32(0.5)], "x"))
        (2, [0.5], 'x')
    """
    if isinstance(value, np.generic):
        return value.item()
    if type(value) in (list, tuple):
        return type(value)(to_python(v) for v in value)
    return value


def python_params(estimator: Any, *names: str) -> dict[str, Any]:
    """The named parameters of ``estimator`` as keyword arguments, numpy scalars made
    Python ones: for handing validated parameters on to torch or to a training loop.

    Example:
        >>> class Model:
        ...     batch_size, verbose = np.int64(16), 0
        >>> python_params(Model(), "batch_size", "verbose")
        {'batch_size': 16, 'verbose': 0}
    """
    return {name: to_python(getattr(estimator, name)) for name in names}
