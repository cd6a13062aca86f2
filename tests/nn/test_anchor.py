from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from ldelib.nn.anchor import GaussianMixtureConditionals, anchored_log_prob
from ldelib.nn.autoregressive import AutoregressiveMDN

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics


def _mixture(d: int, k: int, seed: int = 0) -> tuple[GaussianMixture, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    X[: len(X) // 2] += 3.0
    return GaussianMixture(k, random_state=seed).fit(X), X


def _anchored(gm: GaussianMixture, hidden: int = 8, seed: int = 0) -> AutoregressiveMDN:
    torch.manual_seed(seed)
    k, d = gm.means_.shape
    model = AutoregressiveMDN(d, k, hidden_channels=hidden, anchored=True).double()
    model.anchor.set_mixture(gm.weights_, gm.means_, gm.covariances_)
    return model


def _perturb(model: AutoregressiveMDN, scale: float = 0.3) -> AutoregressiveMDN:
    with torch.no_grad():
        model.net.output.weight.normal_(0.0, scale)
        model.net.output.bias.normal_(0.0, scale)
    return model


def _rounding(gm: GaussianMixture) -> float:
    """Relative rounding of a float64 mixture log density, two algorithms compared.

    Whitening by a Cholesky factor of a precision loses up to its condition number,
    sqrt(kappa(covariance)), in relative accuracy; each of the D conditionals then adds
    four rounded terms (log weight, log scale, log 2 pi / 2, squared residual) of at most
    the size of the log density, or of order 1 where that is near zero.
    """
    kappa = max(np.linalg.cond(c) for c in gm.covariances_)
    return 4 * gm.means_.shape[1] * np.sqrt(kappa) * np.finfo(np.float64).eps


@pytest.mark.parametrize(("d", "k"), [(1, 1), (1, 3), (2, 2), (5, 3), (16, 4)])
def test_untrained_model_is_the_mixture(d, k):
    gm, X = _mixture(d, k)
    model = _anchored(gm)
    tol = _rounding(gm)
    z = torch.from_numpy(X[:50])
    expected = gm.score_samples(X[:50])
    with torch.no_grad():
        np.testing.assert_allclose(model(z).numpy(), expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(model.anchor.log_prob(z).numpy(), expected, rtol=tol, atol=tol)
    # Far from the data too: no underflow of weights or densities.
    far = torch.full((3, d), 40.0, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(
            model(far).numpy(), gm.score_samples(far.numpy()), rtol=tol, atol=tol
        )


def test_conditionals_of_one_gaussian_are_the_textbook_ones():
    gm, X = _mixture(4, 1)
    anchor = GaussianMixtureConditionals(4, 1).double()
    anchor.set_mixture(gm.weights_, gm.means_, gm.covariances_)
    z = torch.from_numpy(X[:7])
    params = anchor.conditionals(z)
    mu, cov = gm.means_[0], gm.covariances_[0]
    for j in range(4):
        a, b = slice(0, j), j
        gain = np.linalg.solve(cov[a, a], cov[a, b]) if j else np.zeros(0)
        mean = mu[b] + (X[:7, a] - mu[a]) @ gain
        var = cov[b, b] - cov[b, a] @ gain
        np.testing.assert_allclose(params.means[:, j, 0].numpy(), mean, atol=1e-10)
        np.testing.assert_allclose(np.exp(2 * params.log_scales[:, j, 0].numpy()), var, rtol=1e-10)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("d", [1, 2, 7, 16])
def test_corrected_conditionals_see_exactly_the_earlier_dimensions(d, train):
    gm, X = _mixture(d, 3)
    model = _perturb(_anchored(gm)).train(train)
    if train:  # dropout would make two evaluations differ; causality is what is tested
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0

    def params(v: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(model.params(v.unsqueeze(0))), dim=-1)[0]

    z = torch.from_numpy(X[0])
    depends = torch.autograd.functional.jacobian(params, z).abs().sum(dim=1) > 0
    assert torch.equal(depends, torch.tril(torch.ones(d, d, dtype=torch.bool), diagonal=-1))


@pytest.mark.parametrize("d", [1, 2, 5, 16])
def test_cached_sampling_equals_naive_and_log_prob(d):
    gm, _ = _mixture(d, 3)
    model = _perturb(_anchored(gm)).eval()
    z_cached, lp_cached = model.sample(64, torch.Generator().manual_seed(1), cached=True)
    z_naive, lp_naive = model.sample(64, torch.Generator().manual_seed(1), cached=False)
    torch.testing.assert_close(z_cached, z_naive, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp_cached, lp_naive, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(lp_cached, model(z_cached), rtol=1e-9, atol=1e-9)


def test_untrained_samples_are_the_mixtures():
    gm, _ = _mixture(3, 2)
    model = _anchored(gm).eval()
    z, _ = model.sample(20_000, torch.Generator().manual_seed(0))
    z = z.numpy()
    # Moments of the mixture, to Monte Carlo error.
    mean = gm.weights_ @ gm.means_
    np.testing.assert_allclose(z.mean(0), mean, atol=0.05)
    second = sum(
        w * (c + np.outer(m, m))
        for w, m, c in zip(gm.weights_, gm.means_, gm.covariances_, strict=True)
    )
    np.testing.assert_allclose(np.cov(z.T, bias=True), second - np.outer(mean, mean), atol=0.1)


def test_corrections_reweight_shift_and_scale():
    gm, X = _mixture(2, 2)
    anchor = GaussianMixtureConditionals(2, 2).double()
    anchor.set_mixture(gm.weights_, gm.means_, gm.covariances_)
    z = torch.from_numpy(X[:5])
    terms = anchor(z)
    shift = torch.full_like(terms.eps, 0.4)
    # A shift of the means by 0.4 scales equals evaluating the anchor at eps - 0.4.
    moved = anchored_log_prob(terms, mean_shift=shift)
    same = anchored_log_prob(terms._replace(eps=terms.eps - 0.4))
    torch.testing.assert_close(moved, same)
    # Scaling every component by e^s adds -s plus the change of the quadratic term.
    s = 0.3
    scaled = anchored_log_prob(terms, log_scale_shift=torch.full_like(terms.eps, s))
    wider = anchored_log_prob(
        terms._replace(eps=terms.eps * np.exp(-s), log_scales=terms.log_scales + s)
    )
    torch.testing.assert_close(scaled, wider)


@pytest.mark.parametrize(("d", "k"), [(1, 2), (5, 3), (16, 4)])
def test_precision_factors_give_the_same_conditionals(d, k):
    # scikit-learn's U_k (Sigma_k^-1 = U_k U_k^T) is L_k^-T: no factorisation needed.
    gm, X = _mixture(d, k)
    from_cov, from_prec = GaussianMixtureConditionals(d, k), GaussianMixtureConditionals(d, k)
    from_cov.double().set_mixture(gm.weights_, gm.means_, gm.covariances_)
    from_prec.double().set_precisions(gm.weights_, gm.means_, gm.precisions_cholesky_)
    tol = _rounding(gm)
    torch.testing.assert_close(
        from_prec.inverse_cholesky, from_cov.inverse_cholesky, rtol=tol, atol=tol
    )
    assert torch.equal(from_prec.inverse_cholesky, from_prec.inverse_cholesky.tril())
    z = torch.from_numpy(X[:50])
    np.testing.assert_allclose(
        from_prec.log_prob(z).numpy(), gm.score_samples(X[:50]), rtol=tol, atol=tol
    )
    before = {name: b.clone() for name, b in from_prec.named_buffers()}
    message = (
        f"Expected a mixture of {k} components in {d} dimensions, got weights ({k},), "
        f"means ({k}, {d}), precision factors ({k - 1}, {d}, {d})."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        from_prec.set_precisions(gm.weights_, gm.means_, gm.precisions_cholesky_[:-1])
    for name, b in from_prec.named_buffers():  # a refused mixture changes nothing
        assert torch.equal(b, before[name])


def test_set_mixture_checks_shapes():
    anchor = GaussianMixtureConditionals(3, 2)
    with pytest.raises(ValueError, match="2 components in 3 dimensions"):
        anchor.set_mixture([1.0], np.zeros((1, 3)), np.eye(3)[None])
    with pytest.raises(torch.linalg.LinAlgError):
        anchor.set_mixture([0.5, 0.5], np.zeros((2, 3)), -np.eye(3)[None].repeat(2, 0))


def test_idle_model_scores_and_draws_its_mixture_without_the_network():
    gm, X = _mixture(5, 3)
    model = _anchored(gm).eval()
    assert model.idle()
    assert not model.train().idle()  # training always runs the network
    assert not _perturb(_anchored(gm)).eval().idle()
    model.eval()
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    z = torch.from_numpy(X[:50])
    tol = _rounding(gm)
    with torch.no_grad():
        np.testing.assert_allclose(model(z).numpy(), gm.score_samples(X[:50]), rtol=tol, atol=tol)
        torch.testing.assert_close(model.log_prob_per_dim(z).sum(-1), model(z))
    drawn, log_p = model.sample(500, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(log_p, model(drawn))
    assert not calls
    # A gradient asked of the network's weights runs it: at zero, it still has one.
    model(z).sum().backward()
    assert calls and model.net.output.weight.grad.abs().sum() > 0
    calls.clear()
    # Given a prefix, the mixture's own conditionals: the same draws as the network whose
    # output is zero gives, without running it.
    given = torch.from_numpy(X[:40, :2])
    idle_z, idle_lp = model.sample(40, torch.Generator().manual_seed(3), given=given)
    assert not calls
    naive_z, naive_lp = model.sample(
        40, torch.Generator().manual_seed(3), given=given, cached=False
    )
    torch.testing.assert_close(idle_z, naive_z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(idle_lp, naive_lp, rtol=1e-9, atol=1e-9)


def test_anchor_draws_follow_each_component():
    # Two far-apart components with different covariances: the rows drawn for each match
    # its weight, mean and covariance, to Monte Carlo error.
    covariances = np.array([[[1.0, 0.8], [0.8, 1.0]], [[0.25, -0.1], [-0.1, 0.5]]])
    anchor = GaussianMixtureConditionals(2, 2).double()
    anchor.set_mixture([0.3, 0.7], [[-20.0, 0.0], [20.0, 5.0]], covariances)
    generator = torch.Generator().manual_seed(0)
    uniform = torch.rand(40_000, generator=generator, dtype=torch.float64)
    normal = torch.randn(40_000, 2, generator=generator, dtype=torch.float64)
    z = anchor.sample(uniform, normal).numpy()
    first = z[:, 0] < 0
    assert abs(first.mean() - 0.3) < 0.01
    for rows, mean, cov in [
        (z[first], [-20, 0], covariances[0]),
        (z[~first], [20, 5], covariances[1]),
    ]:
        np.testing.assert_allclose(rows.mean(0), mean, atol=0.03)
        np.testing.assert_allclose(np.cov(rows.T), cov, atol=0.03)


def test_the_whitening_follows_every_change_of_the_mixture():
    # Its layout is cached: setting, loading, copying, pickling or casting the mixture must
    # never leave a stale one behind.
    import copy
    import pickle

    gm, X = _mixture(4, 3)
    other, _ = _mixture(4, 3, seed=1)
    anchor = GaussianMixtureConditionals(4, 3).double()
    z = torch.from_numpy(X[:20])
    tol = max(_rounding(gm), _rounding(other))
    anchor.set_mixture(gm.weights_, gm.means_, gm.covariances_)
    np.testing.assert_allclose(
        anchor.log_prob(z).numpy(), gm.score_samples(X[:20]), rtol=tol, atol=tol
    )
    anchor.set_mixture(other.weights_, other.means_, other.covariances_)
    expected = other.score_samples(X[:20])
    np.testing.assert_allclose(anchor.log_prob(z).numpy(), expected, rtol=tol, atol=tol)
    for twin in (copy.deepcopy(anchor), pickle.loads(pickle.dumps(anchor))):
        np.testing.assert_allclose(twin.log_prob(z).numpy(), expected, rtol=tol, atol=tol)
    loaded = GaussianMixtureConditionals(4, 3).double()
    loaded.log_prob(z)  # fills its cache with the standard normal
    loaded.load_state_dict(anchor.state_dict())
    np.testing.assert_allclose(loaded.log_prob(z).numpy(), expected, rtol=tol, atol=tol)
    single = anchor.float()(z.float()).eps
    torch.testing.assert_close(single.double(), anchor.double()(z).eps, rtol=1e-4, atol=1e-4)


def _diagonal(d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    return weights, rng.normal(size=(k, d)) * 2, rng.uniform(0.2, 3.0, size=(k, d))


@pytest.mark.parametrize(("d", "k"), [(1, 2), (3, 1), (6, 4)])
def test_a_diagonal_mixture_whitens_elementwise(d, k):
    from scipy.stats import multivariate_normal

    weights, means, variances = _diagonal(d, k)
    anchor = GaussianMixtureConditionals(d, k).double()
    anchor.set_mixture(weights, means, variances)  # variances (K, D): diagonal covariances
    assert anchor._affine(False)[2]
    z = torch.from_numpy(np.random.default_rng(1).normal(size=(40, d)) * 3)
    expected = np.log(
        sum(
            w * multivariate_normal(m, np.diag(v)).pdf(z.numpy())
            for w, m, v in zip(weights, means, variances, strict=True)
        )
    ).reshape(-1)
    np.testing.assert_allclose(anchor.log_prob(z).numpy(), expected, rtol=1e-10, atol=1e-10)
    chained = anchored_log_prob(anchor(z)).sum(-1)
    np.testing.assert_allclose(chained.numpy(), expected, rtol=1e-10, atol=1e-10)
    # Each component's conditional of z_j is its own marginal: the means do not move.
    params = anchor.conditionals(z)
    torch.testing.assert_close(params.means, anchor.means.T.expand_as(params.means))
    # The same mixture given as full covariances is the same module, to the bit.
    full = GaussianMixtureConditionals(d, k).double()
    full.set_mixture(weights, means, variances[:, :, None] * np.eye(d))
    assert torch.equal(full.inverse_cholesky, anchor.inverse_cholesky)


def test_a_diagonal_whitening_equals_the_dense_product():
    weights, means, variances = _diagonal(5, 3)
    anchor = GaussianMixtureConditionals(5, 3).double()
    anchor.set_mixture(weights, means, variances)
    z = torch.randn(30, 5, dtype=torch.float64)
    for strict in (False, True):
        weight, bias, diagonal = anchor._affine(strict)
        assert diagonal and weight.shape == (5, 3)
        inverse = anchor.inverse_cholesky.tril(-1) if strict else anchor.inverse_cholesky
        dense = torch.einsum("kji,bi->bjk", inverse, z) - bias.view(5, 3)
        torch.testing.assert_close(anchor._whiten(z, strict), dense, rtol=1e-12, atol=1e-12)
    # One off-diagonal entry anywhere takes the dense product.
    covariances = variances[:, :, None] * np.eye(5)
    covariances[2, 4, 1] = covariances[2, 1, 4] = 0.1
    anchor.set_mixture(weights, means, covariances)
    assert not anchor._affine(False)[2]


def test_a_diagonal_mixture_draws_from_its_components():
    weights, means, variances = _diagonal(3, 2)
    anchor = GaussianMixtureConditionals(3, 2).double()
    anchor.set_mixture(weights, means, variances)
    gen = torch.Generator().manual_seed(0)
    uniform = torch.rand(4000, generator=gen, dtype=torch.float64)
    normal = torch.randn(4000, 3, generator=gen, dtype=torch.float64)
    z = anchor.sample(uniform, normal)
    picked = (uniform > weights[0]).long()
    expected = means[picked.numpy()] + np.sqrt(variances[picked.numpy()]) * normal.numpy()
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-12, atol=1e-12)
