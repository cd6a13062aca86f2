"""The density-model contract, exercised through CausalConvMDN (the base owns it)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ldelib import CausalConvMDN, DegenerateDataWarning

FAST = {"max_epochs": 3, "hidden_channels": 8, "n_components": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]


@pytest.fixture(scope="module")
def fitted(data) -> CausalConvMDN:
    return CausalConvMDN(**FAST, random_state=0).fit(data)


BAD_INPUTS = [
    (np.array([[0.0, np.nan, 1.0]]), ValueError, "NaN"),
    (np.array([[0.0, np.inf, 1.0]]), ValueError, "infinity"),
    (np.zeros(3), ValueError, "2D"),
    (np.zeros((2, 3, 1)), ValueError, "dim 3"),
    (np.zeros((0, 3)), ValueError, "0 sample"),
    (np.zeros((2, 4)), ValueError, "4 features"),
    (np.ones((2, 3)) * 1j, ValueError, "Complex"),
    (np.array([["a", "b", "c"]]), ValueError, "string"),
    (np.array([[object(), 1, 2]], dtype=object), TypeError, "float"),
    (scipy.sparse.csr_matrix(np.ones((2, 3))), TypeError, "[Ss]parse"),
    (torch.tensor([[0.0, float("nan"), 1.0]]), ValueError, "NaN"),
    (torch.zeros(3), ValueError, "2-D"),
    (torch.zeros(2, 3, 1), ValueError, "2-D"),
    (torch.zeros(0, 3), ValueError, "0 sample"),
    (torch.zeros(2, 4), ValueError, "4 features"),
    (torch.ones(2, 3, dtype=torch.complex64), ValueError, "Complex"),
    (torch.ones(2, 3, dtype=torch.bool), TypeError, "Boolean"),
]


@pytest.mark.parametrize(("X", "error", "match"), BAD_INPUTS)
def test_bad_input_gets_a_clear_error(fitted, X, error, match):
    with pytest.raises(error, match=match):
        fitted.score_samples(X)


@pytest.mark.parametrize(
    ("X", "error", "match"), [b for b in BAD_INPUTS if "features" not in b[2]]
)
def test_bad_training_input_gets_a_clear_error(X, error, match):
    with pytest.raises(error, match=match):
        CausalConvMDN(**FAST).fit(X)


def test_one_sample_is_not_enough():
    # Validation holds a row out, and the mixture start another to choose reg_covar.
    with pytest.raises(ValueError, match="at least 4 samples to fit, got n_samples = 1"):
        CausalConvMDN(**FAST).fit(np.zeros((1, 3)))


@pytest.mark.parametrize("method", ["score_samples", "log_prob", "score", "sample", "save"])
def test_use_before_fit(method, tmp_path):
    model = CausalConvMDN(**FAST)
    arg = {"sample": 3, "save": tmp_path / "m.ldelib"}.get(method, np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        getattr(model, method)(arg)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n_components", 0),
        ("architecture", "wavenet"),
        ("ordering", "random"),
        ("min_scale", 0.0),
        ("validation_fraction", 1.0),
        ("learning_rate", -1.0),
        ("device", "tpu"),
        ("random_state", "seed"),
    ],
)
def test_bad_parameters(data, param, value):
    with pytest.raises(ValueError, match=param if param != "device" else "device"):
        CausalConvMDN(**FAST).set_params(**{param: value}).fit(data)


def test_bad_n_samples(fitted):
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        fitted.sample(-1)
    with pytest.raises(TypeError, match="non-negative integer"):
        fitted.sample(2.5)


@pytest.mark.parametrize("name", ["mdn", "gmm", "gmmn"])
def test_zero_samples_are_an_empty_array(data, name):
    from ldelib.models import make_model

    fast = {"mdn": FAST, "gmm": {"n_components": 2}, "gmmn": {"max_epochs": 2}}[name]
    model = make_model(name, **fast, random_state=0).fit(data)
    after_fit = model.sample(3)
    model = make_model(name, **fast, random_state=0).fit(data)
    empty = model.sample(0)
    assert empty.shape == (0, 3) and empty.dtype == np.float64
    np.testing.assert_array_equal(model.sample(3), after_fit)  # the stream did not move
    if name == "gmmn":  # no conditionals, for any number of draws
        with pytest.raises(TypeError, match="given"):
            model.sample(0, given=[0.5])
    else:
        assert model.sample(0, random_state=1, given=[0.5]).shape == (0, 3)
        X, log_prob = model.sample_and_log_prob(0)
        assert X.shape == (0, 3) and log_prob.shape == (0,)


def test_numpy_in_numpy_out(fitted, data):
    out = fitted.score_samples(data[:5].astype(np.float32))
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float64
    assert out.shape == (5,)
    assert isinstance(fitted.score(data), float)
    np.testing.assert_allclose(fitted.score(data), fitted.score_samples(data).mean())
    np.testing.assert_array_equal(
        fitted.log_prob(data[:5].tolist()), fitted.score_samples(data[:5])
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_in_tensor_out_with_gradients(fitted, data, dtype):
    X = torch.tensor(data[:7], dtype=dtype, requires_grad=True)
    out = fitted.log_prob(X)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == dtype
    assert out.shape == (7,)
    np.testing.assert_allclose(out.detach().numpy(), fitted.score_samples(data[:7]), rtol=1e-5)
    out.sum().backward()
    assert X.grad is not None
    assert torch.isfinite(X.grad).all()
    assert X.grad.abs().sum() > 0
    fitted.module_.zero_grad()


def test_score_of_a_tensor_is_a_float_without_a_graph(fitted, data, recwarn):
    X = torch.tensor(data[:7], requires_grad=True)
    score = fitted.score(X)
    assert type(score) is float
    assert score == pytest.approx(fitted.score(data[:7]), rel=1e-6)
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]


def test_integer_tensor_is_accepted(fitted):
    assert fitted.log_prob(torch.zeros(2, 3, dtype=torch.int64)).dtype.is_floating_point


def test_log_likelihood_is_in_the_users_units(data):
    # An affine change of units leaves the standardised data, hence the network,
    # unchanged: log-densities must differ by exactly the log-Jacobian.
    a, b = np.array([3.0, 0.5, 10.0]), np.array([5.0, -2.0, 100.0])
    base = CausalConvMDN(**FAST, random_state=1).fit(data)
    moved = CausalConvMDN(**FAST, random_state=1).fit(data * a + b)
    np.testing.assert_allclose(
        moved.score_samples(data * a + b),
        base.score_samples(data) - np.log(a).sum(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        moved.sample(5, random_state=2), base.sample(5, random_state=2) * a + b
    )


def test_same_seed_same_model(data, fitted):
    again = CausalConvMDN(**FAST, random_state=0).fit(data)
    np.testing.assert_array_equal(again.score_samples(data), fitted.score_samples(data))
    np.testing.assert_array_equal(
        again.sample(4, random_state=3), fitted.sample(4, random_state=3)
    )
    other = CausalConvMDN(**FAST, random_state=1).fit(data)
    assert not np.array_equal(other.score_samples(data), fitted.score_samples(data))


def test_sampling_stream(data):
    model = CausalConvMDN(**FAST, random_state=0).fit(data)
    first, second = model.sample(5), model.sample(5)
    assert not np.array_equal(first, second)
    # A per-call seed is reproducible and leaves the model's own stream alone.
    np.testing.assert_array_equal(model.sample(5, random_state=9), model.sample(5, random_state=9))
    replay = CausalConvMDN(**FAST, random_state=0).fit(data)
    replay.sample(5, random_state=9)
    np.testing.assert_array_equal(replay.sample(5), first)


def test_global_random_state_is_untouched(data):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    model = CausalConvMDN(**FAST, random_state=None).fit(data)
    model.sample(10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    assert all(np.array_equal(x, y) for x, y in zip(numpy_state, after, strict=True))


def test_sample_and_log_prob_agree_with_log_prob(fitted):
    X, log_prob = fitted.sample_and_log_prob(50, random_state=0)
    assert X.shape == (50, 3)
    np.testing.assert_allclose(log_prob, fitted.score_samples(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(X, fitted.sample(50, random_state=0))


def test_history_attributes(fitted):
    assert fitted.n_iter_ == len(fitted.loss_curve_) == len(fitted.validation_scores_)
    # The best of the epochs and of the untrained (mixture) state, which is epoch -1.
    assert fitted.best_validation_score_ >= max(fitted.validation_scores_)
    if fitted.best_epoch_ >= 0:
        assert fitted.best_validation_score_ == fitted.validation_scores_[fitted.best_epoch_]
    assert fitted.n_features_in_ == 3
    assert all(np.isfinite(fitted.loss_curve_))


def test_no_validation_split(data):
    model = CausalConvMDN(**FAST, validation_fraction=0.0, random_state=0).fit(data)
    assert model.n_iter_ == 3
    assert model.validation_scores_ == []
    assert model.best_validation_score_ is None


def test_verbose_shows_a_progress_bar(data, capsys):
    CausalConvMDN(**FAST, random_state=0, verbose=0).fit(data)
    assert capsys.readouterr().err == ""
    CausalConvMDN(**FAST, random_state=0, verbose=2).fit(data)
    err = capsys.readouterr().err
    assert "CausalConvMDN" in err
    # In the units of the data, as loss_curve_ and validation_scores_ are.
    model = CausalConvMDN(**FAST, random_state=0, verbose=2).fit(data * 1000.0)
    err = capsys.readouterr().err
    # init="auto" trains both starts, each under its own label: the kept one's last line.
    kept = "gmm" if model.anchor_ is not None else "random"
    assert "CausalConvMDN (gmm start)" in err and "CausalConvMDN (random start)" in err
    lines = [line for line in re.split(r"[\r\n]", err) if f"({kept} start)" in line]
    pattern = r"train nll=(\S+) nats/row, valid ll=(\S+) nats/row"
    shown = re.findall(pattern, "\n".join(lines))[-1]
    assert float(shown[0]) == pytest.approx(model.loss_curve_[-1], rel=1e-3)
    assert float(shown[1]) == pytest.approx(model.validation_scores_[-1], rel=1e-3)


def test_clone_and_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "module_")
    assert copy.set_params(n_components=4).n_components == 4


def test_constant_feature_is_handled():
    X = np.random.default_rng(0).normal(size=(100, 2))
    X[:, 1] = 7.0
    with pytest.warns(DegenerateDataWarning, match="X has column 1 constant"):
        model = CausalConvMDN(**FAST, random_state=0).fit(X)
    assert model.scale_[1] == 1.0
    assert np.isfinite(model.score_samples(X)).all()


def test_the_class_tree_says_which_models_have_a_density():
    from ldelib import GMM, GMMN, BaseDensityEstimator, BaseGenerativeModel
    from ldelib.peers import KernelDensityPeer

    for klass in (CausalConvMDN, GMM, KernelDensityPeer):
        assert issubclass(klass, BaseDensityEstimator)
        assert issubclass(klass, BaseGenerativeModel)
    assert issubclass(GMMN, BaseGenerativeModel)
    assert not issubclass(GMMN, BaseDensityEstimator)
    for name in ("score_samples", "log_prob", "score", "sample_and_log_prob", "prefix_columns"):
        assert hasattr(BaseDensityEstimator, name)
        assert not hasattr(GMMN(), name)
