"""Which start of the latent density estimator to keep: the anchored start, the random
one, or a larger mixture that the anchor's search finds when it goes on."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import distributed
from .._sources import DiskRows
from ..density import BaseDensityEstimator
from ..distributed import Context, broadcast_flag, broadcast_int
from ..nn.autoregressive import AutoregressiveMDN
from ..training import Display, Steps, TrainingHistory, run_to_end
from ._em import HeldOutSearch
from ._selection import clearly_worse
from .gmm import GMM

__all__ = ["StartRace", "interleave"]

#: Turns over which a training's recent gain per second is measured (see
#: :func:`interleave`). Over three, an anchored network's first epoch (its largest gain,
#: from the untrained mixture) counted for three turns: on 32-D MNIST latents it bought
#: two more epochs of 3 s that gained nothing, taken from the averaging of its mixture.
RATE_WINDOW = 1
#: The share of the race's time after which a training's first epoch pauses for a
#: validation, so that the race sees its first gain early: on 60,000 rows of a 32-D
#: warped target, the anchored start's first epoch took 5.1 s of the 22 s left and
#: gained 0.006 nats per row, while the mixture's search, gaining more, waited.
FIRST_TURN_SHARE = 0.1


class StartRace(BaseDensityEstimator):
    """The choice between the starts of a fit (a base of
    :class:`~ldelib.models._mdn_fit.AnchoredFit`, which trains them)."""

    module_: AutoregressiveMDN
    anchor_: dict[str, Any] | None
    n_components_: int
    start_scores_: dict[str, float | None]

    # Of AnchoredFit: how a start is trained, and the network's units and inputs.
    _start: Callable[..., Steps]
    _build_module: Callable[[GMM | None, torch.device], None]
    _races: Callable[[], bool]
    _condition_width: Callable[[], int]
    _trainable: Callable[[AutoregressiveMDN], nn.Module]
    _in_nats: Callable[[], Display]

    def _race(
        self,
        mixture: GMM,
        search: HeldOutSearch | None,
        train: Tensor | DiskRows,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
        deadline: float | None,
        random_start: bool = True,
        search_deadline: float | None = None,
        late_random: Callable[[], float] | None = None,
    ) -> tuple[TrainingHistory, GMM]:
        """Train the anchored start and the random one; keep the better on validation.
        Returns the kept start's history and the mixture it is anchored on. The starts
        train until ``deadline``; the search goes on until ``search_deadline`` (the
        fit's: it leaves time for the refit of its best on its own, :class:`Search`'s
        ``reserve``; ``deadline`` where not given).

        Where the data look like a mixture, the anchored start wins and the network only
        corrects it; where a flexible model can do better (dequantised images, latents of
        a few distinct shapes), the random start's ten free components per conditional
        and wider network win, which corrections to a mixture of few components cannot
        reach. Both are scored on the same validation rows, row by row, and the random
        start must lead by more than ``CLEARLY_WORSE_SE`` paired standard errors: a
        narrower win is as likely noise of the split (measured: on one seed of the 2-D
        ring the random start won on validation and lost 0.020 +- 0.003 nats to the
        mixture on test). So the kept start is never below the mixture on validation
        (the anchored start keeps its untrained state when no epoch beats it).

        Where the budget cut the mixture's ``search`` while it still improved (a larger
        K, or the averaging of its choice), the search goes on too: a mixture it finds
        that scores the validation rows higher than the trained anchored start replaces
        it, untrained. Where the data look like a mixture (warped targets of 60,000
        rows), a larger K or a larger average is worth more than the network's
        corrections; where the network gains (latents, heavy-tailed clusters), it gains
        most in its first epochs. No fixed share of the budget served both: the
        mixture's search with 0.8 of it instead of 0.5 moved the LDE by +0.03 to +0.51
        nats per row on four warped targets and by -0.10 to -0.51 on latents and
        heavy-tailed clusters. Only a search cut while still improving goes on
        (``HeldOutSearch.improving``: its last K improved, or the average of its best
        can still grow): on 64-D MNIST latents, cut after a K that did not improve,
        going on with the K search found nothing and cost the network half its epochs
        (-0.06 +- 0.03). Once a K has stalled, the average of its best grows first
        (:meth:`HeldOutSearch.resume`).

        So the anchored start, the search and the random start train in turns
        (:func:`interleave`), the budget going to whichever can still gain most. The
        random start trains in turns only with ``random_start`` (validation rows, and
        time for ``_MIN_RANDOM_EPOCHS`` epochs of it in the networks' share): where it had
        time for 2 to 17 epochs, it trailed by 5 to 41 nats per row (latents and warped
        targets of 60,000 rows at D = 32 and 64). Without it, ``late_random`` (which
        times those epochs) starts it alone once the others have ended, where the time
        they left holds them. The search's gain per second starts from its last step before
        the race (the fits of the last K to improve, or the last mixture averaged): from
        its first turn alone, a regularisation that did not improve gave it a rate of
        zero, and the network, gaining a little, took every later turn (warped targets
        of 60,000 rows: half the K that a fixed half of the budget had reached, 0.03 to
        0.28 nats per row lower on six of eight).
        """
        if valid is None:
            history = run_to_end(self._start(mixture, train, valid, rng, device, deadline))
            if self._races():
                best = history.best_validation_score
                self.start_scores_ = {"gmm": self._in_nats_or_none(best), "random": None}
            return history, mixture
        steps, states, prior = {}, {}, {}
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        turn = None if left is None else FIRST_TURN_SHARE * left
        steps["gmm"] = self._start(mixture, train, valid, rng, device, deadline, turn)
        states["gmm"] = dict(self.__dict__)
        found: list[GMM] = []
        if search is not None and deadline is not None:
            d = self.n_features_in_
            start = float(self._mixture_rows(mixture, valid).mean()) / d  # training's units
            assert self.anchor_ is not None  # the anchored start's, as the random one's is None
            steps["search"] = self._search_steps(
                search,
                start,
                valid,
                deadline if search_deadline is None else search_deadline,
                found,
                self.anchor_,
            )
            # Its last step (a K, or a mixture averaged): its gain per second before the race.
            gain, seconds = search.last_gain, search.last_seconds
            if gain is not None and seconds is not None:
                prior["search"] = [(-seconds, start - gain / d), (0.0, start)]
        if random_start:
            steps["random"] = self._start(None, train, valid, rng, device, deadline, turn)
            states["random"] = dict(self.__dict__)
        ctx = distributed.context()
        histories = interleave(steps, deadline, ctx, prior, ["search"], ["random"])
        if late_random is not None and deadline is not None:
            # A random start left out for want of time starts once the others have ended,
            # if what they left holds its epochs: on 64-D digits (45 s, one thread) the
            # anchored start ended by early stopping after 22 to 25 s, the random start,
            # left out by its estimate, was never trained, and the fit scored 64.5 nats
            # per image where the random start alone scores 84.7. Timed again here: the
            # first timing of a process, as torch warms up, put its epoch at 2.9 s where
            # it takes 1.2 s, and then its 10 epochs past the 19 s left.
            late = late_random() <= deadline - time.perf_counter()
            if broadcast_flag(late, ctx) if ctx.is_distributed else late:
                steps = {"random": self._start(None, train, valid, rng, device, deadline)}
                states["random"] = dict(self.__dict__)
                histories.update(interleave(steps, deadline, ctx, challengers=["random"]))
        self.__dict__.update(states["gmm"])
        anchored = histories["gmm"]
        if found:
            anchored, mixture = self._larger_if_better(found[-1], anchored, mixture, valid, device)
        won = "gmm"
        if "random" in histories:
            anchored_rows = self._score_rows(valid, device)
            kept = dict(self.__dict__)
            self.__dict__.update(states["random"])
            if clearly_worse(anchored_rows, self._score_rows(valid, device)):
                won = "random"
            else:
                self.__dict__.update(kept)
        if self._races():
            scores = {"gmm": anchored.best_validation_score, "random": None}
            if "random" in histories:
                scores["random"] = histories["random"].best_validation_score
            self.start_scores_ = {k: self._in_nats_or_none(v) for k, v in scores.items()}
        return (histories["random"], mixture) if won == "random" else (anchored, mixture)

    def _larger_if_better(
        self,
        larger: GMM,
        anchored: TrainingHistory,
        mixture: GMM,
        valid: np.ndarray,
        device: torch.device,
    ) -> tuple[TrainingHistory, GMM]:
        """The ``larger`` mixture the search found, untrained, in place of the trained
        anchored start where it scores the validation rows higher; the kept one's
        history and mixture."""
        assert self.anchor_ is not None
        score = float(self._mixture_rows(larger, valid).mean())
        if not score > float(self._score_rows(valid, device).mean()):
            return anchored, mixture
        self.n_components_ = larger.n_components_
        held_out = larger._selected_score()
        self.anchor_.update(
            n_components=larger.n_components_,
            n_average=larger.n_average_,
            reg_covar=larger.reg_covar_,
            validation_score=None
            if self._condition_width() or held_out is None
            else held_out - self._log_scale_sum(),
        )
        self._build_module(larger, device)
        self.module_.eval()  # as training leaves it
        initial = score / self.n_features_in_  # training's units
        return TrainingHistory(timed_out=True, initial_validation_score=initial), larger

    def _search_steps(
        self,
        search: HeldOutSearch,
        start: float,
        valid: np.ndarray,
        deadline: float,
        found: list[GMM],
        anchor: dict[str, Any],
    ) -> Steps:
        """The mixture's ``search`` going on one fit a turn, as a training that
        :func:`interleave` runs: its scores are those of the best mixture so far on the
        validation rows (training's units, nats per dimension), ``start`` (the mixture's
        it goes on from) its initial score. A better mixture is appended to ``found``;
        the seconds it ran are kept in ``anchor["resumed_s"]`` (the anchored start's
        ``anchor_``)."""
        d, best = self.n_features_in_, start
        history = TrainingHistory(initial_validation_score=best)
        seconds = 0.0
        while True:
            began = time.perf_counter()
            larger = search.resume(deadline, fits=1)
            score = None if larger is None else float(self._mixture_rows(larger, valid).mean()) / d
            seconds += time.perf_counter() - began
            anchor["resumed_s"] = seconds
            if not search.moved:  # out of time, or nothing left to try
                return history
            if larger is not None and score is not None and score > best:
                found.append(larger)
                best = score
                history.best_round = history.best_epoch = len(history.validation_scores)
            history.validation_scores.append(best)
            history.n_iter += 1
            if search.finished or (yield history):
                return history

    def _mixture_rows(self, mixture: GMM, valid: np.ndarray) -> np.ndarray:
        """Log-densities of the standardised validation rows under ``mixture`` (identity
        scaling), as the network that it anchors would score them untrained: of a fit on
        a context, the conditional of the joint mixture of (context, z)."""
        rows = mixture.score_samples(valid)
        width = self._condition_width()
        return rows - mixture.score_samples(valid, n_dims=width) if width else rows

    def _score_rows(self, rows: np.ndarray, device: torch.device) -> np.ndarray:
        """Log-densities of standardised, ordered ``rows`` under ``module_`` (eval mode)."""
        self.module_.eval()
        network = self._trainable(self.module_)
        with torch.no_grad():
            return np.concatenate(
                [
                    network(torch.as_tensor(chunk, dtype=self._dtype, device=device))
                    .double()
                    .cpu()
                    .numpy()
                    for chunk in np.array_split(rows, max(1, len(rows) // 8192))
                ]
            )

    def _in_nats_or_none(self, score: float | None) -> float | None:
        return None if score is None else self._in_nats().score(score)


class _Lane:
    """One training of :func:`interleave`: its seconds trained and its best validation
    score after each of its turns (``prior``: points before the race, at seconds <= 0);
    ``mean_rate``: its gain per second is measured over all of them, not its last
    turns."""

    def __init__(
        self, steps: Steps, prior: list[tuple[float, float]] | None = None, mean_rate: bool = False
    ) -> None:
        self.steps, self.mean_rate = steps, mean_rate
        self.seconds = 0.0
        self.started = False
        self.points: list[tuple[float, float]] = list(prior or [])

    def record(self, history: TrainingHistory, seconds: float) -> None:
        if not self.points and history.initial_validation_score is not None:
            self.points.append((0.0, history.initial_validation_score))
        self.seconds += seconds
        best = history.best_validation_score
        if best is not None:
            self.points.append((self.seconds, best))

    def reach(self, left: float) -> float:
        """The score it would reach in ``left`` seconds at its recent gain per second:
        an optimistic guess, as gains shrink (infinite until it has a gain to go by)."""
        if len(self.points) < 2:
            return math.inf
        first = 0 if self.mean_rate else max(0, len(self.points) - 1 - RATE_WINDOW)
        (t0, s0), (t1, s1) = self.points[first], self.points[-1]
        return s1 + (s1 - s0) / max(t1 - t0, 1e-9) * max(left, 0.0)


def interleave(
    steps: dict[str, Steps],
    deadline: float | None,
    ctx: Context,
    prior: dict[str, list[tuple[float, float]]] | None = None,
    lumpy: Collection[str] = (),
    challengers: Collection[str] = (),
) -> dict[str, TrainingHistory]:
    """Run the trainings ``steps`` (see :func:`~ldelib.training.training_steps`) in
    turns of one validation each until each ends (by its early stopping, or by the
    ``deadline`` that each was given); their histories. ``prior``: of a training that
    went on before, its (seconds, best score) before the race, at seconds <= 0.
    ``lumpy``: trainings that gain in lumps (a search of mixtures, where a candidate that
    does not improve often comes before one that does): their gain per second is their
    mean over all their turns, and they are never ended for it. ``challengers``:
    trainings that replace another only by a clear lead (the random start): their
    scores end no other, and their gain per second is their mean too (a random start
    gains most in its first epochs: judged by its last, one slow epoch ended it on the
    digits pooled to 16-D, which it wins by 1.0 nats per vector).

    Each turn goes to the training whose best validation score, grown at its recent gain
    per second (over its last ``RATE_WINDOW`` turns) for the time left, is highest;
    until a training has a gain to go by, it comes first (ties: the one that has trained
    least). A training that cannot reach the best score of any (ended ones too) at that
    optimistic rate ends there, with its best weights: its time goes to the others, and
    once none is left, what remains of the budget to what follows (the refit of the
    mixture). Without a deadline, each trains to its end in turn. One not begun by the
    deadline is not trained (where another has begun).

    Split in halves, the budget's first half went to the anchored start where it had
    nothing to gain (64 pixels of dequantised digits: 21 epochs, the best its first),
    and the random start, still gaining at the deadline, had 36.7 s of the 45 s, where
    it alone had them all: 87.8 nats per image against 89.7 alone. Where the anchored
    start wins (latents), the random one had half the budget for nothing. And where the
    average of mixtures was kept untrained (32- and 64-D latents), the anchored start's
    epochs until the deadline had left the refit of the mixtures to every row one EM
    round: 0.05 to 0.2 nats per row below the averaged GMM, which refits until its
    deadline.

    Every process of a distributed fit trains the same one in each turn, and ends the
    same ones (rank 0's choice: clocks differ between processes).
    """
    lanes = {
        name: _Lane(training, (prior or {}).get(name), name in lumpy or name in challengers)
        for name, training in steps.items()
    }
    names = list(steps)
    histories: dict[str, TrainingHistory] = {}

    def stop(name: str) -> None:
        """End training ``name`` here, its best weights kept."""
        try:
            lanes.pop(name).steps.send(True)
        except StopIteration as ended:
            histories[name] = ended.value

    while lanes:
        if deadline is None:
            name = next(iter(lanes))
        else:
            left = deadline - time.perf_counter()
            ended = [h.best_validation_score for n, h in histories.items() if n not in challengers]
            top = max(
                [
                    lane.points[-1][1]
                    for n, lane in lanes.items()
                    if lane.points and n not in challengers
                ]
                + [score for score in ended if score is not None],
                default=-math.inf,
            )
            for other in names:
                hopeless = other in lanes and lanes[other].started and other not in lumpy
                hopeless = hopeless and lanes[other].reach(left) < top
                if ctx.is_distributed:
                    hopeless = broadcast_flag(hopeless, ctx)
                if hopeless:
                    stop(other)
            if not lanes:
                break
            name = max(lanes, key=lambda n: (lanes[n].reach(left), -lanes[n].seconds))
        if ctx.is_distributed:
            name = names[broadcast_int(names.index(name), ctx)]
        lane = lanes[name]
        begun = histories or any(other.started for other in lanes.values())
        if begun and not lane.started and deadline is not None and time.perf_counter() >= deadline:
            lanes.pop(name).steps.close()  # its first epoch would run past the deadline
            continue
        began, lane.started = time.perf_counter(), True
        try:
            history = lane.steps.send(None)
        except StopIteration as ended:
            histories[name] = ended.value
            del lanes[name]
            continue
        lane.record(history, time.perf_counter() - began)
    return histories
