from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import ldelib
from ldelib import GMMN
from ldelib._validation import InvalidParameterError
from ldelib.metrics import mmd2_unbiased, mmd_permutation_test
from ldelib.nn.mmd import median_pairwise_distance, mmd2

TINY = {"noise_dim": 3, "hidden_sizes": (16,), "batch_size": 32, "max_epochs": 3, "device": "cpu"}

_L = np.array([[1.0, 0.0], [1.5, 0.5]])


def gaussian(n: int, seed: int) -> np.ndarray:
    """A correlated, shifted 2-D Gaussian in units far from standard ones."""
    return np.random.default_rng(seed).normal(size=(n, 2)) @ _L.T * 3.0 + [10.0, -20.0]


@pytest.fixture(scope="module")
def trained():
    # Held-out MMD resolves differences of about (number of kernels) / n_valid, so early
    # stopping needs a validation part much larger than a few hundred rows.
    train = gaussian(5000, 0)
    model = GMMN(
        hidden_sizes=(32, 32),
        batch_size=256,
        max_epochs=30,
        validation_fraction=0.2,
        device="cpu",
        random_state=0,
    ).fit(train)
    return model, gaussian(500, 1)


@pytest.fixture(scope="module")
def tiny():
    return GMMN(**TINY, random_state=0).fit(gaussian(100, 2))


# ----------------------------------------------------------------- MMD building blocks


def test_torch_mmd_matches_the_numpy_metric():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.3
    bw = [0.5, 1.0, 2.0]
    got = mmd2(torch.tensor(x), torch.tensor(y), bw)
    assert float(got) == pytest.approx(mmd2_unbiased(x, y, bw), rel=1e-9, abs=1e-12)
    # The biased estimate adds the (positive) diagonal terms back; it is never negative.
    same = torch.tensor(rng.normal(size=(50, 3)))
    assert float(mmd2(same, same.flip(0), bw, unbiased=False)) >= 0.0
    assert float(mmd2(torch.tensor(x), torch.tensor(y), bw, unbiased=False)) > float(got)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(torch.zeros(1, 3), torch.zeros(5, 3), bw)


def test_median_pairwise_distance_matches_numpy():
    x = np.random.default_rng(0).normal(size=(51, 2))
    diffs = x[:, None] - x[None]
    dist = np.sqrt((diffs**2).sum(-1))[np.triu_indices(51, 1)]
    assert median_pairwise_distance(torch.tensor(x)) == pytest.approx(np.median(dist))
    assert median_pairwise_distance(torch.tensor(x[:50])) == pytest.approx(
        np.median(np.sqrt((diffs[:50, :50] ** 2).sum(-1))[np.triu_indices(50, 1)])
    )


def test_mmd_gradient_is_finite_for_coincident_rows():
    x = torch.zeros(4, 2, requires_grad=True)
    mmd2(x, torch.zeros(4, 2), [1.0]).backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------- training


def test_training_lowers_the_mmd(trained):
    model, _ = trained
    loss = model.loss_curve_
    assert np.mean(loss[-5:]) < 0.2 * np.mean(loss[:2])
    scores = model.validation_scores_
    assert model.n_iter_ == len(loss) == len(scores)
    assert model.best_validation_score_ == max(scores)
    assert model.best_validation_score_ > scores[0] + 0.1


def test_samples_pass_a_two_sample_test(trained):
    model, test = trained
    samples = model.sample(500, random_state=0)
    assert mmd_permutation_test(samples, test, random_state=0).p_value > 0.01
    # The test has power here: a slightly wrong sampler fails it.
    mean = samples.mean(axis=0)
    wider = mean + 1.5 * (samples - mean)
    shifted = samples + 0.5 * samples.std(axis=0)
    assert mmd_permutation_test(wider, test, random_state=0).p_value < 0.01
    assert mmd_permutation_test(shifted, test, random_state=0).p_value < 0.01


def test_default_bandwidths_follow_the_median_heuristic(tiny):
    assert tiny.bandwidths_.shape == (5,)
    np.testing.assert_allclose(tiny.bandwidths_ / tiny.bandwidths_[2], [0.25, 0.5, 1, 2, 4])
    explicit = GMMN(**TINY, bandwidths=[0.3, 3.0], random_state=0).fit(gaussian(100, 2))
    np.testing.assert_array_equal(explicit.bandwidths_, [0.3, 3.0])


def test_sqrt_loss_and_no_validation():
    model = GMMN(**TINY, sqrt_mmd=True, validation_fraction=0.0, random_state=0)
    model.fit(gaussian(100, 2))
    assert model.n_iter_ == TINY["max_epochs"]
    assert model.validation_scores_ == []
    assert model.best_validation_score_ is None
    assert all(v >= 0 for v in model.loss_curve_)


@pytest.mark.parametrize("noise", ["uniform", "normal"])
def test_noise_kinds(noise):
    model = GMMN(**TINY, noise=noise, random_state=0).fit(gaussian(100, 2))
    noise_draw = model._noise(1000, torch.Generator().manual_seed(0))
    assert noise_draw.shape == (1000, TINY["noise_dim"])
    if noise == "uniform":
        assert noise_draw.min() >= -1 and noise_draw.max() <= 1
    else:
        assert noise_draw.abs().max() > 1


def test_paper_architecture():
    X = gaussian(200, 3)
    model = GMMN(architecture="paper", max_epochs=2, device="cpu", random_state=0).fit(X)
    linears = [m for m in model.module_.modules() if isinstance(m, torch.nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(10, 64), (64, 256), (256, 256), (256, 784), (784, 2)]
    activations = [type(m).__name__ for m in model.module_.net]
    assert activations == ["Linear", "ReLU"] * 4 + ["Linear"]
    # N(0, 0.02) initialisation, barely moved by two small steps.
    assert np.std(linears[3].weight.detach().numpy()) == pytest.approx(0.02, rel=0.05)
    assert model.bandwidths_.shape == (1,)
    assert model.n_iter_ == 2
    assert all(np.isfinite(model.loss_curve_)) and all(v >= 0 for v in model.loss_curve_)
    assert model.sample(5).shape == (5, 2)


# ------------------------------------------------------------------- no density


@pytest.mark.parametrize("name", ["score_samples", "log_prob", "score", "sample_and_log_prob"])
def test_no_density_methods(tiny, name):
    for model in (GMMN(), tiny):
        assert not hasattr(model, name)
        with pytest.raises(AttributeError, match="parzen_log_likelihood"):
            getattr(model, name)
    with pytest.raises(AttributeError, match="no tractable density"):
        tiny.score_samples(gaussian(3, 0))


# -------------------------------------------------------------- randomness, params


def test_same_seed_same_samples(tiny):
    again = GMMN(**TINY, random_state=0).fit(gaussian(100, 2))
    np.testing.assert_array_equal(again.sample(7, random_state=3), tiny.sample(7, random_state=3))
    assert again.loss_curve_ == tiny.loss_curve_
    other = GMMN(**TINY, random_state=1).fit(gaussian(100, 2))
    assert not np.array_equal(other.sample(7, random_state=3), tiny.sample(7, random_state=3))


def test_sampling_stream():
    X = gaussian(100, 2)
    model = GMMN(**TINY, random_state=0).fit(X)
    first, second = model.sample(5), model.sample(5)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(model.sample(5, random_state=9), model.sample(5, random_state=9))
    # A per-call seed leaves the model's own stream alone.
    replay = GMMN(**TINY, random_state=0).fit(X)
    replay.sample(5, random_state=9)
    np.testing.assert_array_equal(replay.sample(5), first)


def test_global_random_state_is_untouched():
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    GMMN(**TINY).fit(gaussian(100, 2)).sample(10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(x, y) for x, y in zip(numpy_state, after, strict=True))


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("noise_dim", 0),
        ("noise", "cauchy"),
        ("hidden_sizes", (8, 0)),
        ("hidden_sizes", "64"),
        ("architecture", "dcgan"),
        ("bandwidths", [1.0, -1.0]),
        ("bandwidths", []),
        ("sqrt_mmd", "yes"),
        ("learning_rate", 0.0),
        ("batch_size", 1),
        ("max_epochs", 0),
        ("n_iter_no_change", 0),
        ("validation_fraction", 1.0),
        ("device", "tpu"),
        ("random_state", "seed"),
        ("noise_dim", np.float64(2.0)),
        ("hidden_sizes", np.array([[8, 8]])),
        ("bandwidths", [1.0, float("inf")]),
        ("learning_rate", "x"),
        ("max_time", 0),
        ("verbose", None),
    ],
)
def test_bad_parameters(param, value):
    with pytest.raises(ValueError, match=param):
        GMMN(**TINY).set_params(**{param: value}).fit(gaussian(20, 0))


@pytest.mark.parametrize(
    ("param", "value"), [("noise_dim", 3), ("noise", "normal"), ("hidden_sizes", (8, 8))]
)
def test_paper_architecture_refuses_what_it_ignores(param, value):
    model = GMMN(architecture="paper", max_epochs=1, device="cpu", **{param: value})
    with pytest.raises(InvalidParameterError, match=param) as info:
        model.fit(gaussian(20, 0))
    assert "architecture='paper', which ignores it" in str(info.value)


def test_numpy_parameters_fit_and_save(tmp_path):
    model = GMMN(
        noise_dim=np.int64(3),
        hidden_sizes=np.array([16, 8]),
        bandwidths=(np.float32(0.5), np.float64(2.0)),
        learning_rate=np.float32(1e-3),
        batch_size=np.int64(32),
        max_epochs=np.int32(2),
        n_iter_no_change=np.int64(5),
        validation_fraction=np.float64(0.2),
        sqrt_mmd=np.bool_(True),
        device="cpu",
        random_state=np.int64(0),
    ).fit(gaussian(100, 0))
    assert [m.out_features for m in model.module_.net if isinstance(m, torch.nn.Linear)] == [
        16,
        8,
        2,
    ]
    path = tmp_path / "gmmn.ldelib"
    model.save(path)
    np.testing.assert_array_equal(
        ldelib.load(path).sample(5, random_state=1), model.sample(5, random_state=1)
    )


def test_use_before_fit():
    with pytest.raises(NotFittedError):
        GMMN().sample(3)


def test_clone_keeps_params(tiny):
    copy = clone(tiny)
    assert copy.get_params() == tiny.get_params()
    assert not hasattr(copy, "module_")


# --------------------------------------------------------------------- persistence


def test_save_load_round_trip(tiny, tmp_path):
    path = tmp_path / "gmmn.ldelib"
    tiny.save(path)
    for loaded in (GMMN.load(path), ldelib.load(path)):
        assert isinstance(loaded, GMMN)
        assert loaded.get_params() == tiny.get_params()
        np.testing.assert_array_equal(loaded.bandwidths_, tiny.bandwidths_)
        assert loaded.loss_curve_ == tiny.loss_curve_
        np.testing.assert_array_equal(
            loaded.sample(20, random_state=4), tiny.sample(20, random_state=4)
        )


def test_pickle_round_trip(tiny):
    loaded = pickle.loads(pickle.dumps(tiny))
    np.testing.assert_array_equal(
        loaded.sample(20, random_state=4), tiny.sample(20, random_state=4)
    )
    assert not hasattr(loaded, "score_samples")


def test_verbose_shows_the_mmd_it_minimises_not_a_likelihood(capsys):
    model = GMMN(**TINY, random_state=0, verbose=2).fit(gaussian(200, 0))
    err = capsys.readouterr().err
    shown = re.findall(r"train mmd²=(\S+), valid mmd²=(\S+)\]", err)[-1]
    assert float(shown[1]) == pytest.approx(-model.validation_scores_[-1], rel=1e-3)
    assert "nats" not in err and " ll=" not in err
