"""IncrementalAutoencoder: training on the schedule, the ordering it produces, its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch import nn

from ldelib.incremental import IncrementalAutoencoder

D = 8


def test_plain_autoencoder_without_warmup(small, small_iae):
    iae = small_iae(warmup_epochs=0).fit(small)
    assert iae.n_warmup_epochs_ == 0
    assert iae.active_dims_curve_ == [D, D, D]


def test_warmup_not_finished_warns(small, small_iae):
    with pytest.warns(ConvergenceWarning, match="ended during the warm-up"):
        iae = small_iae(max_epochs=1).fit(small)
    assert iae.n_iter_ == 1
    assert iae.active_dims_curve_ == [4]


def test_early_stopping_ignores_the_warmup(digits, make_modules):
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
def test_same_seed_same_model_and_inputs_untouched(small, small_iae):
    iae = small_iae(validation_fraction=0.2, max_epochs=3)
    before = {k: v.clone() for k, v in iae.encoder.state_dict().items()}
    first = iae.fit(small).encode(small)
    assert all(torch.equal(v, iae.encoder.state_dict()[k]) for k, v in before.items())
    np.testing.assert_array_equal(iae.fit(small).encode(small), first)
    np.testing.assert_array_equal(clone(iae).fit(small).encode(small), first)
    other = iae.set_params(random_state=1).fit(small).encode(small)
    assert not np.array_equal(other, first)


def test_global_random_state_is_untouched(small, make_modules):
    # The modules first: making them seeds and draws from torch's global generator.
    encoder, decoder = make_modules(0, n_in=6, hidden=16)
    encoder.insert(1, nn.Dropout(0.2))  # draws from torch's global generator
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    IncrementalAutoencoder(
        encoder, decoder, D, warmup_epochs=1, max_epochs=2, device="cpu", random_state=None
    ).fit(small)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002 - the legacy global state is the point
    assert all(np.array_equal(x, y) for x, y in zip(numpy_state, after, strict=True))


# --------------------------------------------------------------- the paper's claim
def test_leading_dimensions_carry_more_information(digits, make_modules):
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


def test_use_before_fit(digits, tmp_path, make_modules):
    iae = IncrementalAutoencoder(*make_modules(0), D)
    for call in (
        lambda: iae.encode(digits[:2]),
        lambda: iae.decode(np.zeros((2, D))),
        lambda: iae.prefix_reconstruction_error(digits[:2]),
        lambda: iae.save(tmp_path / "m.ldelib"),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_custom_loss(small, small_iae):
    iae = small_iae(loss=lambda x_hat, x: (x_hat - x).abs().mean()).fit(small)
    assert all(np.isfinite(iae.loss_curve_))
    with pytest.raises(ValueError, match="scalar"):
        small_iae(loss=lambda x_hat, x: (x_hat - x).abs()).fit(small)


def test_non_finite_loss_is_reported(small, small_iae):
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
def test_bad_parameters(small, param, value, error, small_iae):
    with pytest.raises(error, match=param if param != "betas" else "betas"):
        small_iae(**{param: value}).fit(small)


def test_bad_modules_and_data(small, make_modules, small_iae):
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


def test_verbose_shows_progress(small, capsys, small_iae):
    small_iae(verbose=2, validation_fraction=0.2).fit(small)
    err = capsys.readouterr().err
    assert "warm-up" in err and "dims" in err and "IncrementalAutoencoder" in err
    assert "train mse=" in err and "valid mse=" in err  # the reconstruction error as it is
    small_iae(verbose=0).fit(small)
    assert capsys.readouterr().err == ""
