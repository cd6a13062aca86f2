"""The race of the latent density estimator's starts: trainings in turns (interleave)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ldelib.distributed import Context
from ldelib.models import _race
from ldelib.models._race import RATE_WINDOW, interleave
from ldelib.training import TrainingHistory

SOLO = Context(0, 1, 0, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_race, "time", SimpleNamespace(perf_counter=clock))
    return clock


def scripted(name, scores, cost, clock, turns, deadline=None, initial=None):
    """A training whose validations score ``scores`` in turn, each after ``cost``
    seconds; it ends after the last, at ``deadline``, or when told to, as
    training_steps would."""
    history = TrainingHistory(initial_validation_score=initial)
    for score in scores:
        if deadline is not None and clock.now >= deadline:
            history.timed_out = True
            break
        clock.now += cost
        turns.append(name)
        history.validation_scores.append(score)
        history.n_iter += 1
        if score > max(history.validation_scores[:-1], default=initial or -1e9):
            history.best_epoch = history.n_iter - 1
            history.best_round = len(history.validation_scores) - 1
        if (yield history):
            break
    return history


def test_a_start_that_gains_nothing_gives_its_turns_to_one_that_gains(clock):
    # The anchored start gains once, then nothing; the random one starts far below it
    # and gains every turn (dequantised digits): after a look at its rate, the anchored
    # one trains no more until the other ends.
    turns = []
    deadline = 100.0
    anchored = scripted("a", [-0.90] + [-0.905] * 99, 0.3, clock, turns, deadline, -0.91)
    rising = [-3.0 + 0.05 * i for i in range(100)]
    random = scripted("r", rising, 0.6, clock, turns, deadline)
    histories = interleave({"gmm": anchored, "random": random}, deadline, SOLO)
    assert set(histories) == {"gmm", "random"}
    while_both = turns[: len(turns) - turns[::-1].index("r")]
    assert while_both.count("a") <= RATE_WINDOW + 2
    assert turns.count("r") == 100  # all its validations, within the deadline
    assert histories["random"].validation_scores == rising


def test_a_start_that_cannot_catch_up_stops_training_while_the_other_gains(clock):
    # The random start far below, its gains shrinking (latents): once its recent rate
    # cannot reach the anchored start's score in the time left, the anchored one has it.
    turns = []
    deadline = 60.0
    anchored = scripted(
        "a", [-1.0 + 0.001 * i for i in range(200)], 0.5, clock, turns, deadline, -1.01
    )
    slowing = [-3.0 + 1.5 * (1 - 0.5**i) for i in range(200)]  # tends to -1.5
    random = scripted("r", slowing, 0.5, clock, turns, deadline)
    histories = interleave({"gmm": anchored, "random": random}, deadline, SOLO)
    assert turns.count("r") <= 12 and turns.count("a") >= 100
    # Every second went to one of them, and the deadline ended both.
    assert clock.now == pytest.approx(deadline, abs=0.5)
    assert histories["gmm"].timed_out


def test_the_one_left_trains_until_its_end(clock):
    # The first leader gains little, the other fast enough to catch up: the other has
    # every turn it asks for, to its end, and the first ends once it cannot follow.
    turns = []
    anchored = scripted("a", [-0.9, -0.89, -0.889], 1.0, clock, turns, 50.0, -0.95)
    random = scripted("r", [-2.0 + 0.05 * i for i in range(30)], 1.0, clock, turns, 50.0)
    histories = interleave({"gmm": anchored, "random": random}, 50.0, SOLO)
    assert turns[-1] == "r" and turns.count("r") == 30 and turns.count("a") <= 3
    assert len(histories["random"].validation_scores) == 30 and "gmm" in histories


def test_one_that_cannot_reach_the_best_ends_and_so_may_the_race(clock):
    # Far below, gaining too little to catch up in the time left even at its last rate:
    # it ends there with its best weights, and once the leader has ended by its own
    # rule, the race ends before the deadline, leaving the rest to what follows.
    turns = []
    anchored = scripted("a", [-0.9, -0.89, -0.889], 1.0, clock, turns, 50.0, -0.95)
    random = scripted("r", [-5.0 + 0.01 * i for i in range(30)], 1.0, clock, turns, 50.0)
    histories = interleave({"gmm": anchored, "random": random}, 50.0, SOLO)
    assert turns.count("r") == 2  # two turns to measure a gain, then too slow
    assert turns.count("a") == 3 and clock.now == pytest.approx(5.0)
    assert set(histories) == {"gmm", "random"} and not histories["random"].timed_out
    assert histories["random"].validation_scores == [-5.0, -4.99]


def test_without_a_deadline_each_trains_to_its_end_in_turn(clock):
    turns = []
    a = scripted("a", [-1.0, -0.9], 1.0, clock, turns)
    r = scripted("r", [-2.0, -0.5, -0.4], 1.0, clock, turns)
    interleave({"gmm": a, "random": r}, None, SOLO)
    assert turns == ["a", "a", "r", "r", "r"]


def test_one_not_begun_by_the_deadline_is_not_trained(clock):
    # The first start's first turn took the whole budget: the second never begins (its
    # first epoch would run past the deadline); the first always trains.
    turns = []
    a = scripted("a", [-1.0, -0.9], 10.0, clock, turns, 5.0, -1.1)
    r = scripted("r", [-2.0], 1.0, clock, turns, 5.0)
    histories = interleave({"gmm": a, "random": r}, 5.0, SOLO)
    assert turns == ["a"] and set(histories) == {"gmm"}
    assert histories["gmm"].timed_out


@pytest.mark.parametrize(("prior_gain", "search_turn"), [(1e-6, 20), (10.0, 1)])
def test_what_a_training_gained_before_the_race_counts(clock, prior_gain, search_turn):
    # The search of a mixture went on before the race, at a known gain per second: it
    # needs no turn to be judged. Too slow, it waits until the network ends; fast, it
    # goes right after the network's first turn (which has none to go by).
    turns = []
    network = scripted("a", [-1.0 + 0.01 * i for i in range(20)], 1.0, clock, turns, 100.0, -1.01)
    search = scripted("s", [-0.5] * 5, 1.0, clock, turns, 100.0, -1.01)
    prior = {"search": [(-1.0, -1.01 - prior_gain), (0.0, -1.01)]}
    interleave({"gmm": network, "search": search}, 100.0, SOLO, prior)
    assert turns.index("s") == search_turn


@pytest.mark.parametrize("lumpy", [True, False])
def test_a_lumpy_training_is_not_ended_for_a_turn_without_gain(clock, lumpy):
    # A search of mixtures: a candidate that does not improve, then one that does.
    turns = []
    network = scripted("a", [-1.0 + 0.01 * i for i in range(5)], 1.0, clock, turns, 100.0, -1.01)
    search = scripted("s", [-1.2, -1.2, -0.5], 1.0, clock, turns, 100.0, -1.2)
    steps = {"gmm": network, "search": search}
    histories = interleave(steps, 100.0, SOLO, lumpy=["search"] if lumpy else ())
    scores = histories["search"].validation_scores
    assert scores == ([-1.2, -1.2, -0.5] if lumpy else [-1.2])


def test_a_challengers_lead_ends_no_other(clock):
    # The random start must win by a clear lead, so passing the anchored start does not
    # end it: it waits, and has the turns the random start leaves when it ends.
    turns = []
    anchored = scripted("a", [-0.9] + [-0.89] * 30, 1.0, clock, turns, 100.0, -0.95)
    random = scripted("r", [-2.0 + 0.2 * i for i in range(10)], 1.0, clock, turns, 100.0)
    histories = interleave(
        {"gmm": anchored, "random": random}, 100.0, SOLO, challengers=["random"]
    )
    assert turns.count("r") == 10 and turns[-1] == "a"
    assert len(histories["gmm"].validation_scores) > 2
