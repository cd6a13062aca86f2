r"""A conditional target with an exact density: classes and a context move and warp
the clusters.

Given a class :math:`y` and a context :math:`c \in \mathbb{R}^C`, a point is

.. math:: x = W\big(S_c(z)\big), \qquad z \sim \sum_k \pi_{yk}(c)\,
          \mathcal{N}\big(\mu_{yk} + c_0\,v_{yk},\ \Sigma_{yk}\big),

where each class has its own clusters, the context moves them
(:math:`c_0 v_{yk}`) and reweighs them (:math:`\pi_{yk}(c) \propto
\exp(b_{yk} + c_{C-1} w_{yk})`), :math:`S_c` is an elementwise sinh-arcsinh map whose
skew is :math:`0.6 \tanh(c_{C-1})` times a fixed vector, and :math:`W` a fixed warp
(rotation, sinh-arcsinh, shear, rotation) as in ``make_target("warped")``. Every map is
invertible in closed form, so :math:`\log p(x \mid y, c)` is exact by the change of
variables: the ground truth of a conditional density estimator.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from scipy.stats import ortho_group

from ._checks import count
from .make import make_target
from .warped import WarpedMixtureTarget

__all__ = ["ConditionalWarpedTarget"]

_LOG_2PI = math.log(2 * math.pi)


class ConditionalWarpedTarget:
    """Clusters per class, moved, reweighed and warped by a context; exact density.

    Parameters
    ----------
    n_features : int, default=4
        Dimension :math:`D` of ``x`` (at least 2).
    n_classes : int, default=4
    n_components : int, default=3
        Clusters per class.
    n_context : int, default=2
        Width :math:`C` of the context (its first coordinate moves the clusters, its
        last reweighs and skews them).
    seed : int, default=0
        Draws every parameter.

    Examples
    --------
    >>> t = ConditionalWarpedTarget(n_features=3, seed=1)
    >>> X, y, c = t.sample(5, random_state=0)
    >>> X.shape, y.shape, c.shape
    ((5, 3), (5,), (5, 2))
    >>> t.log_prob(X, y, c).shape
    (5,)
    """

    def __init__(
        self,
        n_features: int = 4,
        n_classes: int = 4,
        n_components: int = 3,
        n_context: int = 2,
        seed: int = 0,
    ) -> None:
        d = self.n_features = count("n_features", n_features, 2)
        L = self.n_classes = count("n_classes", n_classes, 1)
        k = self.n_components = count("n_components", n_components, 1)
        self.n_context = count("n_context", n_context, 1)
        rng = np.random.default_rng(seed)
        axes = ortho_group.rvs(d, size=L * k, random_state=rng).reshape(L, k, d, d)
        std = rng.uniform(0.3, 1.0, size=(L, k, d))
        self.covariances = np.einsum("lkij,lkj,lkmj->lkim", axes, std**2, axes)
        self._chol = np.linalg.cholesky(self.covariances)
        self.means = rng.normal(scale=1.5, size=(L, k, d))
        self.moves = rng.normal(scale=0.7, size=(L, k, d))
        self.logits = np.log(rng.dirichlet(np.full(k, 5.0), size=L))
        self.reweigh = rng.normal(size=(L, k))
        self.skew = rng.uniform(0.5, 1.0, size=d)
        warp = make_target("warped", n_features=d, n_components=1, n_layers=1, seed=seed + 1)
        assert isinstance(warp, WarpedMixtureTarget)  # its maps, not its base, are used
        self.warp = warp

    def _check(self, y: ArrayLike, context: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y)
        c = np.asarray(context, dtype=np.float64)
        if y.shape != (n,) or not np.isin(y, np.arange(self.n_classes)).all():
            raise ValueError(f"y must hold {n} class codes in 0..{self.n_classes - 1}")
        if c.shape != (n, self.n_context) or not np.isfinite(c).all():
            raise ValueError(f"context must be finite, of shape ({n}, {self.n_context})")
        return y.astype(np.int64), c

    def _components(self, y: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's component log-weights (n, K) and means (n, K, D)."""
        logits = self.logits[y] + c[:, -1:] * self.reweigh[y]
        log_weights = logits - logsumexp(logits, axis=1, keepdims=True)
        means = self.means[y] + c[:, 0, None, None] * self.moves[y]
        return log_weights, means

    def _skew(self, c: np.ndarray) -> np.ndarray:
        return 0.6 * np.tanh(c[:, -1:]) * self.skew  # (n, D)

    def sample(
        self,
        n: int,
        random_state: int | np.random.Generator | None = None,
        y: ArrayLike | None = None,
        context: ArrayLike | None = None,
    ) -> tuple[NDArray[np.float64], np.ndarray, NDArray[np.float64]]:
        """``n`` points with their classes and contexts: uniform classes and standard
        normal contexts, unless given (one per row)."""
        rng = np.random.default_rng(random_state)
        y = rng.integers(0, self.n_classes, n) if y is None else y
        c = rng.normal(size=(n, self.n_context)) if context is None else context
        y, c = self._check(y, c, n)
        log_weights, means = self._components(y, c)
        cumulative = np.cumsum(np.exp(log_weights), axis=1)
        k = (cumulative < rng.uniform(size=(n, 1))).sum(axis=1).clip(max=self.n_components - 1)
        noise = rng.normal(size=(n, self.n_features))
        z = means[np.arange(n), k] + np.einsum("nij,nj->ni", self._chol[y, k], noise)
        u = np.sinh(np.arcsinh(z) - self._skew(c))  # S_c: skew only, unit tailweight
        return self.warp.forward(u), y, c

    def log_prob(self, X: ArrayLike, y: ArrayLike, context: ArrayLike) -> NDArray[np.float64]:
        r""":math:`\log p(x \mid y, c)` of each row, in nats."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        y, c = self._check(y, context, len(X))
        u, log_det = self.warp.inverse(X)
        a = np.arcsinh(u) + self._skew(c)
        z = np.sinh(a)
        # dz/du = cosh(a) / sqrt(1 + u^2), elementwise; written not to overflow.
        log_cosh = np.abs(a) + np.log1p(np.exp(-2 * np.abs(a))) - math.log(2.0)
        log_det = log_det + (log_cosh - np.log(np.hypot(1.0, u))).sum(axis=1)
        log_weights, means = self._components(y, c)
        residual = z[:, None, :] - means  # (n, K, D)
        chol = self._chol[y]  # (n, K, D, D)
        whitened = np.linalg.solve(chol, residual[..., None])[..., 0]
        log_det_cov = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        log_normal = -0.5 * (whitened**2).sum(-1) - log_det_cov - 0.5 * self.n_features * _LOG_2PI
        return logsumexp(log_weights + log_normal, axis=1) + log_det
