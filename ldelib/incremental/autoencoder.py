"""Incremental learning of latent variables: autoencoders with ordered latents.

:class:`IncrementalAutoencoder` trains a user's torch encoder and decoder with the
schedule of Yoo et al. (2019): training starts with only the first latent dimension
reaching the decoder, and one more dimension is switched on at a steady pace until all
are active. Earlier dimensions thus learn the most important features, much as
principal components are ordered by the variance they explain.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import __version__
from ._arrays import make_rng, resolve_device, torch_generator
from .io import read_model_file, write_model_file
from .latent import _apply_batched, _placement
from .training import TrainingHistory, seeded, train_module, train_validation_split

__all__ = ["IncrementalAutoencoder", "active_dims"]

ArrayLike = Any
LossFunction = Callable[[Tensor, Tensor], Tensor]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def active_dims(
    latent_dim: int, warmup_epochs: float, epoch: int, batch: int, n_batches: int
) -> int:
    r"""Number of leading latent dimensions active at one training iteration.

    The schedule of Yoo et al. (2019): at iteration ``batch`` of ``n_batches`` (0-based)
    in epoch ``epoch`` (0-based), the first

    .. math:: k = \min\left(D,\ \left\lfloor \frac{D\,(e + b / n)}{W} + 1 \right\rfloor\right)

    dimensions are active, computed in floating point exactly as the authors' code
    does. It starts at 1, grows by one about every :math:`W / D` epochs, and reaches
    :math:`D` once :math:`e + b / n \ge W (D - 1) / D`. ``warmup_epochs=0`` makes every
    dimension active from the start.

    Parameters
    ----------
    latent_dim : int
        Number of latent dimensions :math:`D`.
    warmup_epochs : float
        Warm-up length :math:`W` in epochs (non-negative).
    epoch : int
        Epoch :math:`e`, from 0.
    batch : int
        Iteration :math:`b` within the epoch, from 0 to ``n_batches - 1``.
    n_batches : int
        Iterations per epoch :math:`n`.

    Returns
    -------
    int
        Active dimensions, between 1 and ``latent_dim``.

    Examples
    --------
    >>> [active_dims(8, 2, e, b, 4) for e in range(3) for b in range(4)]
    [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8]
    """
    if not _is_int(latent_dim) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}.")
    if not _is_real(warmup_epochs) or not warmup_epochs >= 0 or math.isinf(warmup_epochs):
        raise ValueError(f"warmup_epochs must be a finite number >= 0, got {warmup_epochs!r}.")
    if not _is_int(n_batches) or n_batches < 1:
        raise ValueError(f"n_batches must be a positive integer, got {n_batches!r}.")
    if not _is_int(epoch) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}.")
    if not _is_int(batch) or not 0 <= batch < n_batches:
        raise ValueError(f"batch must be an integer in [0, n_batches), got {batch!r}.")
    if warmup_epochs == 0:
        return int(latent_dim)
    return min(int(latent_dim), int(latent_dim * (epoch + batch / n_batches) / warmup_epochs + 1))


class _MaskedAutoencoder(nn.Module):
    """Encoder and decoder with the trailing latent dimensions zeroed in between."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def encode(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"The encoder returned {shape} for a batch of {len(x)}; it must return a "
                f"tensor of shape (batch, latent_dim) = ({len(x)}, {self.latent_dim}). "
                "Flatten its output (e.g. end it with nn.Flatten()) or fix latent_dim."
            )
        return z

    def forward(self, x: Tensor, n_active: int | None = None) -> Tensor:
        z = self.encode(x)
        if n_active is not None and n_active < self.latent_dim:
            # A 0/1 mask (not slicing or in-place zeroing): masked dimensions get exactly
            # zero gradient, and the decoder keeps its input size.
            mask = torch.arange(self.latent_dim, device=z.device) < n_active
            z = z * mask.to(z.dtype)
        return self.decoder(z)


class IncrementalAutoencoder(BaseEstimator):
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
    ldelib.autoencoders.make_conv_autoencoder : The authors' convolutional autoencoder.

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

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        for name in ("encoder", "decoder"):
            if not isinstance(getattr(self, name), nn.Module):
                raise TypeError(
                    f"{name} must be a torch nn.Module, got {type(getattr(self, name)).__name__}."
                )
        for name in ("latent_dim", "batch_size", "max_epochs", "n_iter_no_change"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        W = self.warmup_epochs
        if not _is_real(W) or not W >= 0 or math.isinf(W):
            raise ValueError(f"warmup_epochs must be a finite number >= 0, got {W!r}.")
        if not (self.loss == "mse" if isinstance(self.loss, str) else callable(self.loss)):
            raise ValueError(
                f"loss must be 'mse' or a callable loss(x_hat, x) -> scalar, got {self.loss!r}."
            )
        if not _is_real(self.learning_rate) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(_is_real(b) and 0 <= b < 1 for b in betas)
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}.")
        vf = self.validation_fraction
        if not _is_real(vf) or not 0 <= vf < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {vf!r}.")

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
    def _as_tensor(X: ArrayLike, dtype: torch.dtype, what: str = "X") -> Tensor:
        if isinstance(X, Tensor):
            X = X.detach().cpu()
        else:
            array = np.asarray(X)
            if array.dtype.kind not in "biuf":
                raise TypeError(f"{what} must be numeric, got an array of dtype {array.dtype}.")
            # A writeable C-ordered array (copied only if needed): torch warns on others.
            X = torch.from_numpy(np.require(array, requirements=["C", "W"]))
        if X.is_complex():
            raise TypeError(f"{what} must be real-valued, got dtype {X.dtype}.")
        if X.dim() < 2:
            raise ValueError(
                f"{what} must have shape (n_samples, ...) with at least 2 axes, got shape "
                f"{tuple(X.shape)}."
            )
        X = X.to(dtype)
        if not bool(torch.isfinite(X).all()):
            raise ValueError(f"{what} contains NaN or infinity; drop or impute those rows.")
        return X

    # --------------------------------------------------------------------- fit
    def fit(self, X: ArrayLike, y: Any = None) -> IncrementalAutoencoder:
        """Train the encoder and decoder on ``X`` with the incremental schedule.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Training inputs in the shape the encoder takes (e.g. (n, C, H, W) images).
        y : ignored
            Present for scikit-learn API consistency.

        Returns
        -------
        self
        """
        self._check_params()
        device = resolve_device(self.device)
        X = self._as_tensor(X, _placement(self.encoder)[1])
        n, D = len(X), int(self.latent_dim)
        minimum = 2 if self.validation_fraction > 0 else 1
        if n < minimum:
            raise ValueError(
                f"IncrementalAutoencoder needs at least {minimum} samples to fit "
                f"(validation_fraction={self.validation_fraction}), got n_samples = {n}."
            )
        rng = make_rng(self.random_state)
        with seeded(rng, device):
            net = _MaskedAutoencoder(
                copy.deepcopy(self.encoder), copy.deepcopy(self.decoder), D
            ).to(device)
            train_idx, valid_idx = train_validation_split(
                np.arange(n), self.validation_fraction, rng
            )
            X_train = X[torch.as_tensor(train_idx)]
            X_valid = None if valid_idx is None else X[torch.as_tensor(valid_idx)]
            history, active_curve, n_warmup = self._train(net, X_train, X_valid, device, rng)
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

    def _train(
        self,
        net: _MaskedAutoencoder,
        X_train: Tensor,
        X_valid: Tensor | None,
        device: torch.device,
        rng: np.random.Generator,
    ) -> tuple[TrainingHistory, list[int], int]:
        """Run the schedule; return the history, the active dims per epoch, the warm-up."""
        D, W = int(self.latent_dim), self.warmup_epochs
        batch_size = int(self.batch_size)
        n_batches = math.ceil(len(X_train) / batch_size)
        name = type(self).__name__
        optimizer = torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, betas=tuple(self.betas)
        )
        shuffle = torch_generator(rng, torch.device("cpu"))
        # train_module calls loss_fn once per training batch, in order (validation goes
        # through score_fn), so counting calls gives the iteration (epoch, batch).
        state = {"step": 0, "active": 1}

        def loss_fn(batch: Tensor) -> Tensor:
            epoch, b = divmod(state["step"], n_batches)
            state["step"] += 1
            state["active"] = active_dims(D, W, epoch, b, n_batches)
            x = batch.to(device, non_blocking=True)
            return self._loss(net(x, state["active"]), x)

        def score_fn(X: Tensor) -> float:
            total = 0.0
            for chunk in X.split(batch_size):
                x = chunk.to(device, non_blocking=True)
                total += float(self._loss(net(x), x)) * len(chunk)
            return -total / len(X)

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                return score_fn(X_valid)

        def current_epoch() -> int:
            return max(state["step"] - 1, 0) // n_batches

        # Warm-up: epochs that do not start with every dimension active. Trained one
        # epoch at a time, so that the validation loss is recorded without ever being
        # used to pick weights in which some dimensions were never trained.
        n_warmup = 0
        while n_warmup < self.max_epochs and active_dims(D, W, n_warmup, 0, n_batches) < D:
            n_warmup += 1
        active_curve: list[int] = []
        history = TrainingHistory()
        bar = tqdm(
            total=n_warmup,
            desc=f"{name} warm-up",
            disable=self.verbose <= 0 or n_warmup == 0,
            leave=self.verbose > 1,
        )
        for epoch in range(n_warmup):
            try:
                part = train_module(
                    net,
                    loss_fn,
                    X_train,
                    None,
                    optimizer=optimizer,
                    max_epochs=1,
                    batch_size=batch_size,
                    n_iter_no_change=1,
                    generator=shuffle,
                )
            except FloatingPointError as error:
                bar.close()
                raise FloatingPointError(
                    f"The training loss became NaN or infinite at epoch {epoch} of the "
                    f"warm-up ({state['active']} of {D} latent dims active). Lower "
                    "learning_rate, or check the data for extreme values."
                ) from error
            history.loss_curve.extend(part.loss_curve)
            active_curve.append(state["active"])
            postfix = {"loss": f"{part.loss_curve[-1]:.4g}", "dims": f"{state['active']}/{D}"}
            if X_valid is not None:
                history.validation_scores.append(validate())
                postfix["valid"] = f"{history.validation_scores[-1]:.4g}"
            history.n_iter = epoch + 1
            bar.set_postfix(postfix)
            bar.update()
        bar.close()

        remaining = int(self.max_epochs) - n_warmup
        if remaining <= 0:
            warnings.warn(
                f"max_epochs={self.max_epochs} ended during the warm-up: only "
                f"{state['active']} of {D} latent dims were active at the last iteration. "
                f"Increase max_epochs beyond {n_warmup} or lower warmup_epochs.",
                ConvergenceWarning,
                stacklevel=3,
            )
            history.best_epoch = n_warmup - 1
            return history, active_curve, n_warmup

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                part = train_module(
                    net,
                    loss_fn,
                    X_train,
                    X_valid,
                    optimizer=optimizer,
                    max_epochs=remaining,
                    batch_size=batch_size,
                    n_iter_no_change=int(self.n_iter_no_change),
                    generator=shuffle,
                    score_fn=score_fn if X_valid is not None else None,
                    verbose=self.verbose,
                    desc=name,
                )
            except FloatingPointError as error:
                raise FloatingPointError(
                    f"The loss became NaN or infinite at epoch {current_epoch()}, the first "
                    "with all latent dims active, before any weights worth keeping existed. "
                    "Lower learning_rate, or check the data for extreme values."
                ) from error
        for record in caught:
            if issubclass(record.category, ConvergenceWarning):
                warnings.warn(
                    f"The loss became NaN or infinite at epoch {current_epoch()}; "
                    f"training stopped and the weights of epoch {n_warmup + part.best_epoch} "
                    "(the best validation score) were restored. Lower learning_rate for a "
                    "longer, stable run.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(
                    record.message, record.category, record.filename, record.lineno
                )
        history.loss_curve.extend(part.loss_curve)
        history.validation_scores.extend(part.validation_scores)
        active_curve.extend([D] * len(part.loss_curve))
        history.best_epoch = n_warmup + part.best_epoch
        history.n_iter = n_warmup + part.n_iter
        return history, active_curve, n_warmup

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
        Z = _apply_batched(
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
        return _apply_batched(
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
        if not ks or not all(_is_int(k) and 0 <= k <= D for k in ks):
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

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the trained weights, parameters and history to ``path``.

        The file holds a JSON config and the encoder's and decoder's state dicts (tensors
        only, no pickled code). The modules' classes are not stored: load the file with
        :meth:`load`, passing freshly constructed modules of the same architecture. A
        callable ``loss`` is recorded by name only.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        del params["encoder"], params["decoder"]
        if callable(params["loss"]):
            loss = params["loss"]
            params["loss"] = {"__callable__": getattr(loss, "__qualname__", repr(loss))}
        params["betas"] = [float(b) for b in params["betas"]]
        seed = params["random_state"]
        # A Generator or RandomState cannot be written as JSON.
        params["random_state"] = int(seed) if _is_int(seed) else None
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
        attributes = {
            name: getattr(self, name)
            for name in (
                "device_",
                "input_shape_",
                "loss_curve_",
                "validation_scores_",
                "best_validation_score_",
                "best_epoch_",
                "active_dims_curve_",
                "n_warmup_epochs_",
                "n_iter_",
                "n_batches_",
            )
        }
        attributes["input_shape_"] = list(self.input_shape_)
        tensors = {f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}
        tensors.update({f"decoder.{k}": v for k, v in self.decoder_.state_dict().items()})
        config = {
            "class": type(self).__name__,
            "params": params,
            "attributes": attributes,
            "encoder_class": type(self.encoder_).__qualname__,
            "decoder_class": type(self.decoder_).__qualname__,
            "ldelib_version": __version__,
            "torch_version": torch.__version__,
        }
        write_model_file(path, config, tensors)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        encoder: nn.Module,
        decoder: nn.Module,
        map_location: str | torch.device | None = None,
        loss: Literal["mse"] | LossFunction | None = None,
    ) -> IncrementalAutoencoder:
        """Load a model saved with :meth:`save` into modules of the same architecture.

        The file stores weights, not code, so it cannot rebuild the user's module
        classes: pass freshly constructed ``encoder`` and ``decoder`` modules of the
        architecture that was trained. They become the new model's ``encoder`` and
        ``decoder`` parameters unchanged; deep copies of them, holding the saved
        weights, become ``encoder_`` and ``decoder_``. Tensors are read with
        ``torch.load(weights_only=True)``, so loading never runs code.

        Parameters
        ----------
        path : str or PathLike
        encoder, decoder : nn.Module
            Modules of the trained architecture (their weights are not used).
        map_location : str or torch.device, optional
            Device for the modules; by default the device saved from, or the CPU if that
            is not available here.
        loss : "mse" or callable, optional
            The loss for any later ``fit``; by default the saved one. A custom loss
            cannot be stored: without this argument, such a model loads with "mse" and a
            warning.

        Raises
        ------
        ValueError
            If the file is not an IncrementalAutoencoder file, or the modules do not
            match the saved weights (names or shapes).
        """
        for name, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"{name} must be an nn.Module of the trained architecture, got "
                    f"{type(module).__name__}."
                )
        config, tensors = read_model_file(path)
        where = repr(os.fspath(path))
        if config.get("class") != cls.__name__:
            raise ValueError(
                f"{where} holds a {config.get('class')!r}, not an {cls.__name__}; load it "
                "with ldelib.load."
            )
        try:
            params = dict(config["params"])
            params["betas"] = tuple(params["betas"])
            saved_loss = params.pop("loss")
            attributes = dict(config["attributes"])
            saved_device = torch.device(attributes["device_"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{where} is a damaged {cls.__name__} file: {e}") from e
        if loss is None:
            if isinstance(saved_loss, dict):
                warnings.warn(
                    f"{where} was trained with the custom loss "
                    f"{saved_loss.get('__callable__')!r}, which cannot be stored; the loaded "
                    "model uses loss='mse' for any later fit. Pass loss= to load to keep it.",
                    UserWarning,
                    stacklevel=2,
                )
                loss = "mse"
            else:
                loss = saved_loss
        try:
            model = cls(encoder=encoder, decoder=decoder, loss=loss, **params)
        except TypeError as e:
            raise ValueError(f"{where} is a damaged {cls.__name__} file: {e}") from e
        if map_location is not None:
            device = resolve_device(map_location)
        elif saved_device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        else:
            device = saved_device
        for name, module in (("encoder", encoder), ("decoder", decoder)):
            prefix = f"{name}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            trained = copy.deepcopy(module)
            try:
                trained.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise ValueError(
                    f"The {name} passed does not match the weights in {where} (saved from a "
                    f"{config.get(name + '_class')!r}); pass a freshly constructed module "
                    f"of the trained architecture. {e}"
                ) from e
            setattr(model, f"{name}_", trained.to(device).eval())
        attributes["input_shape_"] = tuple(attributes["input_shape_"])
        attributes["device_"] = str(device)
        for name, value in attributes.items():
            setattr(model, name, value)
        return model
