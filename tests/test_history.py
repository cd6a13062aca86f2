"""ldelib._history: what a training run reports, and how its progress bar shows it."""

from __future__ import annotations

from ldelib._history import Display, TrainingHistory


def test_the_score_kept_is_that_of_the_weights_kept():
    history = TrainingHistory(validation_scores=[1.0, 3.0, 2.0], best_epoch=1, best_round=1)
    assert history.best_validation_score == 3.0
    # The untrained weights kept (keep_initial): their own score.
    untrained = TrainingHistory(
        validation_scores=[1.0], best_epoch=-1, initial_validation_score=5.0
    )
    assert untrained.best_validation_score == 5.0
    # Training ended before any weights could be selected: the last ones were kept.
    cut = TrainingHistory(validation_scores=[1.0, 2.0], best_epoch=1)
    assert cut.best_validation_score == 2.0
    assert TrainingHistory().best_validation_score is None


def test_the_bar_shows_values_in_the_units_of_the_data():
    nats = Display("train nll", "valid ll", "nats/row", lambda l: 8 * l, lambda s: 8 * s - 1)
    assert nats.postfix(2.0, -2.5) == {"train nll": "16 nats/row", "valid ll": "-21 nats/row"}
    assert nats.postfix(2.0, None) == {"train nll": "16 nats/row"}
    assert Display().postfix(0.5, 0.25) == {"loss": "0.5", "valid": "0.25"}
