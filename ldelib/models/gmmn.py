"""A generative moment matching network: a generator trained to minimise the MMD."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .._arrays import torch_generator
from .._budget import fit_deadline
from .._sources import RowSource
from .._summary import SummaryItem, negated
from .._threads import step_flops, training_threads
from .._validation import (
    MAX_TIME,
    TRAINING_PARAMS,
    Boolean,
    Constraint,
    IgnoredWhen,
    Integral,
    Options,
    Real,
    SequenceOf,
    python_params,
)
from ..base import BaseGenerativeModel
from ..nn.mmd import DEFAULT_BANDWIDTH_FACTORS, median_pairwise_distance, mmd2
from ..persistence import register
from ..training import Display, TrainingConfig, seeded, train_module, train_validation_split

__all__ = ["GMMN", "MLPGenerator"]

#: The authors' generator: noise size and hidden widths (output width is D).
PAPER_NOISE_DIM = 10
PAPER_HIDDEN_SIZES = (64, 256, 256, 784)

# Rows scored by the held-out MMD: its cost is quadratic in this number.
_MAX_VALID = 2048
# Rows per generator pass when sampling.
_SAMPLE_BATCH = 65536
# Floor under the biased MMD² before its square root, whose gradient is infinite at 0.
_SQRT_FLOOR = 1e-12

_NO_DENSITY = (
    "GMMN has no tractable density: its generator defines the distribution only through "
    "samples, so {name} is not available. For a rough log-likelihood, fit a Parzen "
    "window to its samples: ldelib.metrics.parzen_log_likelihood(model.sample(10000), "
    "X_test, X_valid=X_valid). Caveat: a Parzen estimate is far from the true "
    "log-likelihood beyond a few dimensions and can rank models wrongly (Theis et al., "
    "2016); to compare samples with held-out data, prefer "
    "ldelib.metrics.mmd_permutation_test."
)


def _unavailable(name: str) -> property:
    """A read-only attribute that does not exist on instances (``hasattr`` is False)."""

    def fget(self: GMMN) -> Any:
        raise AttributeError(_NO_DENSITY.format(name=name))

    return property(fget, doc=f"Not available: {_NO_DENSITY.format(name=name)}")


class MLPGenerator(nn.Module):
    """A fully connected generator: noise -> ReLU hidden layers -> linear output.

    Arguments:
        noise_dim: Size of the noise vector.
        hidden_sizes: Widths of the hidden layers, each followed by a ReLU.
        out_features: Size of a generated row.
        init_std: If given, weights are drawn from N(0, init_std^2) and biases set to 0
            (the GMMN paper's initialisation); otherwise PyTorch's default.

    Example:
        >>> g = MLPGenerator(10, (64, 256, 256, 784), 16)
        >>> [m.out_features for m in g.net if isinstance(m, nn.Linear)]
        [64, 256, 256, 784, 16]
    """

    def __init__(
        self,
        noise_dim: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        widths = [int(noise_dim), *(int(h) for h in hidden_sizes)]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], int(out_features)))
        self.net = nn.Sequential(*layers)
        if init_std is not None:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, init_std)
                    nn.init.zeros_(layer.bias)

    def forward(self, noise: Tensor) -> Tensor:
        return self.net(noise)


@register("ldelib.GMMN")
class GMMN(BaseGenerativeModel):
    r"""Generative moment matching network (Li, Swersky & Zemel, 2015).

    A generator network maps noise :math:`u` to rows :math:`G(u)` and is trained to
    minimise the maximum mean discrepancy between a batch of generated rows and a batch
    of data rows of the same size, with a sum of Gaussian kernels
    :math:`k(a, b) = \sum_\sigma \exp(-\lVert a - b\rVert^2 / (2\sigma^2))`.

    The model can only be sampled: it has **no tractable density**, so it is a
    :class:`~ldelib.BaseGenerativeModel` and not a :class:`~ldelib.BaseDensityEstimator`:
    ``score_samples``, ``log_prob``, ``score`` and ``sample_and_log_prob`` do not exist
    on it (``hasattr`` is False; accessing them raises ``AttributeError``, whose
    message says what to use instead). For a rough
    log-likelihood use :func:`ldelib.metrics.parzen_log_likelihood` on
    ``model.sample(10000)``, whose warning explains why such numbers are unreliable; to
    compare samples with held-out data use :func:`ldelib.metrics.mmd_permutation_test`.

    Parameters
    ----------
    noise_dim : int, default=10
        Size of the noise vector.
    noise : {"uniform", "normal"}, default="uniform"
        Noise distribution: U(-1, 1) or N(0, 1) per coordinate.
    hidden_sizes : sequence of int, default=(64, 256, 256)
        Widths of the generator's ReLU hidden layers; the output layer is linear.
    architecture : {"mlp", "paper"}, default="mlp"
        ``"mlp"``: the generator given by ``noise_dim``, ``noise`` and ``hidden_sizes``,
        PyTorch's default initialisation, Adam(0.9, 0.999) at learning rate 1e-3 and the
        unbiased MMD² loss. ``"paper"``: the authors' network for reproduction, which
        fixes its own ``noise_dim``, ``noise`` and ``hidden_sizes`` (giving any of them
        a value other than its default raises) and always takes the square root, so
        ``sqrt_mmd`` has no effect: U(-1, 1)^10 noise, layers 10 -> 64 -> 256 -> 256 -> 784 -> D, weights from N(0, 0.02^2),
        Adam(0.5, 0.999) at learning rate 2e-4, and the square root of the biased MMD²
        with a single Gaussian kernel (of width the median pairwise distance unless
        ``bandwidths`` is given).
    bandwidths : sequence of float or None, default=None
        Kernel standard deviations :math:`\sigma`, in the units the model trains in
        (standardised units when ``standardize=True``). ``None``: the median pairwise
        distance of the training rows times (0.25, 0.5, 1, 2, 4), computed once at fit.
        The authors' ``sigma`` is a variance: their ``sigma=[v]`` is ``bandwidths=[v**0.5]``.
    sqrt_mmd : bool, default=False
        Minimise :math:`\sqrt{\mathrm{MMD}^2_b}`, the biased (V-statistic) estimate, as
        the paper does. ``False`` minimises the unbiased :math:`\mathrm{MMD}^2_u`, whose
        minibatch gradient is an unbiased estimate of the population gradient.
    learning_rate : float or None, default=None
        Adam learning rate; ``None`` means 1e-3 (mlp) or 2e-4 (paper).
    batch_size : int, default=256
        Data rows per step; as many rows are generated. At least 2.
    max_epochs : int, default=200
    validation_fraction : float, default=0.1
        Fraction of rows held out for early stopping on the held-out MMD; 0 trains on
        everything for ``max_epochs``.
    n_iter_no_change : int, default=20
        Epochs without a lower held-out MMD² before stopping.
    max_time : float or None, default=None
        Wall-clock budget of the fit in seconds, counted from the call to ``fit``: no
        training step starts after it is spent, and the best weights so far are kept.
        ``None``: no limit.
    standardize : bool, default=True
        Train on standardised columns; samples are returned in the data's units.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network, whatever torch's global default dtype is.
        ``"float64"`` carries inputs far outside the data (beyond about 1e16 standard
        deviations, where float32 gives a log-density of -inf) at about half the speed.
    random_state : int, Generator or None, default=None
        Seeds initialisation, splits, shuffling, noise and the sampling stream.
    verbose : int, default=0
        Above 0, shows a progress bar with the loss.

    Attributes
    ----------
    module_ : MLPGenerator
        The fitted generator (on ``device_``), in eval mode.
    bandwidths_ : ndarray of shape (n_kernels,)
        Kernel standard deviations used, in training units.
    loss_curve_ : list of float
        Mean training loss per epoch: :math:`\mathrm{MMD}^2_u`, or
        :math:`\sqrt{\mathrm{MMD}^2_b}` with ``sqrt_mmd`` or the paper architecture
        (training units).
    validation_scores_ : list of float
        Minus the unbiased MMD² between the held-out rows (at most 2048) and as many
        generated rows, per epoch. The noise behind those generated rows is drawn once
        at fit, so the score changes only with the generator.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation.

    Notes
    -----
    The held-out MMD² is itself noisy: with ``n`` validation rows it only tells apart
    generators whose MMD² differ by more than about (number of kernels) / ``n``. With a few
    hundred validation rows, early stopping may keep an early epoch; give it at least a
    thousand rows, or set ``validation_fraction=0`` and a fixed ``max_epochs``.

    The ``"paper"`` initialisation makes every generated row almost the same point, near
    the data mean. For data symmetric about its mean (a ring, a Gaussian) that is a
    stationary point of the MMD, and the generator can stay collapsed there.

    References
    ----------
    .. [1] Y. Li, K. Swersky, R. Zemel. "Generative Moment Matching Networks",
       ICML 2015, arXiv:1502.02761.
    .. [2] A. Gretton et al. "A Kernel Two-Sample Test", JMLR 13, 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import GMMN
    >>> X = np.random.default_rng(0).normal(size=(500, 2))
    >>> gmmn = GMMN(hidden_sizes=(32, 32), max_epochs=5, random_state=0).fit(X)
    >>> gmmn.sample(4).shape
    (4, 2)
    >>> hasattr(gmmn, "score_samples")
    False
    """

    score_samples = _unavailable("score_samples")
    log_prob = _unavailable("log_prob")
    score = _unavailable("score")
    sample_and_log_prob = _unavailable("sample_and_log_prob")

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "noise_dim": [Integral(1, None)],
        "noise": [Options("uniform", "normal")],
        "hidden_sizes": [SequenceOf(Integral(1, None), types=(list, tuple, np.ndarray))],
        "architecture": [Options("mlp", "paper")],
        "bandwidths": [
            None,
            Real(0, None, closed="neither"),
            SequenceOf(
                Real(0, None, closed="neither"), min_len=1, types=(list, tuple, np.ndarray)
            ),
        ],
        "sqrt_mmd": [Boolean()],
        "learning_rate": [None, Real(0, None, closed="neither")],
        **TRAINING_PARAMS,
        "dtype": [Options("float32", "float64")],
        "batch_size": [Integral(2, None)],  # the MMD compares samples
        "max_time": MAX_TIME,
        **BaseGenerativeModel._parameter_constraints,  # standardize, random_state, verbose
    }
    _parameter_rules = (
        IgnoredWhen(
            {"architecture": "paper"},
            ("noise_dim", "noise", "hidden_sizes"),
            "The paper network has its own noise (U(-1, 1)^10) and layers.",
        ),
    )

    _saved_attributes = (
        *BaseGenerativeModel._saved_attributes,
        "bandwidths_",
        "module_",
        "loss_curve_",
        "validation_scores_",
        "best_validation_score_",
        "n_iter_",
    )

    def __init__(
        self,
        noise_dim: int = 10,
        *,
        noise: Literal["uniform", "normal"] = "uniform",
        hidden_sizes: Sequence[int] = (64, 256, 256),
        architecture: Literal["mlp", "paper"] = "mlp",
        bandwidths: Sequence[float] | None = None,
        sqrt_mmd: bool = False,
        learning_rate: float | None = None,
        batch_size: int = 256,
        max_epochs: int = 200,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 20,
        max_time: float | None = None,
        standardize: bool = True,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.noise_dim = noise_dim
        self.noise = noise
        self.hidden_sizes = hidden_sizes
        self.architecture = architecture
        self.bandwidths = bandwidths
        self.sqrt_mmd = sqrt_mmd
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_time = max_time
        self.standardize = standardize
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- summary
    @staticmethod
    def _summarise_training(params: Mapping[str, Any], a: Mapping[str, Any]) -> list[SummaryItem]:
        # best_validation_score_ is minus a held-out MMD², not a likelihood.
        return [
            SummaryItem("n_iter", "epochs run", a.get("n_iter_")),
            SummaryItem(
                "best_validation_mmd2",
                "best validation MMD²",
                negated(a.get("best_validation_score_")),
            ),
        ]

    # ----------------------------------------------------------------- hooks
    def _restored(self) -> None:
        super()._restored()
        bw = self.bandwidths_
        if not (isinstance(bw, np.ndarray) and bw.ndim == 1 and bw.size and (bw > 0).all()):
            raise ValueError("bandwidths_ must be a non-empty array of positive numbers")

    def _make_module(self) -> MLPGenerator:
        if self.architecture == "paper":
            return MLPGenerator(
                PAPER_NOISE_DIM, PAPER_HIDDEN_SIZES, self.n_features_in_, init_std=0.02
            )
        return MLPGenerator(self.noise_dim, self.hidden_sizes, self.n_features_in_)

    def _noise(self, n_samples: int, generator: torch.Generator) -> Tensor:
        paper = self.architecture == "paper"
        shape = (n_samples, PAPER_NOISE_DIM if paper else int(self.noise_dim))
        device, dtype = generator.device, self._dtype
        if paper or self.noise == "uniform":
            return torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2.0 - 1.0
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def _default_bandwidths(self, Z: np.ndarray) -> np.ndarray:
        median = median_pairwise_distance(torch.as_tensor(Z))
        if not (math.isfinite(median) and median > 0):
            median = 1.0  # (nearly) all rows equal: fall back to the standardised scale
        factors = (1.0,) if self.architecture == "paper" else DEFAULT_BANDWIDTH_FACTORS
        return median * np.array(factors)

    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        Z = rows.all()
        device = torch.device(self.device_)
        train, valid = train_validation_split(Z, float(self.validation_fraction), rng)
        if self.bandwidths is None:
            self.bandwidths_ = self._default_bandwidths(train)
        else:
            self.bandwidths_ = np.atleast_1d(np.asarray(self.bandwidths, dtype=np.float64))
        with seeded(rng, device, self._dtype):
            self.module_ = self._make_module().to(device=device, dtype=self._dtype)
        paper = self.architecture == "paper"
        optimizer = torch.optim.Adam(
            self.module_.parameters(),
            lr=float(self.learning_rate or (2e-4 if paper else 1e-3)),
            betas=(0.5, 0.999) if paper else (0.9, 0.999),
        )
        deadline = fit_deadline(self.max_time)
        shuffle = torch_generator(rng, torch.device("cpu"))
        noise = torch_generator(rng, device)
        bandwidths = self.bandwidths_.tolist()
        take_sqrt = paper or bool(self.sqrt_mmd)

        def loss_fn(batch: Tensor) -> Tensor:
            fake = self.module_(self._noise(len(batch), noise))
            if take_sqrt:
                return mmd2(fake, batch, bandwidths, unbiased=False).clamp(min=_SQRT_FLOOR).sqrt()
            # A one-row last batch has no unbiased estimate; its biased one weighs 1/n.
            return mmd2(fake, batch, bandwidths, unbiased=len(batch) >= 2)

        X_train = torch.as_tensor(train, dtype=self._dtype, device=device)
        X_valid, score_fn = None, None
        if valid is not None:
            X_valid = torch.as_tensor(valid[:_MAX_VALID], dtype=self._dtype, device=device)
            valid_noise = self._noise(len(X_valid), noise)

            def score_fn(X: Tensor) -> float:
                fake = self.module_(valid_noise)
                return -float(mmd2(fake, X, bandwidths, unbiased=len(X) >= 2))

        # Small steps train faster on one thread (see ldelib._threads).
        with training_threads(step_flops(self.module_, int(self.batch_size)), device):
            config = TrainingConfig(
                desc=type(self).__name__,
                # A GMMN has no likelihood: it shows what it minimises, MMD² (or MMD).
                display=Display(
                    "train mmd" if take_sqrt else "train mmd²", "valid mmd²", score=lambda s: -s
                ),
                # What validating and copying the rows left of the budget (ldelib._budget).
                max_time=None if deadline is None else deadline - time.perf_counter(),
                **python_params(self, "max_epochs", "batch_size", "n_iter_no_change", "verbose"),
            )
            history = train_module(
                self.module_,
                loss_fn,
                X_train,
                X_valid,
                config,
                optimizer=optimizer,
                generator=shuffle,
                score_fn=score_fn,
            )
        self.loss_curve_ = [float(v) for v in history.loss_curve]
        self.validation_scores_ = [float(v) for v in history.validation_scores]
        best = history.best_validation_score
        self.best_validation_score_ = None if best is None else float(best)
        self.n_iter_ = history.n_iter

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        self.module_.eval()
        parts = []
        for start in range(0, n_samples, _SAMPLE_BATCH):
            count = min(_SAMPLE_BATCH, n_samples - start)
            parts.append(self.module_(self._noise(count, generator)))
        return torch.cat(parts)
