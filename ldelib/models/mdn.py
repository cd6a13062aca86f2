"""The latent density estimator: a causal-convolution mixture density network."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .._arrays import torch_generator
from ..base import BaseDensityEstimator
from ..nn.autoregressive import AutoregressiveMDN
from ..training import (
    TrainingHistory,
    check_max_time,
    seeded,
    train_module,
    train_validation_split,
)

__all__ = ["CausalConvMDN"]


class CausalConvMDN(BaseDensityEstimator):
    r"""Autoregressive mixture density network with causal dilated convolutions.

    Models :math:`p(z) = \prod_j p(z_j \mid z_{<j})` with a :math:`K`-component Gaussian
    mixture per dimension whose parameters come from a causal convolution network
    running along the dimensions (the latent density estimator of Yoo et al., 2019).
    ``log_prob`` is exact and takes one parallel pass; ``sample`` draws one dimension at
    a time with cached activations.

    Parameters
    ----------
    n_components : int, default=10
        Gaussian components :math:`K` per conditional.
    architecture : {"residual", "paper"}, default="residual"
        ``"residual"``: constant-width residual blocks of dilated causal convolutions,
        log-space likelihood, scales bounded below by ``min_scale``, no normalisation
        across positions. ``"paper"``: the original network (widths doubling from 16,
        BatchNorm, LeakyReLU(0.2), unbounded :math:`\sigma = e^s`), with its training
        defaults (Adam(0.5, 0.999), learning rate 2e-4), to reproduce the paper.
    hidden_channels : int, default=64
        Width of the residual blocks.
    n_blocks : int or None, default=None
        Residual blocks; ``None`` uses just enough (:math:`\lceil\log_2 D\rceil`, at
        least 1) for every conditional to see all earlier dimensions.
    min_scale : float, default=1e-3
        Lower bound of every mixture scale, in standardised units.
    dropout : float or None, default=None
        Dropout probability inside the residual blocks during training; ``None`` means
        0.2 for ``"residual"`` and 0 for ``"paper"`` (which has no dropout). Latent sets
        are often small: without it the network overfits before early stopping can
        help (see ``benchmarks/results``).
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
    max_time : float or None, default=None
        Wall-clock training budget in seconds: no epoch starts after it is spent, and
        the best weights so far are kept. ``None``: no limit.
    standardize : bool, default=True
        Fit on standardised columns; log-likelihoods stay in the units of the data.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    random_state : int, Generator or None, default=None
        Seeds initialisation, splits, shuffling and the sampling stream.
    verbose : int, default=0
        Above 0, shows a progress bar with the loss.

    Attributes
    ----------
    module_ : AutoregressiveMDN
        The fitted network (on ``device_``), in eval mode.
    ordering_ : ndarray of shape (n_features,)
        Column order of the autoregression.
    loss_curve_ : list of float
        Training negative log-likelihood per epoch (nats per row, data units).
    validation_scores_ : list of float
        Validation mean log-likelihood per epoch (nats per row, data units).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation.

    References
    ----------
    .. [1] J. Yoo, H. Lee, N. Kwak. "Density Estimation and Incremental Learning of
       Latent Vector for Generative Autoencoders", arXiv:1902.04294, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import CausalConvMDN
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> mdn = CausalConvMDN(n_components=3, max_epochs=5, random_state=0).fit(X)
    >>> mdn.score_samples(X[:2]).shape
    (2,)
    >>> mdn.sample(4).shape
    (4, 3)
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        architecture: Literal["residual", "paper"] = "residual",
        hidden_channels: int = 64,
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
        max_time: float | None = None,
        standardize: bool = True,
        device: str = "auto",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
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
        self.max_time = max_time
        self.standardize = standardize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        for name in ("n_components", "hidden_channels", "batch_size", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.architecture not in ("residual", "paper"):
            raise ValueError(
                f"architecture must be 'residual' or 'paper', got {self.architecture!r}."
            )
        if self.ordering not in ("natural", "variance"):
            raise ValueError(f"ordering must be 'natural' or 'variance', got {self.ordering!r}.")
        if self.dropout is not None and not (
            isinstance(self.dropout, (int, float, np.integer, np.floating))
            and not isinstance(self.dropout, bool)
            and 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be None or in [0, 1), got {self.dropout!r}.")
        if self.architecture == "paper" and self.dropout:
            raise ValueError(
                "The paper network has no dropout: use dropout=None or 0 with "
                "architecture='paper'."
            )
        if not 0 < self.min_scale < 1:
            raise ValueError(f"min_scale must be in (0, 1), got {self.min_scale!r}.")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}."
            )
        check_max_time(self.max_time)
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")

    def _make_module(self) -> AutoregressiveMDN:
        return AutoregressiveMDN(
            self.n_features_in_,
            self.n_components,
            self.architecture,
            self.hidden_channels,
            self.n_blocks,
            self.min_scale,
            self._dropout(),
        )

    def _dropout(self) -> float:
        if self.dropout is not None:
            return float(self.dropout)
        return 0.0 if self.architecture == "paper" else 0.2

    def _fit(self, Z: np.ndarray, rng: np.random.Generator) -> None:
        n_features = Z.shape[1]
        if self.ordering == "variance":
            self.ordering_ = np.argsort(-(Z.std(axis=0) * self.scale_), kind="stable")
        else:
            self.ordering_ = np.arange(n_features)
        device = torch.device(self.device_)
        train, valid = train_validation_split(Z[:, self.ordering_], self.validation_fraction, rng)
        # Dropout draws from torch's global generator: seeded() forks it for the whole fit.
        with seeded(rng, device):
            self.module_ = self._make_module().to(device)
            history = self._train(train, valid, rng, device)
        log_det = self._log_scale_sum()
        self.loss_curve_ = [loss * n_features + log_det for loss in history.loss_curve]
        self.validation_scores_ = [s * n_features - log_det for s in history.validation_scores]
        best = history.best_validation_score
        self.best_validation_score_ = None if best is None else best * n_features - log_det
        self.n_iter_ = history.n_iter

    def _train(
        self,
        train: np.ndarray,
        valid: np.ndarray | None,
        rng: np.random.Generator,
        device: torch.device,
    ) -> TrainingHistory:
        n_features = train.shape[1]
        paper = self.architecture == "paper"
        optimizer = torch.optim.Adam(
            self.module_.parameters(),
            lr=self.learning_rate or (2e-4 if paper else 1e-3),
            betas=(0.5, 0.999) if paper else (0.9, 0.999),
            weight_decay=self.weight_decay,
        )

        def as_tensor(x: np.ndarray | None) -> Tensor | None:
            return None if x is None else torch.as_tensor(x, dtype=self._dtype, device=device)

        # Per-dimension NLL keeps the loss scale, hence the step size, independent of D.
        return train_module(
            self.module_,
            lambda z: -self.module_(z).mean() / n_features,
            as_tensor(train),
            as_tensor(valid),
            optimizer=optimizer,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            n_iter_no_change=self.n_iter_no_change,
            max_time=self.max_time,
            generator=torch_generator(rng, torch.device("cpu")),
            lr_decay_patience=max(1, self.n_iter_no_change // 2),
            verbose=self.verbose,
            desc=type(self).__name__,
        )

    def _log_prob(self, Z: Tensor) -> Tensor:
        return self.module_(Z[:, torch.as_tensor(self.ordering_, device=Z.device)])

    def _sample_and_log_prob(
        self, n_samples: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        Z, log_prob = self.module_.sample(n_samples, generator)
        inverse = torch.as_tensor(np.argsort(self.ordering_), device=Z.device)
        return Z[:, inverse], log_prob

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return self._sample_and_log_prob(n_samples, generator)[0]
