"""The incremental autoencoder: a user's encoder and decoder trained on the schedule."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from typing_extensions import Self  # typing.Self is Python 3.11+

from .._arrays import check_rows, make_rng, resolve_device
from .._batching import apply_batched, placement
from .._summary import SummaryItem, negated
from .._validation import (
    RANDOM_STATE,
    TRAINING_PARAMS,
    VERBOSE,
    Constraint,
    InstanceOf,
    Integral,
    Options,
    Real,
    SequenceOf,
    validate_params,
)
from .._validation import Callable as IsCallable
from ..persistence import register
from ..training import seeded, train_validation_split
from ._files import AutoencoderFiles
from .schedule import MaskedAutoencoder
from .trainer import train_incrementally

__all__ = ["IncrementalAutoencoder"]

ArrayLike = Any
LossFunction = Callable[[Tensor, Tensor], Tensor]


@register("ldelib.IncrementalAutoencoder")
class IncrementalAutoencoder(AutoencoderFiles, BaseEstimator):
    r"""Train a torch encoder and decoder with incrementally activated latent dimensions.

    At iteration :math:`b` of :math:`n` (0-based) in epoch :math:`e` (0-based), only
    the first :math:`k = \min(D, \lfloor D (e + b/n) / W + 1 \rfloor)` latent
    dimensions reach the decoder (see :func:`active_dims`); the others are multiplied by
    0, so they receive no gradient until they are switched on. The objective is
    unchanged: no regulariser is added. Once all :math:`D` dimensions are active,
    training continues as a plain autoencoder. The result is an importance ordering of
    the latents: a prefix of the first :math:`k` dimensions reconstructs the data better
    than the same prefix of an autoencoder trained without the schedule (see
    :meth:`prefix_reconstruction_error`).

    **Early stopping rule.** The validation loss is computed after every epoch with all
    dimensions active and recorded in ``validation_scores_``. Epochs of the warm-up
    (those that do not *start* with all dimensions active) are never candidates: early
    stopping and the restoration of the best weights consider only the epochs from
    ``n_warmup_epochs_`` on, so the returned model always has every dimension trained.
    If ``max_epochs`` ends during the warm-up, the last weights are kept and a
    ``ConvergenceWarning`` is issued.

    Parameters
    ----------
    encoder : nn.Module
        Maps a batch of inputs ``(batch, ...)`` to latents ``(batch, latent_dim)``.
        Deep-copied at ``fit``: the module passed is never changed, and its current
        weights are the starting point (so a pretrained encoder can be refined).
    decoder : nn.Module
        Maps latents ``(batch, latent_dim)`` to outputs shaped like the inputs.
        Deep-copied at ``fit``.
    latent_dim : int
        Number of latent dimensions :math:`D` the encoder outputs.
    warmup_epochs : float, default=20
        Warm-up length :math:`W` in epochs; all dimensions are active after about
        :math:`W (D - 1) / D` epochs. 0 trains a plain autoencoder.
    loss : "mse" or callable, default="mse"
        ``"mse"``: mean squared error over all elements. A callable
        ``loss(x_hat, x)`` must return a scalar tensor to minimise.
    learning_rate : float, default=1e-3
        Adam learning rate.
    betas : tuple of float, default=(0.5, 0.999)
        Adam coefficients (the authors' values).
    batch_size : int, default=128
        Rows per training step, and per forward pass in ``encode``/``decode``.
    max_epochs : int, default=100
        Upper bound on the epochs, warm-up included.
    validation_fraction : float, default=0.1
        Fraction of rows held out for the validation loss and early stopping; 0 trains
        on everything for ``max_epochs``.
    n_iter_no_change : int, default=10
        Epochs after the warm-up without a better validation loss before stopping.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    random_state : int, Generator or None, default=None
        Seeds the validation split, the shuffling and any randomness inside the modules
        (dropout). The global torch and numpy random states are left untouched.
    verbose : int, default=0
        Above 0, shows progress bars with the loss (and the active dimensions during
        the warm-up).

    Attributes
    ----------
    encoder_, decoder_ : nn.Module
        The trained modules (on ``device_``), in eval mode.
    loss_curve_ : list of float
        Mean training loss of each epoch (with the schedule's mask applied).
    validation_scores_ : list of float
        Minus the mean validation loss after each epoch, all dimensions active (higher is
        better); empty without validation.
    best_validation_score_ : float or None
        Validation score of the weights kept, or ``None`` without validation.
    best_epoch_ : int
        Epoch (0-based) whose weights were kept.
    active_dims_curve_ : list of int
        Active dimensions at the last iteration of each epoch.
    n_warmup_epochs_ : int
        Epochs that did not start with all dimensions active (the warm-up).
    n_iter_ : int
        Epochs run.
    n_batches_ : int
        Iterations per epoch.
    input_shape_ : tuple of int
        Shape of one training row.
    device_ : str
        Device of the trained modules.

    See Also
    --------
    ldelib.LatentDensityEstimator : Fits a density on the latents; pass
        ``encoder=iae.encode, decoder=iae.decode``.
    ldelib.make_conv_autoencoder : The authors' convolutional autoencoder.

    References
    ----------
    .. [1] J. Yoo, H. Lee, N. Kwak. "Density Estimation and Incremental Learning of
       Latent Vector for Generative Autoencoders", arXiv:1902.04294, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from ldelib import IncrementalAutoencoder
    >>> X = np.random.default_rng(0).random((256, 20))
    >>> encoder = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> decoder = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 20))
    >>> iae = IncrementalAutoencoder(
    ...     encoder, decoder, latent_dim=4, warmup_epochs=2, max_epochs=4, device="cpu",
    ...     random_state=0,
    ... ).fit(X)
    >>> iae.active_dims_curve_
    [2, 4, 4, 4]
    >>> iae.encode(X[:3]).shape
    (3, 4)
    >>> iae.prefix_reconstruction_error(X, ks=[1, 4]).shape
    (2,)
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        warmup_epochs: float = 20,
        loss: Literal["mse"] | LossFunction = "mse",
        learning_rate: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        batch_size: int = 128,
        max_epochs: int = 100,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        device: str = "auto",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.warmup_epochs = warmup_epochs
        self.loss = loss
        self.learning_rate = learning_rate
        self.betas = betas
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- summary
    @staticmethod
    def _summarise_training(p: Mapping[str, Any], a: Mapping[str, Any]) -> list[SummaryItem]:
        # best_validation_score_ is minus the reconstruction loss.
        return [
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem("n_warmup_epochs", "warm-up epochs", a.get("n_warmup_epochs_")),
            SummaryItem("best_epoch", "epoch kept", a.get("best_epoch_")),
            SummaryItem(
                "best_validation_loss",
                f"best validation reconstruction loss ({p.get('loss')})",
                negated(a.get("best_validation_score_")),
            ),
        ]

    # ------------------------------------------------------------------ checks
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "encoder": [InstanceOf(nn.Module, name="a torch nn.Module")],
        "decoder": [InstanceOf(nn.Module, name="a torch nn.Module")],
        "latent_dim": [Integral(1, None)],
        "warmup_epochs": [Real(0, None, closed="left")],
        "loss": [Options("mse"), IsCallable()],
        "learning_rate": [Real(0, None, closed="neither")],
        "betas": [SequenceOf(Real(0, 1, closed="left"), min_len=2, max_len=2)],
        **TRAINING_PARAMS,  # batch_size, max_epochs, validation_fraction, n_iter_no_change, device
        "random_state": RANDOM_STATE,
        "verbose": VERBOSE,
    }

    def _check_params(self) -> dict[str, Any]:
        return validate_params(self, self._parameter_constraints)

    def _loss(self, x_hat: Tensor, x: Tensor) -> Tensor:
        if isinstance(self.loss, str):
            if x_hat.shape != x.shape:
                raise ValueError(
                    f"The decoder returned shape {tuple(x_hat.shape)} for inputs of shape "
                    f"{tuple(x.shape)}; its output must have the input's shape."
                )
            return F.mse_loss(x_hat, x)
        value = self.loss(x_hat, x)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss(x_hat, x) must return a scalar tensor, got {shape}.")
        return value.reshape(())

    @staticmethod
    def _as_tensor(X: ArrayLike, dtype: torch.dtype) -> Tensor:
        X = check_rows(X, "X", ndim=None)
        X = X.cpu() if isinstance(X, Tensor) else torch.from_numpy(np.array(X, order="C"))
        return X.to(dtype)

    # --------------------------------------------------------------------- fit
    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        """Train the encoder and decoder on ``X`` with the incremental schedule.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Training inputs in the shape the encoder takes (e.g. (n, C, H, W) images).
        y : None
            Ignored (scikit-learn's signature).

        Returns
        -------
        IncrementalAutoencoder
            The fitted estimator itself.
        """
        self._check_params()
        device = resolve_device(self.device)
        X = self._as_tensor(X, placement(self.encoder)[1])
        n, D = len(X), int(self.latent_dim)
        minimum = 2 if self.validation_fraction > 0 else 1
        if n < minimum:
            raise ValueError(
                f"IncrementalAutoencoder needs at least {minimum} samples to fit "
                f"(validation_fraction={self.validation_fraction}), got n_samples = {n}."
            )
        rng = make_rng(self.random_state)
        with seeded(rng, device):
            net = MaskedAutoencoder(
                copy.deepcopy(self.encoder), copy.deepcopy(self.decoder), D
            ).to(device)
            train_idx, valid_idx = train_validation_split(
                np.arange(n), self.validation_fraction, rng
            )
            X_train = X[torch.as_tensor(train_idx)]
            X_valid = None if valid_idx is None else X[torch.as_tensor(valid_idx)]
            history, active_curve, n_warmup = train_incrementally(
                self.get_params(),
                self._loss,
                net,
                X_train,
                X_valid,
                device,
                rng,
                type(self).__name__,
            )
        self.encoder_ = net.encoder.eval()
        self.decoder_ = net.decoder.eval()
        self.device_ = str(device)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.loss_curve_ = history.loss_curve
        self.validation_scores_ = history.validation_scores
        self.best_epoch_ = history.best_epoch
        self.best_validation_score_ = (
            history.validation_scores[history.best_epoch] if history.validation_scores else None
        )
        self.n_iter_ = history.n_iter
        self.active_dims_curve_ = active_curve
        self.n_warmup_epochs_ = n_warmup
        self.n_batches_ = math.ceil(len(X_train) / int(self.batch_size))
        return self

    # -------------------------------------------------------------- inference
    def encode(self, X: ArrayLike) -> np.ndarray:
        """Encode inputs to latents with the trained encoder (eval mode, in batches).

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)

        Returns
        -------
        Z : ndarray of shape (n_samples, latent_dim), float64
        """
        check_is_fitted(self)
        if not isinstance(X, Tensor):
            X = np.asarray(X)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError(f"X must have at least one row, got shape {tuple(X.shape)}.")
        Z = apply_batched(
            self.encoder_, X, batch_size=int(self.batch_size), role="encoder", flat=True
        )
        if Z.shape[1] != self.latent_dim:
            raise ValueError(
                f"The encoder returned {Z.shape[1]} latent dimensions, not latent_dim="
                f"{self.latent_dim}."
            )
        return Z

    def decode(self, Z: ArrayLike) -> np.ndarray:
        """Decode latents with the trained decoder (eval mode, in batches).

        Parameters
        ----------
        Z : array-like or Tensor of shape (n_samples, latent_dim)

        Returns
        -------
        X : ndarray of shape (n_samples, ...), float64
        """
        check_is_fitted(self)
        if not isinstance(Z, Tensor):
            Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim or len(Z) == 0:
            raise ValueError(
                f"Z must have shape (n_samples, latent_dim) = (n, {self.latent_dim}), got "
                f"{tuple(Z.shape)}."
            )
        return apply_batched(
            self.decoder_, Z, batch_size=int(self.batch_size), role="decoder", flat=False
        )

    def prefix_reconstruction_error(
        self, X: ArrayLike, ks: Sequence[int] | None = None
    ) -> np.ndarray:
        """Mean squared reconstruction error when only the first ``k`` latents are kept.

        For each ``k``, the latents of ``X`` have dimensions ``k, k+1, ...`` set to 0
        before decoding (as during training), and the mean squared error over all
        elements and rows is reported. With the incremental schedule, the error falls
        fastest for small ``k``: the leading dimensions carry the most information.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
        ks : sequence of int, optional
            Prefix lengths in ``0..latent_dim``; default ``1..latent_dim``.

        Returns
        -------
        errors : ndarray of shape (len(ks),)
        """
        check_is_fitted(self)
        D = int(self.latent_dim)
        ks = list(range(1, D + 1)) if ks is None else list(ks)
        if not ks or not all(Integral(0, D).is_satisfied_by(k) for k in ks):
            raise ValueError(f"ks must be integers in [0, {D}], got {ks!r}.")
        target = self._as_tensor(X, torch.float64).numpy()
        Z = self.encode(target)
        errors = []
        for k in ks:
            Zk = Z.copy()
            Zk[:, k:] = 0.0
            X_hat = self.decode(Zk)
            if X_hat.shape != target.shape:
                raise ValueError(
                    f"The decoder returned shape {X_hat.shape} for inputs of shape "
                    f"{target.shape}; reconstructions must have the input's shape."
                )
            errors.append(float(np.mean((X_hat - target) ** 2)))
        return np.asarray(errors)
