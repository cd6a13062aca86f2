"""What a training run reports: its history, and how its progress bar shows it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Display", "TrainingHistory"]


def _same(value: float) -> float:
    return value


@dataclass(frozen=True)
class Display:
    """How the progress bar shows the training loss and the validation score.

    A model trains on whatever scale suits the optimiser (a standardised loss per
    dimension, say); a user reads the units of the data. ``loss`` and ``score`` map the
    raw values (the mean of ``loss_fn``, the validation score) to what is shown, with the
    names ``loss_name``/``score_name`` and ``unit`` after each number.

    Examples
    --------
    >>> nats = Display("train nll", "valid ll", "nats/row", lambda l: 8 * l, lambda s: 8 * s)
    >>> nats.postfix(2.0, -2.5)
    {'train nll': '16 nats/row', 'valid ll': '-20 nats/row'}
    """

    loss_name: str = "loss"
    score_name: str = "valid"
    unit: str = ""
    loss: Callable[[float], float] = _same
    score: Callable[[float], float] = _same

    def postfix(self, loss: float, score: float | None) -> dict[str, str]:
        """The bar's postfix for a mean training loss and the latest validation score."""
        unit = f" {self.unit}" if self.unit else ""
        shown = {self.loss_name: f"{self.loss(loss):.4g}{unit}"}
        if score is not None:
            shown[self.score_name] = f"{self.score(score):.4g}{unit}"
        return shown


@dataclass
class TrainingHistory:
    """What happened during :func:`~ldelib.training.train_module`.

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
        ``keep_initial`` of :class:`~ldelib.training.TrainingConfig`).
    timed_out : bool
        Whether the ``max_time`` budget ended training.
    initial_validation_score : float or None
        Validation score of the untrained module (``keep_initial`` only).
    validation_steps : list of int
        Training steps taken at each validation.
    non_finite : str or None
        Where a NaN or infinite loss or score stopped training (the best weights were
        restored), or ``None``.
    best_round : int
        Index in ``validation_scores`` of the validation whose weights were kept (one
        per epoch, or one per ``validate_every`` steps); -1 for none.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    n_iter: int = 0
    best_epoch: int = -1
    timed_out: bool = False
    initial_validation_score: float | None = None
    validation_steps: list[int] = field(default_factory=list)
    non_finite: str | None = None
    best_round: int = -1

    @property
    def best_validation_score(self) -> float | None:
        """The validation score of the weights kept (``None`` without validation)."""
        if self.best_round >= 0:
            return self.validation_scores[self.best_round]
        if self.best_epoch < 0:
            return self.initial_validation_score
        # Training ended before any weights could be selected: the last ones were kept.
        return self.validation_scores[-1] if self.validation_scores else None
