"""The latent density estimator: a causal-convolution mixture density network."""

from __future__ import annotations

import copy
import numbers
import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from .. import distributed
from .._arrays import torch_generator
from .._budget import fit_deadline
from .._sources import DiskRows, RowSource
from .._summary import SummaryItem
from .._threads import step_flops, training_threads
from .._validation import (
    MAX_TIME,
    TRAINING_PARAMS,
    Constraint,
    IgnoredWhen,
    Integral,
    Options,
    Real,
    When,
    python_params,
)
from ..base import DegenerateDataWarning
from ..density import BaseDensityEstimator
from ..nn.autoregressive import AutoregressiveMDN
from ..persistence import register
from ..training import (
    Display,
    TrainingConfig,
    TrainingHistory,
    seeded,
    split_positions,
    train_module,
)
from ._selection import clearly_worse, fit_until, is_search, per_component, rows_to_fit
from .gmm import GMM, N_COMPONENTS, HeldOutSearch, em_threads

__all__ = ["CausalConvMDN"]


def _better(score: float | None, than: float | None) -> bool:
    """Whether a validation score beats another (a missing one beats nothing)."""
    return score is not None and (than is None or score > than)


# Rows on disk: at most this many validation rows (scored at every validation, and
# once more per start after training: 65,536 rows took 4 to 6 s each at D = 64, and a
# 30 s budget ran to 50 s), and this many rows for the anchor's EM.
_MAX_DISK_VALID = 16_384
_MAX_DISK_ANCHOR = 100_000
#: The share of ``max_time`` the anchor mixture's search may use; the networks get the rest.
_ANCHOR_SHARE = 0.5
#: Epochs the random start must have time for, or it is not trained (see ``_race``).
_MIN_RANDOM_EPOCHS = 10


@register("ldelib.CausalConvMDN")
class CausalConvMDN(BaseDensityEstimator):
    r"""Autoregressive mixture density network with causal dilated convolutions.

    Models :math:`p(z) = \prod_j p(z_j \mid z_{<j})` with a :math:`K`-component Gaussian
    mixture per dimension whose parameters come from a causal convolution network
    running along the dimensions (the latent density estimator of Yoo et al., 2019).
    ``log_prob`` is exact and takes one parallel pass; ``sample`` draws one dimension at
    a time with cached activations.

    By default the conditionals start from those of a full-covariance Gaussian mixture
    fitted by EM (a :class:`~ldelib.GMM` with the number of components and the
    covariance regularisation chosen on the validation rows), and the network learns
    corrections to every component's mean, scale and weight from an output layer that
    starts at zero. Before training the model *is* that mixture, fitted to the rows not
    held out for validation; early stopping also considers the untrained state, so the
    validation score can only improve on the mixture's, and training spends its budget
    on what the mixture misses. Corrections to a mixture of few components cannot reach
    every density a free network can (dequantised images, for one), so by default a
    network from a random start is trained too, and the better of the two on validation
    is kept.

    Parameters
    ----------
    n_components : int, list of int or "auto", default="auto"
        Gaussian components :math:`K` per conditional. With the mixture anchor, passed
        to :class:`~ldelib.GMM` (``"auto"`` and lists are chosen on held-out
        likelihood); without it (and for the random start of ``init="auto"``),
        ``"auto"`` and lists mean 10.
    init : {"auto", "gmm", "random"}, default="auto"
        ``"gmm"``: start from the conditionals of a fitted Gaussian mixture, as above.
        ``"random"``: a freshly initialised network predicts the mixtures outright.
        ``"auto"``: with ``architecture="residual"``, train both starts on the same rows
        and keep the anchored one unless the random one is ahead on validation by more
        than two paired standard errors (``start_scores_``), so the model is never below
        the mixture there, nor clearly below the random start. Of ``max_time``, the
        mixture's search may use half, and what it leaves is split in halves between the
        starts; when the random start would not have time for 10 epochs there (timed
        before the fit: large data, large D), it is not trained, and the anchored start
        has all that the search leaves. With ``"paper"``, ``"random"``.
    architecture : {"residual", "paper"}, default="residual"
        ``"residual"``: constant-width residual blocks of dilated causal convolutions,
        log-space likelihood, bounded scales, no normalisation across positions.
        ``"paper"``: the original network (widths doubling from 16, BatchNorm,
        LeakyReLU(0.2), unbounded :math:`\sigma = e^s`), with its training defaults
        (Adam(0.5, 0.999), learning rate 2e-4), to reproduce the paper; it has no
        anchor and no dropout, and its own widths, depth and scales: giving
        ``hidden_channels``, ``n_blocks`` or ``min_scale`` a value other than its
        default raises.
    hidden_channels : int or None, default=None
        Width of the residual blocks; ``None`` means 16 with the anchor (the mixture
        carries the bulk of the density, so a narrow network is enough) and 64 without.
    n_blocks : int or None, default=None
        Residual blocks; ``None`` uses just enough (:math:`\lceil\log_2 D\rceil`, at
        least 1) for every conditional to see all earlier dimensions.
    min_scale : float, default=1e-3
        Lower bound of every mixture scale of the residual network without an
        anchor, in standardised units.
        (With the anchor, corrections change each scale by a factor in
        :math:`[e^{-3}, e^3]`.)
    dropout : float or None, default=None
        Dropout probability inside the residual blocks during training; ``None`` means
        0 with the anchor (measured: no better on validation, and slower), 0.2 without
        (latent sets are often small: without it a randomly started network overfits
        before early stopping can help), and 0 for ``"paper"`` (which has none).
    ordering : {"natural", "variance"}, default="natural"
        Order of the autoregression: the column order, or by decreasing variance.
    learning_rate : float or None, default=None
        Adam learning rate; ``None`` means 1e-3 (residual) or 2e-4 (paper).
    weight_decay : float, default=0.0
        Adam weight decay.
    batch_size : int, default=64
    max_epochs : int, default=200
    validation_fraction : float, default=0.1
        Fraction of rows held out for early stopping; 0 trains on everything for
        ``max_epochs``.
    n_iter_no_change : int, default=20
        Epochs without a better validation log-likelihood before stopping; after
        ``n_iter_no_change // 2`` of them the learning rate halves, which lets the
        mixture parameters settle before training ends.
    validate_every : int or None, default=None
        Validate every this many training steps instead of at the end of each epoch,
        for epochs too long to wait for (millions of rows); ``n_iter_no_change`` then
        counts validations.
    max_time : float or None, default=None
        Wall-clock budget of the whole fit in seconds, counted from the call to ``fit``
        (checking, standardising and copying the rows count against it). The anchor
        mixture's search and EM may use half of what is left (see :class:`~ldelib.GMM`'s
        ``max_time``), the training the rest, less the anchor's refit to every row
        that follows it: it stops at the first step past its time, even within an
        epoch, and the best weights so far are kept. Where the budget cut the search
        while it still improved, and the random start does not race, the search goes
        on in the second half of the training's time, and its larger mixture replaces
        the trained network if it scores higher on validation (see ``anchor_``).
        ``None``: no limit.
    standardize : bool, default=True
        Fit on standardised columns; log-likelihoods stay in the units of the data.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network, whatever torch's global default dtype is.
        ``"float64"`` computes every row in float64, at about half the speed. Either
        way, a row too far out for float32 (beyond about 1e16 standard deviations, where
        its density underflows) is scored by a float64 copy of the network, with the
        same weights: its log-density stays finite, and its gradient flows to the input
        but not to the weights.
    random_state : int, Generator or None, default=None
        Seeds the mixture, initialisation, splits, shuffling and the sampling stream.
    verbose : int, default=0
        Above 0, shows a progress bar with the loss.

    Attributes
    ----------
    module_ : AutoregressiveMDN
        The fitted network (on ``device_``), in eval mode.
    n_components_ : int
        Mixture components per conditional.
    start_scores_ : dict
        With ``init="auto"``: the best validation score (nats per row, data units) of the
        ``"gmm"`` and the ``"random"`` start (``None``: not trained, when the budget ran
        out, had no time for 10 epochs of the random start, or there are no validation
        rows). The random start is kept only when it leads
        by more than two paired standard errors on the validation rows.
    anchor_ : dict or None
        The anchor mixture of the kept model: ``n_components`` and ``reg_covar`` as
        chosen, the held-out mean log-likelihood that chose them (nats per row, data
        units; ``validation_score``) and the seconds its selection and fit took
        (``fit_s``); where the budget cut that search, it goes on after the anchored
        start's training (``resumed_s``: its seconds then), and the mixture it finds
        replaces the trained network when it scores the validation rows higher. With
        validation rows, ``refit_rows``: once the selection is made, the mixture is
        refitted to every row (at most 100,000 on disk) from its solution, as
        :class:`~ldelib.GMM` refits its choice. ``None`` without an anchor, or when the
        random start won.
    ordering_ : ndarray of shape (n_features,)
        Column order of the autoregression.
    loss_curve_ : list of float
        Training negative log-likelihood per epoch (nats per row, data units).
    validation_scores_ : list of float
        Validation mean log-likelihood per epoch (nats per row, data units).
    best_validation_score_ : float or None
    best_epoch_ : int
        Epoch whose weights were kept (0-based); -1: the untrained (anchor) state, which
        is the mixture exactly, and scores and samples without running the network.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation.

    References
    ----------
    .. [1] J. Yoo, H. Lee, N. Kwak. "Density Estimation and Incremental Learning of
       Latent Vector for Generative Autoencoders", arXiv:1902.04294, 2019.
    .. [2] C. M. Bishop. "Mixture Density Networks", Aston University, 1994.

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import CausalConvMDN
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> mdn = CausalConvMDN(max_epochs=5, random_state=0).fit(X)
    >>> mdn.score_samples(X[:2]).shape
    (2,)
    >>> mdn.sample(4).shape
    (4, 3)
    """

    # Rows per forward pass when scoring arrays: the (rows, D, K) mixture terms stay
    # in cache, which is faster than large batches.
    _eval_batch = 1024

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "n_components": N_COMPONENTS,
        "init": [Options("auto", "gmm", "random")],
        "architecture": [Options("residual", "paper")],
        "hidden_channels": [None, Integral(1, None)],
        "n_blocks": [None, Integral(1, None)],
        "min_scale": [Real(0, 1, closed="neither")],
        "dropout": [None, Real(0, 1, closed="left")],
        "ordering": [Options("natural", "variance")],
        "learning_rate": [None, Real(0, None, closed="neither")],
        "weight_decay": [Real(0, None, closed="left")],
        **TRAINING_PARAMS,
        "dtype": [Options("float32", "float64")],
        "validate_every": [None, Integral(1, None)],
        "max_time": MAX_TIME,
        **BaseDensityEstimator._parameter_constraints,  # standardize, random_state, verbose
    }
    _parameter_rules = (
        When(
            {"architecture": "paper"},
            "init",
            [Options("auto", "random")],
            "The paper network has no mixture anchor: use init='random' (or 'auto') with "
            "architecture='paper'.",
        ),
        When(
            {"architecture": "paper"},
            "dropout",
            [None, Real(0, 0)],
            "The paper network has no dropout: use dropout=None or 0 with architecture='paper'.",
        ),
        IgnoredWhen(
            {"architecture": "paper"},
            ("hidden_channels", "n_blocks", "min_scale"),
            "The paper network has its own widths and depth, and unbounded scales.",
        ),
        *(
            When(
                condition,
                "n_components",
                [Integral(1, None), Options("auto")],
                "Without a mixture anchor, no mixture chooses among candidates: give one "
                "K, or 'auto' for 10.",
            )
            for condition in ({"init": "random"}, {"architecture": "paper"})
        ),
    )

    _saved_attributes = (
        *BaseDensityEstimator._saved_attributes,
        "ordering_",
        "n_components_",
        "anchor_",
        "module_",
        "loss_curve_",
        "validation_scores_",
        "best_validation_score_",
        "best_epoch_",
        "n_iter_",
    )
    # Set by fits that race the two starts (init="auto"); files written before it lack it.
    _optional_attributes = (*BaseDensityEstimator._optional_attributes, "start_scores_")

    def __init__(
        self,
        n_components: int | list[int] | Literal["auto"] = "auto",
        *,
        init: Literal["auto", "gmm", "random"] = "auto",
        architecture: Literal["residual", "paper"] = "residual",
        hidden_channels: int | None = None,
        n_blocks: int | None = None,
        min_scale: float = 1e-3,
        dropout: float | None = None,
        ordering: Literal["natural", "variance"] = "natural",
        learning_rate: float | None = None,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_epochs: int = 200,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 20,
        validate_every: int | None = None,
        max_time: float | None = None,
        standardize: bool = True,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.init = init
        self.architecture = architecture
        self.hidden_channels = hidden_channels
        self.n_blocks = n_blocks
        self.min_scale = min_scale
        self.dropout = dropout
        self.ordering = ordering
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.validate_every = validate_every
        self.max_time = max_time
        self.standardize = standardize
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- params
    def _anchored(self) -> bool:
        return self.init == "gmm" or (self.init == "auto" and self.architecture == "residual")

    def _anchor_estimator(self, seed: int | None = None, max_time: float | None = None) -> GMM:
        return GMM(
            self.n_components,
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

    def _held_out_score(self) -> float | None:
        return self.best_validation_score_

    def _races(self) -> bool:
        """Whether the fit trains both starts and keeps the better on validation."""
        return self.init == "auto" and self.architecture == "residual"

    def _free_components(self) -> int:
        """K of a network without an anchor: a list of candidates needs a mixture to
        choose among them, so a list and ``"auto"`` mean 10."""
        k = self.n_components
        return int(k) if isinstance(k, numbers.Integral) else 10

    def _make_module(self, anchored: bool | None = None) -> AutoregressiveMDN:
        """An untrained network: anchored or not (``None``: as the fitted or loaded
        model is, which is anchored exactly when ``anchor_`` is set)."""
        if anchored is None:
            anchored = self.anchor_ is not None
        if self.dropout is not None:
            dropout = float(self.dropout)
        else:
            dropout = 0.0 if self.architecture == "paper" or anchored else 0.2
        if self.hidden_channels is not None:
            width = int(self.hidden_channels)
        else:
            width = 16 if anchored else 64
        return AutoregressiveMDN(
            self.n_features_in_,
            self.n_components_ if anchored else self._free_components(),
            self.architecture,
            width,
            None if self.n_blocks is None else int(self.n_blocks),
            float(self.min_scale),
            dropout,
            anchored=anchored,
        )

    def _restored(self) -> None:
        super()._restored()
        order = self.ordering_
        if not (
            isinstance(order, np.ndarray)
            and order.dtype.kind in "iu"
            and np.array_equal(np.sort(order), np.arange(self.n_features_in_))
        ):
            raise ValueError(f"ordering_ is not a permutation of 0..{self.n_features_in_ - 1}")

    # -------------------------------------------------------------------- fit
    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        """Fit on rows in memory, or on rows read from disk as needed.

        Both take the same steps with the same random draws, so a file and the array it
        holds give the same model; on disk, the validation rows are at most
        ``_MAX_DISK_VALID`` and the mixture anchor sees a subsample of at most
        ``_MAX_DISK_ANCHOR`` rows (EM on every row of a huge file would not fit).
        """
        self.__dict__.pop("start_scores_", None)  # a previous fit's race
        if self.ordering == "variance":
            self.ordering_ = np.argsort(-(rows.spread() * self.scale_), kind="stable")
        else:
            self.ordering_ = np.arange(self.n_features_in_)
        rows.columns = self.ordering_
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
        if random_start and deadline is not None:
            # The random start's nominal time: half of what the mixture's share leaves.
            slot = (1 - _ANCHOR_SHARE) / 2 * (deadline - time.perf_counter())
            random_start = _MIN_RANDOM_EPOCHS * self._random_epoch_s(len(train), device) <= slot
        anchor = (
            self._fit_anchor(anchor_rows, rng, deadline, valid, min(len(rows), n_anchor))
            if anchor_rows is not None
            else None
        )
        # Dropout draws from torch's global generator: seeded() forks it for the whole fit.
        with seeded(rng, device, self._dtype):
            if anchor is None:
                history = self._train_start(None, train, valid, rng, device, deadline)
            else:
                mixture, search, refit_s = anchor
                # Training ends early enough for the anchor's refit to every row to end by
                # the deadline (its first EM round took 78 s of 60,000 rows at D = 512).
                until = None if deadline is None else deadline - refit_s
                history, mixture = self._race(
                    mixture, search, train, valid, rng, device, until, random_start
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

    def _train_start(
        self,
        mixture: GMM | None,
        train: Tensor | DiskRows,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
        deadline: float | None,
    ) -> TrainingHistory:
        """Build ``module_`` from the mixture (anchored) or from scratch, and train it."""
        if mixture is None:
            self.anchor_: dict[str, Any] | None = None
            self.n_components_ = self._free_components()
        self._build_module(mixture, device)
        remaining = None if deadline is None else deadline - time.perf_counter()
        return self._train(train, valid, rng, device, remaining)

    def _build_module(self, mixture: GMM | None, device: torch.device) -> None:
        """An untrained ``module_`` on ``device``: anchored on ``mixture``, or not."""
        self.module_ = self._make_module()
        if mixture is not None:
            assert self.module_.anchor is not None  # _make_module anchors it (anchor_ is set)
            self.module_.anchor.set_mixture(mixture.weights_, mixture.means_, mixture.covariances_)
        self.module_.to(device=device, dtype=self._dtype)

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
        (:meth:`_resume_search`). Where the random start won, it had trained 68 to 94
        epochs (digits); where it had time for 2 to 17, it trailed by 5 to 41 nats per
        row (latents and warped targets of 60,000 rows at D = 32 and 64).
        """
        now = time.perf_counter()
        resumes = search is not None and not random_start
        split = deadline is not None and valid is not None and (random_start or resumes)
        half = now + (deadline - now) / 2 if split and deadline is not None else deadline
        anchored = self._train_start(mixture, train, valid, rng, device, half)
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
        if not float(mixture_rows.mean()) > float(network_rows.mean()):
            return anchored, mixture
        self.n_components_ = larger.n_components_
        self.anchor_.update(
            n_components=larger.n_components_,
            reg_covar=larger.reg_covar_,
            validation_score=max(larger.candidate_scores_.values()) - self._log_scale_sum(),
        )
        self._build_module(larger, device)
        self.module_.eval()  # as training leaves it
        score = float(mixture_rows.mean()) / self.n_features_in_  # training's units
        return TrainingHistory(timed_out=True, initial_validation_score=score), larger

    def _random_epoch_s(self, n_rows: int, device: torch.device) -> float:
        """Seconds an epoch of the random start would take here: the mean of two timed
        training steps of a throwaway network (after an untimed one, which allocates),
        times the batches of ``n_rows``. Torch's global generator is left as it was."""
        d, batch = self.n_features_in_, min(int(self.batch_size), n_rows)
        cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if cuda else []):
            module = self._make_module(anchored=False).to(device=device, dtype=self._dtype)
            optimizer = torch.optim.Adam(module.parameters())
            z = torch.randn(batch, d, device=device, dtype=self._dtype)
            with training_threads(step_flops(module, batch, d), device):
                for step in range(3):
                    if step == 1:
                        if cuda:
                            torch.cuda.synchronize(device)
                        began = time.perf_counter()
                    optimizer.zero_grad()
                    (-module(z).mean()).backward()
                    optimizer.step()
                if cuda:
                    torch.cuda.synchronize(device)
                seconds = (time.perf_counter() - began) / 2
        return seconds * -(-n_rows // batch)

    def _score_rows(self, rows: np.ndarray, device: torch.device) -> np.ndarray:
        """Log-densities of standardised, ordered ``rows`` under ``module_`` (eval mode)."""
        self.module_.eval()
        with torch.no_grad():
            return np.concatenate(
                [
                    self.module_(torch.as_tensor(chunk, dtype=self._dtype, device=device))
                    .double()
                    .cpu()
                    .numpy()
                    for chunk in np.array_split(rows, max(1, len(rows) // 8192))
                ]
            )

    def _bar_label(self) -> str:
        """The progress bar's label: which start is training, when both are."""
        if not self._races():
            return type(self).__name__
        return f"{type(self).__name__} ({'gmm' if self.anchor_ is not None else 'random'} start)"

    def _in_nats_or_none(self, score: float | None) -> float | None:
        return None if score is None else self._in_nats().score(score)

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
        cut it while still improving (for :meth:`_resume_search`), else ``None``; and
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
        with warnings.catch_warnings():
            # The same rows: this model says so itself, in its own terms, after its fit.
            warnings.simplefilter("ignore", DegenerateDataWarning)
            estimator = self._anchor_estimator(seed, budget)
            search = None if valid is None else HeldOutSearch(estimator, Z, valid)
            mixture = estimator.fit(Z) if search is None else search.estimator
        self.n_components_ = mixture.n_components_
        scores = mixture.candidate_scores_.values()
        self.anchor_ = {
            "n_components": mixture.n_components_,
            "reg_covar": mixture.reg_covar_,
            "validation_score": max(scores) - self._log_scale_sum() if scores else None,
            "fit_s": time.perf_counter() - start,
        }
        refit_s = 0.0 if search is None else search.refit_seconds(refit_rows)
        # Only a search cut while improving is resumed; another is let go (its rows with it).
        return mixture, search if search is not None and search.improving else None, refit_s

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
        from sklearn.mixture import GaussianMixture

        assert self.module_.anchor is not None and self.anchor_ is not None
        chol = mixture.precisions_cholesky_
        em = GaussianMixture(
            mixture.n_components_,
            reg_covar=mixture.reg_covar_,
            tol=float(mixture.tol),
            max_iter=int(mixture.max_iter),
            weights_init=mixture.weights_,
            means_init=mixture.means_,
            precisions_init=chol @ chol.transpose(0, 2, 1),
            init_params="random_from_data",  # unused beside the three above: the cheapest
            random_state=int(rng.integers(2**31 - 1)),
        )
        with em_threads(Z.shape[1]), warnings.catch_warnings():
            # A refit that stops short of convergence (max_time) is still a better start.
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_until(em, Z, deadline)
        self.module_.anchor.set_mixture(em.weights_, em.means_, em.covariances_)
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

    def _train(
        self,
        train: Tensor | DiskRows,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
        max_time: float | None,
    ) -> TrainingHistory:
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
        net = distributed.wrap(self.module_, ctx, device, broadcast_buffers=False)
        # Per-dimension NLL keeps the loss scale, hence the step size, independent of D.
        # Small steps train faster on one thread (see ldelib._threads).
        flops = step_flops(self.module_, int(self.batch_size), n_features)
        with training_threads(flops, device):
            config = TrainingConfig(
                max_time=max_time,
                keep_initial=self.anchor_ is not None,
                lr_decay_patience=max(1, int(self.n_iter_no_change) // 2),
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
            return train_module(
                self.module_,
                lambda z: -net(z).mean() / n_features,
                train,
                None if valid is None else as_tensor(valid),
                config,
                optimizer=optimizer,
                generator=torch_generator(rng, torch.device("cpu")),
                distributed=ctx,
            )

    # ----------------------------------------------------------------- summary
    @staticmethod
    def _summarise_training(params: Mapping[str, Any], a: Mapping[str, Any]) -> list[SummaryItem]:
        return [
            SummaryItem(
                "n_components", "mixture components per conditional", a.get("n_components_")
            ),
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem("best_epoch", "epoch kept (-1: the anchor)", a.get("best_epoch_")),
            SummaryItem(
                "best_validation_log_likelihood",
                "best validation log-likelihood",
                a.get("best_validation_score_"),
                "nats/row",
            ),
        ]

    # ---------------------------------------------------------------- density
    def _network(self, dtype: torch.dtype) -> AutoregressiveMDN:
        """``module_``, or a copy of it in ``dtype`` (float64, for rows far beyond the
        data: see ``BaseDensityEstimator._log_prob_in``) with the same weights."""
        if dtype == self._dtype:
            return self.module_
        # A copy, not module_.to(): scoring must not change the fitted model, and the rows
        # that need it are rare. Its weights are leaves of their own: those rows carry a
        # gradient to the input, not to the model's weights.
        return copy.deepcopy(self.module_).to(dtype)

    def _log_prob(self, Z: Tensor) -> Tensor:
        ordered = Z[:, torch.as_tensor(self.ordering_, device=Z.device)]
        return self._network(Z.dtype)(ordered)

    def _log_prob_prefix(self, Z: Tensor, k: int) -> Tensor:
        # Each conditional sees only earlier dimensions: the first k terms are the marginal.
        ordered = Z[:, torch.as_tensor(self.ordering_, device=Z.device)]
        return self._network(Z.dtype).log_prob_per_dim(ordered)[:, :k].sum(dim=-1)

    def _ordering(self) -> np.ndarray:
        return np.asarray(self.ordering_)

    def _sample_given(self, prefix: Tensor, generator: torch.Generator) -> Tensor:
        Z, _ = self.module_.sample(len(prefix), generator, given=prefix)
        return Z[:, torch.as_tensor(np.argsort(self.ordering_), device=Z.device)]

    def _sample_and_log_prob(
        self, n_samples: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        Z, log_prob = self.module_.sample(n_samples, generator)
        inverse = torch.as_tensor(np.argsort(self.ordering_), device=Z.device)
        return Z[:, inverse], log_prob

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return self._sample_and_log_prob(n_samples, generator)[0]
