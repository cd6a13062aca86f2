"""Synthetic targets: distributions that sample and evaluate their *exact* log-density.

They are ground truth for tests, the demo and the benchmarks: a fitted model's test
log-likelihood (in nats) can be compared with the best achievable value.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .._arrays import check_rows
from ._checks import count, positive

__all__ = ["DIMENSIONAL", "PLANAR", "GaussianMixtureTarget", "Target"]


_LOG_2PI = math.log(2.0 * math.pi)
# Caps the (points x components) block a mixture evaluates at once, so a dense
# quadrature grid against a 100-component mixture stays within a few tens of MB.
_CHUNK = 1 << 20

Seed = int | np.integer | np.random.Generator | None


class Target(ABC):
    """A distribution on ``R^n_features`` that can be sampled and has an exact log-density.

    Build one with :func:`make_target`. Subclasses implement ``_sample`` and
    ``_log_prob``; the public methods validate inputs and handle shapes.

    Attributes
    ----------
    name : str
        The name passed to :func:`make_target`.
    n_features : int
        Dimension ``D`` of the sample space.

    Examples
    --------
    >>> from ldelib.datasets import make_target
    >>> t = make_target("banana")
    >>> X = t.sample(1000, random_state=0)
    >>> X.shape, t.log_prob(X).shape
    ((1000, 2), (1000,))
    """

    def __init__(self, name: str, n_features: int) -> None:
        self.name = name
        self.n_features = n_features

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n_features={self.n_features})"

    def sample(self, n_samples: int, random_state: Seed = None) -> NDArray[np.float64]:
        """Draw independent samples.

        Parameters
        ----------
        n_samples : int
            Number of samples, at least 1.
        random_state : int, numpy Generator or None
            Seed or generator; the same integer always gives the same samples.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
        """
        n_samples = count("n_samples", n_samples, 1)
        rng = np.random.default_rng(random_state)
        return np.ascontiguousarray(self._sample(n_samples, rng), dtype=np.float64)

    def log_prob(self, X: ArrayLike) -> NDArray[np.float64]:
        """Exact log-density in nats.

        Parameters
        ----------
        X : array-like of shape (..., n_features)
            Finite real points; a single point of shape ``(n_features,)`` is fine.

        Returns
        -------
        ndarray of shape (...), float64
            ``-inf`` where the density is zero (only the checkerboard has such points).
        """
        try:
            arr = np.asarray(X)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"X must be a rectangular array of points: {exc}") from None
        if arr.ndim == 0 or arr.shape[-1] != self.n_features:
            raise ValueError(
                f"X has shape {arr.shape}, but target {self.name!r} needs shape "
                f"(..., {self.n_features}); pass one point per row"
            )
        if arr.dtype == np.bool_:  # check_rows takes booleans; points are real numbers
            raise ValueError(f"X must hold real numbers, got dtype {arr.dtype}")
        try:
            rows = check_rows(arr.reshape(-1, self.n_features), "X", min_rows=0)
        except TypeError as exc:  # complex, object or string data
            raise ValueError(str(exc)) from None
        flat = np.asarray(rows, dtype=np.float64)
        # Squaring a huge-but-finite residual overflows to inf, i.e. log-density -inf,
        # which is the correct floating-point answer rather than something to warn about.
        with np.errstate(over="ignore"):
            return self._log_prob(flat).reshape(arr.shape[:-1])

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]: ...

    @abstractmethod
    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]: ...


class GaussianMixtureTarget(Target):
    """A finite mixture of full-covariance Gaussians.

    Used for ``ring``, ``moons``, ``spiral`` and ``gmm``; the parameters are read-only
    attributes so that tests can compare a fitted mixture with the truth.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray of shape (K, D, D)

    Examples
    --------
    >>> t = GaussianMixtureTarget("two", [0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]])
    >>> round(float(t.log_prob([1.5])), 4)
    -2.0439
    """

    def __init__(
        self, name: str, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike
    ) -> None:
        # Copies, since the parameters are frozen below and must not freeze caller arrays.
        w = np.array(weights, dtype=np.float64)
        mu = np.atleast_2d(np.array(means, dtype=np.float64))
        cov = np.array(covariances, dtype=np.float64)
        k, d = mu.shape
        if w.shape != (k,) or cov.shape != (k, d, d) or np.any(w <= 0):
            raise ValueError("need positive weights (K,), means (K, D), covariances (K, D, D)")
        super().__init__(name, d)
        self.weights = w / w.sum()
        self.means = mu
        self.covariances = cov
        self._chol = np.linalg.cholesky(cov)  # LinAlgError if not positive definite
        # One batched inverse: a per-component solve_triangular loop costs ~1 s at K=100.
        self._prec_chol = np.linalg.inv(self._chol)
        log_det_half = np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(axis=1)
        self._log_norm = np.log(self.weights) - log_det_half - 0.5 * d * _LOG_2PI
        for a in (self.weights, self.means, self.covariances, self._chol, self._prec_chol):
            a.flags.writeable = False

    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        # Block-per-component then shuffle: avoids materialising an (n, D, D) factor stack.
        counts = rng.multinomial(n, self.weights)
        blocks = [
            self.means[k] + self._noise(c, rng) @ self._chol[k].T for k, c in enumerate(counts)
        ]
        return rng.permutation(np.concatenate(blocks))

    def _noise(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        # Whitened draws of one component; subclasses with other shapes replace this.
        return rng.standard_normal((n, self.n_features))

    def _log_kernel(self, sq: NDArray[np.float64]) -> NDArray[np.float64]:
        # log weight + log density of each component from its squared Mahalanobis distance.
        return self._log_norm - 0.5 * sq

    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        # Whitened residuals L_k^{-1}(x - mu_k) for all k from one BLAS matmul; an einsum
        # over (points, components) is several times slower on 100-component mixtures.
        k, d = self.means.shape
        proj = self._prec_chol.transpose(2, 0, 1).reshape(d, k * d)
        shift = np.einsum("kij,kj->ki", self._prec_chol, self.means)
        out = np.empty(len(X))
        step = max(1, _CHUNK // k)
        for start in range(0, len(X), step):
            z = (X[start : start + step] @ proj).reshape(-1, k, d) - shift
            out[start : start + step] = logsumexp(self._log_kernel((z * z).sum(-1)), axis=1)
        return out


class _Checkerboard(Target):
    # Black squares are those with (column + row) even, counting from the corner (-2, -2).
    def __init__(self) -> None:
        super().__init__("checkerboard", 2)
        self._cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])

    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        cells = self._cells[rng.integers(len(self._cells), size=n)]
        return cells - 2.0 + rng.random((n, 2))

    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        ij = np.floor(X + 2.0)
        inside = np.all((ij >= 0) & (ij < 4), axis=1) & (ij.sum(axis=1) % 2 == 0)
        return np.where(inside, -math.log(len(self._cells)), -np.inf)


class _Banana(Target):
    def __init__(self, curvature: float = 0.5, noise: float = 0.5) -> None:
        super().__init__("banana", 2)
        self.curvature = float(curvature)
        self.noise = positive("noise", noise)

    def _mean1(self, z0: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.curvature * z0**2 - 1.0

    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        z0 = rng.standard_normal(n)
        z1 = self._mean1(z0) + self.noise * rng.standard_normal(n)
        return np.column_stack([z0, z1])

    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return _norm_logpdf(X[:, 0], 0.0, 1.0) + _norm_logpdf(
            X[:, 1], self._mean1(X[:, 0]), self.noise
        )


class _SineChain(Target):
    # z_j | z_{j-1} ~ N(amplitude*sin(frequency*z_{j-1}) + slope*z_{j-1}, noise**2).
    # |slope| < 1 makes the drift contract at large |z|, so every marginal stays O(1).
    def __init__(
        self,
        n_features: int,
        amplitude: float = 1.0,
        frequency: float = 2.0,
        slope: float = 0.3,
        noise: float = 0.3,
    ) -> None:
        super().__init__("sine-chain", n_features)
        self.amplitude = float(amplitude)
        self.frequency = float(frequency)
        self.slope = float(slope)
        self.noise = positive("noise", noise)
        if not abs(self.slope) < 1.0:
            raise ValueError(f"slope must lie in (-1, 1) to keep the chain stable, got {slope}")

    def _drift(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.amplitude * np.sin(self.frequency * z) + self.slope * z

    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        eps = rng.standard_normal((n, self.n_features))
        X = np.empty_like(eps)
        X[:, 0] = eps[:, 0]
        for j in range(1, self.n_features):
            X[:, j] = self._drift(X[:, j - 1]) + self.noise * eps[:, j]
        return X

    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        head = _norm_logpdf(X[:, 0], 0.0, 1.0)
        tail = _norm_logpdf(X[:, 1:], self._drift(X[:, :-1]), self.noise).sum(axis=1)
        return head + tail


def _norm_logpdf(
    x: NDArray[np.float64], mean: NDArray[np.float64] | float, std: float
) -> NDArray[np.float64]:
    z = (np.asarray(x) - mean) / std
    return -0.5 * z * z - math.log(std) - 0.5 * _LOG_2PI


def _isotropic(name: str, means: NDArray[np.float64], std: float) -> GaussianMixtureTarget:
    k, d = means.shape
    cov = np.broadcast_to(positive("std", std) ** 2 * np.eye(d), (k, d, d))
    return GaussianMixtureTarget(name, np.ones(k), means, cov)


def _ring(n_components: int = 8, radius: float = 2.0, std: float = 0.2) -> GaussianMixtureTarget:
    n_components = count("n_components", n_components, 1)
    angle = 2.0 * np.pi * np.arange(n_components) / n_components
    return _isotropic("ring", radius * np.column_stack([np.cos(angle), np.sin(angle)]), std)


def _moons(n_components: int = 100, std: float = 0.1) -> GaussianMixtureTarget:
    # Same arcs as sklearn.datasets.make_moons (before its noise): both have length pi,
    # so splitting components evenly keeps the density uniform along the curve.
    t = np.linspace(0.0, np.pi, count("n_components", n_components, 2) // 2)
    outer = np.column_stack([np.cos(t), np.sin(t)])
    inner = np.column_stack([1.0 - np.cos(t), 0.5 - np.sin(t)])
    return _isotropic("moons", np.concatenate([outer, inner]), std)


def _spiral(
    n_components: int = 100, turns: float = 1.5, std: float = 0.1
) -> GaussianMixtureTarget:
    # Centres equally spaced in arc length, so equal weights mean mass proportional
    # to arc length; the radius grows linearly from 0.3 to 2.
    theta = np.linspace(0.0, 2.0 * np.pi * turns, 20_001)
    r = 0.3 + 1.7 * theta / theta[-1]
    curve = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], count("n_components", n_components, 1))
    means = np.column_stack([np.interp(s, arc, curve[:, 0]), np.interp(s, arc, curve[:, 1])])
    return _isotropic("spiral", means, std)


def _gmm(n_features: int, n_components: int = 5, seed: int = 0) -> GaussianMixtureTarget:
    n_components = count("n_components", n_components, 1)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n_components, n_features, n_features)))
    var = rng.uniform(0.2, 0.6, size=(n_components, n_features)) ** 2
    cov = np.einsum("kij,kj,klj->kil", q, var, q)
    cov = 0.5 * (cov + cov.transpose(0, 2, 1))
    # "Well separated": every pair of means at least six of the widest stds apart.
    min_dist, spread = 6.0 * math.sqrt(var.max()), 2.0
    while True:
        means = rng.normal(scale=spread, size=(n_components, n_features))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)
        if n_components == 1 or gaps[np.triu_indices(n_components, 1)].min() >= min_dist:
            break
        spread *= 1.1
    weights = rng.dirichlet(np.full(n_components, 5.0))
    return GaussianMixtureTarget("gmm", weights, means, cov)


#: The 2-D targets by name: builders that take their keyword arguments.
PLANAR: dict[str, Callable[..., Target]] = {
    "ring": _ring,
    "moons": _moons,
    "spiral": _spiral,
    "checkerboard": _Checkerboard,
    "banana": _Banana,
}
#: The targets of any dimension by name: (builder taking D first, default D, least D).
DIMENSIONAL: dict[str, tuple[Callable[..., Target], int, int]] = {
    "sine-chain": (_SineChain, 16, 2),
    "gmm": (_gmm, 8, 1),
}
