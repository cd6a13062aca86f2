"""A Gaussian mixture, fitted by scikit-learn's EM, with a torch log-density."""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import Tensor
from tqdm.auto import tqdm

from ..base import BaseDensityEstimator
from ..training import train_validation_split

__all__ = ["GMM"]

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_SELECTIONS = ("likelihood", "bic")
_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
_LOG_2PI = math.log(2.0 * math.pi)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class GMM(BaseDensityEstimator):
    r"""Gaussian mixture model with optional selection of the number of components.

    Models :math:`p(z) = \sum_k \pi_k \, \mathcal{N}(z; \mu_k, \Sigma_k)`, fitted by
    expectation-maximisation (:class:`sklearn.mixture.GaussianMixture`). Given several
    candidate numbers of components, it keeps the one with the best held-out
    log-likelihood or the lowest BIC. ``log_prob`` is a differentiable torch
    computation (log-weights plus component log-densities, combined by ``logsumexp``)
    that runs on the input tensor's device, so a fitted mixture can serve as a prior
    inside a torch model.

    Parameters
    ----------
    n_components : int or list of int, default=10
        Number of mixture components :math:`K`, or candidate values to choose from
        with ``selection``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance structure, as in :class:`~sklearn.mixture.GaussianMixture`.
    selection : {"likelihood", "bic"}, default="likelihood"
        How to choose among several candidate ``n_components``. ``"likelihood"``: fit
        each candidate on a training part and keep the best mean log-likelihood of the
        held-out rows, then refit the chosen one on all rows. ``"bic"``: fit each
        candidate on all rows and keep the lowest Bayesian information criterion.
        Unused when ``n_components`` is a single int.
    validation_fraction : float, default=0.2
        Fraction of rows held out for ``selection="likelihood"``, in (0, 1).
    n_init : int, default=1
        EM restarts per fit; the best is kept.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, in standardised units.
    max_iter : int, default=100
        EM iterations per restart.
    tol : float, default=1e-3
        Convergence threshold of EM on the per-row lower bound.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initialisation of the responsibilities.
    standardize : bool, default=True
        Fit on standardised columns; log-likelihoods stay in the units of the data.
    random_state : int, Generator or None, default=None
        Seeds the split, every EM initialisation and the sampling stream.
    verbose : int, default=0
        Above 0, shows a progress bar over the fits with the selection score; above 1,
        also EM's own per-iteration report.

    Attributes
    ----------
    n_components_ : int
        Number of components of the fitted mixture (the chosen candidate).
    weights_ : ndarray of shape (n_components_,)
        Mixture weights.
    means_ : ndarray of shape (n_components_, n_features)
        Component means, in standardised units (data units: ``mean_ + scale_ * means_``).
    covariances_ : ndarray
        Component covariances in standardised units, shaped as in scikit-learn:
        (n_components_, n_features, n_features) for ``"full"``, (n_features, n_features)
        for ``"tied"``, (n_components_, n_features) for ``"diag"`` and (n_components_,)
        for ``"spherical"``.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precision matrices, in standardised units, in
        scikit-learn's convention (upper triangular :math:`U_k` with
        :math:`\Sigma_k^{-1} = U_k U_k^\top` for ``"full"``/``"tied"``, inverse standard
        deviations for ``"diag"``/``"spherical"``); shaped like ``covariances_``.
    candidate_scores_ : dict of str to float
        Score of each candidate ``str(K)``: held-out mean log-likelihood (nats per row,
        data units) for ``selection="likelihood"``, BIC (data units) for ``"bic"``.
        Empty when ``n_components`` is a single int.
    converged_ : bool
        Whether EM converged in the final fit.
    n_iter_ : int
        EM iterations of the best restart of the final fit.
    lower_bound_ : float
        Final EM lower bound: mean training log-likelihood (nats per row, data units).
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation.

    See Also
    --------
    sklearn.mixture.GaussianMixture : The EM engine; ``score_samples`` agrees with its
        ``score_samples`` on the same parameters.

    References
    ----------
    .. [1] A. P. Dempster, N. M. Laird, D. B. Rubin. "Maximum Likelihood from Incomplete
       Data via the EM Algorithm", Journal of the Royal Statistical Society B 39(1), 1977.
    .. [2] G. Schwarz. "Estimating the Dimension of a Model", The Annals of Statistics
       6(2), 1978.
    .. [3] C. M. Bishop. "Pattern Recognition and Machine Learning", Springer, 2006,
       chapter 9.

    Examples
    --------
    >>> import numpy as np
    >>> from ldelib import GMM
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    >>> gmm = GMM(n_components=[1, 2, 3, 4], selection="bic", random_state=0).fit(X)
    >>> gmm.n_components_
    2
    >>> gmm.score_samples(X[:2]).shape
    (2,)
    >>> gmm.sample(4).shape
    (4, 2)
    """

    _dtype = torch.float64
    _follows_input_device = True

    def __init__(
        self,
        n_components: int | list[int] | tuple[int, ...] = 10,
        *,
        covariance_type: Literal["full", "tied", "diag", "spherical"] = "full",
        selection: Literal["likelihood", "bic"] = "likelihood",
        validation_fraction: float = 0.2,
        n_init: int = 1,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        tol: float = 1e-3,
        init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans",
        standardize: bool = True,
        random_state: int | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.selection = selection
        self.validation_fraction = validation_fraction
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.tol = tol
        self.init_params = init_params
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _candidates(self) -> list[int]:
        """The candidate numbers of components, sorted and without repeats."""
        value = self.n_components
        if _is_int(value):
            values = [value]
        elif isinstance(value, (list, tuple)):
            if len(value) == 0:
                raise ValueError("n_components must not be an empty list; give at least one K.")
            values = list(value)
        else:
            raise ValueError(
                "n_components must be a positive int or a list/tuple of positive ints, got "
                f"{value!r}."
            )
        for k in values:
            if not _is_int(k) or k < 1:
                raise ValueError(
                    "n_components must be a positive int or a list/tuple of positive ints, "
                    f"got {value!r} (bad entry {k!r})."
                )
        return sorted({int(k) for k in values})

    def _check_params(self) -> None:
        self._candidates()
        if self.covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {', '.join(map(repr, _COVARIANCE_TYPES))}, "
                f"got {self.covariance_type!r}."
            )
        if self.selection not in _SELECTIONS:
            raise ValueError(f"selection must be 'likelihood' or 'bic', got {self.selection!r}.")
        vf = self.validation_fraction
        if not isinstance(vf, numbers.Real) or isinstance(vf, bool) or not 0 < vf < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {vf!r}.")
        for name in ("n_init", "max_iter"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("reg_covar", "tol"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        if self.init_params not in _INIT_PARAMS:
            raise ValueError(
                f"init_params must be one of {', '.join(map(repr, _INIT_PARAMS))}, "
                f"got {self.init_params!r}."
            )

    # --------------------------------------------------------------------- fit
    def _mixture(self, n_components: int, rng: np.random.Generator) -> GaussianMixture:
        return GaussianMixture(
            n_components=n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=int(rng.integers(2**31 - 1)),
            verbose=max(0, int(self.verbose) - 1),
        )

    @staticmethod
    def _check_rows(candidates: list[int], n_rows: int, where: str) -> None:
        too_many = [k for k in candidates if k > n_rows]
        if too_many:
            raise ValueError(
                f"n_components={too_many[0] if len(too_many) == 1 else too_many} exceeds "
                f"the {n_rows} rows {where}; a mixture cannot have more components than "
                "training rows. Use fewer components or more data."
            )

    def _fit(self, Z: np.ndarray, rng: np.random.Generator) -> None:
        candidates = self._candidates()
        n = len(Z)
        log_det = self._log_scale_sum()
        select = isinstance(self.n_components, (list, tuple))
        by_likelihood = select and self.selection == "likelihood"
        if by_likelihood:
            train, valid = train_validation_split(Z, self.validation_fraction, rng)
            self._check_rows(
                candidates,
                len(train),
                f"left for fitting after holding out validation_fraction="
                f"{self.validation_fraction} of {n} for selection by likelihood",
            )
        else:
            train, valid = Z, None
            self._check_rows(candidates, n, "of training data")

        scores: dict[str, float] = {}
        fitted: dict[int, GaussianMixture] = {}
        n_fits = (len(candidates) if select else 0) + (by_likelihood or not select)
        bar = tqdm(
            total=n_fits,
            desc=type(self).__name__,
            disable=self.verbose <= 0,
            leave=self.verbose > 1,
        )
        if select:
            for k in candidates:
                mixture = self._mixture(k, rng).fit(train)
                if by_likelihood:
                    scores[str(k)] = float(mixture.score(valid)) - log_det
                else:
                    # BIC = -2 log L + p log n; in data units log L drops by n * log_det.
                    scores[str(k)] = float(mixture.bic(train)) + 2.0 * n * log_det
                    fitted[k] = mixture
                bar.update()
                bar.set_postfix(K=k, score=f"{scores[str(k)]:.4g}")
            pick = max if by_likelihood else min
            best = pick(candidates, key=lambda k: scores[str(k)])
        else:
            best = candidates[0]
        if best in fitted:
            mixture = fitted[best]
        else:
            mixture = self._mixture(best, rng).fit(Z)
            bar.update()
            bar.set_postfix(K=best)
        bar.close()

        self.n_components_ = int(best)
        self.candidate_scores_ = scores
        self.weights_ = np.asarray(mixture.weights_, dtype=np.float64)
        self.means_ = np.asarray(mixture.means_, dtype=np.float64)
        self.covariances_ = np.asarray(mixture.covariances_, dtype=np.float64)
        self.precisions_cholesky_ = np.asarray(mixture.precisions_cholesky_, dtype=np.float64)
        self.converged_ = bool(mixture.converged_)
        self.n_iter_ = int(mixture.n_iter_)
        self.lower_bound_ = float(mixture.lower_bound_) - log_det

    # ------------------------------------------------------------- densities
    def _log_prob(self, Z: Tensor) -> Tensor:
        device, dtype = Z.device, Z.dtype
        weights = torch.as_tensor(self.weights_, dtype=dtype, device=device)
        means = torch.as_tensor(self.means_, dtype=dtype, device=device)
        prec_chol = torch.as_tensor(self.precisions_cholesky_, dtype=dtype, device=device)
        n_features = Z.shape[1]
        diff = Z[:, None, :] - means  # (n, K, D)
        if self.covariance_type == "full":
            # Whitened residuals U_k^T (z - mu_k), as row vectors: (K, n, D) @ (K, D, D).
            y = (diff.transpose(0, 1) @ prec_chol).transpose(0, 1)
            log_det = torch.diagonal(prec_chol, dim1=-2, dim2=-1).log().sum(-1)
        elif self.covariance_type == "tied":
            y = diff @ prec_chol
            log_det = torch.diagonal(prec_chol).log().sum()
        elif self.covariance_type == "diag":
            y = diff * prec_chol
            log_det = prec_chol.log().sum(-1)
        else:  # spherical
            y = diff * prec_chol[:, None]
            log_det = n_features * prec_chol.log()
        mahalanobis = y.square().sum(-1)  # (n, K)
        log_components = log_det - 0.5 * (n_features * _LOG_2PI + mahalanobis)
        return torch.logsumexp(log_components + weights.log(), dim=1)

    def _sample(self, n_samples: int, generator: torch.Generator) -> Tensor:
        device = torch.device(self.device_)
        dtype = self._dtype
        weights = torch.as_tensor(self.weights_, dtype=dtype, device=device)
        means = torch.as_tensor(self.means_, dtype=dtype, device=device)
        prec_chol = torch.as_tensor(self.precisions_cholesky_, dtype=dtype, device=device)
        # Each row's component is an independent draw, so rows come in random order,
        # never grouped by component.
        labels = torch.multinomial(weights, n_samples, replacement=True, generator=generator)
        noise = torch.randn(
            n_samples, means.shape[1], generator=generator, dtype=dtype, device=device
        )
        Z = torch.empty_like(noise)
        for k in torch.unique(labels).tolist():
            rows = labels == k
            if self.covariance_type in ("full", "tied"):
                factor = prec_chol[k] if self.covariance_type == "full" else prec_chol
                # Solving y U = e gives y = e U^{-1}, a row with covariance (U U^T)^{-1}.
                step = torch.linalg.solve_triangular(factor, noise[rows], upper=True, left=False)
            else:
                step = noise[rows] / prec_chol[k]
            Z[rows] = means[k] + step
        return Z
