from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from ldelib.peers import GridMixturePeer, KernelDensityPeer, ZukoFlowPeer, zuko_available


def test_kernel_density_is_normalised_and_picks_a_bandwidth():
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(400, 1))
    kde = KernelDensityPeer(random_state=0).fit(X)
    assert kde.bandwidth_ in kde.candidate_scores_
    assert kde.candidate_scores_[kde.bandwidth_] == max(kde.candidate_scores_.values())
    mass, _ = integrate.quad(lambda x: np.exp(kde.score_samples([[x]])[0]), -20, 26, limit=200)
    assert mass == pytest.approx(1.0, abs=1e-4)
    assert kde.sample(50, random_state=1).shape == (50, 1)


@pytest.mark.parametrize("flow", ["maf", "nsf"])
def test_zuko_flow_trains_within_budget_and_samples_reproducibly(flow):
    pytest.importorskip("zuko")
    X = np.random.default_rng(0).normal(size=(500, 3)) @ np.diag([1.0, 5.0, 0.1])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    model = ZukoFlowPeer(flow, max_epochs=50, max_time=1e-9, random_state=0).fit(X)
    assert model.n_iter_ == 1 and model.timed_out_
    a, b = model.sample(20, random_state=3), model.sample(20, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)
    trained = ZukoFlowPeer(flow, max_epochs=30, random_state=0).fit(X)
    # Standardisation is undone exactly: the scale of column 2 shows in the density.
    assert trained.score(X) > model.score(X)
    assert np.isfinite(trained.score_samples(X)).all()


def test_zuko_flow_rejects_unknown_flows():
    with pytest.raises(ValueError, match="flow"):
        ZukoFlowPeer("realnvp").fit(np.zeros((10, 2)) + np.arange(10)[:, None])


def test_grid_mixture_picks_the_best_held_out_pair_and_is_normalised():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-4, 1, (300, 1)), rng.normal(4, 0.5, (300, 1))]) * 3 + 7
    grid = GridMixturePeer(components=(1, 2, 3), regs=(1e-6, 1e-2, 1.0), random_state=0).fit(X)
    scores = grid.candidate_scores_
    assert len(scores) == 9
    assert max(scores, key=scores.get) == f"K={grid.n_components_}, reg_covar={grid.reg_covar_:g}"
    assert grid.n_components_ >= 2 and grid.reg_covar_ < 1.0
    # In the data's units: the standardisation's log-determinant is accounted for.
    mass, _ = integrate.quad(lambda x: np.exp(grid.score_samples([[x]])[0]), -30, 45, limit=200)
    assert mass == pytest.approx(1.0, abs=1e-6)
    S = grid.sample(4000, random_state=1)
    # Shuffled, not grouped by component as scikit-learn returns them.
    assert 0.3 < (S[:2000] > 7).mean() < 0.7
    assert np.mean(S > 7) == pytest.approx(0.5, abs=0.05)
    np.testing.assert_array_equal(S, grid.sample(4000, random_state=1))


def test_grid_mixture_stops_at_its_budget():
    X = np.random.default_rng(0).normal(size=(400, 2))
    grid = GridMixturePeer(max_time=1e-9, random_state=0).fit(X)
    assert list(grid.candidate_scores_) == ["K=1, reg_covar=1e-06"]
    assert np.isfinite(grid.score_samples(X)).all()


@pytest.mark.skipif(not zuko_available(), reason="needs zuko")
@pytest.mark.parametrize("flow", ["maf", "nsf"])
def test_a_conditional_zuko_flow_takes_labels_and_contexts(flow):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1200)
    X = rng.normal(size=(1200, 2)) + 4 * y[:, None]
    model = ZukoFlowPeer(flow, conditional=True, max_epochs=30, random_state=0).fit(X, y)
    drawn, log_prob = model.sample_and_log_prob(200, random_state=0, y=1)
    np.testing.assert_allclose(log_prob, model.score_samples(drawn, np.ones(200)), atol=1e-4)
    assert drawn.mean() > 3  # class 1 sits at (4, 4)
    assert (model.predict(X) == y).mean() > 0.95
    c = rng.normal(size=(1200, 1))
    X = np.c_[3 * c, rng.normal(size=(1200, 1))]
    model = ZukoFlowPeer(flow, conditional=True, max_epochs=30, random_state=0).fit(X, c)
    assert model.sample(400, y=[1.0], random_state=0)[:, 0].mean() == pytest.approx(3.0, abs=0.3)
    with pytest.raises(NotImplementedError, match="no prefix marginals"):
        model.log_prob(X, c, n_dims=1)
