"""The estimators a user would pick instead of ldelib, behind ldelib's contract.

Wrapping the peers in :class:`~ldelib.BaseDensityEstimator` gives every model in a
comparison (:func:`ldelib.compare.compare`, the benchmarks) the same standardisation,
input checks and log-determinant bookkeeping, and the zuko flows the same training loop
as ldelib's own networks (Adam, minibatches, early stopping on a validation split,
learning-rate halving, wall-time budget), so the comparison differs only in the model.
The zuko flows need the ``peers`` extra (``pip install "ldelib[peers]"``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ._arrays import torch_generator
from ._budget import fit_deadline
from ._sources import RowSource
from ._validation import (
    MAX_TIME,
    TRAINING_PARAMS,
    Boolean,
    Constraint,
    Integral,
    Options,
    Real,
    SequenceOf,
    python_params,
)
from .density import BaseDensityEstimator
from .training import TrainingConfig, seeded, train_module, train_validation_split

__all__ = ["GridMixturePeer", "KernelDensityPeer", "ZukoFlowPeer", "zuko_available"]


def zuko_available() -> bool:
    """Whether zuko, which the MAF and NSF peers need, can be imported."""
    try:
        import zuko  # noqa: F401
    except ImportError:
        return False
    return True


class KernelDensityPeer(BaseDensityEstimator):
    """scikit-learn's Gaussian ``KernelDensity`` with its bandwidth chosen on validation.

    The bandwidth is picked from ``bandwidths`` times Scott's factor
    :math:`n^{-1/(D+4)}` (in standardised units) by held-out log-likelihood, then the
    estimator is refitted on every row.
    """

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float64

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "bandwidths": [
            SequenceOf(Real(0, None, closed="neither"), min_len=1, types=(list, tuple, np.ndarray))
        ],
        "validation_fraction": [Real(0, 1, closed="neither")],  # it chooses the bandwidth
        **BaseDensityEstimator._parameter_constraints,  # standardize, random_state, verbose
    }

    def __init__(
        self,
        bandwidths: tuple[float, ...] = tuple(np.logspace(-1.5, 0.5, 13).round(4)),
        validation_fraction: float = 0.1,
        standardize: bool = True,
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.bandwidths = bandwidths
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        Z = rows.all()
        from sklearn.neighbors import KernelDensity

        train, valid = train_validation_split(Z, float(self.validation_fraction), rng)
        scott = len(train) ** (-1.0 / (Z.shape[1] + 4))
        grid = np.asarray(self.bandwidths, dtype=np.float64) * scott
        scores = [KernelDensity(bandwidth=h).fit(train).score_samples(valid).mean() for h in grid]
        self.candidate_scores_ = dict(zip(grid.tolist(), scores, strict=True))
        self.bandwidth_ = float(grid[int(np.argmax(scores))])
        self.kde_ = KernelDensity(bandwidth=self.bandwidth_).fit(Z)

    def _log_prob(self, Z: Tensor) -> Tensor:
        values = self.kde_.score_samples(Z.detach().cpu().double().numpy())
        return torch.as_tensor(values, dtype=Z.dtype, device=Z.device)

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        return torch.as_tensor(self.kde_.sample(n_samples, random_state=seed))


class GridMixturePeer(BaseDensityEstimator):
    """scikit-learn's ``GaussianMixture`` tuned by hand: a full grid, chosen on validation.

    What a careful user does without ldelib: every pair of ``n_components`` (up to one
    component per two training rows) and ``reg_covar`` is a fresh fit with
    scikit-learn's defaults on the training part, the best held-out log-likelihood wins,
    and it is refitted on every row. The grid goes K by K; no new fit starts once
    ``max_time`` is spent.
    """

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float64

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "components": [SequenceOf(Integral(1, None), min_len=1, types=(list, tuple))],
        "regs": [SequenceOf(Real(0, None, closed="neither"), min_len=1, types=(list, tuple))],
        "validation_fraction": [Real(0, 1, closed="neither")],
        "max_time": MAX_TIME,
        **BaseDensityEstimator._parameter_constraints,  # standardize, random_state, verbose
    }

    def __init__(
        self,
        components: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 120, 160),
        regs: tuple[float, ...] = (1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3),
        validation_fraction: float = 0.2,
        max_time: float | None = None,
        standardize: bool = True,
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.components = components
        self.regs = regs
        self.validation_fraction = validation_fraction
        self.max_time = max_time
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        Z = rows.all()
        from sklearn.mixture import GaussianMixture

        deadline = fit_deadline(self.max_time)
        train, valid = train_validation_split(Z, float(self.validation_fraction), rng)
        seed = int(rng.integers(2**31 - 1))
        self.candidate_scores_: dict[str, float] = {}
        for k in sorted({int(k) for k in self.components if 2 * k <= len(train)} or {1}):
            for reg in sorted(float(r) for r in self.regs):
                if (
                    self.candidate_scores_
                    and deadline is not None
                    and time.perf_counter() > deadline
                ):
                    break
                mixture = GaussianMixture(k, reg_covar=reg, random_state=seed).fit(train)
                self.candidate_scores_[f"K={k}, reg_covar={reg:g}"] = mixture.score(valid)
        best = max(self.candidate_scores_, key=self.candidate_scores_.__getitem__)
        chosen_k, chosen_reg = best.removeprefix("K=").split(", reg_covar=")
        self.n_components_, self.reg_covar_ = int(chosen_k), float(chosen_reg)
        self.mixture_ = GaussianMixture(
            self.n_components_, reg_covar=self.reg_covar_, random_state=seed
        ).fit(Z)

    def _log_prob(self, Z: Tensor) -> Tensor:
        values = self.mixture_.score_samples(Z.detach().cpu().double().numpy())
        return torch.as_tensor(values, dtype=Z.dtype, device=Z.device)

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        mixture = copy.copy(self.mixture_).set_params(random_state=seed)
        rows = mixture.sample(n_samples)[0]
        # scikit-learn returns its draws grouped by component: shuffle them.
        order = np.random.default_rng(seed).permutation(n_samples)
        return torch.as_tensor(rows[order])


class ZukoFlowPeer(BaseDensityEstimator):
    """A zuko masked autoregressive flow (MAF) or neural spline flow (NSF).

    zuko's own defaults for the architecture (3 transforms, two hidden layers of 64;
    8 spline bins for NSF) and ldelib's training loop and defaults for the fit. With
    ``conditional=True`` it is zuko's conditional flow: labels enter as a one-hot
    context, a context as it is (standardised); it has no prefix marginals.
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "flow": [Options("maf", "nsf")],
        "transforms": [Integral(1, None)],
        "hidden_features": [SequenceOf(Integral(1, None), types=(list, tuple, np.ndarray))],
        "learning_rate": [Real(0, None, closed="neither")],
        **TRAINING_PARAMS,
        "max_time": MAX_TIME,
        "conditional": [Boolean()],
        **BaseDensityEstimator._parameter_constraints,  # standardize, random_state, verbose
    }

    def __init__(
        self,
        flow: Literal["maf", "nsf"] = "maf",
        transforms: int = 3,
        hidden_features: tuple[int, ...] = (64, 64),
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 200,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 20,
        max_time: float | None = None,
        conditional: bool = False,
        standardize: bool = True,
        device: str = "cpu",
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.flow = flow
        self.transforms = transforms
        self.hidden_features = hidden_features
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_time = max_time
        self.conditional = conditional
        self.standardize = standardize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _make_module(self) -> nn.Module:
        if not zuko_available():
            raise ImportError(
                f'The zuko {self.flow.upper()} needs zuko: pip install "ldelib[peers]".'
            )
        import zuko

        kind = zuko.flows.MAF if self.flow == "maf" else zuko.flows.NSF
        return kind(
            features=self.n_features_in_,
            context=self._context_width(),
            transforms=int(self.transforms),
            hidden_features=tuple(int(h) for h in self.hidden_features),
        )

    def _context_width(self) -> int:
        if hasattr(self, "classes_"):
            return len(self.classes_)
        return int(getattr(self, "n_context_features_", 0))

    def _context(self, c: Tensor, dtype: torch.dtype) -> Tensor:
        """zuko's context of the encoded condition: one-hot labels, or the context."""
        if c.dtype == torch.int64:
            return torch.nn.functional.one_hot(c, len(self.classes_)).to(dtype)
        return c.to(dtype)

    def _fit(self, rows: RowSource, rng: np.random.Generator) -> None:
        self._train(rows.all(), 0, rng)

    def _fit_conditional(self, rows: RowSource, y: np.ndarray, rng: np.random.Generator) -> None:
        context = self._context(torch.as_tensor(y), torch.float64).numpy()
        # Each row carries its context in front, through the same split and shuffles.
        self._train(np.concatenate([context, rows.all()], axis=1), context.shape[1], rng)

    def _train(self, Z: np.ndarray, width: int, rng: np.random.Generator) -> None:
        """Train on rows ``Z`` whose first ``width`` columns are zuko's context."""
        deadline = fit_deadline(self.max_time)
        device = torch.device(self.device_)
        train, valid = train_validation_split(Z, float(self.validation_fraction), rng)
        with seeded(rng, device, self._dtype):
            self.module_ = self._make_module().to(device=device, dtype=self._dtype)
        optimizer = torch.optim.Adam(self.module_.parameters(), lr=float(self.learning_rate))
        d = Z.shape[1] - width

        def loss(rows: Tensor) -> Tensor:
            flow = self.module_(rows[:, :width]) if width else self.module_()
            return -flow.log_prob(rows[:, width:]).mean() / d

        def tensor(x: np.ndarray) -> Tensor:
            return torch.as_tensor(x, dtype=self._dtype, device=device)

        config = TrainingConfig(
            lr_decay_patience=max(1, int(self.n_iter_no_change) // 2),
            max_time=None if deadline is None else deadline - time.perf_counter(),
            desc=f"zuko {self.flow.upper()}",
            **python_params(self, "max_epochs", "batch_size", "n_iter_no_change", "verbose"),
        )
        history = train_module(
            self.module_,
            loss,
            tensor(train),
            None if valid is None else tensor(valid),
            config,
            optimizer=optimizer,
            generator=torch_generator(rng, torch.device("cpu")),
        )
        self.n_iter_ = history.n_iter
        self.timed_out_ = history.timed_out

    def _log_prob(self, Z: Tensor) -> Tensor:
        return self.module_().log_prob(Z)

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        return self._zuko_draw(lambda: self.module_().sample((n_samples,)), generator)

    def _zuko_draw(self, draw: Callable[[], Tensor], generator: torch.Generator) -> Tensor:
        # zuko draws from torch's global generator: seed a fork of it from ours.
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        device = torch.device(self.device_)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.manual_seed(seed)
            return draw()

    def _log_prob_conditional(self, Z: Tensor, c: Tensor, k: int | None) -> Tensor:
        if k is not None:
            raise NotImplementedError("A zuko flow has no prefix marginals (n_dims).")
        return self.module_(self._context(c, Z.dtype)).log_prob(Z)

    def _sample_conditional(
        self, c: Tensor, prefix: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        if prefix is not None:
            raise NotImplementedError("A zuko flow cannot sample given a prefix.")
        return self._zuko_draw(
            lambda: self.module_(self._context(c, self._dtype)).sample(), generator
        )
