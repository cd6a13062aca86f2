"""The reference convolutional autoencoder (the authors' design)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ldelib.autoencoders import ConvDecoder, ConvEncoder, make_conv_autoencoder
from ldelib.datasets import load_digits
from ldelib.incremental import IncrementalAutoencoder


@pytest.mark.parametrize("image_size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(image_size, channels):
    torch.manual_seed(0)
    encoder, decoder = make_conv_autoencoder(image_size, channels, latent_dim=5, width=8)
    x = torch.rand(2, channels, image_size, image_size)
    z = encoder(x)
    assert z.shape == (2, 5)
    x_hat = decoder(z)
    assert x_hat.shape == x.shape
    assert x_hat.min() >= 0 and x_hat.max() <= 1


@pytest.mark.parametrize(
    ("image_size", "n_strided", "kernel"), [(28, 2, 7), (32, 3, 4), (64, 4, 4), (8, 1, 4)]
)
def test_layers_follow_the_papers_design(image_size, n_strided, kernel):
    encoder = ConvEncoder(image_size, 3, latent_dim=10, width=16)
    convs = [m for m in encoder.net if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_strided + 1
    for conv in convs[:-1]:
        assert (conv.kernel_size, conv.stride, conv.padding) == ((4, 4), (2, 2), (1, 1))
    last = convs[-1]
    assert (last.kernel_size, last.stride, last.padding) == ((kernel, kernel), (1, 1), (0, 0))
    assert [c.out_channels for c in convs] == [16 * 2**i for i in range(n_strided)] + [10]
    # BatchNorm after every strided conv but the first; LeakyReLU(0.2); linear latent.
    layers = list(encoder.net)
    assert isinstance(layers[1], nn.LeakyReLU) and layers[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == n_strided - 1
    assert layers[-1] is last

    decoder = ConvDecoder(image_size, 3, latent_dim=10, width=16, output="tanh")
    deconvs = [m for m in decoder.net if isinstance(m, nn.ConvTranspose2d)]
    assert [d.in_channels for d in deconvs] == [c.out_channels for c in reversed(convs)]
    assert deconvs[0].kernel_size == (kernel, kernel)
    assert deconvs[-1].out_channels == 3
    assert isinstance(decoder.net[-1], nn.Tanh)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in decoder.net) == n_strided


def test_orthogonal_weights_and_zero_biases():
    torch.manual_seed(0)
    for module in make_conv_autoencoder(32, 3, latent_dim=8, width=8):
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                w = m.weight.detach().reshape(m.weight.shape[0], -1)
                small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                torch.testing.assert_close(small, torch.eye(len(small)), atol=1e-5, rtol=0)
                if m.bias is not None:
                    assert torch.all(m.bias == 0)


@pytest.mark.parametrize("output", ["sigmoid", "tanh", "linear"])
def test_every_parameter_gets_a_gradient(output):
    torch.manual_seed(0)
    encoder, decoder = make_conv_autoencoder(28, 1, latent_dim=4, width=8, output=output)
    x = torch.rand(4, 1, 28, 28)
    nn.functional.mse_loss(decoder(encoder(x)), x).backward()
    for module in (encoder, decoder):
        for name, p in module.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_output_ranges():
    torch.manual_seed(0)
    z = torch.randn(16, 4) * 10
    assert ConvDecoder(28, 1, 4, 8, "sigmoid")(z).min() >= 0
    tanh = ConvDecoder(28, 1, 4, 8, "tanh")(z)
    assert tanh.min() >= -1 and tanh.max() <= 1
    assert ConvDecoder(28, 1, 4, 8, "linear")(z).abs().max() > 0


def test_clear_errors():
    with pytest.raises(ValueError, match="image_size must be 28 or a power of two"):
        ConvEncoder(48, 1, 4)
    with pytest.raises(ValueError, match="latent_dim"):
        ConvDecoder(28, 1, 0)
    with pytest.raises(ValueError, match="output"):
        ConvDecoder(28, 1, 4, output="relu")
    encoder, decoder = make_conv_autoencoder(28, 1, latent_dim=4, width=8)
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\), got \(2, 784\)"):
        encoder(torch.zeros(2, 784))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        decoder(torch.zeros(2, 4, 1, 1))


def test_trains_with_the_incremental_schedule():
    X = (load_digits()[:256] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    encoder, decoder = make_conv_autoencoder(8, 1, latent_dim=6, width=8)
    iae = IncrementalAutoencoder(
        encoder, decoder, 6, warmup_epochs=1, max_epochs=3, device="cpu", random_state=0
    ).fit(X)
    assert iae.encode(X[:3]).shape == (3, 6)
    assert iae.decode(iae.encode(X[:3])).shape == (3, 1, 8, 8)
    assert iae.loss_curve_[-1] < iae.loss_curve_[0]
