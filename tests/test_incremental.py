"""IncrementalAutoencoder: the schedule, the mask's gradients, the ordering it produces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch import nn

from ldelib.datasets import load_digits
from ldelib.incremental import IncrementalAutoencoder, active_dims

D = 8


def make_modules(seed: int = 0, n_in: int = 64, latent: int = D, hidden: int = 64):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, latent))
    decoder = nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_in), nn.Sigmoid()
    )
    return encoder, decoder


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits() / 16.0).astype(np.float32)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return np.random.default_rng(0).random((40, 6)).astype(np.float32)


def small_iae(**kwargs) -> IncrementalAutoencoder:
    encoder, decoder = make_modules(0, n_in=6, hidden=16)
    params = {
        "latent_dim": D,
        "warmup_epochs": 2,
        "batch_size": 10,
        "max_epochs": 3,
        "validation_fraction": 0.0,
        "device": "cpu",
        "random_state": 0,
    }
    params.update(kwargs)
    return IncrementalAutoencoder(encoder, decoder, **params)


@pytest.fixture(scope="module")
def fitted(digits) -> IncrementalAutoencoder:
    encoder, decoder = make_modules(0)
    return IncrementalAutoencoder(
        encoder, decoder, D, warmup_epochs=4, max_epochs=8, device="cpu", random_state=0
    ).fit(digits[:600])


# ----------------------------------------------------------------------- schedule
@pytest.mark.parametrize(
    ("epoch", "batch", "expected"),
    [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 5), (1, 3, 8), (2, 0, 8), (7, 2, 8)],
)
def test_schedule_at_chosen_iterations(epoch, batch, expected):
    assert active_dims(8, 2, epoch, batch, 4) == expected


def test_schedule_is_the_papers_formula():
    for latent, warmup, n in [(8, 2, 4), (16, 5, 7), (3, 10, 13), (100, 100, 430), (5, 1.5, 3)]:
        for epoch in range(int(warmup) + 3):
            for batch in range(n):
                paper = int(latent * (epoch + batch / n) / warmup + 1)
                assert active_dims(latent, warmup, epoch, batch, n) == min(latent, paper)


def test_schedule_without_warmup_and_monotone():
    assert active_dims(8, 0, 0, 0, 4) == 8
    steps = [active_dims(10, 3, e, b, 5) for e in range(5) for b in range(5)]
    assert steps[0] == 1
    assert steps == sorted(steps)
    assert steps[-1] == 10


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 2, 0, 0, 4), "latent_dim"),
        ((8, -1, 0, 0, 4), "warmup_epochs"),
        ((8, 2, -1, 0, 4), "epoch"),
        ((8, 2, 0, 4, 4), "batch"),
        ((8, 2, 0, 0, 0), "n_batches"),
    ],
)
def test_schedule_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        active_dims(*args)


# ------------------------------------------------------------------- the mask
def test_masked_dimensions_get_no_gradient(small):
    # 40 rows, batch_size=10, no validation: 4 iterations per epoch, so iteration i
    # is (epoch, batch) = divmod(i, 4) and its active prefix is known.
    iae = small_iae()
    grads: list[torch.Tensor] = []
    decoder_inputs: list[torch.Tensor] = []

    def on_latent(module, inputs, z):
        if z.requires_grad:
            z.register_hook(lambda g: grads.append(g.detach().clone()))

    def on_decoder_input(module, inputs):
        if torch.is_grad_enabled():
            decoder_inputs.append(inputs[0].detach().clone())

    # Hooks travel with the deep copies made at fit.
    iae.encoder.register_forward_hook(on_latent)
    iae.decoder.register_forward_pre_hook(on_decoder_input)
    iae.fit(small)
    assert len(grads) == len(decoder_inputs) == 12
    for i, (grad, z_in) in enumerate(zip(grads, decoder_inputs, strict=True)):
        k = active_dims(D, 2, *divmod(i, 4), 4)
        assert torch.all(grad[:, k:] == 0), f"iteration {i}: gradient reached masked dims"
        assert torch.all(grad[:, :k].abs().sum(0) > 0), f"iteration {i}: active dim unused"
        assert torch.all(z_in[:, k:] == 0)
        assert torch.all(z_in[:, :k] != 0)
    assert [active_dims(D, 2, *divmod(i, 4), 4) for i in (0, 2, 4, 8)] == [1, 3, 5, 8]


def test_history_follows_the_schedule(small):
    iae = small_iae(max_epochs=4).fit(small)
    assert iae.n_batches_ == 4
    assert iae.n_warmup_epochs_ == 2
    assert iae.active_dims_curve_ == [4, 8, 8, 8]
    assert iae.n_iter_ == len(iae.loss_curve_) == 4
    assert iae.validation_scores_ == []
    assert iae.best_validation_score_ is None
    assert iae.best_epoch_ == 3


def test_plain_autoencoder_without_warmup(small):
    iae = small_iae(warmup_epochs=0).fit(small)
    assert iae.n_warmup_epochs_ == 0
    assert iae.active_dims_curve_ == [D, D, D]


def test_warmup_not_finished_warns(small):
    with pytest.warns(ConvergenceWarning, match="ended during the warm-up"):
        iae = small_iae(max_epochs=1).fit(small)
    assert iae.n_iter_ == 1
    assert iae.active_dims_curve_ == [4]


def test_early_stopping_ignores_the_warmup(digits):
    # The warm-up is longer than n_iter_no_change, yet training goes past it and the
    # weights kept are from an epoch with every dimension active.
    encoder, decoder = make_modules(0)
    iae = IncrementalAutoencoder(
        encoder,
        decoder,
        D,
        warmup_epochs=4,
        max_epochs=12,
        n_iter_no_change=1,
        learning_rate=1e-2,
        device="cpu",
        random_state=0,
    ).fit(digits[:400])
    assert iae.n_warmup_epochs_ == 4
    assert iae.n_iter_ > iae.n_warmup_epochs_
    assert iae.best_epoch_ >= iae.n_warmup_epochs_
    assert len(iae.validation_scores_) == iae.n_iter_ == len(iae.loss_curve_)
    assert iae.best_validation_score_ == max(iae.validation_scores_[iae.n_warmup_epochs_ :])
    assert iae.n_iter_ - 1 - iae.best_epoch_ <= 1


# --------------------------------------------------------------- reproducibility
def test_same_seed_same_model_and_inputs_untouched(small):
    iae = small_iae(validation_fraction=0.2, max_epochs=3)
    before = {k: v.clone() for k, v in iae.encoder.state_dict().items()}
    first = iae.fit(small).encode(small)
    assert all(torch.equal(v, iae.encoder.state_dict()[k]) for k, v in before.items())
    np.testing.assert_array_equal(iae.fit(small).encode(small), first)
    np.testing.assert_array_equal(clone(iae).fit(small).encode(small), first)
    other = iae.set_params(random_state=1).fit(small).encode(small)
    assert not np.array_equal(other, first)


def test_global_random_state_is_untouched(small):
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    encoder, decoder = make_modules(0, n_in=6, hidden=16)
    encoder.insert(1, nn.Dropout(0.2))  # draws from torch's global generator
    IncrementalAutoencoder(
        encoder, decoder, D, warmup_epochs=1, max_epochs=2, device="cpu", random_state=None
    ).fit(small)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    assert all(np.array_equal(x, y) for x, y in zip(numpy_state, after, strict=True))


# --------------------------------------------------------------- the paper's claim
def test_leading_dimensions_carry_more_information(digits):
    # Same modules, seed and budget: the schedule is the only difference. Prefixes of
    # the incremental autoencoder reconstruct better (the paper's ordering claim).
    ks = [1, 2, 3, 4]
    for seed in (0, 1):
        errors = {}
        for warmup in (12, 0):
            encoder, decoder = make_modules(seed)
            iae = IncrementalAutoencoder(
                encoder,
                decoder,
                D,
                warmup_epochs=warmup,
                max_epochs=20,
                batch_size=64,
                n_iter_no_change=20,
                device="cpu",
                random_state=seed,
            ).fit(digits)
            errors[warmup] = iae.prefix_reconstruction_error(digits, ks)
        assert np.all(errors[12] < errors[0]), errors
        assert errors[12].mean() < 0.85 * errors[0].mean(), errors


def test_prefix_reconstruction_error(fitted, digits):
    X = digits[:200]
    errors = fitted.prefix_reconstruction_error(X)
    assert errors.shape == (D,)
    full = np.mean((fitted.decode(fitted.encode(X)) - X) ** 2)
    np.testing.assert_allclose(errors[-1], full, rtol=1e-6)
    zero = fitted.prefix_reconstruction_error(X, ks=[0])
    np.testing.assert_allclose(zero, np.mean((fitted.decode(np.zeros((1, D))) - X) ** 2))
    for ks in ([], [D + 1], [-1], [1.5]):
        with pytest.raises(ValueError, match="ks"):
            fitted.prefix_reconstruction_error(X, ks)


# --------------------------------------------------------------------- inference
def test_encode_decode_numpy_in_numpy_out(fitted, digits):
    Z = fitted.encode(digits[:5])
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float64 and Z.shape == (5, D)
    X_hat = fitted.decode(Z)
    assert X_hat.shape == (5, 64) and X_hat.dtype == np.float64
    np.testing.assert_allclose(fitted.encode(torch.from_numpy(digits[:5])), Z)
    np.testing.assert_allclose(fitted.encode(digits[:5].tolist()), Z, rtol=1e-6)
    assert not fitted.encoder_.training and not fitted.decoder_.training
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        fitted.decode(np.zeros((2, 3)))


def test_use_before_fit(digits, tmp_path):
    iae = IncrementalAutoencoder(*make_modules(0), D)
    for call in (
        lambda: iae.encode(digits[:2]),
        lambda: iae.decode(np.zeros((2, D))),
        lambda: iae.prefix_reconstruction_error(digits[:2]),
        lambda: iae.save(tmp_path / "m.ldelib"),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_custom_loss(small):
    iae = small_iae(loss=lambda x_hat, x: (x_hat - x).abs().mean()).fit(small)
    assert all(np.isfinite(iae.loss_curve_))
    with pytest.raises(ValueError, match="scalar"):
        small_iae(loss=lambda x_hat, x: (x_hat - x).abs()).fit(small)


def test_non_finite_loss_is_reported(small):
    def nan_loss(x_hat, x):
        return ((x_hat - x) ** 2).mean() * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 0 of the warm-up"):
        small_iae(loss=nan_loss).fit(small)


@pytest.mark.parametrize(
    ("param", "value", "error"),
    [
        ("encoder", lambda x: x, TypeError),
        ("latent_dim", 0, ValueError),
        ("warmup_epochs", -1, ValueError),
        ("loss", "l1", ValueError),
        ("learning_rate", 0.0, ValueError),
        ("betas", (0.5,), ValueError),
        ("batch_size", 0, ValueError),
        ("validation_fraction", 1.0, ValueError),
        ("device", "tpu", ValueError),
    ],
)
def test_bad_parameters(small, param, value, error):
    with pytest.raises(error, match=param if param != "betas" else "betas"):
        small_iae(**{param: value}).fit(small)


def test_bad_modules_and_data(small):
    with pytest.raises(ValueError, match=r"\(batch, latent_dim\) = \(10, 4\)"):
        small_iae(latent_dim=4).fit(small)
    encoder, _ = make_modules(0, n_in=6, hidden=16)
    bad_decoder = nn.Linear(D, 5)
    with pytest.raises(ValueError, match="input's shape"):
        IncrementalAutoencoder(encoder, bad_decoder, D, device="cpu").fit(small)
    with pytest.raises(ValueError, match="NaN"):
        small_iae().fit(np.full((10, 6), np.nan))
    with pytest.raises(ValueError, match="at least 2"):
        small_iae(validation_fraction=0.1).fit(small[:1])


def test_verbose_shows_progress(small, capsys):
    small_iae(verbose=2, validation_fraction=0.2).fit(small)
    err = capsys.readouterr().err
    assert "warm-up" in err and "dims" in err and "IncrementalAutoencoder" in err
    small_iae(verbose=0).fit(small)
    assert capsys.readouterr().err == ""


# -------------------------------------------------------------------- save/load
def test_save_load_round_trip(fitted, digits, tmp_path):
    path = tmp_path / "iae.ldelib"
    fitted.save(path)
    loaded = IncrementalAutoencoder.load(path, *make_modules(seed=123))
    np.testing.assert_array_equal(loaded.encode(digits[:50]), fitted.encode(digits[:50]))
    Z = fitted.encode(digits[:5])
    np.testing.assert_array_equal(loaded.decode(Z), fitted.decode(Z))
    assert loaded.get_params(deep=False).keys() == fitted.get_params(deep=False).keys()
    for name in ("latent_dim", "warmup_epochs", "betas", "learning_rate", "random_state"):
        assert getattr(loaded, name) == getattr(fitted, name)
    for name in ("loss_curve_", "validation_scores_", "active_dims_curve_", "n_iter_"):
        assert getattr(loaded, name) == getattr(fitted, name)
    assert loaded.input_shape_ == fitted.input_shape_ == (64,)
    assert not loaded.encoder_.training


def test_load_needs_the_same_architecture(fitted, tmp_path):
    path = tmp_path / "iae.ldelib"
    fitted.save(path)
    encoder, decoder = make_modules(0, hidden=32)
    with pytest.raises(ValueError, match="does not match"):
        IncrementalAutoencoder.load(path, encoder, decoder)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        IncrementalAutoencoder.load(path, lambda x: x, decoder)


def test_custom_loss_is_not_stored(small, tmp_path):
    def l1(x_hat, x):
        return (x_hat - x).abs().mean()

    path = tmp_path / "iae.ldelib"
    small_iae(loss=l1).fit(small).save(path)
    modules = make_modules(0, n_in=6, hidden=16)
    with pytest.warns(UserWarning, match="l1"):
        assert IncrementalAutoencoder.load(path, *modules).loss == "mse"
    assert IncrementalAutoencoder.load(path, *modules, loss=l1).loss is l1


def test_load_rejects_other_files(tmp_path):
    from ldelib import GMM

    path = tmp_path / "gmm.ldelib"
    GMM(1).fit(np.random.default_rng(0).normal(size=(20, 2))).save(path)
    with pytest.raises(ValueError, match="not an IncrementalAutoencoder"):
        IncrementalAutoencoder.load(path, *make_modules(0))


def test_numpy_integer_seed_and_read_only_data_are_handled(small, tmp_path):
    data = small.copy()
    data.setflags(write=False)
    iae = small_iae(random_state=np.int64(3)).fit(data)
    path = tmp_path / "iae.ldelib"
    iae.save(path)
    loaded = IncrementalAutoencoder.load(path, *make_modules(0, n_in=6, hidden=16))
    assert loaded.random_state == 3
    np.testing.assert_array_equal(loaded.encode(data), iae.encode(data))
