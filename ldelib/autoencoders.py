"""A reference convolutional autoencoder: the design of Yoo et al. (2019).

DCGAN-like: the encoder halves the resolution with 4x4 stride-2 convolutions (padding
1; BatchNorm after all but the first; LeakyReLU(0.2)) down to 7x7 for 28-pixel images or
4x4 for power-of-two sizes, then a valid convolution (kernel 7 or 4) gives a linear
latent of ``latent_dim`` channels at 1x1. The decoder mirrors it with transposed
convolutions, except in its last layer, and ends with a sigmoid (data in [0, 1]) or a tanh
(data in [-1, 1]). Convolution weights start orthogonal and biases at 0.

The last layer, which writes the pixels, upsamples by nearest neighbour and convolves
3x3 with replicated borders, so every pixel is computed alike. A 4x4 stride-2 transposed
convolution there gives each of the four pixel parities its own 2x2 sub-kernel, and the
border pixels half the taps (the corners a quarter): a single pixel can then be driven
into the sigmoid's flat tail early in training, where the gradient of the squared error
vanishes, and it stays white in every decoded image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvDecoder", "ConvEncoder", "make_conv_autoencoder"]

_OUTPUTS = ("sigmoid", "tanh", "linear")


def _geometry(image_size: int) -> tuple[int, int]:
    """Number of stride-2 layers and kernel of the final 1x1 layer for ``image_size``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TypeError(f"image_size must be an int, got {image_size!r}.")
    if image_size == 28:
        return 2, 7
    if image_size >= 8 and image_size & (image_size - 1) == 0:
        return image_size.bit_length() - 3, 4
    raise ValueError(
        f"image_size must be 28 or a power of two of at least 8 (e.g. 32, 64), got {image_size}."
    )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


# _FOLD[a][p, k]: on the upsampled image u[m] = x[m // 2], output row 2i + a reads u at rows
# 2i + a - 1, 2i + a and 2i + a + 1, which are rows i - 1, i, i of x (a = 0) or i, i, i + 1
# (a = 1); _FOLD[a] adds kernel row k onto row i + p - 1 of x. Columns alike.
_FOLD = torch.tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]])


class _UpsampleConv(nn.Conv2d):
    """Nearest-neighbour upsampling by 2, then this 3x3 convolution (replicated borders).

    Computed at the input's resolution, as one 3x3 convolution per output parity whose
    kernel sums the rows and columns of this one that read the same input pixel, then
    interleaved: the same numbers as the two steps, in a quarter of the positions.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, padding_mode="replicate")

    def forward(self, x: Tensor) -> Tensor:
        fold = _FOLD.to(self.weight)
        # (out, a, b, in, 3, 3) -> (out * 4, in, 3, 3), in pixel_shuffle's channel order.
        kernel = torch.einsum("apk,bql,oikl->oabipq", fold, fold, self.weight).flatten(0, 2)
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        return F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, bias), 2)


def _initialise(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvEncoder(nn.Module):
    """Convolutional encoder: images ``(B, C, S, S)`` to linear latents ``(B, D)``.

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square images: 28, or a power of two of at least 8 (32, 64...).
    channels : int
        Image channels ``C`` (1 for grey, 3 for colour).
    latent_dim : int
        Latent dimensions ``D``.
    width : int, default=64
        Channels of the first layer; each further stride-2 layer doubles them.

    Attributes
    ----------
    net : nn.Sequential
        ``Conv(C -> width, 4, s2, p1), LeakyReLU(0.2)``, then
        ``[Conv(4, s2, p1), BatchNorm, LeakyReLU(0.2)]`` until 7x7 (28 px) or 4x4, then
        ``Conv(-> D, kernel 7 or 4, valid)``.

    References
    ----------
    .. [1] J. Yoo, H. Lee, N. Kwak. "Density Estimation and Incremental Learning of
       Latent Vector for Generative Autoencoders", arXiv:1902.04294, 2019.
    .. [2] A. Radford, L. Metz, S. Chintala. "Unsupervised Representation Learning with
       Deep Convolutional Generative Adversarial Networks", ICLR 2016.

    Examples
    --------
    >>> import torch
    >>> encoder = ConvEncoder(64, 3, latent_dim=100)
    >>> [m.out_channels for m in encoder.net if isinstance(m, torch.nn.Conv2d)]
    [64, 128, 256, 512, 100]
    >>> encoder(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 100])
    """

    def __init__(self, image_size: int, channels: int, latent_dim: int, width: int = 64) -> None:
        super().__init__()
        n_down, kernel = _geometry(image_size)
        _check_positive(channels=channels, latent_dim=latent_dim, width=width)
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(n_down - 1):
            layers += [
                nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * ch),
                nn.LeakyReLU(0.2),
            ]
            ch *= 2
        layers.append(nn.Conv2d(ch, latent_dim, kernel, 1, 0))
        self.net = nn.Sequential(*layers)
        _initialise(self)

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"ConvEncoder expects images of shape (batch, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}; reshape with x.reshape(-1, "
                f"{', '.join(map(str, expected))})."
            )
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Convolutional decoder: latents ``(B, D)`` to images ``(B, C, S, S)``.

    The mirror of :class:`ConvEncoder`, with transposed convolutions.

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square images: 28, or a power of two of at least 8.
    channels : int
        Image channels ``C``.
    latent_dim : int
        Latent dimensions ``D``.
    width : int, default=64
        Channels before the last layer (the encoder's first-layer width).
    output : {"sigmoid", "tanh", "linear"}, default="sigmoid"
        Output activation: sigmoid for data in [0, 1], tanh for [-1, 1], none for
        unbounded data.

    Attributes
    ----------
    net : nn.Sequential
        ``ConvT(D -> ., kernel 7 or 4), BatchNorm, LeakyReLU(0.2)``, then
        ``[ConvT(4, s2, p1), BatchNorm, LeakyReLU(0.2)]``, then nearest-neighbour
        upsampling by 2 and ``Conv(-> C, 3, p1, replicated borders)`` (one layer, which
        treats every pixel alike: see the module's description) and the output activation.

    Examples
    --------
    >>> import torch
    >>> decoder = ConvDecoder(28, 1, latent_dim=8, width=32)
    >>> decoder(torch.zeros(5, 8)).shape
    torch.Size([5, 1, 28, 28])
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        width: int = 64,
        output: Literal["sigmoid", "tanh", "linear"] = "sigmoid",
    ) -> None:
        super().__init__()
        n_down, kernel = _geometry(image_size)
        _check_positive(channels=channels, latent_dim=latent_dim, width=width)
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}.")
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        ch = width * 2 ** (n_down - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, kernel, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(n_down - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.LeakyReLU(0.2),
            ]
            ch //= 2
        layers.append(_UpsampleConv(ch, channels))
        if output == "sigmoid":
            layers.append(nn.Sigmoid())
        elif output == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _initialise(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"ConvDecoder expects latents of shape (batch, {self.latent_dim}), got "
                f"{tuple(z.shape)}."
            )
        return self.net(z[:, :, None, None])


def make_conv_autoencoder(
    image_size: int = 28,
    channels: int = 1,
    latent_dim: int = 16,
    width: int = 32,
    output: Literal["sigmoid", "tanh", "linear"] = "sigmoid",
) -> tuple[ConvEncoder, ConvDecoder]:
    """A matching :class:`ConvEncoder` and :class:`ConvDecoder`.

    Parameters
    ----------
    image_size : int, default=28
        28, or a power of two of at least 8 (32, 64...).
    channels : int, default=1
    latent_dim : int, default=16
    width : int, default=32
        First-layer width (the authors used 64).
    output : {"sigmoid", "tanh", "linear"}, default="sigmoid"

    Returns
    -------
    encoder : ConvEncoder
    decoder : ConvDecoder

    Examples
    --------
    >>> import torch
    >>> encoder, decoder = make_conv_autoencoder(32, 3, latent_dim=10, output="tanh")
    >>> decoder(encoder(torch.zeros(2, 3, 32, 32))).shape
    torch.Size([2, 3, 32, 32])
    """
    encoder = ConvEncoder(image_size, channels, latent_dim, width)
    decoder = ConvDecoder(image_size, channels, latent_dim, width, output)
    return encoder, decoder
