from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from ldelib.nn.autoregressive import AutoregressiveMDN
from ldelib.nn.chunks import chunk_rows

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics

DIMS = [1, 2, 3, 7, 16, 33]


def _model(d: int, architecture: str, seed: int = 0) -> AutoregressiveMDN:
    torch.manual_seed(seed)
    model = AutoregressiveMDN(d, components=3, architecture=architecture, hidden_channels=16)
    model = model.double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):  # non-trivial running statistics
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _conditional_jacobian(model: AutoregressiveMDN, z: torch.Tensor) -> torch.Tensor:
    """|d params_i / d z_j| summed over parameters: shape (D, D), row i = conditional i."""

    def params(v: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(model.params(v.unsqueeze(0))), dim=-1)[0]

    jac = torch.autograd.functional.jacobian(params, z)  # (D, 3K, D)
    return jac.abs().sum(dim=1)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize(
    ("architecture", "train"), [("residual", False), ("residual", True), ("paper", False)]
)
def test_conditionals_see_exactly_the_earlier_dimensions(d, architecture, train):
    model = _model(d, architecture)
    model.train(train)
    z = torch.randn(d, dtype=torch.float64)
    depends = _conditional_jacobian(model, z) > 0
    expected = torch.tril(torch.ones(d, d, dtype=torch.bool), diagonal=-1)
    assert torch.equal(depends, expected)


def test_paper_batchnorm_leaks_across_positions_in_training():
    # Documented weakness of the original network, and why "residual" is the default.
    model = _model(8, "paper").train()
    z = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    first_conditional = torch.cat(list(model.params(z)), dim=-1)[:, 0].sum()
    (grad,) = torch.autograd.grad(first_conditional, z)
    assert grad.abs().sum() > 0  # z_0's conditional depends on data through batch stats


@pytest.mark.parametrize(
    ("d", "architecture"),
    [(d, "residual") for d in (1, 2, 7, 16, 33)] + [(d, "paper") for d in (1, 2, 7, 16)],
)
def test_cached_sampling_equals_naive_and_log_prob(d, architecture):
    model = _model(d, architecture).eval()
    z_cached, lp_cached = model.sample(64, torch.Generator().manual_seed(1), cached=True)
    z_naive, lp_naive = model.sample(64, torch.Generator().manual_seed(1), cached=False)
    torch.testing.assert_close(z_cached, z_naive, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp_cached, lp_naive, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp_cached, model(z_cached), rtol=1e-9, atol=1e-9)


def _anchored(d: int, seed: int = 0) -> AutoregressiveMDN:
    """An anchored model whose corrections are not zero (its output layer starts at 0)."""
    torch.manual_seed(seed)
    model = AutoregressiveMDN(d, components=3, hidden_channels=16, anchored=True).double()
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, d, d))
    assert model.anchor is not None
    model.anchor.set_mixture(
        [0.2, 0.3, 0.5], rng.normal(size=(3, d)), A @ A.swapaxes(1, 2) + np.eye(d)
    )
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", ["residual", "paper", "anchored"])
@pytest.mark.parametrize("k", [1, 3, 6, 7])
def test_a_given_prefix_is_kept_and_the_rest_drawn_as_the_naive_loop_draws_it(kind, k):
    """The prefix takes one parallel pass (prefill); then D - k cached steps."""
    d = 7
    model = _anchored(d) if kind == "anchored" else _model(d, kind).eval()
    given = torch.randn(32, k, dtype=torch.float64)
    z, lp = model.sample(32, torch.Generator().manual_seed(2), given=given)
    z_naive, lp_naive = model.sample(
        32, torch.Generator().manual_seed(2), cached=False, given=given
    )
    assert torch.equal(z[:, :k], given)
    torch.testing.assert_close(z, z_naive, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp, lp_naive, rtol=1e-9, atol=1e-9)
    # What was drawn carries log p(z_k.. | z_<k): the full density minus the prefix's.
    per_dim = model.log_prob_per_dim(z)
    torch.testing.assert_close(lp, per_dim[:, k:].sum(-1), rtol=1e-9, atol=1e-9)


def test_sampling_is_driven_by_the_generator_only():
    model = _model(5, "residual").eval()
    a, _ = model.sample(8, torch.Generator().manual_seed(3))
    b, _ = model.sample(8, torch.Generator().manual_seed(3))
    c, _ = model.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["residual", "paper"])
def test_density_integrates_to_one_in_2d(architecture):
    model = _model(2, architecture, seed=1).eval()

    grid = np.linspace(-12.0, 12.0, 1201)
    z0, z1 = np.meshgrid(grid, grid, indexing="ij")
    z = torch.as_tensor(np.stack([z0.ravel(), z1.ravel()], axis=1))
    with torch.no_grad():
        density = model(z).exp().numpy().reshape(z0.shape)
    total = integrate.simpson(integrate.simpson(density, x=grid, axis=1), x=grid)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_paper_mask_separates_padding_from_zero_values():
    # The residual network tells padding apart by its position embedding instead.
    model = _model(4, "paper")
    inputs = model._inputs(torch.zeros(1, 4, dtype=torch.float64))
    pad = model.n_pad
    np.testing.assert_array_equal(inputs[0, :, 1].numpy(), [0.0] * pad + [1.0] * 3)
    np.testing.assert_array_equal(inputs[0, :, 0].numpy(), [0.0] * (pad + 3))


def test_unknown_architecture():
    with pytest.raises(ValueError, match="architecture"):
        AutoregressiveMDN(3, architecture="wavenet")


@pytest.mark.parametrize("architecture", ["residual", "paper"])
def test_large_batches_are_scored_in_chunks_row_by_row(architecture):
    # Scoring runs in cache-sized chunks: a row's density must not depend on its batch.
    model = _model(33, architecture).eval()
    z = torch.randn(600, 33, dtype=torch.float64)
    assert chunk_rows(z, max(model.components, model.net.output.in_features)) < len(z)
    with torch.no_grad():
        whole, alone = model(z), torch.cat([model(row) for row in z[:5].split(1)])
        per_dim = model.log_prob_per_dim(z)
    torch.testing.assert_close(whole[:5], alone)
    torch.testing.assert_close(per_dim.sum(-1), whole)


# ---------------------------------------------------------------- conditions
def _conditional(
    d: int, condition: str, seed: int = 0, trained: bool = False
) -> AutoregressiveMDN:
    """An anchored network conditioned on 2 classes or a 2-D context; ``trained``: with
    nonzero corrections. Labels: components 0, 1 belong to class 0 and 2, 3 to class 1."""
    torch.manual_seed(seed)
    kind = {"classes": 2} if condition == "labels" else {"context": 2}
    model = AutoregressiveMDN(d, components=4, hidden_channels=16, anchored=True, **kind)
    model = model.double()
    rng = np.random.default_rng(seed)
    width = d + (2 if condition == "context" else 0)
    A = rng.normal(size=(4, width, width))
    assert model.anchor is not None
    model.anchor.set_mixture(
        [0.1, 0.2, 0.3, 0.4], rng.normal(size=(4, width)), A @ A.swapaxes(1, 2) + np.eye(width)
    )
    if condition == "labels":
        model.component_class.copy_(torch.tensor([0, 0, 1, 1]))
    if trained:
        with torch.no_grad():
            for p in model.net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _condition(condition: str, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if condition == "labels":
        return torch.randint(0, 2, (n,), generator=generator)
    return torch.randn(n, 2, generator=generator, dtype=torch.float64)


def _mixture_log_prob(x: np.ndarray, weights, means, covariances) -> float:
    from scipy.stats import multivariate_normal

    return float(
        np.log(
            sum(
                w * multivariate_normal.pdf(x, m, c)
                for w, m, c in zip(weights, means, covariances, strict=True)
            )
        )
    )


def test_an_untrained_labelled_network_is_its_classes_mixture():
    model = _conditional(3, "labels")
    assert model.anchor is not None
    weights = model.anchor.log_weights.exp().numpy()
    means = model.anchor.means.numpy()
    inverse = model.anchor.inverse_cholesky.numpy()
    covariances = [np.linalg.inv(L.T @ L) for L in inverse]
    z, codes = torch.randn(6, 3, dtype=torch.float64), _condition("labels", 6)
    for row, code in zip(z.numpy(), codes.tolist(), strict=True):
        mine = [2 * code, 2 * code + 1]
        w = weights[mine] / weights[mine].sum()
        expected = _mixture_log_prob(row, w, means[mine], [covariances[k] for k in mine])
        with torch.no_grad():
            got = model(torch.as_tensor(row[None]), context=torch.tensor([code]))
        assert float(got) == pytest.approx(expected, rel=1e-9)


def test_an_untrained_network_on_a_context_is_the_joint_mixtures_conditional():
    model = _conditional(3, "context")
    assert model.anchor is not None
    weights = model.anchor.log_weights.exp().numpy()
    means = model.anchor.means.numpy()
    covariances = [np.linalg.inv(L.T @ L) for L in model.anchor.inverse_cholesky.numpy()]
    z, context = torch.randn(6, 3, dtype=torch.float64), _condition("context", 6)
    with torch.no_grad():
        got = model(z, context=context)
    for i in range(6):
        joint = _mixture_log_prob(
            np.r_[context[i].numpy(), z[i].numpy()], weights, means, covariances
        )
        prefix = _mixture_log_prob(
            context[i].numpy(), weights, means[:, :2], [c[:2, :2] for c in covariances]
        )
        assert float(got[i]) == pytest.approx(joint - prefix, rel=1e-9)


@pytest.mark.parametrize("condition", ["labels", "context"])
def test_a_condition_leaves_the_conditionals_causal_in_z(condition):
    d = 5
    model = _conditional(d, condition, trained=True)
    c = _condition(condition, 1)

    def per_dim(v: torch.Tensor) -> torch.Tensor:
        return model.log_prob_per_dim(v.unsqueeze(0), c)[0]

    jac = torch.autograd.functional.jacobian(per_dim, torch.randn(d, dtype=torch.float64))
    depends = jac.abs() > 0
    assert torch.equal(depends, torch.tril(torch.ones(d, d, dtype=torch.bool)))


@pytest.mark.parametrize("condition", ["labels", "context"])
@pytest.mark.parametrize("k", [0, 2, 5])
def test_conditional_draws_are_the_naive_loops_and_carry_their_log_prob(condition, k):
    d = 5
    model = _conditional(d, condition, trained=True)
    c = _condition(condition, 32)
    given = None if k == 0 else torch.randn(32, k, dtype=torch.float64)
    z, lp = model.sample(32, torch.Generator().manual_seed(2), given=given, context=c)
    z_naive, lp_naive = model.sample(
        32, torch.Generator().manual_seed(2), cached=False, given=given, context=c
    )
    torch.testing.assert_close(z, z_naive, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp, lp_naive, rtol=1e-9, atol=1e-9)
    per_dim = model.log_prob_per_dim(z, c)
    torch.testing.assert_close(lp, per_dim[:, k:].sum(-1), rtol=1e-9, atol=1e-9)
    # The condition matters: other classes or contexts give other densities.
    other = 1 - c if condition == "labels" else c + 1.0
    assert not torch.allclose(model(z, context=c), model(z, context=other))


def test_a_one_hot_context_is_a_label_embedding():
    torch.manual_seed(0)
    labelled = AutoregressiveMDN(4, components=3, hidden_channels=16, classes=3).double()
    torch.manual_seed(0)
    context = AutoregressiveMDN(4, components=3, hidden_channels=16, context=3).double()
    z, codes = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    one_hot = torch.nn.functional.one_hot(codes, 3).double()
    assert torch.equal(labelled(z, context=codes), context(z, context=one_hot))


def test_the_condition_is_checked():
    plain = AutoregressiveMDN(3, components=2)
    with pytest.raises(ValueError, match="built without a condition"):
        plain(torch.randn(2, 3), context=torch.zeros(2, dtype=torch.long))
    labelled = AutoregressiveMDN(3, components=2, classes=2)
    with pytest.raises(ValueError, match=r"conditional: pass context, class codes"):
        labelled(torch.randn(2, 3))
    with pytest.raises(ValueError, match="classes or on a context, not both"):
        AutoregressiveMDN(3, classes=2, context=2)
