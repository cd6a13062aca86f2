from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import ldelib
from ldelib import CausalConvMDN
from ldelib._validation import InvalidParameterError
from ldelib.datasets import make_target
from ldelib.metrics import mmd_permutation_test


@pytest.fixture(scope="module")
def banana():
    target = make_target("banana")
    train, test = target.sample(3000, 0), target.sample(3000, 1)
    model = CausalConvMDN(
        n_components=5, hidden_channels=32, max_epochs=60, device="cpu", random_state=0
    ).fit(train)
    return target, train, test, model


def test_recovers_a_known_density(banana):
    target, train, test, model = banana
    truth = target.log_prob(test).mean()
    gaussian = GaussianMixture(1, random_state=0).fit(train).score(test)
    ll = model.score(test)
    # Within 0.03 nats of the exact value (per 2-D row), and far above one Gaussian.
    assert truth - 0.03 < ll < truth + 0.03
    assert ll > gaussian + 0.2


def test_density_integrates_to_one_in_2d(banana):
    *_, model = banana
    grid0 = np.linspace(-6.0, 6.0, 601)
    grid1 = np.linspace(-6.0, 22.0, 1401)
    a, b = np.meshgrid(grid0, grid1, indexing="ij")
    density = np.exp(model.score_samples(np.stack([a.ravel(), b.ravel()], 1))).reshape(a.shape)
    total = integrate.simpson(integrate.simpson(density, x=grid1, axis=1), x=grid0)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_density_integrates_to_one_in_1d():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 0.5, 500), rng.normal(3, 1.0, 500)])[:, None]
    model = CausalConvMDN(n_components=3, max_epochs=20, device="cpu", random_state=0).fit(X)

    def density(x: float) -> float:
        return float(np.exp(model.score_samples([[x]])[0]))

    total, _ = integrate.quad(density, -np.inf, np.inf, limit=200, points=None)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_samples_pass_a_two_sample_test(banana):
    _, _, test, model = banana
    samples = model.sample(1000, random_state=0)
    assert mmd_permutation_test(samples, test[:1000], random_state=0).p_value > 0.01
    # The test has power here: samples of a slightly wrong banana fail it.
    wrong = make_target("banana", curvature=0.35).sample(1000, 2)
    assert mmd_permutation_test(wrong, test[:1000], random_state=0).p_value < 0.01


def test_accumulated_log_prob_matches_parallel(banana):
    *_, model = banana
    X, log_prob = model.sample_and_log_prob(500, random_state=3)
    np.testing.assert_allclose(log_prob, model.score_samples(X), rtol=1e-4, atol=1e-4)


def test_log_prob_is_finite_far_from_the_data(banana):
    *_, model = banana
    far = np.array([[1e6, -1e6], [-1e4, 1e4], [0.0, 1e5]])
    assert np.isfinite(model.score_samples(far)).all()


def test_variance_ordering():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)) * [0.1, 5.0, 1.0, 2.0]
    model = CausalConvMDN(
        n_components=2,
        hidden_channels=8,
        max_epochs=3,
        ordering="variance",
        device="cpu",
        random_state=0,
    ).fit(X)
    np.testing.assert_array_equal(model.ordering_, [1, 3, 2, 0])
    # The order is internal: samples and densities stay in the caller's column order.
    samples = model.sample(2000, random_state=0)
    assert np.argsort(-samples.std(axis=0)).tolist() == [1, 3, 2, 0]
    X_s, lp = model.sample_and_log_prob(20, random_state=1)
    np.testing.assert_allclose(lp, model.score_samples(X_s), rtol=1e-4, atol=1e-4)


def test_paper_architecture_trains():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8))
    model = CausalConvMDN(
        n_components=5, architecture="paper", max_epochs=5, device="cpu", random_state=0
    ).fit(X)
    # The authors' D=8 network (11,370 parameters at K=30) with a 64 -> 15 head for K=5.
    n_params = sum(p.numel() for p in model.module_.parameters())
    assert n_params == 11_370 - (64 * 90 + 90) + (64 * 15 + 15)
    assert np.isfinite(model.score_samples(X)).all()
    assert model.n_iter_ == 5


def test_dropout_is_seeded_and_leaves_the_global_generator_alone():
    import torch

    X = np.random.default_rng(0).normal(size=(300, 4))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    kwargs = {"hidden_channels": 16, "max_epochs": 3, "device": "cpu", "random_state": 1}
    fits = [CausalConvMDN(init="random", **kwargs).fit(X) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert fits[0].module_.net.blocks[0].drop.p == 0.2  # the default without an anchor
    anchored = CausalConvMDN(**kwargs).fit(X)
    assert isinstance(anchored.module_.net.blocks[0].drop, torch.nn.Identity)
    np.testing.assert_array_equal(fits[0].score_samples(X), fits[1].score_samples(X))
    # Dropout acts only in training: log_prob is deterministic in eval mode.
    np.testing.assert_array_equal(fits[0].score_samples(X), fits[0].score_samples(X))


def test_dropout_regularises_a_small_latent_like_set():
    # 300 rows of a 6-D Gaussian mixture: without dropout the network overfits and early
    # stopping ends training before it generalises (measured: -5.65 vs -5.18 nats).
    target = make_target("gmm", 6)
    train, test = target.sample(300, 0), target.sample(3000, 1)
    kwargs = {"max_epochs": 150, "device": "cpu", "random_state": 0, "init": "random"}
    plain = CausalConvMDN(dropout=0.0, **kwargs).fit(train)
    dropped = CausalConvMDN(**kwargs).fit(train)
    assert dropped.score(test) > plain.score(test) + 0.1


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.2", True])
def test_bad_dropout(value):
    with pytest.raises(ValueError, match="dropout"):
        CausalConvMDN(dropout=value).fit(np.zeros((10, 2)) + np.arange(10)[:, None])


def test_paper_network_has_no_dropout():
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="no dropout"):
        CausalConvMDN(architecture="paper", dropout=0.1).fit(X)
    model = CausalConvMDN(architecture="paper", max_epochs=1, device="cpu").fit(X)
    assert np.isfinite(model.score(X))


# ------------------------------------------------------------- the mixture anchor
@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 4))
    X[:300] += [4.0, -2.0, 0.0, 1.0]
    return X * [1.0, 10.0, 0.1, 3.0]


def _zero_corrections(model: CausalConvMDN) -> CausalConvMDN:
    import torch

    with torch.no_grad():
        model.module_.net.output.weight.zero_()
        model.module_.net.output.bias.zero_()
    return model


def _anchor_twin(model: CausalConvMDN, X: np.ndarray, seed: int):
    """The GMM of the model's training rows (not its validation rows), with K, the
    regularisation and the mixtures averaged chosen on its validation rows, in the
    model's standard units, each mixture refitted by EM to every row from its solution;
    and its log-density of ``X`` in the units of the data."""
    from sklearn.mixture import GaussianMixture

    from ldelib import GMM
    from ldelib.models._averaging import members
    from ldelib.models._em import fit_held_out
    from ldelib.training import split_positions

    train, valid = split_positions(len(X), model.validation_fraction, np.random.default_rng(seed))
    Z = (X - model.mean_) / model.scale_
    gmm = GMM(
        "auto", reg_covar="auto", n_average=model.n_average, standardize=False, random_state=seed
    )
    fit_held_out(gmm, Z[np.sort(train)], Z[valid])
    chol = gmm.precisions_cholesky_
    densities = [
        GaussianMixture(
            len(weights),
            reg_covar=gmm.reg_covar_,
            weights_init=weights / weights.sum(),
            means_init=means,
            precisions_init=precisions,
        )
        .fit(Z)
        .score_samples(Z)
        for weights, means, precisions in members(
            gmm.weights_, gmm.means_, chol @ chol.transpose(0, 2, 1), gmm.n_average_
        )
    ]
    mean = logsumexp(densities, axis=0) - np.log(gmm.n_average_)
    return gmm, mean - np.log(model.scale_).sum()


def test_untrained_model_is_the_validated_gmm_refitted_to_every_row(clusters):
    # Fitted on the training rows and chosen on the validation rows that then judge the
    # epochs and starts, then refitted to every row from its solution, as GMM refits.
    model = CausalConvMDN(
        hidden_channels=8, max_epochs=2, n_average=3, device="cpu", random_state=3
    )
    _zero_corrections(model.fit(clusters))
    gmm, log_prob = _anchor_twin(model, clusters, 3)
    assert model.n_components_ == gmm.n_components_
    assert model.anchor_["n_components"] == gmm.n_components_
    assert model.anchor_["reg_covar"] == gmm.reg_covar_
    assert model.anchor_["n_average"] == gmm.n_average_ == 3  # an average, each refitted
    assert model.anchor_["refit_rows"] == len(clusters)
    # Exactly that mixture, to float32 precision, in the units of the data.
    np.testing.assert_allclose(model.score_samples(clusters), log_prob, rtol=1e-5, atol=1e-4)


def test_training_cannot_end_below_the_anchor_on_validation(clusters):

    # A learning rate this large wrecks the network at the first step: early stopping
    # keeps the untrained state, which is the mixture.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = CausalConvMDN(
            hidden_channels=8, learning_rate=10.0, max_epochs=4, device="cpu", random_state=0
        ).fit(clusters)
    assert model.best_epoch_ == -1
    assert all(s <= model.best_validation_score_ for s in model.validation_scores_)
    np.testing.assert_allclose(
        model.score_samples(clusters), _anchor_twin(model, clusters, 0)[1], rtol=1e-5, atol=1e-4
    )


def test_training_improves_on_the_anchor():
    # A smooth non-Gaussian target that three Gaussians fit poorly: the corrections
    # recover most of what the mixture misses.
    from ldelib import GMM

    target = make_target("sine-chain", 3)
    train, test = target.sample(3000, 0), target.sample(3000, 1)
    gmm = GMM(3, reg_covar="auto", random_state=0).fit(train)
    model = CausalConvMDN(3, max_epochs=40, device="cpu", random_state=0).fit(train)
    assert model.best_epoch_ >= 0  # an epoch beat the mixture on validation
    truth = target.log_prob(test).mean()
    assert model.score(test) > gmm.score(test) + 0.5 * (truth - gmm.score(test))
    assert model.score(test) < truth + 0.03


def test_budget_includes_the_mixture(clusters):
    # A budget smaller than the EM: no epoch runs, and the model is the mixture.
    model = CausalConvMDN(max_time=1e-6, device="cpu", random_state=0).fit(clusters)
    assert model.n_iter_ == 0 and model.best_epoch_ == -1
    assert model.anchor_["fit_s"] > 1e-6
    # The anchor's search had no time either: its first candidate, K = 1, once.
    assert model.anchor_["n_components"] == 1
    assert np.isfinite(model.score(clusters))


@pytest.fixture(scope="module")
def separated():
    """Four clusters far apart in 2-D: one component is a poor start, four are the truth."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0], [12.0, 12.0]])
    return centres[rng.integers(4, size=1600)] + rng.normal(size=(1600, 2))


def _cut_the_first_search(monkeypatch):
    """Make the anchor's first search stop after its first candidate (K = 1)."""
    from ldelib.models import _selection

    run, runs = _selection.Search.run, []

    def cut_first(self, deadline, bar=None, fits=None):
        runs.append((deadline, fits))
        return run(self, 0.0 if len(runs) == 1 else deadline, bar, fits)

    monkeypatch.setattr(_selection.Search, "run", cut_first)
    return runs


CUT = {"init": "gmm", "hidden_channels": 8, "max_epochs": 3, "max_time": 600, "random_state": 0}


def test_a_search_cut_by_the_budget_goes_on_and_its_larger_mixture_replaces_the_network(
    monkeypatch, separated, tmp_path
):
    from ldelib import load
    from ldelib.models import _mdn_fit

    runs = _cut_the_first_search(monkeypatch)
    deadlines = []
    deadline = _mdn_fit.fit_deadline
    monkeypatch.setattr(
        _mdn_fit, "fit_deadline", lambda t: deadlines.append(deadline(t)) or deadlines[-1]
    )
    model = CausalConvMDN(**CUT).fit(separated)
    # The anchored start trained on K = 1 in turns with the search, which went on one
    # fit a turn, each to the fit's deadline (it reserves its refit itself), until it
    # ended.
    assert len(runs) >= 3 and all(run == (deadlines[0], 1) for run in runs[1:])
    assert runs[0][0] < runs[1][0]
    assert model.anchor_["resumed_s"] > 0
    # Three epochs of corrections to one Gaussian do not reach four components.
    assert model.n_components_ == model.anchor_["n_components"] >= 4
    assert model.best_epoch_ == -1 and model.n_iter_ == 0
    assert model.best_validation_score_ == pytest.approx(
        model.anchor_["validation_score"], abs=0.05
    )
    # The model is that mixture, refitted to every row: its corrections are zero.
    scores = model.score_samples(separated)
    np.testing.assert_array_equal(scores, _zero_corrections(model).score_samples(separated))
    uncut = CausalConvMDN(**{**CUT, "max_time": None}).fit(separated)
    assert model.score(separated) >= uncut.score(separated) - 0.05
    model.save(tmp_path / "m.ldelib")
    loaded = load(tmp_path / "m.ldelib")
    assert loaded.anchor_ == model.anchor_
    np.testing.assert_array_equal(loaded.score_samples(separated), scores)


def test_a_cut_search_goes_on_in_turns_with_both_starts(monkeypatch, separated):
    # The default races the random start too: the search goes on beside both, and its
    # larger mixture still replaces the anchored start (the random one trails it).
    runs = _cut_the_first_search(monkeypatch)
    monkeypatch.setattr(CausalConvMDN, "_random_epoch_s", lambda self, n, device: 0.0)
    model = CausalConvMDN(**{**RACE, "max_epochs": 3, "max_time": 600}).fit(separated)
    assert len(runs) >= 3 and model.anchor_["resumed_s"] > 0
    assert model.start_scores_["random"] is not None
    assert model.n_components_ == model.anchor_["n_components"] >= 4
    assert model.start_scores_["gmm"] > model.start_scores_["random"]


def test_a_trained_network_that_beats_the_resumed_search_is_kept(monkeypatch, separated):
    from ldelib.models._em import HeldOutSearch

    _cut_the_first_search(monkeypatch)
    resume = HeldOutSearch.resume

    def worse(self, deadline, fits=None):
        # The search's larger mixtures, moved far from the data.
        larger = resume(self, deadline, fits)
        if larger is not None:
            larger.means_ = larger.means_ + 10.0
        return larger

    monkeypatch.setattr(HeldOutSearch, "resume", worse)
    model = CausalConvMDN(**CUT).fit(separated)
    assert model.anchor_["resumed_s"] > 0
    assert model.n_components_ == model.anchor_["n_components"] == 1
    assert model.n_iter_ == 3


def test_a_search_that_had_stalled_is_not_resumed(monkeypatch, separated):
    from ldelib.models._em import HeldOutSearch

    runs = _cut_the_first_search(monkeypatch)
    monkeypatch.setattr(HeldOutSearch, "improving", property(lambda self: False))
    model = CausalConvMDN(**CUT).fit(separated)
    # The anchored start trains on the whole budget, on the mixture of the cut search.
    assert len(runs) == 1 and "resumed_s" not in model.anchor_
    assert model.n_components_ == 1 and model.n_iter_ == 3


def test_anchored_save_load_round_trip(tmp_path, clusters):
    from ldelib import load

    model = CausalConvMDN(hidden_channels=8, max_epochs=2, device="cpu", random_state=0)
    model.fit(clusters)
    model.save(tmp_path / "m.ldelib")
    loaded = load(tmp_path / "m.ldelib")
    assert loaded.anchor_ == model.anchor_
    np.testing.assert_array_equal(loaded.score_samples(clusters), model.score_samples(clusters))
    np.testing.assert_array_equal(
        loaded.sample(5, random_state=0), model.sample(5, random_state=0)
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"init": "gmm", "architecture": "paper"}, "no mixture anchor"),
        ({"init": "kmeans"}, "init must be"),
        ({"init": "random", "n_components": [2, 3]}, "Without a mixture anchor"),
        ({"init": "random", "n_components": 0}, "Without a mixture anchor"),
        ({"n_components": 0}, "n_components"),
        ({"n_components": "many"}, "n_components"),
        ({"hidden_channels": 0}, "hidden_channels"),
        ({"hidden_channels": np.float64(8.0)}, "hidden_channels"),
        ({"n_blocks": 0}, "n_blocks"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"learning_rate": "x"}, "learning_rate"),
        ({"batch_size": np.int64(0)}, "batch_size"),
        ({"verbose": None}, "verbose"),
        ({"architecture": "paper", "init": "random", "n_components": [2, 3]}, "Without"),
    ],
)
def test_bad_init_and_components(params, match):
    model = CausalConvMDN(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(np.random.default_rng(0).normal(size=(50, 2)))
    assert not hasattr(model, "module_") and not hasattr(model, "anchor_")


@pytest.mark.parametrize(
    ("param", "value"), [("hidden_channels", 32), ("n_blocks", 2), ("min_scale", 1e-2)]
)
def test_paper_network_refuses_what_it_ignores(param, value):
    model = CausalConvMDN(architecture="paper", max_epochs=1, device="cpu", **{param: value})
    with pytest.raises(InvalidParameterError) as info:
        model.fit(np.random.default_rng(0).normal(size=(50, 2)))
    assert f"parameter {param} must be" in str(info.value)
    assert "architecture='paper', which ignores it" in str(info.value)
    assert not hasattr(model, "module_")


def test_paper_network_takes_its_defaults_and_zero_dropout_explicitly():
    X = np.random.default_rng(0).normal(size=(50, 2))
    params = {"hidden_channels": None, "n_blocks": None, "min_scale": 1e-3, "dropout": 0}
    model = CausalConvMDN(architecture="paper", max_epochs=1, device="cpu", **params)
    assert np.isfinite(model.fit(X).score(X))


def test_numpy_parameters_reach_torch_as_python_numbers():
    X = np.random.default_rng(0).normal(size=(60, 3))
    model = CausalConvMDN(
        np.int64(2),
        init="random",
        hidden_channels=np.int64(8),
        n_blocks=np.int64(2),
        min_scale=np.float32(1e-2),
        dropout=np.float64(0.1),
        learning_rate=np.float32(1e-3),
        weight_decay=np.float32(1e-4),
        batch_size=np.int64(16),
        max_epochs=np.int32(2),
        n_iter_no_change=np.int64(2),
        max_time=np.int64(60),
        device="cpu",
        random_state=np.int64(0),
    ).fit(X)
    assert model.n_components_ == 2 and type(model.module_.min_scale) is float
    assert np.isfinite(model.score(X))


def test_paper_network_keeps_its_random_start():
    X = np.random.default_rng(0).normal(size=(100, 3))
    model = CausalConvMDN(architecture="paper", max_epochs=1, device="cpu").fit(X)
    assert model.anchor_ is None and model.n_components_ == 10
    # Candidates are the anchor's to choose among.
    listed = CausalConvMDN(
        [2, 3], init="gmm", max_epochs=1, hidden_channels=8, device="cpu", random_state=0
    ).fit(X)
    assert listed.n_components_ in (2, 3)


# ------------------------------------------------- init="auto": the better of two starts
def _bimodal(n: int, seed: int) -> np.ndarray:
    # z1 is +-2 whatever z0 is: two clusters a single Gaussian cannot take, and that
    # corrections to one Gaussian component per conditional cannot split.
    rng = np.random.default_rng(seed)
    z0 = rng.normal(size=n)
    z1 = 2.0 * rng.choice([-1.0, 1.0], size=n) + 0.1 * rng.normal(size=n)
    return np.column_stack([z0, z1])


RACE = {"max_epochs": 30, "hidden_channels": 16, "device": "cpu", "random_state": 0}


def test_auto_keeps_the_random_start_where_it_wins_on_validation():
    X = _bimodal(1500, 0)
    model = CausalConvMDN(n_components=[1], **RACE).fit(X)
    scores = model.start_scores_
    assert scores["random"] > scores["gmm"] + 0.5  # nats per row
    assert model.anchor_ is None and model.n_components_ == 10
    assert model.best_validation_score_ == scores["random"]
    # The kept model is the one scored: its held-out rows score as the random start did.
    test = _bimodal(3000, 1)
    # N(0, 1) times an equal mixture of N(+-2, 0.1^2), whose modes do not overlap.
    truth_ll = -np.log(2 * np.pi) - 1.0 + np.log(0.5) - np.log(0.1)
    assert model.score(test) == pytest.approx(truth_ll, abs=0.1)
    assert (
        model.score(test)
        > CausalConvMDN(n_components=[1], init="gmm", **RACE).fit(X).score(test) + 0.5
    )


def test_auto_keeps_the_anchored_start_unless_the_random_one_leads_beyond_noise(monkeypatch):
    # The same fit as above, where the random start truly wins; with held-out rows that
    # say it leads by 0.01 nats at a paired standard error of about 0.1, the anchored
    # start is kept: a lead that small is as likely noise of the split.
    noise = np.random.default_rng(0).normal(size=150)
    verdicts = iter([noise, noise + 0.01 + np.random.default_rng(1).normal(size=150)])
    monkeypatch.setattr(CausalConvMDN, "_score_rows", lambda self, rows, device: next(verdicts))
    model = CausalConvMDN(n_components=[1], **RACE).fit(_bimodal(1500, 0))
    assert model.anchor_ is not None
    assert model.start_scores_["random"] > model.start_scores_["gmm"] + 0.5
    assert model.best_validation_score_ == model.start_scores_["gmm"]


def test_auto_is_the_anchored_model_where_the_mixture_wins():
    X = make_target("gmm", n_features=3).sample(1500, random_state=0)
    auto = CausalConvMDN(**RACE).fit(X)
    assert auto.start_scores_["gmm"] >= auto.start_scores_["random"]
    assert auto.anchor_ is not None
    assert auto.best_validation_score_ == auto.start_scores_["gmm"]
    # Trained first, with the same draws: exactly the model init="gmm" fits.
    gmm = CausalConvMDN(init="gmm", **RACE).fit(X)
    np.testing.assert_array_equal(auto.score_samples(X), gmm.score_samples(X))
    assert not hasattr(gmm, "start_scores_")


def test_a_raced_model_saves_and_loads_whichever_start_won(tmp_path):
    import ldelib

    X = _bimodal(1500, 0)
    model = CausalConvMDN(n_components=[1], **RACE).fit(X)
    assert model.anchor_ is None
    model.save(tmp_path / "m.ldelib")
    loaded = ldelib.load(tmp_path / "m.ldelib")
    assert loaded.start_scores_ == model.start_scores_
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    # A refit with one start only forgets the race.
    loaded.set_params(init="gmm").fit(X)
    assert not hasattr(loaded, "start_scores_")


def test_a_random_start_without_time_for_its_epochs_is_not_trained(monkeypatch):
    # Where the random start cannot train _MIN_RANDOM_EPOCHS epochs in its half of what
    # the mixture's search leaves, it is not started: the anchored start has it all.
    deadlines = []
    start = CausalConvMDN._start

    def spy(self, mixture, train, valid, rng, device, deadline, *rest):
        deadlines.append(deadline)
        return start(self, mixture, train, valid, rng, device, deadline, *rest)

    monkeypatch.setattr(CausalConvMDN, "_start", spy)
    monkeypatch.setattr(CausalConvMDN, "_random_epoch_s", lambda self, n, device: 1e9)
    X = _bimodal(600, 0)
    params = {**RACE, "max_epochs": 3, "max_time": 600}
    began = time.perf_counter()
    auto = CausalConvMDN(**params).fit(X)
    # One training, bounded by the fit's own deadline (not half of what is left, nor none),
    # less the anchor's refit to every row (a few milliseconds here).
    assert len(deadlines) == 1 and began + 599 <= deadlines[0] <= time.perf_counter() + 600
    assert auto.anchor_ is not None and auto.start_scores_["random"] is None
    assert auto.best_validation_score_ == auto.start_scores_["gmm"]
    # Neither budget binds here: the anchored start alone is the model init="gmm" fits.
    gmm = CausalConvMDN(init="gmm", **params).fit(X)
    np.testing.assert_array_equal(auto.score_samples(X), gmm.score_samples(X))
    # With time for its epochs, the random start races, in turns to the same deadline.
    monkeypatch.setattr(CausalConvMDN, "_random_epoch_s", lambda self, n, device: 0.0)
    deadlines.clear()
    assert CausalConvMDN(**params).fit(X).start_scores_["random"] is not None
    assert len(deadlines) == 2 and deadlines[0] == deadlines[1]


def test_a_random_start_left_out_trains_in_the_time_the_anchored_start_leaves(monkeypatch):
    # Its epochs (40 s each, nominally) do not fit in the networks' share of the budget
    # (half of 600 s), but they fit in what the anchored start leaves once early stopping
    # (or max_epochs) ends it: it then trains alone, to the same deadline, and races.
    calls = []
    start = CausalConvMDN._start

    def spy(self, mixture, train, valid, rng, device, deadline, *rest):
        calls.append((mixture is None, deadline, rest))
        return start(self, mixture, train, valid, rng, device, deadline, *rest)

    monkeypatch.setattr(CausalConvMDN, "_start", spy)
    # Timed twice (before the fit, and when it would start): both the same.
    monkeypatch.setattr(CausalConvMDN, "_random_epoch_s", lambda self, n, device: 40.0)
    X = _bimodal(600, 0)
    model = CausalConvMDN(**{**RACE, "max_epochs": 3, "max_time": 600}).fit(X)
    assert [random for random, _, _ in calls] == [False, True]
    assert calls[0][1] == calls[1][1]
    # Alone: no first turn to share (the racing starts each get one).
    assert calls[0][2] != () and calls[1][2] == ()
    assert model.start_scores_["random"] is not None and model.start_scores_["gmm"] is not None


def test_training_leaves_time_for_the_anchors_refit(monkeypatch):
    from ldelib.models._em import HeldOutSearch

    deadlines, refits = [], []
    start, refit_anchor = CausalConvMDN._start, CausalConvMDN._refit_anchor

    def spy(self, mixture, train, valid, rng, device, deadline, *rest):
        deadlines.append(deadline)
        return start(self, mixture, train, valid, rng, device, deadline, *rest)

    def spy_refit(self, mixture, Z, rng, deadline):
        refits.append((len(Z), deadline))
        return refit_anchor(self, mixture, Z, rng, deadline)

    asked = []

    def refit_seconds(self, n_rows):
        asked.append(n_rows)
        return 100.0

    monkeypatch.setattr(CausalConvMDN, "_start", spy)
    monkeypatch.setattr(CausalConvMDN, "_refit_anchor", spy_refit)
    monkeypatch.setattr(HeldOutSearch, "refit_seconds", refit_seconds)
    X = _bimodal(600, 0)
    CausalConvMDN(init="gmm", hidden_channels=8, max_epochs=2, max_time=600).fit(X)
    # Estimated for every row, and taken off the training's deadline, not the refit's.
    assert asked == [600] and refits[0][0] == 600
    assert len(deadlines) == 1 and deadlines[0] == pytest.approx(refits[0][1] - 100.0)


def test_without_a_budget_the_random_start_is_always_trained(monkeypatch):
    def no_probe(self, n, device):
        raise AssertionError("timed the random start without a budget")

    monkeypatch.setattr(CausalConvMDN, "_random_epoch_s", no_probe)
    model = CausalConvMDN(**{**RACE, "max_epochs": 2}).fit(_bimodal(300, 0))
    assert model.start_scores_["random"] is not None


def test_timing_the_random_start_leaves_the_global_generator_alone():
    model = CausalConvMDN(**{**RACE, "max_epochs": 1}).fit(_bimodal(300, 0))
    before = torch.random.get_rng_state()
    seconds = model._random_epoch_s(10_000, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert 0 < seconds < 60


def test_no_validation_rows_no_race():
    X = _bimodal(300, 0)
    model = CausalConvMDN(validation_fraction=0.0, **{**RACE, "max_epochs": 2}).fit(X)
    assert model.anchor_ is not None
    assert model.start_scores_ == {"gmm": None, "random": None}


# ---------------------------------------------------------------- conditional
def _labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 2)) + np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[y]
    X[:, 1] += 0.5 * np.sin(2 * X[:, 0])  # a curve no Gaussian follows
    return X, y


def _contextual(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 1))
    X = np.c_[np.sin(2 * c[:, 0]) + 0.2 * rng.normal(size=n), c[:, 0] ** 2 + rng.normal(size=n)]
    return X, c


@pytest.fixture(scope="module")
def conditional_fits():
    X, y = _labelled(1500, 0)
    Xc, c = _contextual(1500, 0)
    common = {"max_epochs": 15, "device": "cpu", "random_state": 0, "conditional": True}
    return {
        "labels": (CausalConvMDN(**common).fit(X, y), X, y),
        "context": (CausalConvMDN(**common).fit(Xc, c), Xc, c),
    }


@pytest.mark.parametrize(("kind", "value"), [("labels", 0), ("labels", 2), ("context", 0.8)])
def test_a_conditional_density_integrates_to_one_in_2d(conditional_fits, kind, value):
    model, *_ = conditional_fits[kind]
    y = np.array([value]) if kind == "labels" else np.array([[value]])
    grid = np.linspace(-7.0, 11.0, 721)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    rows = np.stack([a.ravel(), b.ravel()], 1)
    density = np.exp(model.score_samples(rows, np.repeat(y, len(rows), axis=0))).reshape(a.shape)
    total = integrate.simpson(integrate.simpson(density, x=grid, axis=1), x=grid)
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("kind", ["labels", "context"])
def test_conditional_draws_agree_with_the_density(conditional_fits, kind):
    model, *_ = conditional_fits[kind]
    condition = 1 if kind == "labels" else [0.5]
    drawn, log_prob = model.sample_and_log_prob(300, random_state=0, y=condition)
    rows_y = np.full(300, 1) if kind == "labels" else np.full((300, 1), 0.5)
    np.testing.assert_allclose(log_prob, model.score_samples(drawn, rows_y), rtol=1e-5, atol=1e-4)
    kept = model.sample(50, y=condition, given=drawn[:1, :1], random_state=1)
    assert (kept[:, 0] == drawn[0, 0]).all()
    # The prefix marginal integrates the rest out, given the same condition.
    one_y = rows_y[:1]
    for x0 in drawn[:2, 0]:
        whole, _ = integrate.quad(
            lambda x1, x0=x0: float(np.exp(model.score_samples([[x0, x1]], one_y))[0]),
            -30,
            30,
            limit=200,
        )
        prefix = float(np.exp(model.log_prob([[x0]], one_y, n_dims=1))[0])
        assert prefix == pytest.approx(whole, rel=1e-3)


def test_the_labelled_model_classifies_and_keeps_its_classes_apart(conditional_fits):
    model, *_ = conditional_fits["labels"]
    X, y = _labelled(1500, 1)
    assert (model.predict(X) == y).mean() > 0.95
    for label in (0, 1, 2):
        drawn = model.sample(300, y=label, random_state=0)
        assert (model.predict(drawn) == label).mean() > 0.9


def test_the_conditional_anchor_is_the_conditional_mixture(conditional_fits):
    model, *_ = conditional_fits["labels"]
    assert model.module_.anchor is not None
    classes = model.module_.component_class.numpy()
    assert sorted(set(classes.tolist())) == [0, 1, 2] and len(classes) == model.n_components_
    model, *_ = conditional_fits["context"]
    assert model.module_.anchor.features == 3  # (context, x)


def test_a_one_hot_context_fits_as_the_label_model():
    """The same rows, split, shuffles and network: labels are a one-hot context."""
    X, y = _labelled(400, 2)
    common = {
        "init": "random",
        "max_epochs": 3,
        "standardize": False,
        "device": "cpu",
        "random_state": 0,
        "conditional": True,
    }
    by_label = CausalConvMDN(**common).fit(X, y)
    one_hot = np.eye(3)[y]
    by_context = CausalConvMDN(**common).fit(X, one_hot)
    np.testing.assert_allclose(
        by_label.score_samples(X, y), by_context.score_samples(X, one_hot), rtol=1e-5, atol=1e-5
    )


def test_conditional_models_survive_a_file(conditional_fits, tmp_path):
    for kind, (model, X, y) in conditional_fits.items():
        model.save(tmp_path / f"{kind}.ldelib")
        loaded = ldelib.load(tmp_path / f"{kind}.ldelib")
        np.testing.assert_array_equal(
            loaded.score_samples(X[:20], y[:20]), model.score_samples(X[:20], y[:20])
        )
        condition = 1 if kind == "labels" else [0.5]
        np.testing.assert_array_equal(
            loaded.sample(5, y=condition, random_state=3),
            model.sample(5, y=condition, random_state=3),
        )


@pytest.mark.parametrize(
    "params", [{"ordering": "variance"}, {"architecture": "paper"}, {"init": "random"}]
)
def test_conditional_fits_of_every_kind(params):
    X, c = _contextual(300, 3)
    model = CausalConvMDN(max_epochs=2, device="cpu", random_state=0, conditional=True, **params)
    model.fit(X, c)
    drawn, log_prob = model.sample_and_log_prob(20, random_state=0, y=[0.1])
    np.testing.assert_allclose(
        log_prob, model.score_samples(drawn, np.full((20, 1), 0.1)), rtol=1e-5, atol=1e-4
    )


def test_a_class_without_training_rows_is_named():
    X, y = _labelled(300, 4)
    y = y.astype(object)
    y[:] = "a"
    y[0] = "rare"  # one row, which the validation split may take
    with pytest.raises(ValueError, match=r"rare"):
        for seed in range(20):
            CausalConvMDN(max_epochs=1, device="cpu", random_state=seed, conditional=True).fit(
                X, y.astype(str)
            )


def test_a_conditional_score_of_a_tensor_is_a_differentiable_tensor(conditional_fits):
    model, X, y = conditional_fits["labels"]
    rows = torch.tensor(X[:4], dtype=torch.float32, requires_grad=True)
    log_prob = model.log_prob(rows, torch.as_tensor(y[:4]))
    assert isinstance(log_prob, torch.Tensor) and log_prob.dtype == torch.float32
    log_prob.sum().backward()
    assert rows.grad is not None and torch.isfinite(rows.grad).all() and rows.grad.abs().sum() > 0
    np.testing.assert_allclose(
        log_prob.detach().numpy(), model.log_prob(X[:4], y[:4]), rtol=1e-5, atol=1e-5
    )


def test_a_diagonal_anchor_is_a_normalised_density(tmp_path):
    from ldelib import load

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1.5, 0.5, (400, 2)), rng.normal(1.5, 0.8, (400, 2))])
    X[:, 1] += 0.8 * np.sin(2 * X[:, 0])  # dependence that corrections can learn
    model = CausalConvMDN(
        3, covariance_type="diag", init="gmm", max_epochs=5, device="cpu", random_state=0
    ).fit(X)
    assert model.anchor_["covariance_type"] == "diag"
    anchor = model.module_.anchor
    assert not anchor.inverse_cholesky.tril(-1).any()
    grid = np.linspace(-6.0, 6.0, 401)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    density = np.exp(model.score_samples(np.stack([a.ravel(), b.ravel()], 1))).reshape(a.shape)
    total = integrate.simpson(integrate.simpson(density, x=grid, axis=1), x=grid)
    assert total == pytest.approx(1.0, abs=1e-3)
    X_s, log_prob = model.sample_and_log_prob(300, random_state=1)
    np.testing.assert_allclose(log_prob, model.score_samples(X_s), rtol=1e-4, atol=1e-4)
    model.save(tmp_path / "m.ldelib")
    loaded = load(tmp_path / "m.ldelib")
    assert loaded.covariance_type == "diag"
    np.testing.assert_array_equal(loaded.score_samples(X[:50]), model.score_samples(X[:50]))


@pytest.mark.parametrize(("dependent", "chosen"), [(True, "full"), (False, "diag")])
def test_auto_covariances_keep_the_better_mixture_on_validation(dependent, chosen):
    rng = np.random.default_rng(0)
    if dependent:  # strongly correlated columns: a full covariance is worth its parameters
        X = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 4))
    else:  # independent heavy-tailed columns, few rows for D = 20: it is not
        X = rng.standard_t(5, size=(400, 20))
    model = CausalConvMDN(
        covariance_type="auto", init="gmm", max_epochs=1, device="cpu", random_state=0
    ).fit(X)
    scores = model.anchor_["covariance_scores"]
    assert model.anchor_["covariance_type"] == chosen == max(scores, key=scores.get)
    assert scores["diag"] != scores["full"]
    diagonal = not model.module_.anchor.inverse_cholesky.tril(-1).any()
    assert diagonal == (chosen == "diag")


def test_auto_covariances_on_labels():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 300)
    X = rng.normal(size=(600, 3)) @ np.array([[1.0, 0.9, 0.0], [0.0, 0.4, 0.9], [0.0, 0.0, 0.3]])
    X[y == 1] += 2.0
    model = CausalConvMDN(
        covariance_type="auto", conditional=True, max_epochs=1, device="cpu", random_state=0
    ).fit(X, y)
    assert model.anchor_["covariance_type"] == "full"
    assert set(model.anchor_["covariance_scores"]) == {"diag", "full"}
    lp = model.score_samples(X[:10], y[:10])
    assert np.isfinite(lp).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"covariance_type": "auto", "validation_fraction": 0.0}, "chooses on the validation"),
        ({"covariance_type": "diag", "init": "random"}, "no covariances to choose"),
        ({"covariance_type": "tied"}, "must be one of 'full', 'diag' or 'auto'"),
    ],
)
def test_covariance_type_errors(params, message):
    X = np.random.default_rng(0).normal(size=(200, 3))
    with pytest.raises(InvalidParameterError, match=message):
        CausalConvMDN(**params).fit(X)
