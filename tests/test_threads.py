from __future__ import annotations

import numpy as np
import pytest
import torch

from ldelib import GMMN, CausalConvMDN
from ldelib._threads import SMALL_STEP_FLOPS, step_flops, training_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_steps_on_the_cpu_use_one_thread_and_restore_the_setting(two_threads):
    with training_threads(SMALL_STEP_FLOPS / 2, torch.device("cpu")) as threads:
        assert threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    ("flops", "device"),
    [(SMALL_STEP_FLOPS, "cpu"), (SMALL_STEP_FLOPS / 2, "cuda"), (SMALL_STEP_FLOPS / 2, "meta")],
)
def test_large_steps_and_other_devices_keep_the_setting(two_threads, flops, device):
    with training_threads(flops, torch.device(device)) as threads:
        assert threads == 2 == torch.get_num_threads()
    assert torch.get_num_threads() == 2


def test_the_setting_is_restored_when_the_block_raises(two_threads):
    with pytest.raises(KeyboardInterrupt), training_threads(1.0, torch.device("cpu")):
        raise KeyboardInterrupt
    assert torch.get_num_threads() == 2


def test_step_flops_counts_each_trained_weight_once_per_row_and_position():
    module = torch.nn.Linear(3, 4)  # 12 weights + 4 biases
    module.bias.requires_grad_(False)  # fixed: not trained, not counted
    assert step_flops(module, rows=10, positions=5) == 12 * 10 * 5


@pytest.mark.parametrize(
    "model",
    [
        CausalConvMDN(max_epochs=2, hidden_channels=8, random_state=0, device="cpu"),
        GMMN(max_epochs=2, random_state=0, device="cpu"),
    ],
    ids=["CausalConvMDN", "GMMN"],
)
def test_a_small_fit_trains_on_one_thread_and_leaves_the_users_setting(
    two_threads, monkeypatch, model
):
    from ldelib import training

    seen = []
    # The LDE trains its starts in turns (training_steps, each stretch in its threads).
    name = "training_steps" if isinstance(model, CausalConvMDN) else "train_module"
    original = getattr(training, name)

    def spy(*args, **kwargs):
        if name == "train_module":
            seen.append(torch.get_num_threads())
            return original(*args, **kwargs)
        steps = original(*args, **kwargs)

        def recorded():
            stop = None
            while True:
                seen.append(torch.get_num_threads())
                try:
                    history = steps.send(stop)
                except StopIteration as done:
                    return done.value
                stop = yield history

        return recorded()

    module = type(model)._fit.__module__  # where the fit calls it
    monkeypatch.setattr(f"{module}.{name}", spy)
    model.fit(np.random.default_rng(0).normal(size=(200, 3)))
    assert seen and all(t == 1 for t in seen)  # init="auto" trains two starts
    assert torch.get_num_threads() == 2


def test_an_epochs_estimate_is_its_fastest_step_not_one_another_process_slowed():
    import time

    from ldelib._threads import epoch_seconds

    class Stalled(torch.nn.Module):
        """A step of 10 ms, one of them 200 ms (as if another process held the core)."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, z):
            self.calls += 1
            time.sleep(0.2 if self.calls == 2 else 0.01)  # the first timed step stalls
            return (z * self.w).sum(-1)

    seconds = epoch_seconds(Stalled, 3, 10, 100, torch.device("cpu"), torch.float32)
    # 10 batches of at least 10 ms each; the mean of the stalled step and the next: 1.05 s.
    assert 0.1 <= seconds < 0.9
