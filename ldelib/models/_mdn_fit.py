"""How the latent density estimator is fitted: its anchor mixture, the race between the
anchored and the random start, the mixture's search resumed, and the training."""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .. import distributed
from .._arrays import torch_generator
from .._budget import fit_deadline
from .._sources import DiskRows, RowSource
from .._threads import epoch_seconds, step_flops, training_threads
from .._validation import python_params
from ..base import DegenerateDataWarning
from ..nn.autoregressive import AutoregressiveMDN
from ..training import (
    Display,
    Steps,
    TrainingConfig,
    run_to_end,
    scoped,
    seeded,
    split_positions,
    training_steps,
)
from ._em import HeldOutSearch
from ._packed import Packed, packed_codes, packed_rows
from ._race import StartRace
from ._selection import is_search, per_component, rows_to_fit
from .gmm import GMM

__all__ = ["AnchoredFit"]


# Rows on disk: at most this many validation rows (scored at every validation, and
# once more per start after training: 65,536 rows took 4 to 6 s each at D = 64, and a
# 30 s budget ran to 50 s), and this many rows for the anchor's EM.
_MAX_DISK_VALID = 16_384
_MAX_DISK_ANCHOR = 100_000
#: The share of ``max_time`` the anchor mixture's search may use; the networks get the rest.
_ANCHOR_SHARE = 0.5
#: Epochs the random start must have time for, or it is not trained (see ``_race``).
_MIN_RANDOM_EPOCHS = 10


class AnchoredFit(StartRace):
    """The fitting half of :class:`~ldelib.CausalConvMDN`, which holds the parameters,
    the network (``_make_module``), the densities and the file format."""

    # Parameters, set by the subclass's __init__.
    n_components: Any
    init: str
    covariance_type: str
    n_average: int | str
    architecture: Literal["residual", "paper"]
    ordering: str
    learning_rate: float | None
    weight_decay: float
    batch_size: int
    validation_fraction: float
    n_iter_no_change: int
    max_time: float | None
    # Fitted.
    module_: AutoregressiveMDN
    anchor_: dict[str, Any] | None
    n_components_: int
    ordering_: np.ndarray

    def _make_module(self, anchored: bool | None = None) -> AutoregressiveMDN:
        raise NotImplementedError

    def _anchored(self) -> bool:
        return self.init == "gmm" or (self.init == "auto" and self.architecture == "residual")

    def _anchor_estimator(
        self, seed: int | None = None, max_time: float | None = None, covariance_type: str = "full"
    ) -> GMM:
        return GMM(
            self.n_components,
            covariance_type=covariance_type,  # type: ignore[arg-type]
            n_average=self.n_average,  # type: ignore[arg-type]
            reg_covar="auto",
            max_time=max_time,
            standardize=False,
            random_state=seed,
        )

    def _min_rows(self) -> tuple[int, str]:
        if not self._anchored():
            return super()._min_rows()
        anchor = self._anchor_estimator()
        anchor_rows, fit_rows = rows_to_fit(anchor.n_components, float(anchor.validation_fraction))
        vf = float(self.validation_fraction)
        minimum = anchor_rows
        # The mixture sees only the rows not held out for validation (see split_positions).
        while vf > 0 and minimum - min(max(1, round(vf * minimum)), minimum - 1) < anchor_rows:
            minimum += 1
        held_out = (
            f" fitted to the rows left after holding out validation_fraction={vf} (at "
            "least one row)"
            if vf > 0
            else " fitted to every row"
        )
        # The anchor's own validation_fraction is no parameter of this model: in percent.
        return minimum, (
            f"Its start (init={self.init!r}) is a Gaussian mixture{held_out}; it chooses "
            f"{'n_components and ' if is_search(anchor.n_components) else ''}reg_covar by "
            "held-out likelihood, holding out "
            f"{anchor.validation_fraction:.0%} of those rows (at least one) and fitting each "
            f"candidate on the rest, which must hold at least {fit_rows}"
            f"{per_component(fit_rows)}. Use init='random' to fit on fewer rows."
        )

    def _races(self) -> bool:
        """Whether the fit trains both starts and keeps the better on validation."""
        return self.init == "auto" and self.architecture == "residual"

    def _free_components(self) -> int:
        """K of a network without an anchor: a list of candidates needs a mixture to
        choose among them, so a list and ``"auto"`` mean 10."""
        k = self.n_components
        return int(k) if isinstance(k, numbers.Integral) else 10

    # -------------------------------------------------------------------- fit
    def _condition_width(self) -> int:
        """Columns of the condition in front of a conditional fit's packed rows (see
        :mod:`ldelib.models._packed`): 1 for labels, C for a context, else 0."""
        if hasattr(self, "classes_"):
            return 1
        return int(getattr(self, "n_context_features_", 0))

    def _trainable(self, module: AutoregressiveMDN) -> nn.Module:
        """``module`` as training and validation call it: on packed rows if conditional."""
        width = self._condition_width()
        return Packed(module, width, hasattr(self, "classes_")) if width else module

    def _fit_conditional(self, rows: RowSource, y: np.ndarray, rng: np.random.Generator) -> None:
        """The same steps as without a condition, on rows that carry theirs: the anchor
        is the conditional mixture (per class, or the joint over the context and z),
        and the networks take the condition at every position."""
        self._fit(packed_rows(rows, y), rng)

    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        """Fit on rows in memory, or on rows read from disk as needed.

        Both take the same steps with the same random draws, so a file and the array it
        holds give the same model; on disk, the validation rows are at most
        ``_MAX_DISK_VALID`` and the mixture anchor sees a subsample of at most
        ``_MAX_DISK_ANCHOR`` rows (EM on every row of a huge file would not fit).
        """
        width = self._condition_width()
        if self.ordering == "variance":
            spread = rows.spread()[width:]
            self.ordering_ = np.argsort(-(spread * self.scale_), kind="stable")
        else:
            self.ordering_ = np.arange(self.n_features_in_)
        rows.columns = np.r_[np.arange(width), width + self.ordering_]
        device = torch.device(self.device_)
        n_valid = _MAX_DISK_VALID if rows.on_disk else len(rows)
        n_anchor = _MAX_DISK_ANCHOR if rows.on_disk else len(rows)
        # The anchor is fitted on the training rows only (the validation rows choose its
        # K): they then score the anchored start as fairly as the random one (and early
        # stopping, the untrained anchor as fairly as any epoch). Fitted on them too, a
        # mixture of many components scores them in sample, and wins selections it should
        # lose.
        train_pos, valid_pos = split_positions(len(rows), float(self.validation_fraction), rng)
        valid = None if valid_pos is None else rows.take(valid_pos[:n_valid])
        train = rows.gather(train_pos, self._dtype, device)
        anchor_rows = rows.subsample(n_anchor, rng, among=train_pos) if self._anchored() else None
        deadline = fit_deadline(self.max_time)
        random_start = self._races() and valid is not None
        late_random: Callable[[], float] | None = None
        if random_start and deadline is not None:
            # The random start races where its epochs fit in what the mixture's share
            # leaves (the networks' share). In half of it, on a CPU that trains a third
            # slower, 64-D digits (45 s) left it out by 1 s: it then trained only in what
            # the anchored start left, 15 epochs, and scored 76.2 nats per image, where
            # init="random" alone scores 83.7.
            slot = (1 - _ANCHOR_SHARE) * (deadline - time.perf_counter())

            def random_epochs_s() -> float:
                return _MIN_RANDOM_EPOCHS * self._random_epoch_s(len(train), device)

            random_start = random_epochs_s() <= slot
            # Left out, it may still train in what the anchored start leaves (_race).
            late_random = None if random_start else random_epochs_s
        anchor = (
            self._fit_anchor(anchor_rows, rng, deadline, valid, min(len(rows), n_anchor))
            if anchor_rows is not None
            else None
        )
        # Dropout draws from torch's global generator: seeded() forks it for the whole fit.
        with seeded(rng, device, self._dtype):
            if anchor is None:
                history = run_to_end(self._start(None, train, valid, rng, device, deadline))
            else:
                mixture, search, refit_s = anchor
                # Training ends early enough for the anchor's refit to every row to end by
                # the deadline (its first EM round took 78 s of 60,000 rows at D = 512).
                until = None if deadline is None else deadline - refit_s
                # The search reserves the time of its best's refit itself (from the
                # fit's deadline): from `until`, it reserved it twice, and stopped 2 s
                # early on 60,000 rows of a 32-D warped target (refit: 2.3 s).
                history, mixture = self._race(
                    mixture,
                    search,
                    train,
                    valid,
                    rng,
                    device,
                    until,
                    random_start,
                    deadline,
                    late_random,
                )
        if anchor is not None and self.anchor_ is not None and valid is not None:
            self._refit_anchor(mixture, rows.subsample(n_anchor, rng), rng, deadline)
        nats = self._in_nats()
        self.loss_curve_ = [nats.loss(loss) for loss in history.loss_curve]
        self.validation_scores_ = [nats.score(s) for s in history.validation_scores]
        best = history.best_validation_score
        self.best_validation_score_ = None if best is None else nats.score(best)
        self.best_epoch_ = history.best_epoch
        self.n_iter_ = history.n_iter

    def _start(
        self,
        mixture: GMM | None,
        train: Tensor | DiskRows,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
        deadline: float | None,
        first_turn_s: float | None = None,
    ) -> Steps:
        """Build ``module_`` from the mixture (anchored) or from scratch; its training,
        paused after each validation (:func:`~ldelib.training.training_steps`: trained as
        it is advanced, or at once by :func:`~ldelib.training.run_to_end`), and once in
        its first epoch after ``first_turn_s`` seconds."""
        if mixture is None:
            self.anchor_: dict[str, Any] | None = None
            self.n_components_ = self._free_components()
        self._build_module(mixture, device)
        remaining = None if deadline is None else deadline - time.perf_counter()
        return self._training(train, valid, rng, device, remaining, first_turn_s)

    def _build_module(self, mixture: GMM | None, device: torch.device) -> None:
        """An untrained ``module_`` on ``device``: anchored on ``mixture``, or not."""
        self.module_ = self._make_module()
        if mixture is not None:
            assert self.module_.anchor is not None  # _make_module anchors it (anchor_ is set)
            self.module_.anchor.set_mixture(mixture.weights_, mixture.means_, mixture.covariances_)
            if hasattr(mixture, "component_class_"):
                classes = torch.as_tensor(mixture.component_class_)
                self.module_.component_class.copy_(classes)
        self.module_.to(device=device, dtype=self._dtype)

    def _random_epoch_s(self, n_rows: int, device: torch.device) -> float:
        """Seconds an epoch of the random start would take here (timed, not trained)."""
        return epoch_seconds(
            lambda: self._trainable(self._make_module(anchored=False)),
            self._condition_width() + self.n_features_in_,
            int(self.batch_size),
            n_rows,
            device,
            self._dtype,
        )

    def _bar_label(self) -> str:
        """The progress bar's label: which start is training, when both are."""
        if not self._races():
            return type(self).__name__
        return f"{type(self).__name__} ({'gmm' if self.anchor_ is not None else 'random'} start)"

    def _fit_anchor(
        self,
        Z: np.ndarray,
        rng: np.random.Generator,
        deadline: float | None,
        valid: np.ndarray | None = None,
        refit_rows: int = 0,
    ) -> tuple[GMM, HeldOutSearch | None, float]:
        """The anchor mixture, fitted to the training rows ``Z`` by :class:`GMM`, with
        K and the regularisation chosen on ``valid``: the rows that then choose the
        epoch and the start. (Without them, it holds out rows of its own, as GMM does.)
        It may use ``_ANCHOR_SHARE`` of the time left before ``deadline`` (measured: 0.75
        reached no larger K on 60,000 warped-heavy rows at D = 16 and 64 in 45 s; where
        the random start is not trained, 0.8 and 1.0 moved the test score by -0.09 +- 0.10
        and -0.09 +- 0.12 nats per row against 0.5, over seven sets of 10,000 to 60,000
        rows at D = 8 to 64: a K that the search reaches late seldom wins, and it takes
        the anchored start's epochs). Returns the mixture; the search where the budget
        cut it while still improving (for the race, :meth:`_race`), else ``None``; and
        the estimated seconds of its refit to the ``refit_rows`` rows (0 without
        validation rows: :meth:`_refit_anchor` does not run)."""
        start = time.perf_counter()
        # A spent budget still fits the first candidate (GMM's max_time must be positive).
        budget = None if deadline is None else max(_ANCHOR_SHARE * (deadline - start), 1e-9)
        # An integer random_state seeds the anchor as GMM(random_state=...) is seeded:
        # the untrained model can be reproduced from the fitted rows and the seed.
        seed = self.random_state
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            seed = int(rng.integers(2**31 - 1))
        # "auto": the diagonal mixture first, whose EM costs D K per row and step instead
        # of D^2 K, then the full one with what the share leaves.
        kinds = ("diag", "full") if self.covariance_type == "auto" else (self.covariance_type,)
        end = None if budget is None else start + budget
        fits: list[tuple[float, GMM, HeldOutSearch | None]] = []
        for kind in kinds:
            left = None if end is None else max(end - time.perf_counter(), 1e-9)
            mixture, search = self._fit_mixture(self._anchor_estimator(seed, left, kind), Z, valid)
            score = self._mixture_score(mixture, valid) if len(kinds) > 1 else 0.0
            fits.append((score, mixture, search))
        # The later (full) mixture wins ties: max keeps the first of equal keys.
        _, mixture, search = max(reversed(fits), key=lambda fit: fit[0])
        self.n_components_ = mixture.n_components_
        # Of a conditional anchor, the held-out scores are per class or of (context, z).
        held_out = None if self._condition_width() else mixture._selected_score()
        self.anchor_ = {
            "n_components": mixture.n_components_,
            "n_average": mixture.n_average_,
            "covariance_type": mixture.covariance_type,
            "reg_covar": mixture.reg_covar_,
            "validation_score": None if held_out is None else held_out - self._log_scale_sum(),
            "fit_s": time.perf_counter() - start,
        }
        if len(fits) > 1:
            log_det = self._log_scale_sum()
            self.anchor_["covariance_scores"] = {
                m.covariance_type: score - log_det for score, m, _ in fits
            }
        refit_s = 0.0 if search is None else search.refit_seconds(refit_rows)
        # Only a search cut while improving is resumed; another is let go (its rows with it).
        return mixture, search if search is not None and search.improving else None, refit_s

    def _fit_mixture(
        self, estimator: GMM, Z: np.ndarray, valid: np.ndarray | None
    ) -> tuple[GMM, HeldOutSearch | None]:
        """``estimator`` fitted to ``Z``, choosing on ``valid`` where there are rows; and
        its search, for the race (:meth:`_race`) (``None`` for a fit per class)."""
        with warnings.catch_warnings():
            # The same rows: this model says so itself, in its own terms, after its fit.
            warnings.simplefilter("ignore", DegenerateDataWarning)
            if hasattr(self, "classes_"):
                # One mixture per class, each choosing on its own held-out rows.
                return self._class_mixtures(estimator, Z, valid), None
            if valid is None:
                return estimator.fit(Z), None
            search = HeldOutSearch(estimator, Z, valid)
            return search.estimator, search

    def _mixture_score(self, mixture: GMM, valid: np.ndarray | None) -> float:
        """The mean held-out log-likelihood of ``mixture`` (standardised units): on the
        validation rows given (``covariance_type="auto"`` requires them)."""
        assert valid is not None
        if hasattr(self, "classes_"):  # packed rows: codes in front
            codes = packed_codes(valid)
            return float(mixture.score_samples(valid[:, 1:], codes).mean())
        return float(mixture.score_samples(valid).mean())

    def _class_mixtures(self, estimator: GMM, Z: np.ndarray, valid: np.ndarray | None) -> GMM:
        """The anchor of a fit on labels: ``estimator`` fitted per class to packed rows
        ``Z`` (codes in front), each class's K and regularisation chosen on its rows of
        ``valid``, as the unconditional anchor's are. Every class needs training rows."""
        codes = packed_codes(Z)
        present = np.bincount(codes, minlength=len(self.classes_)) > 0
        if not present.all():
            missing = self.classes_[~present].tolist()
            raise ValueError(
                f"No training rows of the classes {missing} were left after holding out "
                f"validation_fraction={self.validation_fraction}: give them more rows."
            )
        estimator.set_params(conditional=True)
        held_out = held_out_codes = None
        if valid is not None:
            held_out, held_out_codes = valid[:, 1:], packed_codes(valid)
        return estimator.fit_per_class(
            Z[:, 1:], codes, len(self.classes_), held_out, held_out_codes
        )

    def _refit_anchor(
        self, mixture: GMM, Z: np.ndarray, rng: np.random.Generator, deadline: float | None
    ) -> None:
        """Refit the kept anchor to every row, from its solution, as GMM refits its choice.

        Selection (the race, and the epochs against the untrained state) needed
        validation rows that the mixture had not seen; once it is made, they add to the
        mixture's rows, as they do to a GMM's after its selection. EM starts from the
        mixture the corrections were trained on, so its components keep their places and
        the corrections still apply, while it moves them by what the extra rows tell.
        """
        assert self.module_.anchor is not None and self.anchor_ is not None
        if hasattr(self, "classes_"):  # packed rows: codes in front; one EM per class
            codes = packed_codes(Z)
            mixture_ = mixture.refitted_classes(Z[:, 1:], codes, rng, deadline)
        else:
            em = mixture.refitted(Z, rng, deadline)
            mixture_ = (em.weights_, em.means_, em.covariances_)  # diagonal ones as (K, D)
        self.module_.anchor.set_mixture(*mixture_)
        self.anchor_["refit_rows"] = len(Z)

    def _in_nats(self) -> Display:
        """Training's per-dimension standardised loss and score as nats per row of data."""
        d, log_det = self.n_features_in_, self._log_scale_sum()
        return Display(
            "train nll",
            "valid ll",
            "nats/row",
            loss=lambda loss: loss * d + log_det,
            score=lambda score: score * d - log_det,
        )

    def _training(
        self,
        train: Tensor | DiskRows,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
        max_time: float | None,
        first_turn_s: float | None = None,
    ) -> Steps:
        n_features = self.n_features_in_
        paper = self.architecture == "paper"
        optimizer = torch.optim.Adam(
            self.module_.parameters(),
            lr=float(self.learning_rate or (2e-4 if paper else 1e-3)),
            betas=(0.5, 0.999) if paper else (0.9, 0.999),
            weight_decay=float(self.weight_decay),
        )

        def as_tensor(x: np.ndarray) -> Tensor:
            return torch.as_tensor(x, dtype=self._dtype, device=device)

        # Under torchrun the loss runs through DDP, which averages the gradients; the
        # anchor's buffers are fixed, so there is nothing to broadcast at each step.
        ctx = distributed.context()
        network = self._trainable(self.module_)
        net = distributed.wrap(network, ctx, device, broadcast_buffers=False)
        # Per-dimension NLL keeps the loss scale, hence the step size, independent of D.
        # Small steps train faster on one thread (see ldelib._threads).
        flops = step_flops(self.module_, int(self.batch_size), n_features)
        config = TrainingConfig(
            max_time=max_time,
            keep_initial=self.anchor_ is not None,
            lr_decay_patience=max(1, int(self.n_iter_no_change) // 2),
            first_turn_s=first_turn_s,
            desc=self._bar_label(),
            display=self._in_nats(),
            **python_params(
                self,
                "max_epochs",
                "batch_size",
                "n_iter_no_change",
                "validate_every",
                "verbose",
            ),
        )
        steps = training_steps(
            self.module_,
            lambda z: -net(z).mean() / n_features,
            train,
            None if valid is None else as_tensor(valid),
            config,
            optimizer=optimizer,
            generator=torch_generator(rng, torch.device("cpu")),
            distributed=ctx,
        )
        return scoped(steps, lambda: training_threads(flops, device))
