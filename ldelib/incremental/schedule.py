"""The schedule of incremental latent learning, and the network it trains.

At each training iteration only a prefix of the latent dimensions reaches the decoder
(:func:`active_dims`); :class:`MaskedAutoencoder` zeroes the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._constraints import Integral, Real

__all__ = ["MaskedAutoencoder", "active_dims"]


def active_dims(
    latent_dim: int, warmup_epochs: float, epoch: int, batch: int, n_batches: int
) -> int:
    r"""Number of leading latent dimensions active at one training iteration.

    The schedule of Yoo et al. (2019): at iteration ``batch`` of ``n_batches`` (0-based)
    in epoch ``epoch`` (0-based), the first

    .. math:: k = \min\left(D,\ \left\lfloor \frac{D\,(e + b / n)}{W} + 1 \right\rfloor\right)

    dimensions are active, computed in floating point exactly as the authors' code
    does. It starts at 1, grows by one about every :math:`W / D` epochs, and reaches
    :math:`D` once :math:`e + b / n \ge W (D - 1) / D`. ``warmup_epochs=0`` makes every
    dimension active from the start.

    Parameters
    ----------
    latent_dim : int
        Number of latent dimensions :math:`D`.
    warmup_epochs : float
        Warm-up length :math:`W` in epochs (non-negative).
    epoch : int
        Epoch :math:`e`, from 0.
    batch : int
        Iteration :math:`b` within the epoch, from 0 to ``n_batches - 1``.
    n_batches : int
        Iterations per epoch :math:`n`.

    Returns
    -------
    int
        Active dimensions, between 1 and ``latent_dim``.

    Examples
    --------
    >>> [active_dims(8, 2, e, b, 4) for e in range(3) for b in range(4)]
    [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8]
    """
    checks = (
        ("latent_dim", latent_dim, Integral(1, None)),
        ("warmup_epochs", warmup_epochs, Real(0, None, closed="left")),
        ("n_batches", n_batches, Integral(1, None)),
        ("epoch", epoch, Integral(0, None)),
        ("batch", batch, Integral(0, n_batches, closed="left")),
    )
    for name, value, constraint in checks:
        if not constraint.is_satisfied_by(value):
            raise ValueError(f"{name} must be {constraint}, got {value!r}.")
    if warmup_epochs == 0:
        return int(latent_dim)
    return min(int(latent_dim), int(latent_dim * (epoch + batch / n_batches) / warmup_epochs + 1))


class MaskedAutoencoder(nn.Module):
    """Encoder and decoder with the trailing latent dimensions zeroed in between."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def encode(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"The encoder returned {shape} for a batch of {len(x)}; it must return a "
                f"tensor of shape (batch, latent_dim) = ({len(x)}, {self.latent_dim}). "
                "Flatten its output (e.g. end it with nn.Flatten()) or fix latent_dim."
            )
        return z

    def forward(self, x: Tensor, n_active: int | None = None) -> Tensor:
        z = self.encode(x)
        if n_active is not None and n_active < self.latent_dim:
            # A 0/1 mask (not slicing or in-place zeroing): masked dimensions get exactly
            # zero gradient, and the decoder keeps its input size.
            mask = torch.arange(self.latent_dim, device=z.device) < n_active
            z = z * mask.to(z.dtype)
        return self.decoder(z)
