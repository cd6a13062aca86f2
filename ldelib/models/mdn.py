"""The latent density estimator: a causal-convolution mixture density network."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from .._summary import SummaryItem
from .._validation import (
    MAX_TIME,
    TRAINING_PARAMS,
    Boolean,
    Constraint,
    IgnoredWhen,
    Integral,
    Options,
    Real,
    When,
)
from ..density import BaseDensityEstimator
from ..nn.autoregressive import AutoregressiveMDN
from ..persistence import register
from ._mdn_fit import AnchoredFit
from .gmm import N_COMPONENTS

__all__ = ["CausalConvMDN"]


@register("ldelib.CausalConvMDN")
class CausalConvMDN(AnchoredFit):
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
        mixture's search may use half, and the starts train in turns in what it leaves;
        when the random start would not have time for 10 epochs there (timed before the
        fit: large data, large D), the anchored start has it all, and the random start
        trains only in what the anchored start leaves once it stops, where that holds
        its 10 epochs. With ``"paper"``, ``"random"``.
    covariance_type : {"full", "diag", "auto"}, default="full"
        Covariances of the anchor mixture's components. ``"diag"``: EM costs
        :math:`DK` per row and step instead of :math:`D^2 K` (plus :math:`D^3 K` per
        step), and the untrained model scores in :math:`DK` per row instead of
        :math:`D^2 K`; a diagonal mixture is still autoregressive with weights that see
        every earlier dimension, but ignores correlations within a component.
        ``"auto"``: fit the diagonal mixture first, then the full one with what the
        mixture's share of ``max_time`` leaves, and keep the better on the validation
        rows (``anchor_["covariance_type"]``). Without an anchor (``init="random"``,
        ``architecture="paper"``), it must stay ``"full"``.
    n_average : int or "auto", default="auto"
        Mixtures averaged in the anchor (:class:`~ldelib.GMM`'s ``n_average``): after
        the search, more mixtures of the chosen K from other initialisations, each kept
        where their mean scores the validation rows higher (``"auto"``, up to 8, until
        two in a row are not, within the mixture's share of ``max_time``;
        ``anchor_["n_average"]``). The anchor then has their components, each weight
        divided by their number. Without an anchor, it must stay ``"auto"``.
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
    conditional : bool, default=False
        Fit :math:`p(x \mid y)` on ``fit(X, y)``: ``y`` class labels (shape (n,)) or a
        context (shape (n, C)). The condition enters the network at every position
        (labels one-hot, so the first layer learns an embedding; a context as it is,
        standardised, through a linear map), which leaves it causal in :math:`x`. The
        anchor is the conditional mixture: one :class:`~ldelib.GMM` per class, or one
        over the joint (context, x) whose conditionals given the context are the
        anchor's; either is refitted to every row after the selection, as without
        ``y``. Scoring and sampling then take
        ``y``, and a fit on labels has ``predict_proba``. ``False``: ``y`` is ignored.
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
        "covariance_type": [Options("full", "diag", "auto")],
        "n_average": [Integral(1, None), Options("auto")],
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
        "conditional": [Boolean()],
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
        When(
            {"validation_fraction": 0},
            "covariance_type",
            [Options("full", "diag")],
            "covariance_type='auto' chooses on the validation rows: hold some out "
            "(validation_fraction > 0) or give 'full' or 'diag'.",
        ),
        *(
            IgnoredWhen(
                condition,
                ("covariance_type", "n_average"),
                "Without a mixture anchor there are no covariances to choose, nor mixtures "
                "to average.",
            )
            for condition in ({"init": "random"}, {"architecture": "paper"})
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
        covariance_type: Literal["full", "diag", "auto"] = "full",
        n_average: int | Literal["auto"] = "auto",
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
        conditional: bool = False,
        standardize: bool = True,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.init = init
        self.covariance_type = covariance_type
        self.n_average = n_average
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
        self.conditional = conditional
        self.standardize = standardize
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

        # ----------------------------------------------------------------- params

    def _held_out_score(self) -> float | None:
        return self.best_validation_score_

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
            classes=len(self.classes_) if hasattr(self, "classes_") else 0,
            context=int(getattr(self, "n_context_features_", 0)),
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

    def _log_prob_conditional(self, Z: Tensor, c: Tensor, k: int | None) -> Tensor:
        ordered = Z[:, torch.as_tensor(self.ordering_, device=Z.device)]
        network = self._network(Z.dtype)
        if k is None:
            return network(ordered, context=c)
        return network.log_prob_per_dim(ordered, c)[:, :k].sum(dim=-1)

    def _sample_conditional(
        self, c: Tensor, prefix: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        Z, _ = self.module_.sample(len(c), generator, given=prefix, context=c)
        return Z[:, torch.as_tensor(np.argsort(self.ordering_), device=Z.device)]
