"""Which start of the latent density estimator to keep: the anchored start, the random
one, or a larger mixture that the anchor's search finds when it goes on."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import distributed
from .._sources import DiskRows
from ..density import BaseDensityEstimator
from ..distributed import Context, broadcast_int
from ..nn.autoregressive import AutoregressiveMDN
from ..training import Display, Steps, TrainingHistory
from ._em import HeldOutSearch
from ._selection import clearly_worse
from .gmm import GMM

__all__ = ["StartRace", "interleave"]

#: Validations over which a start's recent gain per second is measured (see
#: :func:`interleave`).
RATE_WINDOW = 3


class StartRace(BaseDensityEstimator):
    """The choice between the starts of a fit (a base of
    :class:`~ldelib.models._mdn_fit.AnchoredFit`, which trains them)."""

    module_: AutoregressiveMDN
    anchor_: dict[str, Any] | None
    n_components_: int
    start_scores_: dict[str, float | None]

    # Of AnchoredFit: how a start is trained, and the network's units and inputs.
    _train_start: Callable[..., TrainingHistory]
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
    ) -> tuple[TrainingHistory, GMM]:
        """Train the anchored start and the random one; keep the better on validation.
        Returns the kept start's history and the mixture it is anchored on.

        Where the data look like a mixture, the anchored start wins and the network only
        corrects it; where a flexible model can do better (dequantised images, latents of
        a few distinct shapes), the random start's ten free components per conditional
        and wider network win, which corrections to a mixture of few components cannot
        reach. The two train in turns (:func:`interleave`), so the budget goes to the
        start that can still gain most. Both are scored on the same validation rows, row
        by row, and the random start must lead by more than ``CLEARLY_WORSE_SE`` paired
        standard errors: a narrower win is as likely noise of the split (measured: on
        one seed of the 2-D ring the random start won on validation and lost 0.020 +-
        0.003 nats to the mixture on test). So the kept start is never below the mixture
        on validation (the anchored start keeps its untrained state when no epoch beats
        it).

        Without ``random_start`` (no validation rows, or no time for
        ``_MIN_RANDOM_EPOCHS`` epochs of it), the anchored start trains alone: on the
        whole budget, or, where the budget cut the mixture's ``search`` while it still
        improved, on half of what it left, the search going on in the other half
        (:meth:`_resume_search`). There, where the anchored start's first validation
        gains less than the search's last K did, its training ends at once and the search
        has all that is left (:meth:`_yields_to_search`). Where the random start had
        time for 2 to 17 epochs, it trailed by 5 to 41 nats per row (latents and warped
        targets of 60,000 rows at D = 32 and 64).
        """
        if random_start and valid is not None:
            return self._race_starts(mixture, train, valid, rng, device, deadline), mixture
        resumes = search is not None and deadline is not None and valid is not None
        now = time.perf_counter()
        half = now + (deadline - now) / 2 if resumes and deadline is not None else deadline
        first_look = self._yields_to_search(search) if resumes else None
        anchored = self._train_start(mixture, train, valid, rng, device, half, first_look)
        if resumes:
            assert search is not None and valid is not None  # resumes says so
            anchored, mixture = self._resume_search(
                search, mixture, anchored, valid, device, deadline
            )
        if self._races():
            best = anchored.best_validation_score
            self.start_scores_ = {"gmm": self._in_nats_or_none(best), "random": None}
        return anchored, mixture

    def _race_starts(
        self,
        mixture: GMM,
        train: Tensor | DiskRows,
        valid: np.ndarray,
        rng: np.random.Generator,
        device: torch.device,
        deadline: float | None,
    ) -> TrainingHistory:
        """The race of :meth:`_race` with both starts: the kept one's history, its state
        (``module_``, ``anchor_``, ``n_components_``) left on the estimator."""
        steps, states = {}, {}
        for name, start in (("gmm", mixture), ("random", None)):
            steps[name] = self._start(start, train, valid, rng, device, deadline)
            states[name] = dict(self.__dict__)
        histories = interleave(steps, deadline, distributed.context())
        rows = {}
        for name in histories:
            self.__dict__.update(states[name])
            rows[name] = self._score_rows(valid, device)
        random = "random" in rows and clearly_worse(rows["gmm"], rows["random"])
        won = "random" if random else "gmm"
        self.__dict__.update(states[won])
        self.start_scores_ = {
            name: self._in_nats_or_none(
                histories[name].best_validation_score if name in histories else None
            )
            for name in steps
        }
        return histories[won]

    def _yields_to_search(self, search: HeldOutSearch | None) -> Callable[[float], bool] | None:
        """The anchored start's first look (see :class:`~ldelib.training.TrainingConfig`)
        where the mixture's ``search`` will resume: training ends at its first validation
        when that gained less than the search's last step (``last_gain``), which is
        likelier to pay for the rest of the budget: per row against the last K, per row
        and second against the last mixture averaged (``last_seconds``; the first
        epoch's seconds count from here). ``None`` (train until half) when the search has
        not yet measured a gain.

        At 60,000 rows of 128-D MNIST latents, 300 s, the anchored start trained for half
        of what the search left (4 epochs), and the search, cut at K = 20, did not reach
        K = 40 in the other half: the GMM did in its 300 s, and scored 8.1 nats per row
        higher. Yielding, the search reached it and the LDE equals the GMM (-125.15 against
        -125.21). On five warped targets of 60,000 rows (45 s): +0.01 to +0.09 nats per row
        on four, -0.03 on heavy-tailed D = 16, whose network's later epochs paid more.
        """
        gain = None if search is None else search.last_gain
        if search is None or gain is None:
            return None
        seconds = search.last_seconds
        per_dimension = gain / self.n_features_in_  # training's units: nats per dimension
        began = time.perf_counter()

        def first_look(score_gain: float) -> bool:
            assert self.anchor_ is not None
            self.anchor_["first_epoch_gain"] = score_gain * self.n_features_in_
            if seconds is None:
                return score_gain < per_dimension
            return score_gain / (time.perf_counter() - began) < per_dimension / seconds

        return first_look

    def _resume_search(
        self,
        search: HeldOutSearch,
        mixture: GMM,
        anchored: TrainingHistory,
        valid: np.ndarray,
        device: torch.device,
        deadline: float | None,
    ) -> tuple[TrainingHistory, GMM]:
        """Go on with the mixture's search that the budget cut, until ``deadline``; a
        mixture it finds that scores the validation rows higher than the trained
        anchored start replaces it, untrained. Returns the kept start's history and its
        mixture.

        Where the data look like a mixture (warped targets of 60,000 rows), a larger K
        is worth more than the network's corrections, which the search reaches only with
        more of the budget; where the network gains (latents, heavy-tailed clusters), it
        gains most in its first epochs. No fixed share of the budget served both: the
        mixture's search with 0.8 of it instead of 0.5 moved the LDE by +0.03 to +0.51
        nats per row on four warped targets and by -0.10 to -0.51 on latents and
        heavy-tailed clusters. Going on after half of the training's time instead
        (45 s, one thread, test nats per row against the network on all of it): +0.46,
        +0.20 and +0.04 on warped D = 64, 32 and 16 at 60,000 rows; -0.004 to -0.012 on
        three sets where the larger K did not win. Only a search cut while still
        improving goes on (``HeldOutSearch.improving``): on 64-D MNIST latents, cut
        after a K that did not improve, going on found nothing and cost the network half
        its epochs (-0.06 +- 0.03).
        """
        assert self.anchor_ is not None  # the anchored start trained
        network_rows = self._score_rows(valid, device)
        began = time.perf_counter()
        larger = search.resume(deadline)
        self.anchor_["resumed_s"] = time.perf_counter() - began
        if larger is None:
            return anchored, mixture
        mixture_rows = larger.score_samples(valid)  # standardised rows, identity scaling
        width = self._condition_width()
        if width:  # the joint mixture of (context, z): its conditional, as the network's
            mixture_rows = mixture_rows - larger.score_samples(valid, n_dims=width)
        if not float(mixture_rows.mean()) > float(network_rows.mean()):
            return anchored, mixture
        self.n_components_ = larger.n_components_
        held_out = larger._selected_score()
        self.anchor_.update(
            n_components=larger.n_components_,
            n_average=larger.n_average_,
            reg_covar=larger.reg_covar_,
            validation_score=None
            if width or held_out is None
            else held_out - self._log_scale_sum(),
        )
        self._build_module(larger, device)
        self.module_.eval()  # as training leaves it
        score = float(mixture_rows.mean()) / self.n_features_in_  # training's units
        return TrainingHistory(timed_out=True, initial_validation_score=score), larger

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
    score after each of its turns."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.seconds = 0.0
        self.points: list[tuple[float, float]] = []

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
        (t0, s0), (t1, s1) = (
            self.points[max(0, len(self.points) - 1 - RATE_WINDOW)],
            self.points[-1],
        )
        return s1 + (s1 - s0) / max(t1 - t0, 1e-9) * max(left, 0.0)


def interleave(
    steps: dict[str, Steps], deadline: float | None, ctx: Context
) -> dict[str, TrainingHistory]:
    """Run the trainings ``steps`` (see :func:`~ldelib.training.training_steps`) in
    turns of one validation each until each ends (by its early stopping, or by the
    ``deadline`` that each was given); their histories.

    Each turn goes to the training whose best validation score, grown at its recent gain
    per second (over its last ``RATE_WINDOW`` validations) for the time left, is highest;
    until a training has a gain to go by, it comes first (ties: the one that has trained
    least). A training that cannot reach another's score at that (optimistic) rate gets
    no more turns while the other trains, so its time goes to the other; once the other
    ends, it has what is left. Without a deadline, each trains to its end in turn. One
    not begun by the deadline is not trained (where another has begun).

    Split in halves, the budget's first half went to the anchored start where it had
    nothing to gain (64 pixels of dequantised digits: 21 epochs, the best its first),
    and the random start, still gaining at the deadline, had 36.7 s of the 45 s, where
    it alone had them all: 87.8 nats per image against 89.7 alone. Where the anchored
    start wins (latents), the random one had half the budget for nothing.

    Every process of a distributed fit trains the same one in each turn (rank 0's
    choice: clocks differ between processes).
    """
    lanes = {name: _Lane(training) for name, training in steps.items()}
    names = list(steps)
    histories: dict[str, TrainingHistory] = {}
    while lanes:
        if deadline is None:
            name = next(iter(lanes))
        else:
            left = deadline - time.perf_counter()
            name = max(lanes, key=lambda n: (lanes[n].reach(left), -lanes[n].seconds))
        if ctx.is_distributed:
            name = names[broadcast_int(names.index(name), ctx)]
        lane = lanes[name]
        begun = histories or any(other.points for other in lanes.values())
        if begun and not lane.points and deadline is not None and time.perf_counter() >= deadline:
            lane.steps.close()  # its first epoch would run past the deadline
            del lanes[name]
            continue
        began = time.perf_counter()
        try:
            history = lane.steps.send(None)
        except StopIteration as end:
            histories[name] = end.value
            del lanes[name]
            continue
        lane.record(history, time.perf_counter() - began)
    return histories
