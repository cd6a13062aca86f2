"""Saving and loading an IncrementalAutoencoder."""

from __future__ import annotations

import numpy as np
import pytest

from ldelib.incremental import IncrementalAutoencoder

D = 8


# -------------------------------------------------------------------- save/load
def test_save_load_round_trip(fitted, digits, tmp_path, make_modules):
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


def test_load_needs_the_same_architecture(fitted, tmp_path, make_modules):
    path = tmp_path / "iae.ldelib"
    fitted.save(path)
    encoder, decoder = make_modules(0, hidden=32)
    with pytest.raises(ValueError, match="does not match"):
        IncrementalAutoencoder.load(path, encoder, decoder)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        IncrementalAutoencoder.load(path, lambda x: x, decoder)


def test_custom_loss_is_not_stored(small, tmp_path, make_modules, small_iae):
    def l1(x_hat, x):
        return (x_hat - x).abs().mean()

    path = tmp_path / "iae.ldelib"
    small_iae(loss=l1).fit(small).save(path)
    modules = make_modules(0, n_in=6, hidden=16)
    with pytest.warns(UserWarning, match="l1"):
        assert IncrementalAutoencoder.load(path, *modules).loss == "mse"
    assert IncrementalAutoencoder.load(path, *modules, loss=l1).loss is l1


def test_load_rejects_other_files(tmp_path, make_modules):
    from ldelib import GMM

    path = tmp_path / "gmm.ldelib"
    GMM(1).fit(np.random.default_rng(0).normal(size=(20, 2))).save(path)
    with pytest.raises(ValueError, match="not an IncrementalAutoencoder"):
        IncrementalAutoencoder.load(path, *make_modules(0))


def test_numpy_integer_seed_and_read_only_data_are_handled(
    small, tmp_path, make_modules, small_iae
):
    data = small.copy()
    data.setflags(write=False)
    iae = small_iae(random_state=np.int64(3)).fit(data)
    path = tmp_path / "iae.ldelib"
    iae.save(path)
    loaded = IncrementalAutoencoder.load(path, *make_modules(0, n_in=6, hidden=16))
    assert loaded.random_state == 3
    np.testing.assert_array_equal(loaded.encode(data), iae.encode(data))
