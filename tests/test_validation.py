"""The parameter checks: the constraint module, then every estimator's table at ``fit``."""

from __future__ import annotations

import inspect
import re
from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator

import ldelib
from ldelib import GMM, GMMN, CausalConvMDN
from ldelib._validation import (
    RANDOM_STATE,
    VERBOSE,
    Boolean,
    Callable,
    Device,
    HasMethods,
    IgnoredWhen,
    InstanceOf,
    Integral,
    InvalidParameterError,
    Options,
    Real,
    SequenceOf,
    When,
    python_params,
    to_python,
    validate_params,
)
from ldelib.peers import GridMixturePeer, KernelDensityPeer, ZukoFlowPeer


class BadType:
    """A value of a type no constraint accepts."""

    def __repr__(self) -> str:
        return "BadType()"


# ------------------------------------------------------------------ constraints
CONSTRAINTS = [
    (
        Integral(1, None),
        [1, 7, np.int64(3), np.int32(1), np.uint8(2), 10**30],
        [0, -1, True, np.bool_(True), 1.0, np.float64(2.0), "1", None, BadType()],
    ),
    (Integral(0, 10, closed="neither"), [1, 9], [0, 10]),
    (Integral(None, 0, closed="right"), [-(10**30), 0], [1]),
    (
        Real(0, None, closed="neither"),
        [1e-3, 1, np.float32(0.5), np.float64(2.0), np.int64(2)],
        [0, 0.0, -1.0, np.nan, np.float32(np.nan), np.inf, True, "x", None, 1j],
    ),
    (Real(0, None, closed="right"), [np.inf, 5.0], [0.0, -np.inf, np.nan]),
    (Real(0, 1, closed="left"), [0, 0.0, 0.5, np.float16(0.25)], [1, 1.0, -0.0001]),
    (Real(None, None), [-np.inf, 0.0, np.inf], [np.nan, "0"]),
    (Real(0, 0), [0, 0.0, np.float32(0.0)], [0.1, -0.1]),
    (Options("a", "b"), ["a", "b", np.str_("b")], ["c", "A", None, 1, ["a"]]),
    (Boolean(), [True, False, np.bool_(False)], [0, 1, "True", None]),
    (Callable(), [len, lambda x: x, torch.nn.Identity()], [1, "len", None]),
    (
        InstanceOf(np.random.Generator, np.random.RandomState),
        [np.random.default_rng(0), np.random.RandomState(0)],
        [0, None, np.random],
    ),
    (
        SequenceOf(Integral(1, None), min_len=1),
        [[1], (1, 2), [np.int64(2), 3]],
        [[], (), "12", [0], [1, 2.0], [1, True], 3, np.array([1, 2]), {1, 2}, None],
    ),
    (
        SequenceOf(Integral(1, None), types=(list, tuple, np.ndarray)),
        [[], np.array([1, 2]), np.array([], dtype=int)],
        [np.array([[1, 2]]), np.array([1.0, 2.0]), "12", b"12"],
    ),
    (
        SequenceOf(Real(0, 1, closed="left"), min_len=2, max_len=2),
        [(0.5, 0.999), [0, np.float32(0.9)]],
        [(0.5,), (0.5, 1.0), (0.5, 0.9, 0.9), (0.5, np.nan)],
    ),
    (SequenceOf(None, Options("x")), [[None, "x"], []], [["y"], [None, 0]]),
    (
        HasMethods("fit", "sample"),
        [GMM(), CausalConvMDN()],
        [None, "gmm", torch.nn.Identity()],
    ),
    (
        Device(),
        ["auto", "cpu", "cuda", "cuda:1", torch.device("cpu")],
        ["tpu", "gpu", "", 3, None],
    ),
]


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    CONSTRAINTS,
    ids=[re.sub(" at 0x[0-9a-f]+", "", repr(c[0])) for c in CONSTRAINTS],
)
def test_constraint_accepts_and_refuses(constraint, good, bad):
    for value in good:
        assert constraint.is_satisfied_by(value), value
    for value in bad:
        assert not constraint.is_satisfied_by(value), value


@pytest.mark.parametrize(
    ("constraint", "text"),
    [
        (Integral(1, None), "an int in the range [1, inf)"),
        (Integral(0, 10, closed="left"), "an int in the range [0, 10)"),
        (Integral(None, None), "an int in the range (-inf, inf)"),
        (Real(0, None, closed="neither"), "a float in the range (0, inf)"),
        (Real(0, None, closed="both"), "a float in the range [0, inf]"),
        (Real(0, 1, closed="right"), "a float in the range (0, 1]"),
        (Real(0, 0), "a float equal to 0"),
        (Options("auto"), "'auto'"),
        (Options("a", "b", "c"), "one of 'a', 'b' or 'c'"),
        (Boolean(), "a bool"),
        (Callable(), "a callable"),
        (InstanceOf(np.random.Generator), "an instance of Generator"),
        (InstanceOf(int, name="a seed"), "a seed"),
        (HasMethods("fit"), "an object with method fit"),
        (HasMethods("a", "b", "c"), "an object with methods a, b and c"),
        (
            SequenceOf(Integral(1, None), min_len=1),
            "a non-empty list or tuple of ints in the range [1, inf)",
        ),
        (
            SequenceOf(Real(0, 1, closed="left"), min_len=2, max_len=2),
            "a list or tuple of 2 floats in the range [0, 1)",
        ),
        (SequenceOf(Options("a", "b"), types=(list,)), "a list of strs among 'a' or 'b'"),
        (
            SequenceOf(Boolean(), min_len=1, max_len=3),
            "a list or tuple of at least 1 and at most 3 bools",
        ),
    ],
)
def test_constraint_descriptions(constraint, text):
    assert constraint.describe() == text


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="closed"):
        Real(0, 1, closed="open")
    with pytest.raises(ValueError, match="Empty interval"):
        Integral(2, 1)


# --------------------------------------------------------------- validate_params
class Toy(BaseEstimator):
    _parameter_constraints: ClassVar[dict] = {
        "rate": [None, Real(0, None, closed="neither")],
        "size": [Integral(1, None)],
        "mode": [Options("fast", "exact")],
        "widths": [SequenceOf(Integral(1, None), types=(list, tuple, np.ndarray))],
        "random_state": RANDOM_STATE,
        "verbose": VERBOSE,
    }
    _parameter_rules = (
        IgnoredWhen({"mode": "exact"}, ("widths", "rate"), "Exact mode has no network."),
        When({"mode": "fast"}, "size", [Integral(1, 64)], "Fast mode is for small sizes."),
    )

    def __init__(
        self, rate=None, size=8, mode="fast", widths=(4, 4), random_state=None, verbose=0
    ):
        self.rate = rate
        self.size = size
        self.mode = mode
        self.widths = widths
        self.random_state = random_state
        self.verbose = verbose

    def check(self):
        return validate_params(self, self._parameter_constraints, self._parameter_rules)


def test_one_message_form_and_error_type():
    with pytest.raises(InvalidParameterError) as info:
        Toy(rate="x").check()
    assert str(info.value) == (
        "The Toy parameter rate must be None or a float in the range (0, inf); got 'x'."
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(InvalidParameterError) as info:
        Toy(widths=list(range(1000))).check()
    assert len(str(info.value)) < 300 and "..." in str(info.value)


def test_the_first_bad_parameter_in_table_order_is_reported():
    with pytest.raises(InvalidParameterError, match="parameter rate "):
        Toy(rate=-1, size=0).check()


def test_valid_parameters_come_back_as_python_scalars():
    checked = Toy(rate=np.float32(0.5), size=np.int64(3), widths=[np.int32(2)]).check()
    assert checked["rate"] == 0.5 and type(checked["rate"]) is float
    assert checked["size"] == 3 and type(checked["size"]) is int
    assert checked["widths"] == [2] and type(checked["widths"][0]) is int
    assert set(checked) == set(Toy._parameter_constraints)


def test_when_rule_applies_only_under_its_condition():
    Toy(mode="exact", size=100, widths=(4, 4)).check()
    with pytest.raises(InvalidParameterError) as info:
        Toy(mode="fast", size=100).check()
    assert str(info.value) == (
        "The Toy parameter size must be an int in the range [1, 64] when mode='fast'; got 100. "
        "Fast mode is for small sizes."
    )


def test_ignored_parameters_must_keep_their_default():
    # The default is read from the signature; a list equal to a tuple default is the default.
    Toy(mode="exact", widths=[4, 4]).check()
    Toy(mode="exact", widths=np.array([4, 4])).check()
    with pytest.raises(InvalidParameterError) as info:
        Toy(mode="exact", widths=(8,)).check()
    assert str(info.value) == (
        "The Toy parameter widths must be (4, 4) (its default) when mode='exact', which "
        "ignores it; got (8,). Exact mode has no network."
    )
    with pytest.raises(InvalidParameterError, match=r"rate must be None .* mode='exact'"):
        Toy(mode="exact", rate=0.1).check()


def test_a_rule_is_checked_before_its_parameter_own_constraints():
    # size=0 breaks both; the rule's message (with its reason) wins.
    with pytest.raises(InvalidParameterError, match="Fast mode is for small sizes"):
        Toy(size=0).check()


def test_rules_with_an_invalid_condition_parameter_stay_silent():
    with pytest.raises(InvalidParameterError, match="parameter mode must be one of"):
        Toy(mode="other", size=1000).check()


def test_to_python():
    assert to_python(np.int64(2)) == 2 and type(to_python(np.int64(2))) is int
    assert type(to_python(np.float32(0.5))) is float
    assert type(to_python(np.bool_(True))) is bool
    assert to_python((np.int64(1), [np.float64(2.0)], "a", None)) == (1, [2.0], "a", None)
    array = np.arange(3)
    assert to_python(array) is array  # arrays stay arrays
    kwargs = python_params(Toy(size=np.int64(3), verbose=np.int8(1)), "size", "verbose")
    assert kwargs == {"size": 3, "verbose": 1}
    assert all(type(v) is int for v in kwargs.values())


# ----------------------------------------------------------------- the estimators
X = np.random.default_rng(0).normal(size=(20, 2))

FAST = {
    GMM: {"n_components": 2, "max_iter": 20},
    GMMN: {"noise_dim": 2, "hidden_sizes": (8,), "batch_size": 16, "max_epochs": 2},
    CausalConvMDN: {"n_components": 2, "hidden_channels": 8, "max_epochs": 2},
    KernelDensityPeer: {"bandwidths": (0.5, 1.0)},
    GridMixturePeer: {"components": (1, 2), "regs": (1e-3, 1e-2)},
    ZukoFlowPeer: {"transforms": 1, "hidden_features": (8,), "max_epochs": 2},
}
CPU = {"device": "cpu"}


def make(cls, **params):
    base = dict(FAST[cls])
    if "device" in inspect.signature(cls).parameters:
        base.update(CPU)
    return cls(**{**base, **params})


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_every_parameter_has_constraints(cls):
    assert set(cls._parameter_constraints) == set(cls().get_params(deep=False))
    for rule in cls._parameter_rules:
        names = rule.params if isinstance(rule, IgnoredWhen) else (rule.param,)
        assert set(names) | set(rule.condition) <= set(cls._parameter_constraints)


CANDIDATES = [BadType(), "x", None, 0, -1, 1.5, True, np.nan, [], [0]]


def _bad_values(cls, name):
    def valid(value):
        return any(
            value is None if c is None else c.is_satisfied_by(value)
            for c in cls._parameter_constraints[name]
        )

    return [v for v in CANDIDATES if not valid(v)]


BAD = [
    pytest.param(cls, name, value, id=f"{cls.__name__}-{name}-{value!r}")
    for cls in FAST
    for name in cls._parameter_constraints
    for value in _bad_values(cls, name)
]


@pytest.mark.parametrize(("cls", "name", "value"), BAD)
def test_invalid_values_raise_naming_the_parameter(cls, name, value):
    model = make(cls, **{name: value})
    with pytest.raises(InvalidParameterError, match=rf"parameter {name} must be"):
        model.fit(X)
    assert not hasattr(model, "n_features_in_")  # nothing fitted is left behind


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_verbose_none_raises_cleanly(cls):
    with pytest.raises(InvalidParameterError, match="verbose must be an int"):
        make(cls, verbose=None).fit(X)


@pytest.mark.parametrize("cls", [GMMN, CausalConvMDN, ZukoFlowPeer], ids=lambda c: c.__name__)
def test_n_iter_no_change_must_be_positive(cls):
    with pytest.raises(InvalidParameterError, match="n_iter_no_change must be an int"):
        make(cls, n_iter_no_change=0).fit(X)


@pytest.mark.parametrize("cls", [GMMN, CausalConvMDN, ZukoFlowPeer], ids=lambda c: c.__name__)
def test_learning_rate_of_the_wrong_type(cls):
    with pytest.raises(InvalidParameterError) as info:
        make(cls, learning_rate="x").fit(X)
    assert str(info.value).startswith(f"The {cls.__name__} parameter learning_rate must be")
    assert str(info.value).endswith("a float in the range (0, inf); got 'x'.")


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (CausalConvMDN, {"hidden_channels": 32}),
        (CausalConvMDN, {"n_blocks": 2}),
        (CausalConvMDN, {"min_scale": 1e-2}),
        (GMMN, {"hidden_sizes": (8,)}),
        (GMMN, {"noise": "normal"}),
        (GMMN, {"noise_dim": 3}),
    ],
)
def test_paper_architecture_refuses_what_it_would_ignore(cls, params):
    (name,) = params
    model = cls(architecture="paper", device="cpu", max_epochs=1, **params)
    with pytest.raises(InvalidParameterError) as info:
        model.fit(X)
    message = str(info.value)
    assert f"parameter {name} must be" in message
    assert "architecture='paper'" in message and "ignores it" in message


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (CausalConvMDN, {"hidden_channels": None, "n_blocks": None, "min_scale": 1e-3}),
        (CausalConvMDN, {"dropout": 0.0, "init": "random"}),
        (GMMN, {"hidden_sizes": [64, 256, 256], "noise": "uniform", "noise_dim": 10}),
        (GMMN, {"sqrt_mmd": True}),  # the paper loss takes the square root anyway
    ],
)
def test_paper_architecture_takes_defaults_given_explicitly(cls, params):
    cls(architecture="paper", device="cpu", max_epochs=1, random_state=0, **params).fit(X)


NUMPY = {
    GMM: {
        "n_components": np.int64(2),
        "n_init": np.int32(1),
        "max_iter": np.int64(20),
        "tol": np.float32(1e-3),
        "reg_covar": np.float64(1e-6),
        "validation_fraction": np.float32(0.2),
        "verbose": np.int64(0),
    },
    GMMN: {
        "noise_dim": np.int64(2),
        "hidden_sizes": np.array([8, 8]),
        "bandwidths": [np.float32(0.5), np.float64(1.0)],
        "sqrt_mmd": np.bool_(False),
        "learning_rate": np.float64(1e-3),
        "batch_size": np.int64(16),
        "max_epochs": np.int32(2),
        "validation_fraction": np.float32(0.25),
        "n_iter_no_change": np.int64(5),
        "max_time": np.float32(60.0),
    },
    CausalConvMDN: {
        "n_components": np.int64(2),
        "hidden_channels": np.int64(8),
        "n_blocks": np.int64(2),
        "min_scale": np.float32(1e-3),
        "dropout": np.float32(0.1),
        "learning_rate": np.float64(1e-3),
        "weight_decay": np.float32(1e-4),
        "batch_size": np.int64(16),
        "max_epochs": np.int32(2),
        "validation_fraction": np.float64(0.25),
        "n_iter_no_change": np.int64(4),
        "max_time": np.int64(60),
        "standardize": np.bool_(True),
        "verbose": np.int8(0),
    },
    KernelDensityPeer: {
        "bandwidths": np.array([0.5, 1.0]),
        "validation_fraction": np.float32(0.2),
    },
}


@pytest.mark.parametrize("cls", list(NUMPY), ids=lambda c: c.__name__)
def test_numpy_scalars_fit_end_to_end(cls, tmp_path):
    model = make(cls, random_state=np.int64(0), **NUMPY[cls]).fit(X)
    assert model.sample(3, random_state=np.int64(1)).shape == (3, 2)
    if cls is not GMMN:
        assert np.isfinite(model.score(X))
    if cls is KernelDensityPeer:
        return  # a benchmark peer, not registered for saving
    path = tmp_path / "model.ldelib"
    model.save(path)
    loaded = ldelib.load(path)
    assert loaded.get_params().keys() == model.get_params().keys()
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(loaded.get_params()[name], value, err_msg=name)
    np.testing.assert_array_equal(
        loaded.sample(4, random_state=0), model.sample(4, random_state=0)
    )


def test_numpy_scalars_reach_torch_as_python_numbers():
    model = make(
        CausalConvMDN, init="random", n_blocks=np.int64(2), min_scale=np.float32(1e-2)
    ).fit(X)
    assert type(model.module_.min_scale) is float


def test_zuko_takes_numpy_scalars():
    pytest.importorskip("zuko")
    model = make(
        ZukoFlowPeer,
        transforms=np.int64(1),
        hidden_features=np.array([8]),
        learning_rate=np.float32(1e-3),
        batch_size=np.int64(16),
        max_epochs=np.int32(2),
        n_iter_no_change=np.int64(3),
        random_state=np.int64(0),
    ).fit(X)
    assert np.isfinite(model.score(X))
