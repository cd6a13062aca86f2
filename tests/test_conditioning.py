"""What every model does with y: checks at fit, at scoring and at sampling, in the
caller's terms (ldelib._conditions, ldelib._conditioning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ldelib import GMM
from ldelib._conditions import Context, Labels, fit_condition

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 2))
LABELS = (X[:, 0] > 0).astype(int)
CONTEXT = RNG.normal(size=(200, 2))


@pytest.fixture(scope="module")
def by_label():
    return GMM(1, conditional=True, random_state=0).fit(X, LABELS)


@pytest.fixture(scope="module")
def by_context():
    return GMM(1, conditional=True, random_state=0).fit(X, CONTEXT)


@pytest.fixture(scope="module")
def plain():
    return GMM(1, random_state=0).fit(X)


# -------------------------------------------------------------------- values
def test_labels_are_coded_by_their_sorted_position():
    labels, codes = fit_condition(np.array(["b", "a", "b"]), 3, standardize=True)
    assert isinstance(labels, Labels)
    assert labels.classes.tolist() == ["a", "b"] and codes.tolist() == [1, 0, 1]
    assert labels.codes(np.array(["a"]), 1).tolist() == [0]
    # Whole floats and ints name the same class.
    labels, codes = fit_condition(np.array([1.0, 2.0, 1.0]), 3, standardize=True)
    assert labels.codes([2], 1).tolist() == [1]


def test_a_context_is_standardised_and_a_constant_feature_only_centred():
    y = np.c_[np.arange(4.0), np.full(4, 5.0)]
    context, encoded = fit_condition(y, 4, standardize=True)
    assert isinstance(context, Context) and context.width == 2
    np.testing.assert_allclose(encoded.mean(0), 0.0, atol=1e-15)
    np.testing.assert_allclose(encoded[:, 0].std(), 1.0)
    assert (encoded[:, 1] == 0).all()
    _, raw = fit_condition(y, 4, standardize=False)
    np.testing.assert_array_equal(raw, y)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (None, "conditional=True, so fit needs y"),
        (np.zeros(5), r"one entry per row of X \(4\)"),
        (np.zeros((4, 1, 1)), "one entry per row"),
        (np.array([0.5, 1.0, 2.0, 0.0]), r"not whole numbers; pass a continuous context as a 2-D"),
        (np.array([0.0, np.nan, 1.0, 1.0]), "labels must be finite"),
        (np.array([[0.0], [np.inf], [1.0], [1.0]]), "a context must be finite"),
        (np.array([["a"], ["b"], ["c"], ["d"]]), "must hold numbers"),
        (np.zeros((4, 0)), "no context features"),
        (np.array([None, 1, 2, 3], dtype=object), "Class labels must be"),
    ],
)
def test_a_bad_training_y_is_refused(y, message):
    with pytest.raises(ValueError, match=message):
        fit_condition(y, 4, standardize=True)


def test_a_conditional_fit_needs_rows_in_memory(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    with pytest.raises(ValueError, match="A conditional fit takes X in memory"):
        GMM(1, conditional=True).fit(path, LABELS)


# ------------------------------------------------------------------ fitted
def test_a_model_fitted_without_y_refuses_one(plain):
    for call in (
        lambda: plain.score_samples(X, LABELS),
        lambda: plain.log_prob(X, LABELS),
        lambda: plain.sample(3, y=1),
        lambda: plain.sample_and_log_prob(3, y=1),
    ):
        with pytest.raises(ValueError, match=r"fitted without y.*conditional=True"):
            call()


def test_a_positional_n_dims_is_pointed_to_its_keyword(plain):
    with pytest.raises(ValueError, match="A prefix marginal takes n_dims=k by keyword"):
        plain.log_prob(X, 1)


def test_a_model_fitted_with_y_requires_it(by_label, by_context):
    with pytest.raises(ValueError, match=r"fitted on class labels \(classes_ = \[0, 1\]\)"):
        by_label.score_samples(X)
    with pytest.raises(ValueError, match="fitted on a context of 2 features"):
        by_context.sample(3)
    with pytest.raises(ValueError, match="pass y"):
        by_label.score(X)


def test_an_unseen_label_names_the_known_classes(by_label):
    with pytest.raises(ValueError, match=r"not fitted on: \[7\]; the known classes are \[0, 1\]"):
        by_label.score_samples(X[:2], [0, 7])
    with pytest.raises(ValueError, match=r"not fitted on: \['x'\]"):
        by_label.sample(2, y="x")


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (LABELS[:5], "5 labels for 200 rows"),
        (np.c_[LABELS], "must be a 1-D array of labels"),
    ],
)
def test_bad_labels_when_scoring(by_label, y, message):
    with pytest.raises(ValueError, match=message):
        by_label.score_samples(X, y)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (CONTEXT[:, :1], "has 1 context features, but the model was fitted on 2"),
        (CONTEXT[:5], "5 rows for 200 rows of X"),
        (CONTEXT[:, 0], r"must be a 2-D array of shape \(n_samples, 2\)"),
        (np.where(CONTEXT > 1, np.nan, CONTEXT), "NaN or infinity"),
    ],
)
def test_bad_contexts_when_scoring(by_context, y, message):
    with pytest.raises(ValueError, match=message):
        by_context.score_samples(X, y)


def test_draws_take_one_condition_or_one_per_draw(by_label, by_context):
    assert by_label.sample(3, y=1).shape == (3, 2)
    assert by_label.sample(3, y=[0, 1, 1]).shape == (3, 2)
    with pytest.raises(
        ValueError, match=r"one label, shared by every draw, or one per draw \(3\)"
    ):
        by_label.sample(3, y=[0, 1])
    assert by_context.sample(3, y=[0.0, 1.0]).shape == (3, 2)
    with pytest.raises(ValueError, match=r"one row per draw \(3\); got 2 rows"):
        by_context.sample(3, y=np.zeros((2, 2)))


def test_the_classifier_exists_only_on_a_model_fitted_on_labels(by_label, by_context, plain):
    assert hasattr(by_label, "predict_proba") and hasattr(by_label, "predict")
    for model in (by_context, plain, GMM()):
        assert not hasattr(model, "predict_proba")
        with pytest.raises(AttributeError) as raised:
            model.predict(X)
        # scikit-learn's available_if says which attribute; the cause says why, and how.
        assert "classifier only once fitted on class labels" in str(raised.value.__cause__)


def test_labels_and_contexts_may_be_tensors(by_label, by_context):
    np.testing.assert_array_equal(
        by_label.score_samples(X, torch.as_tensor(LABELS)), by_label.score_samples(X, LABELS)
    )
    np.testing.assert_array_equal(
        by_context.score_samples(X, torch.as_tensor(CONTEXT)),
        by_context.score_samples(X, CONTEXT),
    )


def test_scores_written_to_a_file_take_y(tmp_path, by_label):
    out = by_label.score_samples(X, LABELS, tmp_path / "ll.npy")
    np.testing.assert_array_equal(out, by_label.score_samples(X, LABELS))


# ----------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=30
    ).filter(lambda v: len({type(x) for x in v}) == 1)
)
def test_labels_come_back_from_their_codes(values):
    y = np.asarray(values)
    labels, codes = fit_condition(y, len(y), standardize=True)
    assert isinstance(labels, Labels)
    assert labels.classes.tolist() == sorted(set(values))
    np.testing.assert_array_equal(labels.classes[codes], y)
    np.testing.assert_array_equal(labels.codes(y, len(y)), codes)


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float64, st.tuples(st.integers(2, 20), st.integers(1, 3)), elements=st.floats(-1e6, 1e6)
    )
)
def test_a_context_is_encoded_exactly_and_invertibly(y):
    context, encoded = fit_condition(y, len(y), standardize=True)
    assert isinstance(context, Context)
    assert np.isfinite(encoded).all()
    np.testing.assert_allclose(encoded * context.scale + context.mean, y, rtol=1e-9, atol=1e-6)


def test_a_refit_with_a_bad_y_leaves_the_fitted_model_as_it_was(by_label):
    model = GMM(1, conditional=True, random_state=0).fit(X, LABELS)
    before = dict(vars(model))
    scores = model.score_samples(X, LABELS)
    for bad in (LABELS[:5], np.full(len(X), np.nan), None):
        with pytest.raises(ValueError):
            model.fit(X, bad)
        assert set(vars(model)) == set(before)
        np.testing.assert_array_equal(model.score_samples(X, LABELS), scores)
