"""Which start of the latent density estimator to keep: the anchored start, the random
one, or a larger mixture that the anchor's search finds when it goes on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._sources import DiskRows
from ..density import BaseDensityEstimator
from ..nn.autoregressive import AutoregressiveMDN
from ..training import Display, TrainingHistory
from ._em import HeldOutSearch
from ._selection import clearly_worse
from .gmm import GMM

__all__ = ["StartRace"]


class StartRace(BaseDensityEstimator):
    """The choice between the starts of a fit (a base of
    :class:`~ldelib.models._mdn_fit.AnchoredFit`, which trains them)."""

    module_: AutoregressiveMDN
    anchor_: dict[str, Any] | None
    n_components_: int
    start_scores_: dict[str, float | None]

    # Of AnchoredFit: how a start is trained, and the network's units and inputs.
    _train_start: Callable[..., TrainingHistory]
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
        """Train the anchored start, then the random one; keep the better on validation.
        Returns the kept start's history and the mixture it is anchored on.

        Where the data look like a mixture, the anchored start wins and the network only
        corrects it; where a flexible model can do better (dequantised images, latents of
        a few distinct shapes), the random start's ten free components per conditional
        and wider network win, which corrections to a mixture of few components cannot
        reach. Both are scored on the same validation rows, row by row, and the random
        start must lead by more than ``CLEARLY_WORSE_SE`` paired standard errors: a
        narrower win is as likely noise of the split (measured: on one seed of the 2-D
        ring the random start won on validation and lost 0.020 +- 0.003 nats to the
        mixture on test). So the kept start is never below the mixture on validation (the
        anchored start keeps its untrained state when no epoch beats it). What the
        mixture's search leaves of a budget is split in halves; what the anchored start's
        early stop leaves goes to the random one.

        Without ``random_start`` (no validation rows, or no time for
        ``_MIN_RANDOM_EPOCHS`` epochs of it), the anchored start trains alone: on the
        whole budget, or, where the budget cut the mixture's ``search`` while it still
        improved, on half of what it left, the search going on in the other half
        (:meth:`_resume_search`). There, where the anchored start's first validation
        gains less than the search's last K did, its training ends at once and the search
        has all that is left (:meth:`_yields_to_search`). Where the random start won, it
        had trained 68 to 94 epochs (digits); where it had time for 2 to 17, it trailed by
        5 to 41 nats per row (latents and warped targets of 60,000 rows at D = 32 and 64).
        """
        now = time.perf_counter()
        resumes = search is not None and not random_start
        split = deadline is not None and valid is not None and (random_start or resumes)
        half = now + (deadline - now) / 2 if split and deadline is not None else deadline
        first_look = self._yields_to_search(search) if resumes and split else None
        anchored = self._train_start(mixture, train, valid, rng, device, half, first_look)
        if resumes and split:
            assert search is not None and valid is not None  # resumes and split say so
            anchored, mixture = self._resume_search(
                search, mixture, anchored, valid, device, deadline
            )
        kept = dict(self.__dict__)
        scores = {"gmm": anchored.best_validation_score}
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if valid is None or out_of_time or not random_start:
            if self._races():
                self.start_scores_ = {"gmm": self._in_nats_or_none(scores["gmm"]), "random": None}
            return anchored, mixture
        anchored_rows = self._score_rows(valid, device)
        fresh = self._train_start(None, train, valid, rng, device, deadline)
        scores["random"] = fresh.best_validation_score
        won = "random" if clearly_worse(anchored_rows, self._score_rows(valid, device)) else "gmm"
        if won == "gmm":
            self.__dict__.update(kept)
        self.start_scores_ = {k: self._in_nats_or_none(v) for k, v in scores.items()}
        return (fresh, mixture) if won == "random" else (anchored, mixture)

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
