"""LatentDensityEstimator: encoder/decoder plug-in around a density model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from ldelib import GMM, GMMN, CausalConvMDN
from ldelib.datasets import load_digits
from ldelib.incremental import IncrementalAutoencoder
from ldelib.latent import LatentDensityEstimator
from ldelib.models import make_model

D = 4
MDN = {"n_components": 2, "hidden_channels": 8, "max_epochs": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits()[:300] / 16.0).astype(np.float32)


def make_modules(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, D))
    decoder = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 64), nn.Sigmoid())
    return encoder, decoder


@pytest.fixture(scope="module")
def modules() -> tuple[nn.Module, nn.Module]:
    return make_modules(0)


@pytest.fixture(scope="module")
def fitted(modules, digits) -> LatentDensityEstimator:
    encoder, decoder = modules
    return LatentDensityEstimator(
        GMM(2, random_state=0), encoder=encoder, decoder=decoder, batch_size=64
    ).fit(digits)


class Autoencoder(nn.Module):
    """A module whose bound methods serve as encoder and decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = make_modules(0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


def _error_bound(layers, x, dtype=np.float32) -> np.ndarray:
    """Componentwise bound on the rounding error of a forward pass through ``layers``.

    Higham's bound: a dot product of n terms, summed in any order (any BLAS blocking, any
    batch composition), is within gamma_n = n u / (1 - n u) of the exact one relative to
    the sum of the terms' magnitudes; the input's cast rounds once, tanh and the sigmoid
    are 1- and 1/4-Lipschitz and round once more. Two evaluations of one input, batched
    differently, differ by at most twice this bound.
    """
    u = np.finfo(dtype).eps / 2
    h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    err = u * np.abs(h)
    for layer in layers:
        if isinstance(layer, nn.Linear):
            W = np.abs(layer.weight.detach().double().numpy())
            b = 0.0 if layer.bias is None else layer.bias.detach().double().numpy()
            n = W.shape[1] + (layer.bias is not None)
            gamma = n * u / (1 - n * u)
            err = err @ W.T + gamma * (np.abs(h) @ W.T + np.abs(b))
            h = h @ layer.weight.detach().double().numpy().T + b
        elif isinstance(layer, nn.BatchNorm1d):
            # Eval mode, (h - mean) * weight / sqrt(var + eps) + bias: six roundings at most.
            scale = (layer.weight / torch.sqrt(layer.running_var + layer.eps)).detach()
            scale, mean = scale.double().numpy(), layer.running_mean.double().numpy()
            shift = layer.bias.detach().double().numpy()
            gamma = 6 * u / (1 - 6 * u)
            magnitude = (np.abs(h) + np.abs(mean)) * np.abs(scale) + np.abs(shift)
            err = err * np.abs(scale) + gamma * magnitude
            h = (h - mean) * scale + shift
        elif isinstance(layer, nn.Tanh):
            h = np.tanh(h)
            err = err + u * np.abs(h)
        elif isinstance(layer, nn.Sigmoid):
            h = 1 / (1 + np.exp(-h))
            err = err / 4 + u * np.abs(h)
        elif not isinstance(layer, nn.Dropout):  # dropout: the identity in eval mode
            raise TypeError(f"no rounding bound for {layer}")
    return err


# --------------------------------------------------------------- the callables
NUMPY_W = np.random.default_rng(0).normal(size=(64, D)) / 8


def numpy_encoder_and_decoder():
    W = NUMPY_W

    def encode(x: np.ndarray) -> np.ndarray:
        assert isinstance(x, np.ndarray)
        return np.tanh(x @ W)

    return encode, lambda z: np.asarray(z) @ W.T


@pytest.mark.numerics
@pytest.mark.parametrize("kind", ["module", "bound_method", "numpy_function", "lambda"])
def test_every_kind_of_callable_is_batched_correctly(digits, kind):
    if kind == "module":
        encoder, decoder = make_modules(0)
    elif kind == "bound_method":
        ae = Autoencoder()
        encoder, decoder = ae.encode, ae.decode
    elif kind == "numpy_function":
        encoder, decoder = numpy_encoder_and_decoder()
    else:
        module_encoder, module_decoder = make_modules(0)
        encoder = lambda x: module_encoder(torch.as_tensor(x, dtype=torch.float32))
        decoder = lambda z: module_decoder(torch.as_tensor(z, dtype=torch.float32)).numpy()

    small = LatentDensityEstimator("gmm", encoder=encoder, decoder=decoder, batch_size=7)
    whole = LatentDensityEstimator("gmm", encoder=encoder, decoder=decoder, batch_size=10_000)
    calls = []
    if kind in ("module", "bound_method"):
        first = encoder[0] if kind == "module" else encoder.__self__.enc[0]
        hook = first.register_forward_pre_hook(lambda m, inputs: calls.append(len(inputs[0])))
    else:
        small.set_params(encoder=lambda x: calls.append(len(x)) or encoder(x))
    Z = small.encode(digits[:30])
    assert calls == [7, 7, 7, 7, 2]
    if kind in ("module", "bound_method"):
        hook.remove()
    assert Z.shape == (30, D) and Z.dtype == np.float64
    # Batches of 7 and of 30 block the products differently: equal up to rounding.
    if kind == "numpy_function":  # float64: tanh(x W) and z W^T
        encoding, decoding = nn.Linear(64, D, bias=False), nn.Linear(D, 64, bias=False)
        encoding.weight.data = torch.from_numpy(NUMPY_W.T)
        decoding.weight.data = torch.from_numpy(NUMPY_W)
        layers, dtype = ([encoding, nn.Tanh()], [decoding]), np.float64
    else:
        layers, dtype = make_modules(0), np.float32
    assert np.all(
        np.abs(Z - whole.encode(digits[:30])) <= 2 * _error_bound(layers[0], digits[:30], dtype)
    )
    X_hat = small.decode(Z)
    assert X_hat.shape == (30, 64) and X_hat.dtype == np.float64
    assert np.all(np.abs(X_hat - whole.decode(Z)) <= 2 * _error_bound(layers[1], Z, dtype))
    np.testing.assert_array_equal(small.reconstruct(digits[:30]), X_hat)  # the same batches


def test_tensor_inputs(digits, modules):
    lde = LatentDensityEstimator("gmm", encoder=modules[0], batch_size=16)
    X = torch.from_numpy(digits[:20])
    np.testing.assert_allclose(lde.encode(X), lde.encode(digits[:20]))
    encode, _ = numpy_encoder_and_decoder()
    np.testing.assert_allclose(
        LatentDensityEstimator("gmm", encoder=encode).encode(X), encode(digits[:20])
    )


@pytest.mark.numerics
def test_module_runs_in_eval_mode_and_modes_are_restored(digits):
    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, D)
    )
    encoder.train()
    encoder[2].eval()  # mixed modes must come back as they were
    modes = [m.training for m in encoder.modules()]
    Z = LatentDensityEstimator("gmm", encoder=encoder, batch_size=5).encode(digits[:12])
    assert [m.training for m in encoder.modules()] == modes
    encoder.eval()
    with torch.no_grad():
        expected = encoder(torch.from_numpy(digits[:12])).numpy()
    # Batches of 5 against one of 12: equal up to the rounding of either blocking.
    assert np.all(np.abs(Z - expected) <= 2 * _error_bound(encoder, digits[:12]))


def test_module_input_follows_its_dtype(digits):
    torch.manual_seed(0)
    encoder = nn.Linear(64, D).double()
    Z = LatentDensityEstimator("gmm", encoder=encoder).encode(digits[:3].astype(np.uint8))
    assert Z.shape == (3, D)


def test_images_of_any_shape(digits):
    images = digits.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, D))
    decoder = nn.Sequential(nn.Linear(D, 64), nn.Unflatten(1, (1, 8, 8)))
    lde = LatentDensityEstimator(GMM(2, random_state=0), encoder, decoder).fit(images)
    assert lde.input_shape_ == (1, 8, 8) and lde.latent_dim_ == D
    assert lde.sample(3, random_state=0).shape == (3, 1, 8, 8)
    path, log_prob = lde.interpolate(images[0], images[1:2], steps=5)
    assert path.shape == (5, 1, 8, 8) and log_prob.shape == (5,)


# --------------------------------------------------------------------- errors
def test_decoding_without_a_decoder(digits, modules):
    lde = LatentDensityEstimator(GMM(2, random_state=0), encoder=modules[0]).fit(digits)
    for call in (
        lambda: lde.decode(np.zeros((2, D))),
        lambda: lde.sample(2, decode=True),
        lambda: lde.reconstruct(digits[:2]),
        lambda: lde.interpolate(digits[0], digits[1], decode=True),
    ):
        with pytest.raises(ValueError, match="no decoder"):
            call()
    # decode="auto" (the default) returns latents when there is nothing to decode with.
    for decode in ("auto", False):
        assert lde.sample(2, decode=decode).shape == (2, D)
        assert lde.interpolate(digits[0], digits[1], decode=decode)[0].shape == (8, D)
    with pytest.raises(ValueError, match='decode must be True, False or "auto"'):
        lde.sample(2, decode="yes")


def test_zero_samples_have_the_decoders_shape(fitted):
    images = fitted.sample(0, random_state=0)
    assert images.shape == (0, *fitted.sample(1, random_state=0).shape[1:])
    assert fitted.sample(0, decode=False).shape == (0, fitted.latent_dim_)


def test_auto_decoding_follows_the_decoder(digits, modules):
    lde = LatentDensityEstimator(GMM(2, random_state=0), *modules).fit(digits)
    np.testing.assert_array_equal(
        lde.sample(3, random_state=1), lde.decode(lde.sample(3, decode=False, random_state=1))
    )
    assert lde.interpolate(digits[0], digits[1], steps=3)[0].shape == (3, *digits.shape[1:])


def test_latents_without_an_encoder_sample_as_latents():
    Z = np.random.default_rng(0).normal(size=(200, 3))
    lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(Z)
    assert lde.sample(7).shape == (7, 3)
    path, log_prob = lde.interpolate(Z[0], Z[1], steps=4)
    np.testing.assert_allclose(path[[0, -1]], Z[:2])
    np.testing.assert_allclose(log_prob, lde.log_prob(path))


@pytest.mark.parametrize("density", ["gmm", "mdn"])
def test_log_prob_of_a_tensor_is_a_differentiable_tensor(digits, modules, density):
    """Through the density and a torch encoder back to the input, as the models do."""
    params = {"max_epochs": 1} if density == "mdn" else {}
    model = make_model(density, random_state=0, **params)
    lde = LatentDensityEstimator(model, *modules).fit(digits)
    x = torch.tensor(digits[:5], dtype=torch.float32, requires_grad=True)
    log_prob = lde.log_prob(x)
    assert isinstance(log_prob, torch.Tensor)
    assert log_prob.shape == (5,) and log_prob.dtype == torch.float32
    np.testing.assert_allclose(
        log_prob.detach().numpy(), lde.log_prob(digits[:5]), rtol=1e-4, atol=1e-4
    )
    log_prob.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert isinstance(lde.score_samples(x), torch.Tensor)
    assert isinstance(lde.score(x), float)


def test_log_prob_of_a_tensor_without_an_encoder():
    Z = np.random.default_rng(0).normal(size=(200, 3))
    lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(Z)
    z = torch.tensor(Z[:4], requires_grad=True)
    log_prob = lde.log_prob(z)
    np.testing.assert_allclose(log_prob.detach().numpy(), lde.log_prob(Z[:4]))
    log_prob.sum().backward()
    assert z.grad is not None and z.grad.shape == (4, 3)
    with pytest.raises(ValueError, match="fitted on 3"):
        lde.log_prob(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"shape \(n_samples, D\)"):
        lde.log_prob(torch.zeros(2, 3, 1))


def test_encoder_output_must_be_2d(digits):
    lde = LatentDensityEstimator("gmm", encoder=lambda x: np.zeros((len(x), D, 1, 1)))
    with pytest.raises(ValueError, match=r"shape \(10, 4, 1, 1\).*\(batch, D\)"):
        lde.fit(digits[:10])
    lde.set_params(encoder=lambda x: np.zeros(len(x)))
    with pytest.raises(ValueError, match=r"shape \(10,\).*2-D"):
        lde.encode(digits[:10])
    lde.set_params(encoder=lambda x: np.zeros((3, D)))
    with pytest.raises(ValueError, match="one entry per input row"):
        lde.encode(digits[:10])
    lde.set_params(encoder=lambda x: (torch.zeros(len(x), D), torch.zeros(len(x), D)))
    with pytest.raises(TypeError, match="tuple of 2 items"):
        lde.encode(digits[:10])
    lde.set_params(encoder=lambda x: np.full((len(x), D), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        lde.encode(digits[:10])
    lde.set_params(encoder=lambda x: np.zeros((len(x), 1 + (x[0, 0] > 0))), batch_size=10)
    with pytest.raises(ValueError, match="same D"):
        lde.encode(np.concatenate([np.zeros((10, 64)), np.ones((10, 64))]))


def test_a_failing_batch_is_named(digits):
    class Boom(Exception):
        pass

    def encoder(x):
        if (x[:, 0] > 100).any():
            raise Boom("bad pixel")
        return x[:, :D]

    X = np.zeros((35, 64))
    X[22, 0] = 101.0  # in batch 2 (rows 20:30)
    lde = LatentDensityEstimator("gmm", encoder=encoder, batch_size=10)
    with pytest.raises(
        RuntimeError, match=r"batch 2 \(rows 20:30 of 35\).*Boom: bad pixel"
    ) as info:
        lde.encode(X)
    assert isinstance(info.value.__cause__, Boom)
    torch.manual_seed(0)
    lde.set_params(encoder=nn.Linear(3, D))
    with pytest.raises(RuntimeError, match=r"batch 0 \(rows 0:10 of 35\)") as info:
        lde.encode(X)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_gmmn_has_no_log_likelihood(digits, modules):
    gmmn = GMMN(hidden_sizes=(16,), max_epochs=2, device="cpu", random_state=0)
    lde = LatentDensityEstimator(gmmn, encoder=modules[0], decoder=modules[1]).fit(digits)
    for name in ("log_prob", "score_samples", "score"):
        with pytest.raises(AttributeError, match=f"{name}.*parzen_log_likelihood"):
            getattr(lde, name)(digits[:3])
    with pytest.raises(AttributeError, match="Parzen"):
        lde.interpolate(digits[0], digits[1])
    with pytest.raises(TypeError, match="no conditionals"):
        lde.vary(digits[0], keep=2)
    assert lde.sample(3).shape == (3, 64)
    assert lde.sample(3, decode=False).shape == (3, D)


def test_use_before_fit(digits, modules):
    lde = LatentDensityEstimator(GMM(2), *modules)
    for call in (
        lambda: lde.log_prob(digits[:2]),
        lambda: lde.score_samples(digits[:2]),
        lambda: lde.score(digits[:2]),
        lambda: lde.sample(2),
        lambda: lde.interpolate(digits[0], digits[1]),
    ):
        with pytest.raises(NotFittedError):
            call()
    assert lde.encode(digits[:2]).shape == (2, D)  # encoding needs no fit


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"density": "flow"}, ValueError, "'gmm'"),
        ({"density": object()}, TypeError, "density"),
        ({"density": "gmm", "encoder": 3}, TypeError, "callable"),
        ({"density": "gmm", "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_parameters(digits, params, error, match):
    with pytest.raises(error, match=match):
        LatentDensityEstimator(**params).fit(digits[:20, :3])


def test_bad_inputs(fitted, digits):
    with pytest.raises(ValueError, match="at least one row"):
        fitted.encode(np.zeros((0, 64)))
    with pytest.raises(ValueError, match="latents of shape"):
        LatentDensityEstimator("gmm").fit(digits.reshape(-1, 8, 8))
    with pytest.raises(ValueError, match=r"one input of shape \(64,\)"):
        fitted.interpolate(digits[:2], digits[2])
    with pytest.raises(ValueError, match="steps"):
        fitted.interpolate(digits[0], digits[1], steps=1)
    with pytest.raises(ValueError, match="fitted on 4"):
        fitted.decode(np.zeros((2, 3)))


# ------------------------------------------------------------- the estimator
def test_sklearn_parameters_and_clone(fitted, modules):
    density = GMM(2, random_state=0)
    lde = LatentDensityEstimator(density, encoder=modules[0])
    params = lde.get_params()
    assert params["density__n_components"] == 2
    assert params["batch_size"] == 256 and params["decoder"] is None
    assert lde.set_params(density__n_components=3).density.n_components == 3
    copy = clone(fitted)
    assert not hasattr(copy, "density_")
    assert copy.density.get_params() == fitted.density.get_params()


def test_the_density_passed_is_not_fitted(fitted):
    assert fitted.density_ is not fitted.density
    assert not hasattr(fitted.density, "weights_")
    assert hasattr(fitted.density_, "weights_")


@pytest.mark.parametrize("density", [GMM(2, random_state=0), CausalConvMDN(**MDN, random_state=0)])
def test_log_prob_is_the_latent_log_likelihood(digits, modules, density):
    lde = LatentDensityEstimator(density, *modules, batch_size=50).fit(digits)
    Z = lde.encode(digits)
    log_prob = lde.log_prob(digits)
    assert log_prob.shape == (len(digits),) and log_prob.dtype == np.float64
    np.testing.assert_allclose(log_prob, lde.density_.score_samples(Z))
    np.testing.assert_array_equal(lde.score_samples(digits), log_prob)
    assert lde.score(digits) == pytest.approx(log_prob.mean())
    assert lde.sample(6).shape == (6, 64)
    assert lde.sample(6, decode=False).shape == (6, D)
    np.testing.assert_array_equal(
        lde.sample(4, decode=False, random_state=1), lde.density_.sample(4, random_state=1)
    )
    np.testing.assert_allclose(
        lde.sample(4, random_state=1), lde.decode(lde.sample(4, decode=False, random_state=1))
    )


@pytest.mark.numerics
def test_interpolation_path(fitted, digits):
    x_a, x_b = digits[3], digits[10]
    Z, log_prob = fitted.interpolate(x_a, x_b, steps=6, decode=False)
    assert Z.shape == (6, D) and log_prob.shape == (6,)
    np.testing.assert_array_equal(Z[0], fitted.encode(x_a[None])[0])
    np.testing.assert_array_equal(Z[-1], fitted.encode(x_b[None])[0])
    np.testing.assert_allclose(np.diff(Z, axis=0), np.diff(Z, axis=0)[:1].repeat(5, 0), atol=1e-12)
    # The end points were encoded one at a time, log_prob encodes them as a batch of two:
    # their float32 latents differ by rounding, at most 2 * bound, which moves the float64
    # log density by at most |gradient| . (2 * bound), to first order (its own float64
    # rounding is some nine orders of magnitude smaller).
    ends = np.stack([x_a, x_b])
    bound = 2 * _error_bound(fitted.encoder, ends)
    z = torch.tensor(Z[[0, -1]], requires_grad=True)
    fitted.density_.log_prob(z).sum().backward()
    moved = (z.grad.abs().numpy() * bound).sum(axis=1)
    assert np.all(np.abs(fitted.encode(ends) - Z[[0, -1]]) <= bound)
    assert np.all(np.abs(log_prob[[0, -1]] - fitted.log_prob(ends)) <= moved)
    path, log_prob_again = fitted.interpolate(x_a, x_b, steps=6)
    np.testing.assert_array_equal(log_prob_again, log_prob)
    assert path.shape == (6, 64)
    layers = [*fitted.encoder, *fitted.decoder]
    assert np.all(
        np.abs(path[[0, -1]] - fitted.reconstruct(ends)) <= 2 * _error_bound(layers, ends)
    )


def test_without_an_encoder_it_works_on_latents():
    Z = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 3.0, 0.2]
    lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(Z)
    direct = GMM(2, random_state=0).fit(Z)
    np.testing.assert_array_equal(lde.log_prob(Z), direct.score_samples(Z))
    np.testing.assert_array_equal(lde.encode(Z), Z)
    assert lde.sample(5, decode=False).shape == (5, 3)
    assert lde.input_shape_ == (3,)


def test_short_names_give_default_models():
    lde = LatentDensityEstimator("GMM").fit(np.random.default_rng(0).normal(size=(100, 2)))
    assert type(lde.density_) is GMM
    assert lde.density_.get_params() == GMM().get_params()


def test_with_an_incremental_autoencoder(digits):
    encoder, decoder = make_modules(0)
    iae = IncrementalAutoencoder(
        encoder, decoder, D, warmup_epochs=1, max_epochs=2, device="cpu", random_state=0
    ).fit(digits)
    lde = LatentDensityEstimator(
        GMM(2, random_state=0), encoder=iae.encode, decoder=iae.decode
    ).fit(digits)
    np.testing.assert_allclose(lde.encode(digits), iae.encode(digits))
    assert lde.sample(3).shape == (3, 64)


# ------------------------------------------------- prefixes and variations
@pytest.mark.parametrize("density", ["gmm", "mdn"])
def test_prefix_log_prob_is_the_densitys_marginal(digits, modules, density):
    params = {"max_epochs": 1} if density == "mdn" else {}
    lde = LatentDensityEstimator(make_model(density, random_state=0, **params), *modules)
    lde.fit(digits)
    Z = lde.encode(digits[:20])
    for k in (1, 2, D):
        np.testing.assert_allclose(
            lde.log_prob(digits[:20], n_dims=k), lde.density_.log_prob(Z, n_dims=k)
        )
        np.testing.assert_allclose(
            lde.score_samples(digits[:20], n_dims=k), lde.log_prob(digits[:20], n_dims=k)
        )
    assert isinstance(lde.log_prob(torch.tensor(digits[:3]), n_dims=2), torch.Tensor)


def test_variations_keep_the_first_latents(fitted, digits):
    z = fitted.encode(digits[:1])[0]
    for keep in (0, 1, 2, D):
        Z = fitted.vary(digits[0], keep=keep, n_samples=6, decode=False, random_state=0)
        assert Z.shape == (6, D)
        np.testing.assert_array_equal(Z[:, :keep], np.broadcast_to(z[:keep], (6, keep)))
        if keep < D:
            assert np.ptp(Z[:, keep:], axis=0).min() > 0  # the rest is redrawn per sample
    np.testing.assert_array_equal(
        fitted.vary(digits[0], keep=0, n_samples=4, random_state=1),
        fitted.sample(4, random_state=1),
    )
    decoded = fitted.vary(digits[0], keep=2, n_samples=3, random_state=0)
    assert decoded.shape == (3, 64)
    np.testing.assert_allclose(
        fitted.vary(digits[0], keep=D, n_samples=2),
        fitted.reconstruct(digits[:1]).repeat(2, 0),
        atol=1e-6,  # a float32 decoder, fed the latents through a float64 round trip
    )


@pytest.mark.parametrize(
    ("keep", "match"), [(-1, "from 0 to 4"), (D + 1, "from 0 to 4"), (1.5, "integer")]
)
def test_bad_variations(fitted, digits, keep, match):
    with pytest.raises(ValueError, match=match):
        fitted.vary(digits[0], keep=keep)
    with pytest.raises(ValueError, match="one input of shape"):
        fitted.vary(digits[:2], keep=1)


# ---------------------------------------------------------------- conditional
def _classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 4)) + 4 * np.eye(4)[y], y


def _doubling_lde(density) -> LatentDensityEstimator:
    # Latents are half the inputs: the decoder must be used for samples to look like X.
    return LatentDensityEstimator(density, encoder=lambda x: x / 2, decoder=lambda z: 2 * z)


def test_a_conditional_density_draws_decodes_and_classifies_by_label():
    X, y = _classes(900, 0)
    lde = _doubling_lde(GMM(1, conditional=True, random_state=0)).fit(X, y)
    drawn = lde.sample(200, y=2, random_state=0)
    np.testing.assert_allclose(drawn.mean(0), 4 * np.eye(4)[2], atol=0.3)
    assert (lde.predict(drawn) == 2).all()
    X_test, y_test = _classes(300, 1)
    assert (lde.predict(X_test) == y_test).mean() > 0.95
    np.testing.assert_allclose(lde.predict_proba(X_test).sum(1), 1.0)
    # Scores are of the latents, given the labels.
    np.testing.assert_array_equal(
        lde.score_samples(X_test, y_test), lde.density_.score_samples(X_test / 2, y_test)
    )
    assert lde.score(X_test, y_test) == pytest.approx(lde.log_prob(X_test, y_test).mean())
    varied = lde.vary(X_test[0], keep=2, n_samples=5, y=1, random_state=0)
    np.testing.assert_array_equal(varied[:, :2], np.repeat(X_test[:1, :2], 5, axis=0))
    _, path_log_prob = lde.interpolate(X_test[0], X_test[1], steps=4, y=0)
    np.testing.assert_allclose(path_log_prob[0], lde.log_prob(X_test[:1], [0])[0])
    with pytest.raises(ValueError, match="pass y"):
        lde.sample(3)


def test_a_conditional_density_on_a_context_through_the_estimator():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(800, 1))
    X = np.c_[2 * c, rng.normal(size=(800, 1))]
    lde = _doubling_lde(GMM(1, conditional=True, random_state=0)).fit(X, c)
    drawn = lde.sample(400, y=[1.0], random_state=0)
    assert drawn[:, 0].mean() == pytest.approx(2.0, abs=0.1)
    plain = LatentDensityEstimator(GMM(1, conditional=True, random_state=0)).fit(X, c)
    t = torch.tensor(X[:4], requires_grad=True)
    plain.log_prob(t, torch.as_tensor(c[:4])).sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_an_unconditional_density_has_no_classifier_and_refuses_y():
    X, y = _classes(300, 0)
    lde = _doubling_lde(GMM(1, random_state=0)).fit(X, y)  # y ignored, as scikit-learn's
    assert not hasattr(lde, "predict_proba")
    assert lde.score(X, y) == lde.score(X)
    with pytest.raises(ValueError, match="fitted without y"):
        lde.log_prob(X, y)
    with pytest.raises(ValueError, match="fitted without y"):
        lde.sample(2, y=1)


def test_a_named_density_fitted_with_y_is_conditional():
    X, y = _classes(600, 0)
    lde = LatentDensityEstimator("gmm").fit(X, y)
    assert lde.density_.conditional and lde.density_.classes_.tolist() == [0, 1, 2]
    assert (lde.predict(X) == y).mean() > 0.9
    assert not LatentDensityEstimator("gmm").fit(X).density_.conditional
    with pytest.raises(ValueError, match="density='gmmn' cannot be fitted given y"):
        LatentDensityEstimator("gmmn").fit(X, y)
