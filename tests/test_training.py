from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from ldelib.training import TrainingConfig, train_module


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    module = torch.nn.Linear(3, 1)
    X = torch.randn(300, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(300)
    data = torch.cat([X, y[:, None]], dim=1)
    return module, data[:240], data[240:]


def run_training(module, loss_fn, X_train, X_valid, *, optimizer, generator, **options):
    """train_module, with the keywords of its TrainingConfig among the others."""
    calls = {k: options.pop(k) for k in ("score_fn", "on_step", "distributed") if k in options}
    config = TrainingConfig(**options)
    return train_module(
        module,
        loss_fn,
        X_train,
        X_valid,
        config,
        optimizer=optimizer,
        generator=generator,
        **calls,
    )


def _mse(module):
    return lambda batch: ((module(batch[:, :3]).squeeze(-1) - batch[:, 3]) ** 2).mean()


def test_early_stopping_restores_the_best_weights():
    module, train, valid = _setup()
    loss = _mse(module)
    history = run_training(
        module,
        loss,
        train,
        valid,
        optimizer=torch.optim.SGD(module.parameters(), lr=0.5),  # noisy: scores go up and down
        max_epochs=60,
        batch_size=16,
        n_iter_no_change=5,
        generator=torch.Generator().manual_seed(0),
    )
    assert history.n_iter < 60
    assert history.n_iter - 1 - history.best_epoch == 5
    with torch.no_grad():
        assert -float(loss(valid)) == pytest.approx(max(history.validation_scores), rel=1e-6)
    assert not module.training


def _nan_after(module, epochs: int, batches_per_epoch: int):
    calls = {"n": 0}
    loss = _mse(module)

    def nan_loss(batch):
        calls["n"] += 1
        value = loss(batch)
        return value * float("nan") if calls["n"] > epochs * batches_per_epoch else value

    return nan_loss


def test_non_finite_loss_recovers_the_best_weights():
    module, train, valid = _setup()
    loss_fn = _nan_after(module, epochs=3, batches_per_epoch=4)
    with pytest.warns(ConvergenceWarning, match="epoch 3"):
        history = run_training(
            module,
            loss_fn,
            train,
            valid,
            optimizer=torch.optim.Adam(module.parameters(), lr=1e-2),
            max_epochs=50,
            batch_size=60,
            n_iter_no_change=50,
            generator=torch.Generator().manual_seed(0),
            score_fn=lambda v: -float(_mse(module)(v)),
        )
    assert history.n_iter == 4
    assert history.non_finite == "training loss at epoch 3"
    assert all(torch.isfinite(p).all() for p in module.parameters())
    with torch.no_grad():
        assert -float(_mse(module)(valid)) == pytest.approx(max(history.validation_scores))
    # The kept weights' score is the best validation, not the one of their epoch's index.
    assert history.best_validation_score == max(history.validation_scores)
    assert history.validation_scores[history.best_round] == history.best_validation_score


def test_non_finite_loss_before_any_good_weights_is_an_error():
    module, train, valid = _setup()
    with pytest.raises(FloatingPointError, match="epoch 0"):
        run_training(
            module,
            _nan_after(module, 0, 1),
            train,
            valid,
            optimizer=torch.optim.Adam(module.parameters()),
            max_epochs=5,
            batch_size=60,
            n_iter_no_change=5,
            generator=torch.Generator().manual_seed(0),
        )


def test_mdn_with_an_absurd_learning_rate_never_returns_a_broken_model():
    from ldelib import CausalConvMDN

    X = np.random.default_rng(0).normal(size=(300, 2))
    model = CausalConvMDN(
        n_components=2,
        max_epochs=30,
        device="cpu",
        architecture="paper",
        learning_rate=1e3,
        random_state=0,
    )
    try:
        model.fit(X)
    except FloatingPointError as error:
        assert "epoch" in str(error)
    else:
        assert np.isfinite(model.score_samples(X)).all()


def test_learning_rate_halves_on_plateaus():
    module, train, valid = _setup()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    scores = iter([1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    history = run_training(
        module,
        _mse(module),
        train,
        valid,
        optimizer=optimizer,
        max_epochs=8,
        batch_size=240,
        n_iter_no_change=10,
        generator=torch.Generator().manual_seed(0),
        score_fn=lambda v: next(scores),
        lr_decay_patience=3,
    )
    # Best at epoch 1; epochs 4 and 7 are 3 and 6 epochs past it.
    assert history.best_epoch == 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 4)


@pytest.mark.parametrize("validate", [True, False])
def test_time_budget_ends_training_and_keeps_the_best_weights(validate):
    module, train, valid = _setup()
    steps: list[int] = []
    history = run_training(
        module,
        _mse(module),
        train,
        valid if validate else None,
        optimizer=torch.optim.Adam(module.parameters(), lr=1e-2),
        max_epochs=10_000,
        batch_size=16,
        n_iter_no_change=10_000,
        generator=torch.Generator().manual_seed(0),
        on_step=lambda epoch, batch, n: steps.append(batch),
        max_time=1e-9,  # spent after the first step: the first epoch ends there
    )
    assert len(train) > 16 and steps == [0]
    assert history.timed_out
    assert history.n_iter == 1 and history.best_epoch == 0
    # The cut epoch's weights were validated, and kept (the only ones).
    assert history.validation_steps == ([1] if validate else [])


@pytest.mark.parametrize("value", [0, -1.0, "10", True, float("nan")])
def test_max_time_is_checked(value):
    from ldelib import GMMN, CausalConvMDN

    X = np.random.default_rng(0).normal(size=(20, 2))
    for model in (CausalConvMDN(max_time=value), GMMN(max_time=value)):
        with pytest.raises(ValueError, match="max_time"):
            model.fit(X)


def _train(module, train, valid, **options):
    """train_module with SGD and the options of these tests, overridable."""
    settings = {
        "optimizer": torch.optim.SGD(module.parameters(), lr=options.pop("lr", 0.01)),
        "max_epochs": 2,
        "batch_size": 240,
        "n_iter_no_change": 100,
        "generator": torch.Generator().manual_seed(0),
        **options,
    }
    return run_training(module, _mse(module), train, valid, **settings)


def test_on_step_sees_every_iteration_and_names_the_phase():
    module, train, valid = _setup()
    calls = []

    def on_step(epoch, batch, n_batches):
        calls.append((epoch, batch, n_batches))
        return "of the warm-up" if epoch == 0 else None

    _train(
        module,
        train,
        valid,
        max_epochs=2,
        batch_size=100,  # 240 rows: 3 batches,
        n_iter_no_change=5,
        on_step=on_step,
    )
    assert calls == [(e, b, 3) for e in range(2) for b in range(3)]


def test_epochs_before_select_from_epoch_are_never_kept():
    module, train, valid = _setup()
    # The warm-up epochs score best, yet only epochs from 3 on may be kept.
    scores = iter([9.0, 8.0, 7.0, 1.0, 2.0, 1.5, 1.0])
    history = _train(
        module,
        train,
        valid,
        max_epochs=7,
        batch_size=240,
        n_iter_no_change=2,
        score_fn=lambda v: next(scores),
        select_from_epoch=3,
    )
    assert history.best_epoch == 4
    assert history.validation_scores == [9.0, 8.0, 7.0, 1.0, 2.0, 1.5, 1.0]
    assert history.n_iter == 7  # patience counts from epoch 4, the best selectable one


def test_training_that_ends_before_select_from_epoch_keeps_the_last_weights():
    module, train, valid = _setup()
    history = _train(
        module,
        train,
        valid,
        max_epochs=2,
        batch_size=60,
        n_iter_no_change=2,
        select_from_epoch=5,
    )
    assert history.best_epoch == 1 and history.n_iter == 2


def test_validate_every_steps():
    module, train, valid = _setup()
    history = _train(
        module,
        train,
        valid,
        lr=0.05,
        max_epochs=3,
        batch_size=24,  # 10 steps per epoch,
        n_iter_no_change=100,
        validate_every=4,
    )
    # Every 4 steps, and once more for the 2 steps after the last of them.
    assert history.validation_steps == [4, 8, 12, 16, 20, 24, 28, 30]
    assert len(history.validation_scores) == 8
    with torch.no_grad():
        assert -float(_mse(module)(valid)) == pytest.approx(max(history.validation_scores))
    # The kept weights' score is the best validation, not the one of their epoch's index.
    assert history.best_validation_score == max(history.validation_scores)
    assert history.validation_scores[history.best_round] == history.best_validation_score


def test_validate_every_stops_early_by_validations():
    module, train, valid = _setup()
    scores = iter([1.0, 2.0, 1.0, 1.0, 1.0, 5.0])
    history = _train(
        module,
        train,
        valid,
        max_epochs=50,
        batch_size=24,
        n_iter_no_change=3,
        score_fn=lambda v: next(scores),
        validate_every=2,
    )
    assert history.validation_scores == [1.0, 2.0, 1.0, 1.0, 1.0]
    assert history.validation_steps[-1] == 10 and history.best_epoch == 0
    assert history.best_round == 1 and history.best_validation_score == 2.0


def test_a_model_validating_more_often_than_each_epoch_reports_its_best_score():
    """More validations than epochs (or fewer) must not index scores by epoch."""
    from ldelib import CausalConvMDN

    # A curved dependence, which the network gains on from its first steps (on Gaussian
    # rows the untrained mixture stays best, and no validation score is the best).
    X = np.random.default_rng(0).normal(size=(3000, 4))
    X[:, 1] = X[:, 0] ** 2 + 0.3 * X[:, 1]
    for every in (10, 2000):
        model = CausalConvMDN(validate_every=every, max_epochs=2, random_state=0).fit(X)
        assert model.best_epoch_ >= 0
        assert model.best_validation_score_ == pytest.approx(max(model.validation_scores_))


def _steps(module, train, valid, seed=0, **options):
    from ldelib.training import training_steps

    return training_steps(
        module,
        _mse(module),
        train,
        valid,
        TrainingConfig(**{"max_epochs": 30, "batch_size": 16, "n_iter_no_change": 30, **options}),
        optimizer=torch.optim.SGD(module.parameters(), lr=0.05),
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("validate_every", [None, 7])
def test_training_steps_pause_after_each_validation_and_train_as_train_module(validate_every):
    from ldelib.training import run_to_end

    module, train, valid = _setup()
    steps = _steps(module, train, valid, validate_every=validate_every)
    seen = []
    for history in steps:  # one pause per validation, the history so far
        seen.append(len(history.validation_scores))
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 30
    # Without pauses it is train_module, and pausing changes nothing: the same scores
    # and weights each way.
    plain, train2, valid2 = _setup()
    history = run_training(
        plain,
        _mse(plain),
        train2,
        valid2,
        optimizer=torch.optim.SGD(plain.parameters(), lr=0.05),
        generator=torch.Generator().manual_seed(0),
        max_epochs=30,
        batch_size=16,
        n_iter_no_change=30,
        validate_every=validate_every,
    )
    again, train3, valid3 = _setup()
    resumed = run_to_end(_steps(again, train3, valid3, validate_every=validate_every))
    assert resumed.validation_scores == history.validation_scores
    # Each validation pauses, but one of the steps left after the last epoch: it ends.
    assert len(history.validation_scores) == len(seen) + (validate_every is not None)
    for a, b in ((module, plain), (again, plain)):
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def test_training_steps_end_where_the_caller_says_with_the_best_weights():
    module, train, valid = _setup()
    loss = _mse(module)
    steps = _steps(module, train, valid)
    next(steps)
    next(steps)  # paused after the second epoch's validation
    with pytest.raises(StopIteration) as end:
        steps.send(True)  # ends there, as early stopping would
    history = end.value.value
    assert history.n_iter == 2 and not history.timed_out and not module.training
    with torch.no_grad():
        assert -float(loss(valid)) == pytest.approx(max(history.validation_scores), rel=1e-6)
    assert history.best_epoch == int(np.argmax(history.validation_scores))


def test_a_first_turn_pauses_the_first_epoch_once_where_its_time_is_up():
    module, train, valid = _setup()
    steps = _steps(module, train, valid, first_turn_s=0.0)  # up at the first step
    paused = [list(next(steps).validation_steps) for _ in range(3)]
    # Mid-epoch after one step, then at the ends of the epochs (15 steps each) only.
    assert paused == [[1], [1, 15], [1, 15, 30]]
    ended = _steps(*_setup(), first_turn_s=0.0)
    next(ended)
    with pytest.raises(StopIteration) as end:
        ended.send(True)  # ended at the first turn: that validation is not repeated
    assert end.value.value.validation_steps == [1] and end.value.value.n_iter == 1
    # One step an epoch: the first turn's validation is the epoch's, and it pauses once.
    module, train, valid = _setup()
    short = _steps(module, train[:16], valid, first_turn_s=0.0)
    assert [list(next(short).validation_steps) for _ in range(3)] == [[1], [1, 2], [1, 2, 3]]
