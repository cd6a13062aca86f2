"""GMM(conditional=True): per-class mixtures for labels, a joint mixture for a context."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

import ldelib
from ldelib import GMM

CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])


def labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, one correlated Gaussian each."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    noise = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.0], [0.6, 0.8]])
    return CENTRES[y] + noise, y


def contextual(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x | c ~ N((2 c, -c), diag(0.25, 1)), c ~ N(0, 1): a linear-Gaussian truth."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 1))
    X = np.c_[2 * c[:, 0] + 0.5 * rng.normal(size=n), -c[:, 0] + rng.normal(size=n)]
    return X, c


def true_context_log_prob(X: np.ndarray, c: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(X[:, 0], 2 * c[:, 0], 0.5) + stats.norm.logpdf(X[:, 1], -c[:, 0], 1)


@pytest.fixture(scope="module")
def by_label():
    X, y = labelled(3000, 0)
    return GMM([1, 2, 3], conditional=True, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def by_context():
    X, c = contextual(3000, 0)
    return GMM([1, 2, 3], conditional=True, random_state=0).fit(X, c)


def grid_integral(model, y, lo=-6.0, hi=10.0, n=241):
    g = np.linspace(lo, hi, n)
    a, b = np.meshgrid(g, g, indexing="ij")
    rows = np.stack([a.ravel(), b.ravel()], 1)
    density = np.exp(model.score_samples(rows, np.repeat(y, len(rows), axis=0))).reshape(a.shape)
    return integrate.simpson(integrate.simpson(density, x=g, axis=1), x=g)


# ---------------------------------------------------------------- densities
@pytest.mark.parametrize("label", [0, 1, 2])
def test_each_class_density_integrates_to_one(by_label, label):
    assert grid_integral(by_label, np.array([label])) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("context", [-1.5, 0.0, 0.7])
def test_each_context_density_integrates_to_one(by_context, context):
    value = np.array([[context]])
    assert grid_integral(by_context, value, lo=-9.0, hi=9.0) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("fixture", ["by_label", "by_context"])
def test_the_prefix_marginal_integrates_out_the_rest(request, fixture):
    model = request.getfixturevalue(fixture)
    y = np.array([1]) if fixture == "by_label" else np.array([[0.4]])
    for x0 in (-0.5, 1.0, 3.0):
        whole, _ = integrate.quad(
            lambda x1, x0=x0: np.exp(model.score_samples(np.array([[x0, x1]]), y))[0], -15, 15
        )
        prefix = np.exp(model.log_prob(np.array([[x0]]), y, n_dims=1))[0]
        assert prefix == pytest.approx(whole, rel=1e-7)


def test_the_context_model_recovers_a_known_conditional(by_context):
    X, c = contextual(4000, 1)
    gap = true_context_log_prob(X, c) - by_context.score_samples(X, c)
    # Every row of the truth is one linear-Gaussian conditional: the mixture finds it.
    assert abs(gap.mean()) < 3 * gap.std() / np.sqrt(len(gap)) + 0.01


def test_bayes_rule_sums_the_classes_to_an_unconditional_fit(by_label):
    X, _ = labelled(4000, 1)
    joint = np.stack(
        [by_label.score_samples(X, np.full(len(X), k)) for k in by_label.classes_], axis=1
    ) + np.log(by_label.class_prior_)
    marginal = logsumexp(joint, axis=1)
    unconditional = GMM(3, random_state=0).fit(labelled(3000, 0)[0]).score_samples(X)
    difference = marginal - unconditional
    assert abs(difference.mean()) < 3 * difference.std() / np.sqrt(len(X)) + 0.01
    # The classifier is Bayes' rule on the same terms.
    np.testing.assert_allclose(
        by_label.predict_log_proba(X), joint - marginal[:, None], rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(by_label.predict_proba(X).sum(1), 1.0, rtol=0, atol=1e-12)


def test_the_generative_classifier_is_accurate(by_label):
    X, y = labelled(2000, 2)
    # The classes overlap a little: Bayes' error with the true densities is about 2.5 %.
    assert (by_label.predict(X) == y).mean() > 0.95


def test_samples_of_a_class_score_highest_under_it(by_label):
    for label in by_label.classes_:
        drawn = by_label.sample(500, y=label, random_state=0)
        own = by_label.score_samples(drawn, np.full(500, label)).mean()
        for other in set(by_label.classes_) - {label}:
            assert own > by_label.score_samples(drawn, np.full(500, other)).mean() + 1.0


def test_samples_have_the_class_and_context_moments(by_label, by_context):
    drawn = by_label.sample(4000, y=2, random_state=0)
    np.testing.assert_allclose(drawn.mean(0), CENTRES[2], atol=4 * 1.0 / np.sqrt(4000) + 0.05)
    drawn = by_context.sample(4000, y=[1.5], random_state=0)
    np.testing.assert_allclose(drawn.mean(0), [3.0, -1.5], atol=4 / np.sqrt(4000) + 0.05)
    np.testing.assert_allclose(drawn.std(0), [0.5, 1.0], rtol=0.08)


def test_one_label_or_context_per_draw(by_label, by_context):
    labels = np.array([0, 2, 1, 2])
    drawn = by_label.sample(4, y=labels, random_state=0)
    assert by_label.predict(drawn).tolist() == labels.tolist()
    contexts = np.array([[-3.0], [3.0]])
    drawn = by_context.sample(2, y=contexts, random_state=0)
    assert drawn[0, 0] < -3 and drawn[1, 0] > 3


def test_sample_and_log_prob_agrees_with_log_prob(by_label, by_context):
    for model, y in ((by_label, 1), (by_context, [0.3])):
        X, log_prob = model.sample_and_log_prob(200, random_state=0, y=y)
        rows_y = np.full(200, y) if model is by_label else np.repeat([y], 200, axis=0)
        np.testing.assert_allclose(log_prob, model.score_samples(X, rows_y), rtol=1e-12)


def test_given_a_prefix_and_a_label_the_rest_is_drawn_from_its_conditional(by_label):
    drawn = by_label.sample(3000, y=1, given=[5.0], random_state=0)
    assert (drawn[:, 0] == 5.0).all()
    # Class 1 is N((4, 0), [[1.36, .48], [.48, .64]]): x1 | x0 = 5 is N(0.353, 0.686^2).
    assert drawn[:, 1].mean() == pytest.approx(0.353, abs=4 * 0.686 / np.sqrt(3000) + 0.05)
    assert drawn[:, 1].std() == pytest.approx(0.686, rel=0.08)


def test_tensors_in_give_differentiable_tensors_out(by_context):
    X, c = contextual(5, 3)
    t = torch.tensor(X, requires_grad=True)
    log_prob = by_context.log_prob(t, torch.as_tensor(c))
    assert isinstance(log_prob, torch.Tensor)
    log_prob.sum().backward()
    step = 1e-6
    bumped = X.copy()
    bumped[:, 0] += step
    numeric = (by_context.score_samples(bumped, c) - by_context.score_samples(X, c)) / step
    np.testing.assert_allclose(t.grad[:, 0].numpy(), numeric, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------- files
def test_labels_of_any_kind_survive_a_file(tmp_path):
    X, y = labelled(600, 4)
    names = np.array(["cat", "dog", "emu"])[y]
    model = GMM(2, conditional=True, random_state=0).fit(X, names)
    model.save(tmp_path / "m.ldelib")
    loaded = ldelib.load(tmp_path / "m.ldelib")
    assert loaded.classes_.tolist() == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(loaded.score_samples(X, names), model.score_samples(X, names))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(
        loaded.sample(3, y="dog", random_state=1), model.sample(3, y="dog", random_state=1)
    )


def test_a_context_survives_a_file(tmp_path, by_context):
    X, c = contextual(10, 5)
    by_context.save(tmp_path / "c.ldelib")
    loaded = ldelib.load(tmp_path / "c.ldelib")
    assert loaded.n_context_features_ == 1
    np.testing.assert_array_equal(loaded.score_samples(X, c), by_context.score_samples(X, c))


def test_a_file_whose_components_name_no_class_is_refused(tmp_path, by_label):
    by_label.save(tmp_path / "m.ldelib")
    loaded = ldelib.load(tmp_path / "m.ldelib")
    broken = loaded.component_class_.copy()
    broken[:] = 0
    loaded.component_class_ = broken
    with pytest.raises(ValueError, match="component_class_ must name each of the 3 classes"):
        loaded._restored()


# -------------------------------------------------------------- bad input
def test_tied_covariances_cannot_be_fitted_per_class():
    X, y = labelled(300, 0)
    with pytest.raises(ValueError, match="covariance_type='tied'"):
        GMM(2, covariance_type="tied", conditional=True).fit(X, y)
    X, c = contextual(300, 0)
    GMM(2, covariance_type="tied", conditional=True, random_state=0).fit(X, c)  # joint: fine


def test_a_class_with_too_few_rows_is_named():
    X, y = labelled(300, 0)
    y[:2] = 7
    with pytest.raises(ValueError, match=r"Class 7 \(2 rows\): GMM needs at least"):
        GMM(5, conditional=True, random_state=0).fit(X, y)


def test_refitting_without_y_forgets_the_classes(by_label):
    X, y = labelled(300, 0)
    model = GMM(2, conditional=True, random_state=0).fit(X, y)
    model.set_params(conditional=False).fit(X, y)
    assert not hasattr(model, "classes_") and not hasattr(model, "component_class_")
    assert not hasattr(model, "predict_proba")
    model.score_samples(X)


def test_the_unconditional_score_ignores_y_as_scikit_learn_passes_it():
    X, y = labelled(300, 0)
    model = GMM(2, random_state=0).fit(X, y)
    assert model.score(X, y) == model.score(X)
