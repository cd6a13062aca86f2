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
