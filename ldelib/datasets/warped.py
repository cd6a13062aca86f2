r"""Warped mixtures: a mixture pushed through known smooth bijections, exact density kept.

A full-covariance Gaussian (or Student-t) mixture ``z`` is mapped to ``x = T(z)`` by a
composition ``T = T_L o ... o T_1`` of invertible maps whose inverses and Jacobian
determinants are in closed form, so the change of variables gives the exact density

.. math::

    \log p(x) = \log p_\text{base}(T^{-1}(x))
        + \sum_l \log \left| \det \frac{\partial T_l^{-1}}{\partial y} \right|.

Elementwise sinh-arcsinh maps skew the clusters and thicken or thin their tails,
additive couplings (shears) bend them, and rotations mix the coordinates, so a
Gaussian mixture needs many components to come close while the truth stays exact.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from ._checks import count, positive
from .targets import GaussianMixtureTarget, Target

__all__ = [
    "WARPED",
    "AdditiveCoupling",
    "Bijection",
    "Rotation",
    "SinhArcsinh",
    "StudentMixtureTarget",
    "WarpedMixtureTarget",
]


def _points(X: ArrayLike, n_features: int) -> NDArray[np.float64]:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"expected points of shape (n, {n_features}), got shape {arr.shape}")
    return arr


class Bijection(ABC):
    """A smooth invertible map of ``R^n_features`` with a closed-form inverse.

    Its ``n_features`` attribute is the dimension it maps (documented in prose, not as an
    attribute entry: numpy-style attribute entries become cross-reference targets, and a
    second ``n_features`` target would make every ``n_features`` in a shape ambiguous).
    """

    n_features: int

    def forward(self, Z: ArrayLike) -> NDArray[np.float64]:
        """``x = T(z)`` for each row of ``Z`` of shape (n, n_features)."""
        return self._forward(_points(Z, self.n_features))

    def inverse(self, X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``z = T^{-1}(x)`` and ``log |det dz/dx|`` for each row of ``X``.

        Returns
        -------
        Z : ndarray of shape (n, n_features)
        log_det : ndarray of shape (n,)
        """
        return self._inverse(_points(X, self.n_features))

    @abstractmethod
    def _forward(self, Z: NDArray[np.float64]) -> NDArray[np.float64]: ...

    @abstractmethod
    def _inverse(
        self, X: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...


class SinhArcsinh(Bijection):
    """Elementwise ``x = sinh(tailweight * asinh(z) - skew)`` (Jones & Pewsey, 2009).

    Monotone in each coordinate; ``skew`` shifts mass to one side, ``tailweight > 1``
    thickens the tails (``|x| ~ |z|^tailweight``) and ``< 1`` thins them. Inverse
    ``z = sinh((asinh(x) + skew) / tailweight)``.

    Parameters
    ----------
    skew : array-like of shape (D,)
    tailweight : array-like of shape (D,), positive

    Examples
    --------
    >>> m = SinhArcsinh([0.5, 0.0], [1.2, 0.8])
    >>> z, log_det = m.inverse(m.forward([[1.0, -2.0]]))
    >>> z.round(12).tolist()
    [[1.0, -2.0]]
    """

    def __init__(self, skew: ArrayLike, tailweight: ArrayLike) -> None:
        self.skew = np.array(skew, dtype=np.float64).reshape(-1)
        self.tailweight = np.array(tailweight, dtype=np.float64).reshape(-1)
        if self.skew.shape != self.tailweight.shape or not np.all(np.isfinite(self.skew)):
            raise ValueError("skew and tailweight must be finite vectors of the same length")
        if not np.all(np.isfinite(self.tailweight) & (self.tailweight > 0)):
            raise ValueError(f"tailweight must be positive and finite, got {self.tailweight}")
        self.n_features = len(self.skew)

    def _forward(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        with np.errstate(over="ignore"):  # beyond ~1e308 the image is inf, as it should be
            return np.sinh(self.tailweight * np.arcsinh(Z) - self.skew)

    def _inverse(self, X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        u = (np.arcsinh(X) + self.skew) / self.tailweight
        with np.errstate(over="ignore"):
            Z = np.sinh(u)
        # dz/dx = cosh(u) / (tailweight sqrt(1 + x^2)); log cosh and hypot written so
        # that neither overflows for any finite x.
        log_cosh = np.abs(u) + np.log1p(np.exp(-2.0 * np.abs(u))) - math.log(2.0)
        log_det = log_cosh - np.log(self.tailweight) - np.log(np.hypot(1.0, X))
        return Z, log_det.sum(axis=1)


class AdditiveCoupling(Bijection):
    """A shear: ``x_B = z_B + W_out tanh(W_in z_A + b)``, ``x_A = z_A``.

    ``A`` (``active``) and ``B`` (``passive``) are disjoint index sets covering the
    coordinates. The Jacobian is unit triangular, so ``log |det| = 0`` and the inverse
    subtracts the same shift, computed from ``x_A = z_A``.

    Parameters
    ----------
    active, passive : array-like of int
    weight_in : array-like of shape (H, len(active))
    bias : array-like of shape (H,)
    weight_out : array-like of shape (len(passive), H)

    Examples
    --------
    >>> m = AdditiveCoupling([0], [1], [[2.0]], [0.0], [[1.0]])
    >>> m.forward([[1.0, 0.0]]).round(4).tolist()
    [[1.0, 0.964]]
    """

    def __init__(
        self,
        active: ArrayLike,
        passive: ArrayLike,
        weight_in: ArrayLike,
        bias: ArrayLike,
        weight_out: ArrayLike,
    ) -> None:
        self.active = np.array(active, dtype=np.intp).reshape(-1)
        self.passive = np.array(passive, dtype=np.intp).reshape(-1)
        self.weight_in = np.array(weight_in, dtype=np.float64)
        self.bias = np.array(bias, dtype=np.float64).reshape(-1)
        self.weight_out = np.array(weight_out, dtype=np.float64)
        self.n_features = len(self.active) + len(self.passive)
        every = np.sort(np.concatenate([self.active, self.passive]))
        if not (len(self.active) and len(self.passive)) or not np.array_equal(
            every, np.arange(self.n_features)
        ):
            raise ValueError("active and passive must be non-empty and split 0..D-1 between them")
        h = len(self.bias)
        if self.weight_in.shape != (h, len(self.active)) or self.weight_out.shape != (
            len(self.passive),
            h,
        ):
            raise ValueError(
                f"need weight_in (H, {len(self.active)}), bias (H,), "
                f"weight_out ({len(self.passive)}, H)"
            )

    def _shift(self, Y: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.tanh(Y[:, self.active] @ self.weight_in.T + self.bias) @ self.weight_out.T

    def _forward(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        X = Z.copy()
        X[:, self.passive] += self._shift(Z)
        return X

    def _inverse(self, X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        Z = X.copy()
        Z[:, self.passive] -= self._shift(X)
        return Z, np.zeros(len(X))


class Rotation(Bijection):
    """``x = Q z`` for an orthogonal ``Q``: ``log |det| = 0``, inverse ``z = Q^T x``.

    Examples
    --------
    >>> Rotation([[0.0, -1.0], [1.0, 0.0]]).forward([[1.0, 0.0]]).tolist()
    [[0.0, 1.0]]
    """

    def __init__(self, matrix: ArrayLike) -> None:
        self.matrix = np.array(matrix, dtype=np.float64)
        d = len(self.matrix)
        if self.matrix.shape != (d, d) or not np.allclose(
            self.matrix.T @ self.matrix, np.eye(d), rtol=0, atol=1e-10 * max(d, 1)
        ):
            raise ValueError("matrix must be square and orthogonal")
        self.n_features = d

    def _forward(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        return Z @ self.matrix.T

    def _inverse(self, X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return X @ self.matrix, np.zeros(len(X))


class StudentMixtureTarget(GaussianMixtureTarget):
    """A finite mixture of multivariate Student-t distributions with ``dof`` degrees of freedom.

    Each component is ``mu_k + L_k e / sqrt(g / dof)`` with ``e ~ N(0, I)``,
    ``g ~ chi^2_dof`` and ``L_k L_k^T`` the scale matrix ``covariances[k]`` (its
    covariance is ``dof / (dof - 2)`` times that, for ``dof > 2``). Tails fall off as
    ``|x|^-(dof + D)``, so a few far points dominate any Gaussian fit.

    Attributes
    ----------
    dof : float
    weights, means, covariances
        As :class:`GaussianMixtureTarget`; ``covariances`` are the scale matrices.

    Examples
    --------
    >>> t = StudentMixtureTarget("t", [1.0], [[0.0]], [[[1.0]]], dof=3.0)
    >>> from scipy import stats
    >>> bool(abs(t.log_prob([2.0]) - stats.t(3.0).logpdf(2.0)) < 1e-12)
    True
    """

    def __init__(
        self,
        name: str,
        weights: ArrayLike,
        means: ArrayLike,
        covariances: ArrayLike,
        dof: float,
    ) -> None:
        super().__init__(name, weights, means, covariances)
        self.dof = positive("dof", dof)
        d, nu = self.n_features, self.dof
        # Replace the Gaussian constant by the Student-t one; the log-determinant and the
        # log-weight parts of it are shared.
        gauss = -0.5 * d * math.log(2.0 * math.pi)
        student = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * math.log(nu * math.pi)
        self._log_norm = self._log_norm - gauss + student

    def _noise(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        gauss = rng.standard_normal((n, self.n_features))
        return gauss * np.sqrt(self.dof / rng.chisquare(self.dof, size=(n, 1)))

    def _log_kernel(self, sq: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._log_norm - 0.5 * (self.dof + self.n_features) * np.log1p(sq / self.dof)


class WarpedMixtureTarget(Target):
    """A mixture pushed through a sequence of bijections: ``x = maps[-1](...maps[0](z))``.

    Built by :func:`make_target` as ``"warped"`` and ``"warped-heavy"``; any base mixture
    and maps of the same dimension make one. ``log_prob`` inverts the maps in reverse
    order and adds their log-Jacobians to the base log-density.

    Parameters
    ----------
    name : str
    base : GaussianMixtureTarget
        The distribution of ``z`` (a :class:`StudentMixtureTarget` for heavy tails).
    maps : sequence of Bijection
        Applied first to last.

    Examples
    --------
    >>> from ldelib.datasets import make_target
    >>> t = make_target("warped", n_features=4, seed=1)
    >>> X = t.sample(5, random_state=0)
    >>> Z, log_det = t.inverse(X)
    >>> bool(np.allclose(t.forward(Z), X))
    True
    >>> bool(np.allclose(t.log_prob(X), t.base.log_prob(Z) + log_det))
    True
    """

    def __init__(self, name: str, base: GaussianMixtureTarget, maps: Sequence[Bijection]) -> None:
        super().__init__(name, base.n_features)
        self.base = base
        self.maps = tuple(maps)
        for m in self.maps:
            if m.n_features != base.n_features:
                raise ValueError(
                    f"map {type(m).__name__} acts on {m.n_features} features, "
                    f"the base mixture has {base.n_features}"
                )

    def forward(self, Z: ArrayLike) -> NDArray[np.float64]:
        """Push base points through every map: ``x = T(z)``."""
        Y = _points(Z, self.n_features)
        for m in self.maps:
            Y = m.forward(Y)
        return Y

    def inverse(self, X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``z = T^{-1}(x)`` and ``log |det dz/dx|``, summed over the maps."""
        Y = _points(X, self.n_features)
        log_det = np.zeros(len(Y))
        with np.errstate(over="ignore", invalid="ignore"):
            for m in reversed(self.maps):
                Y, term = m.inverse(Y)
                log_det += term
        return Y, log_det

    def _sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        return self.forward(self.base.sample(n, rng))

    def _log_prob(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        Z, log_det = self.inverse(X)
        # A point so far out that an inverse overflows has density below anything a
        # float can hold: -inf, the limit, rather than the NaN that inf - inf would give.
        ok = np.isfinite(Z).all(axis=1) & np.isfinite(log_det)
        out = np.full(len(X), -np.inf)
        out[ok] = self.base.log_prob(Z[ok]) + log_det[ok]
        return out


def _haar(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float64]:
    # QR of a Gaussian matrix with R's diagonal made positive is Haar-distributed.
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def _warped_mixture(
    n_features: int,
    n_components: int = 8,
    dof: float | None = None,
    n_layers: int = 2,
    seed: int = 0,
    name: str = "warped",
) -> WarpedMixtureTarget:
    """The random warped mixture behind ``make_target("warped" / "warped-heavy")``.

    Base: ``n_components`` clusters with means ``N(0, 1.5^2 I)``, random orientations,
    standard deviations 0.3 to 1 along their axes and Dirichlet(5) weights, Gaussian
    for ``dof=None`` else Student-t. Then ``n_layers`` times: a random rotation, a
    sinh-arcsinh map (skew in [-0.75, 0.75], tailweight in [0.8, 1.2]) and a shear of a
    random half of the coordinates by ``tanh`` of the other half; last, a rotation.
    """
    d = count("n_features of a warped target", n_features, 2)
    k = count("n_components", n_components, 1)
    n_layers = count("n_layers", n_layers, 0)
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.3, 1.0, size=(k, d))
    axes = _haar(rng, (k, d, d))
    cov = np.einsum("kij,kj,klj->kil", axes, std**2, axes)
    cov = 0.5 * (cov + cov.transpose(0, 2, 1))
    means = rng.normal(scale=1.5, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    base = (
        GaussianMixtureTarget(name, weights, means, cov)
        if dof is None
        else StudentMixtureTarget(name, weights, means, cov, dof)
    )
    maps: list[Bijection] = []
    half = d // 2
    # Wide clusters and strong shears, so that the maps bend and skew each cluster, not
    # just move it: a Gaussian mixture then needs many components (with 10,000 rows, 40
    # of them still trail the truth by 0.1 to 0.3 nats/dim at D = 8 to 32). The gains
    # scale with the width so that tanh's argument varies by a few units across a
    # cluster, and the shift by about a cluster's width, at every D.
    hidden = max(2, half)
    for _ in range(n_layers):
        maps.append(Rotation(_haar(rng, (d, d))))
        skew = rng.uniform(-0.75, 0.75, size=d)
        maps.append(SinhArcsinh(skew, np.exp(rng.uniform(math.log(0.8), math.log(1.2), d))))
        order = rng.permutation(d)
        maps.append(
            AdditiveCoupling(
                order[:half],
                order[half:],
                rng.normal(scale=2.5 / math.sqrt(half), size=(hidden, half)),
                rng.normal(scale=0.5, size=hidden),
                rng.normal(scale=1.5 / math.sqrt(hidden), size=(d - half, hidden)),
            )
        )
    maps.append(Rotation(_haar(rng, (d, d))))
    return WarpedMixtureTarget(name, base, maps)


#: The warped targets by name: (builder taking D first, default D, least D).
WARPED: dict[str, tuple[Callable[..., Target], int, int]] = {
    "warped": (functools.partial(_warped_mixture, name="warped"), 8, 2),
    "warped-heavy": (functools.partial(_warped_mixture, name="warped-heavy", dof=3.0), 8, 2),
}
