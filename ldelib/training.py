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
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._history import Display, TrainingHistory
from ._splits import seeded, split_positions, train_validation_split
from .distributed import (
    Context,
    all_reduce_mean_score,
    all_reduce_sum,
    broadcast_flag,
    local_rows,
    per_rank_batch,
    shard,
)

__all__ = [
    "Display",
    "TrainingConfig",
    "TrainingHistory",
    "run_to_end",
    "scoped",
    "seeded",
    "split_positions",
    "train_module",
    "train_validation_split",
    "training_steps",
]

#: A training that pauses after each validation (see :func:`training_steps`).
Steps = Generator[TrainingHistory, bool | None, TrainingHistory]


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


class Rows(Protocol):
    """Training rows gathered by index, as a tensor is: rows on disk stand in for one."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class TrainingConfig:
    """How :func:`train_module` trains: its epochs, batches, stopping rules, budget and
    display.

    Attributes
    ----------
    max_epochs, batch_size : int
    n_iter_no_change : int
        Stop after this many validations (epochs, by default) without a better score.
    lr_decay_patience : int, optional
        Halve the learning rate after this many validations without a better score (and
        again after as many more), so training can settle into a minimum before early
        stopping ends it.
    max_time : float, optional
        Wall-clock budget in seconds: once it is spent, training stops at the next step
        (or, with ``validate_every``, at the next validation), the weights of the cut
        epoch are validated, and the best weights so far are kept. It stops as much
        before the budget as the last validation took, so that this one ends by it. At
        least one step runs, unless ``keep_initial`` gives weights worth keeping without
        it.
    keep_initial : bool
        Score the untrained module on the validation rows first and keep it unless an
        epoch beats it: for a module that starts as a good model (an anchored mixture
        density network), so training can only improve on its validation score.
    select_from_epoch : int
        Epochs before this one are trained and validated but never kept as the best
        weights, and do not count towards early stopping (a warm-up). If training ends
        before it, the last weights are kept.
    validate_every : int, optional
        Validate (and check the time budget) every this many steps instead of at the end
        of each epoch: for epochs too long to wait for.
    first_turn_s : float, optional
        Also validate once in the first epoch, after it has trained this many seconds (a
        pause of :func:`training_steps`): a caller that races trainings sees what one
        gains before a long epoch ends.
    verbose : int
        ``> 0`` shows a progress bar over epochs (kept on screen when ``> 1``).
    desc : str
        The bar's label.
    display : Display, optional
        How the bar shows the loss and the validation score (in the data's units, e.g.
        nats per row); by default the raw values, as ``loss`` and ``valid``.
    """

    max_epochs: int
    batch_size: int
    n_iter_no_change: int
    lr_decay_patience: int | None = None
    max_time: float | None = None
    keep_initial: bool = False
    select_from_epoch: int = 0
    validate_every: int | None = None
    first_turn_s: float | None = None
    verbose: int = 0
    desc: str = "fit"
    display: Display | None = None


def train_module(
    module: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    X_train: Tensor | Rows,
    X_valid: Tensor | None,
    config: TrainingConfig,
    *,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    score_fn: Callable[[Tensor], float] | None = None,
    on_step: Callable[[int, int, int], str | None] | None = None,
    distributed: Context | None = None,
) -> TrainingHistory:
    """Train ``module`` by minimising ``loss_fn`` over shuffled minibatches, as
    ``config`` says (epochs, batches, stopping, budget, display).

    Parameters
    ----------
    module : nn.Module
        Trained in place; left in eval mode with the best weights loaded.
    loss_fn : callable
        Maps a batch to a scalar loss to minimise.
    X_train, X_valid : Tensor
        Training rows (a tensor, or any :class:`Rows` such as rows read from disk on
        demand), and validation rows for early stopping (or ``None``).
    config : TrainingConfig
    optimizer : torch.optim.Optimizer
    generator : torch.Generator
        Draws the shuffles.
    score_fn : callable, optional
        Maps the validation rows to a score to maximise; defaults to minus the mean of
        ``loss_fn`` over validation batches.
    on_step : callable, optional
        Called as ``on_step(epoch, batch, n_batches)`` before each training step (all
        0-based), for schedules that depend on the iteration. It may return a short
        phrase saying where training is (e.g. ``"of the warm-up"``), shown in the
        progress bar and in messages, or ``None``.
    distributed : ldelib.distributed.Context, optional
        Train as one of several processes (``torchrun``): ``loss_fn`` must run the module
        through :func:`ldelib.distributed.wrap` (DDP averages the gradients). Every rank
        draws the same shuffles and takes its shard of each global batch of
        ``batch_size`` rows; losses, validation scores, NaN checks and the time budget
        are reduced across ranks, so all ranks stop together with the same weights.
        Validation must use the default score (a mean of ``loss_fn`` over rows).

    Returns
    -------
    TrainingHistory
        With ``non_finite`` set when a NaN or infinite loss or score ended training.

    Raises
    ------
    FloatingPointError
        If the loss is not finite before any weights worth keeping exist.
    """
    steps = training_steps(
        module,
        loss_fn,
        X_train,
        X_valid,
        config,
        optimizer=optimizer,
        generator=generator,
        score_fn=score_fn,
        on_step=on_step,
        distributed=distributed,
    )
    return run_to_end(steps)


def run_to_end(steps: Steps) -> TrainingHistory:
    """Train ``steps`` until its own rules end it; its history."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def scoped(steps: Steps, context: Callable[[], AbstractContextManager[Any]]) -> Steps:
    """``steps`` with ``context()`` entered around each stretch between its pauses, not
    across them: another training (with its own thread count) may run there."""
    stop: bool | None = None
    while True:
        with context():
            try:
                history = steps.send(stop)
            except StopIteration as done:
                return done.value
        stop = yield history


def training_steps(
    module: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    X_train: Tensor | Rows,
    X_valid: Tensor | None,
    config: TrainingConfig,
    *,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    score_fn: Callable[[Tensor], float] | None = None,
    on_step: Callable[[int, int, int], str | None] | None = None,
    distributed: Context | None = None,
) -> Steps:
    """:func:`train_module` as a generator that pauses after each validation, yielding
    the history so far, so that a caller can interleave several trainings (a race of
    starts) and end one early: ``send(True)`` ends it there as early stopping would (the
    best weights loaded), ``send(None)`` (or ``next``) goes on. It returns the history
    when training ends (``StopIteration.value``)."""
    history = TrainingHistory()
    deadline = math.inf if config.max_time is None else time.perf_counter() + config.max_time
    run = _Run(
        module,
        history,
        optimizer,
        config.n_iter_no_change,
        config.lr_decay_patience,
        config.select_from_epoch,
    )
    ctx = distributed or Context(0, 1, 0, None)
    if ctx.is_distributed and score_fn is not None:
        raise ValueError("A custom score_fn cannot be reduced across processes.")
    step_rows = per_rank_batch(config.batch_size, ctx)

    # Seconds of the last validation: the budget keeps that much for the one after the cut.
    last_eval_s = 0.0

    def evaluate(X: Tensor) -> float:
        nonlocal last_eval_s
        began = time.perf_counter()
        module.eval()
        with torch.no_grad():
            if score_fn is not None:
                score = float(score_fn(X))
            else:
                # Each rank scores its block of the validation rows; the mean is global.
                mine = X[local_rows(len(X), ctx)]
                total = sum(
                    float(loss_fn(mine[i])) * len(i) for i in _batches(len(mine), 4096, None)
                )
                score = -all_reduce_mean_score(total, len(mine), ctx)
        last_eval_s = time.perf_counter() - began
        return score

    def validate(epoch: int, steps: int) -> bool:
        """Validate and record (``run``); whether early stopping ends training here."""
        assert X_valid is not None
        return run.validate(evaluate(X_valid), epoch, where, steps)

    def batches() -> list[Tensor]:
        order = torch.randperm(len(X_train), generator=generator)
        return list(shard(order, ctx, config.batch_size).split(step_rows))

    def past_deadline() -> bool:
        # Training stops early enough for the validation that follows the cut to end by
        # the deadline (measured on 65,536 rows at D = 64: 4 s each, after the budget).
        return broadcast_flag(time.perf_counter() + last_eval_s >= deadline, ctx)

    # Within an epoch, every rank looks at the clock at the same steps (a collective).
    timed, look_every = math.isfinite(deadline), 16 if ctx.is_distributed else 1

    turn_began = time.perf_counter()
    looked = config.first_turn_s is None

    def first_turn_due(epoch: int, steps: int) -> bool:
        nonlocal looked
        if looked or epoch > 0 or steps % look_every:
            return False
        assert config.first_turn_s is not None
        looked = broadcast_flag(time.perf_counter() - turn_began >= config.first_turn_s, ctx)
        return looked

    def any_rank(flag: bool) -> bool:
        if not ctx.is_distributed:
            return flag
        return bool(all_reduce_sum(torch.tensor([float(flag)]), ctx)[0] > 0)

    if config.keep_initial and X_valid is not None:
        score = history.initial_validation_score = evaluate(X_valid)
        if not math.isfinite(score):
            raise FloatingPointError(
                "The untrained model scores the validation rows as NaN or infinite."
            )
        run.keep(score, epoch=-1)

    shown = config.display or Display()
    bar = tqdm(
        range(config.max_epochs),
        desc=config.desc,
        unit="epoch",
        disable=config.verbose <= 0 or not ctx.is_main,
        leave=config.verbose > 1,
    )
    where: str | None = None
    steps = 0
    try:
        for epoch in bar:
            if past_deadline() and (epoch > 0 or run.best_state is not None):
                history.timed_out = True
                break
            module.train()
            total, seen, stop = 0.0, 0, False
            epoch_batches = batches()
            for b, index in enumerate(epoch_batches):
                if on_step is not None:
                    where = on_step(epoch, b, len(epoch_batches))
                loss = loss_fn(X_train[index])
                if any_rank(not bool(torch.isfinite(loss))):
                    run.recover(epoch, where, "training loss")
                    return history
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
                seen += len(index)
                steps += 1
                if X_valid is not None and (
                    (config.validate_every and steps % config.validate_every == 0)
                    or first_turn_due(epoch, steps)
                ):
                    stop = validate(epoch, steps)
                    if not stop and past_deadline():
                        history.timed_out = stop = True
                    if not stop:
                        stop = bool((yield history))
                    if stop:
                        break
                    module.train()
                elif timed and steps % look_every == 0 and past_deadline():
                    # An epoch of millions of rows must not overrun the budget: it ends
                    # here, and its weights are validated below like a whole epoch's.
                    history.timed_out = stop = True
                    break
            if ctx.is_distributed:
                total, seen = all_reduce_sum(torch.tensor([total, float(seen)]), ctx).tolist()
            history.loss_curve.append(total / max(seen, 1))
            history.n_iter = epoch + 1
            if X_valid is None:
                if epoch >= config.select_from_epoch:
                    run.keep(None, epoch)
            elif not config.validate_every and (
                # Not twice at the same step: the first turn's validation may be the last
                # step's, and a second pause there would show the caller no time and no gain.
                not history.validation_steps or history.validation_steps[-1] < steps
            ):
                stop = validate(epoch, steps) or stop
                if not stop and history.non_finite is None:
                    stop = bool((yield history))
            scores = history.validation_scores
            postfix = shown.postfix(history.loss_curve[-1], scores[-1] if scores else None)
            if where:
                postfix["at"] = where
            bar.set_postfix(postfix)
            if stop or history.non_finite is not None:
                break
        validated = history.validation_steps[-1] if history.validation_steps else 0
        if (
            config.validate_every
            and X_valid is not None
            and history.non_finite is None
            and (steps > validated)
        ):
            # The steps since the last validation (cut short by the budget or the last
            # epoch) get their validation, so no trained weights go unconsidered.
            run.validate(evaluate(X_valid), history.n_iter - 1, where, steps)
        if history.non_finite is None:
            run.finish()
    finally:
        bar.close()
        module.eval()
    return history


class _Run:
    """The bookkeeping of one :func:`train_module` call: best weights, patience, recovery."""

    def __init__(
        self,
        module: nn.Module,
        history: TrainingHistory,
        optimizer: torch.optim.Optimizer,
        patience: int,
        lr_decay_patience: int | None,
        select_from_epoch: int,
    ) -> None:
        self.module, self.history, self.optimizer = module, history, optimizer
        self.patience, self.lr_decay_patience = patience, lr_decay_patience
        self.select_from_epoch = select_from_epoch
        self.best_score = -math.inf
        self.best_state: dict[str, Any] | None = None
        self.best_round = -1  # index of the best validation, for the patience count

    def keep(self, score: float | None, epoch: int) -> None:
        if score is not None:
            self.best_score = score
            self.best_round = len(self.history.validation_scores) - 1
            self.history.best_round = self.best_round
        self.history.best_epoch = epoch
        self.best_state = copy.deepcopy(self.module.state_dict())

    def validate(self, score: float, epoch: int, where: str | None, step: int) -> bool:
        """Record a validation score; return whether early stopping ends training."""
        history = self.history
        if not math.isfinite(score):
            self.recover(epoch, where, "validation score")
            return True
        history.validation_scores.append(score)
        history.validation_steps.append(step)
        if epoch < self.select_from_epoch:
            return False
        if score > self.best_score:
            self.keep(score, epoch)
            return False
        stalled = len(history.validation_scores) - 1 - self.best_round
        if self.lr_decay_patience and stalled % self.lr_decay_patience == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5
        return stalled >= self.patience

    def recover(self, epoch: int, where: str | None, what: str) -> None:
        history = self.history
        at = f"epoch {epoch}" + (f" {where}" if where else "")
        history.non_finite = f"{what} at {at}"
        history.n_iter = epoch + 1
        if self.best_state is None:
            raise FloatingPointError(
                f"The {what} became NaN or infinite at {at} before any usable weights "
                "existed. Lower learning_rate, or check the data for extreme values "
                "(standardize=True helps)."
            )
        self.module.load_state_dict(self.best_state)
        best = history.best_epoch
        kept = "untrained weights" if best < 0 else f"weights of epoch {best}"
        warnings.warn(
            f"The {what} became NaN or infinite at {at}; training stopped and the {kept} "
            "(the best validation score) were restored. Lower learning_rate for a longer, "
            "stable run.",
            ConvergenceWarning,
            stacklevel=3,
        )

    def finish(self) -> None:
        if self.best_state is None:
            # Training ended before any epoch could be selected: keep the last weights.
            self.history.best_epoch = self.history.n_iter - 1
        else:
            self.module.load_state_dict(self.best_state)
