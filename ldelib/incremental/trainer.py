"""Training with the incremental schedule, on the shared training loop."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from .._arrays import torch_generator
from ..training import Display, TrainingHistory, train_module
from .schedule import MaskedAutoencoder, active_dims

if TYPE_CHECKING:
    from .autoencoder import IncrementalAutoencoder

__all__ = ["train_incrementally"]


def train_incrementally(
    model: IncrementalAutoencoder,
    net: MaskedAutoencoder,
    X_train: Tensor,
    X_valid: Tensor | None,
    device: torch.device,
    rng: np.random.Generator,
) -> tuple[TrainingHistory, list[int], int]:
    """Train ``net`` on the schedule of ``model``'s parameters.

    Returns the history, the active dimensions at the end of each epoch, and the number
    of warm-up epochs.
    """
    D, W = int(model.latent_dim), float(model.warmup_epochs)
    batch_size = int(model.batch_size)
    n_batches = math.ceil(len(X_train) / batch_size)
    # The warm-up: epochs that do not start with every dimension active. They are
    # trained and validated, but never kept as the best weights.
    n_warmup = 0
    while n_warmup < model.max_epochs and active_dims(D, W, n_warmup, 0, n_batches) < D:
        n_warmup += 1
    active = {"now": 1}
    curve: list[int] = []  # the active dimensions at the end of each epoch

    def on_step(epoch: int, batch: int, n: int) -> str | None:
        active["now"] = active_dims(D, W, epoch, batch, n)
        if batch == n - 1:
            curve.append(active["now"])
        if epoch >= n_warmup:
            return None
        return f"of the warm-up ({active['now']} of {D} latent dims active)"

    def loss_fn(batch: Tensor) -> Tensor:
        x = batch.to(device, non_blocking=True)
        return model._loss(net(x, active["now"]), x)

    def score_fn(X: Tensor) -> float:
        total = 0.0
        for chunk in X.split(batch_size):
            x = chunk.to(device, non_blocking=True)
            total += float(model._loss(net(x), x)) * len(chunk)
        return -total / len(X)

    error = "mse" if isinstance(model.loss, str) else "loss"
    history = train_module(
        net,
        loss_fn,
        X_train,
        X_valid,
        optimizer=torch.optim.Adam(
            net.parameters(),
            lr=float(model.learning_rate),
            betas=(float(model.betas[0]), float(model.betas[1])),
        ),
        max_epochs=int(model.max_epochs),
        batch_size=batch_size,
        n_iter_no_change=int(model.n_iter_no_change),
        generator=torch_generator(rng, torch.device("cpu")),
        score_fn=score_fn,
        on_step=on_step,
        select_from_epoch=n_warmup,
        verbose=int(model.verbose),
        desc=type(model).__name__,
        # The reconstruction loss as it is: the mean squared error per input value, or
        # the user's loss.
        display=Display(f"train {error}", f"valid {error}", score=lambda s: -s),
    )
    if history.n_iter <= n_warmup and history.non_finite is None:
        warnings.warn(
            f"max_epochs={model.max_epochs} ended during the warm-up: only "
            f"{active['now']} of {D} latent dims were active at the last iteration. "
            f"Increase max_epochs beyond {n_warmup} or lower warmup_epochs.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return history, curve[: history.n_iter], n_warmup
