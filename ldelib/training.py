"""Minibatch training shared by the neural models.

One loop for every torch-trained model: shuffled minibatches, a held-out validation
split with early stopping and the best weights restored, a tqdm bar when asked for,
and a guard that never lets a non-finite loss leave a silently broken model behind.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "TrainingHistory",
    "check_max_time",
    "seeded",
    "train_module",
    "train_validation_split",
]


@dataclass
class TrainingHistory:
    """What happened during :func:`train_module`.

    Attributes
    ----------
    loss_curve : list of float
        Mean training loss of each epoch.
    validation_scores : list of float
        Validation score (higher is better) after each epoch; empty without validation.
    n_iter : int
        Number of epochs run.
    best_epoch : int
        Epoch (0-based) whose weights were kept; -1 for the untrained weights (see
        ``keep_initial`` of :func:`train_module`).
    timed_out : bool
        Whether the ``max_time`` budget ended training.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    n_iter: int = 0
    best_epoch: int = -1
    timed_out: bool = False
    initial_validation_score: float | None = None

    @property
    def best_validation_score(self) -> float | None:
        if self.best_epoch < 0:
            return self.initial_validation_score
        return self.validation_scores[self.best_epoch] if self.validation_scores else None


def check_max_time(value: object) -> None:
    """Raise a ValueError unless ``value`` is None or a positive number of seconds."""
    ok = value is None or (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and value > 0
    )
    if not ok:
        raise ValueError(f"max_time must be None or a positive number of seconds, got {value!r}.")


def train_validation_split(
    X: np.ndarray, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shuffle-split rows into a training and a validation part.

    With ``validation_fraction=0`` there is no validation part. At least one row is kept
    on each side, so two rows are the minimum.
    """
    if validation_fraction == 0:
        return X, None
    n = len(X)
    n_valid = min(max(1, round(validation_fraction * n)), n - 1)
    order = rng.permutation(n)
    return X[order[n_valid:]], X[order[:n_valid]]


@contextmanager
def seeded(rng: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded from ``rng``, then put it back.

    Module constructors and dropout draw from torch's global generator; forking it keeps
    fits reproducible without changing the user's random state.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        yield


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


def train_module(
    module: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    X_train: Tensor,
    X_valid: Tensor | None,
    *,
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    batch_size: int,
    n_iter_no_change: int,
    generator: torch.Generator,
    score_fn: Callable[[Tensor], float] | None = None,
    lr_decay_patience: int | None = None,
    max_time: float | None = None,
    keep_initial: bool = False,
    verbose: int = 0,
    desc: str = "fit",
) -> TrainingHistory:
    """Train ``module`` by minimising ``loss_fn`` over shuffled minibatches.

    Parameters
    ----------
    module : nn.Module
        Trained in place; left in eval mode with the best weights loaded.
    loss_fn : callable
        Maps a batch to a scalar loss to minimise.
    X_train, X_valid : Tensor
        Training rows, and validation rows for early stopping (or ``None``).
    score_fn : callable, optional
        Maps the validation rows to a score to maximise; defaults to minus the mean of
        ``loss_fn`` over validation batches.
    n_iter_no_change : int
        Stop after this many epochs without a better validation score.
    lr_decay_patience : int, optional
        Halve the learning rate after this many epochs without a better validation
        score (and again after as many more), so training can settle into a minimum
        before early stopping ends it.
    max_time : float, optional
        Wall-clock budget in seconds: no new epoch starts once it is spent (the epoch
        running then completes), and the best weights so far are kept. The first epoch
        always runs, unless ``keep_initial`` gives weights worth keeping without it.
    keep_initial : bool
        Score the untrained module on the validation rows first and keep it unless an
        epoch beats it: for a module that starts as a good model (an anchored mixture
        density network), so training can only improve on its validation score.

    Raises
    ------
    FloatingPointError
        If the loss is not finite before any weights worth keeping exist.
    """
    history = TrainingHistory()
    best_score, best_state = -math.inf, None
    deadline = math.inf if max_time is None else time.perf_counter() + max_time

    def evaluate(X: Tensor) -> float:
        module.eval()
        with torch.no_grad():
            if score_fn is not None:
                return float(score_fn(X))
            total = sum(float(loss_fn(X[i])) * len(i) for i in _batches(len(X), 4096, None))
            return -total / len(X)

    if keep_initial and X_valid is not None:
        best_score = history.initial_validation_score = evaluate(X_valid)
        if not math.isfinite(best_score):
            raise FloatingPointError(
                "The untrained model scores the validation rows as NaN or infinite."
            )
        best_state = copy.deepcopy(module.state_dict())

    bar = tqdm(range(max_epochs), desc=desc, disable=verbose <= 0, leave=verbose > 1)
    for epoch in bar:
        if time.perf_counter() >= deadline and (epoch > 0 or best_state is not None):
            history.timed_out = True
            break
        module.train()
        total, seen = 0.0, 0
        for index in _batches(len(X_train), batch_size, generator):
            loss = loss_fn(X_train[index])
            if not torch.isfinite(loss):
                _recover(module, best_state, epoch, history)
                bar.close()
                return history
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        history.loss_curve.append(total / seen)
        history.n_iter = epoch + 1

        if X_valid is None:
            history.best_epoch = epoch
            best_state = copy.deepcopy(module.state_dict())
            bar.set_postfix(loss=f"{history.loss_curve[-1]:.4g}")
            continue
        score = evaluate(X_valid)
        if not math.isfinite(score):
            _recover(module, best_state, epoch, history)
            bar.close()
            return history
        history.validation_scores.append(score)
        if score > best_score:
            best_score, history.best_epoch = score, epoch
            best_state = copy.deepcopy(module.state_dict())
        stalled = epoch - history.best_epoch
        if lr_decay_patience and stalled and stalled % lr_decay_patience == 0:
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
        bar.set_postfix(loss=f"{history.loss_curve[-1]:.4g}", valid=f"{score:.4g}")
        if epoch - history.best_epoch >= n_iter_no_change:
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def _recover(
    module: nn.Module, best_state: dict | None, epoch: int, history: TrainingHistory
) -> None:
    if best_state is None:
        raise FloatingPointError(
            f"The training loss became NaN or infinite at epoch {epoch} before any usable "
            "weights existed. Lower learning_rate, or check the data for extreme values "
            "(standardize=True helps)."
        )
    module.load_state_dict(best_state)
    module.eval()
    history.n_iter = epoch + 1
    kept = (
        "untrained weights" if history.best_epoch < 0 else f"weights of epoch {history.best_epoch}"
    )
    warnings.warn(
        f"The training loss became NaN or infinite at epoch {epoch}; training stopped and the "
        f"{kept} (the best validation score) were restored. "
        "Lower learning_rate for a longer, stable run.",
        ConvergenceWarning,
        stacklevel=3,
    )
