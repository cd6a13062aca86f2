"""Training with the incremental schedule, on the shared training loop."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from .._arrays import torch_generator
from ..training import Display, TrainingConfig, TrainingHistory, train_module
from .schedule import MaskedAutoencoder, active_dims

__all__ = ["train_incrementally"]


def train_incrementally(
    params: Mapping[str, Any],
    loss: Callable[[Tensor, Tensor], Tensor],
    net: MaskedAutoencoder,
    X_train: Tensor,
    X_valid: Tensor | None,
    device: torch.device,
    rng: np.random.Generator,
    name: str = "IncrementalAutoencoder",
) -> tuple[TrainingHistory, list[int], int]:
    """Train ``net`` to minimise ``loss(reconstruction, x)`` on the schedule that the
    parameters ``params`` of an :class:`~ldelib.IncrementalAutoencoder` give
    (``latent_dim``, ``warmup_epochs``, ``batch_size``, ``max_epochs``,
    ``learning_rate``, ``betas``, ``n_iter_no_change``, ``verbose`` and ``loss``, which
    names the error shown); ``name`` labels the progress bar.

    Returns the history, the active dimensions at the end of each epoch, and the number
    of warm-up epochs.
    """
    D, W = int(params["latent_dim"]), float(params["warmup_epochs"])
    max_epochs, batch_size = int(params["max_epochs"]), int(params["batch_size"])
    n_batches = math.ceil(len(X_train) / batch_size)
    # The warm-up: epochs that do not start with every dimension active. They are
    # trained and validated, but never kept as the best weights.
    n_warmup = 0
    while n_warmup < max_epochs and active_dims(D, W, n_warmup, 0, n_batches) < D:
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
        return loss(net(x, active["now"]), x)

    def score_fn(X: Tensor) -> float:
        total = 0.0
        for chunk in X.split(batch_size):
            x = chunk.to(device, non_blocking=True)
            total += float(loss(net(x), x)) * len(chunk)
        return -total / len(X)

    error = "mse" if isinstance(params["loss"], str) else "loss"
    config = TrainingConfig(
        max_epochs=max_epochs,
        batch_size=batch_size,
        n_iter_no_change=int(params["n_iter_no_change"]),
        select_from_epoch=n_warmup,
        verbose=int(params["verbose"]),
        desc=name,
        # The reconstruction loss as it is: the mean squared error per input value, or
        # the user's loss.
        display=Display(f"train {error}", f"valid {error}", score=lambda s: -s),
    )
    history = train_module(
        net,
        loss_fn,
        X_train,
        X_valid,
        config,
        optimizer=torch.optim.Adam(
            net.parameters(),
            lr=float(params["learning_rate"]),
            betas=(float(params["betas"][0]), float(params["betas"][1])),
        ),
        generator=torch_generator(rng, torch.device("cpu")),
        score_fn=score_fn,
        on_step=on_step,
    )
    if history.n_iter <= n_warmup and history.non_finite is None:
        warnings.warn(
            f"max_epochs={max_epochs} ended during the warm-up: only "
            f"{active['now']} of {D} latent dims were active at the last iteration. "
            f"Increase max_epochs beyond {n_warmup} or lower warmup_epochs.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return history, curve[: history.n_iter], n_warmup
