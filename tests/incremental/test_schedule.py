"""The schedule of active latent dimensions and the mask's gradients."""

from __future__ import annotations

import pytest
import torch

from ldelib.incremental import active_dims

D = 8


# ----------------------------------------------------------------------- schedule
@pytest.mark.parametrize(
    ("epoch", "batch", "expected"),
    [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 5), (1, 3, 8), (2, 0, 8), (7, 2, 8)],
)
def test_schedule_at_chosen_iterations(epoch, batch, expected):
    assert active_dims(8, 2, epoch, batch, 4) == expected


def test_schedule_is_the_papers_formula():
    for latent, warmup, n in [(8, 2, 4), (16, 5, 7), (3, 10, 13), (100, 100, 430), (5, 1.5, 3)]:
        for epoch in range(int(warmup) + 3):
            for batch in range(n):
                paper = int(latent * (epoch + batch / n) / warmup + 1)
                assert active_dims(latent, warmup, epoch, batch, n) == min(latent, paper)


def test_schedule_without_warmup_and_monotone():
    assert active_dims(8, 0, 0, 0, 4) == 8
    steps = [active_dims(10, 3, e, b, 5) for e in range(5) for b in range(5)]
    assert steps[0] == 1
    assert steps == sorted(steps)
    assert steps[-1] == 10


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 2, 0, 0, 4), "latent_dim"),
        ((8, -1, 0, 0, 4), "warmup_epochs"),
        ((8, 2, -1, 0, 4), "epoch"),
        ((8, 2, 0, 4, 4), "batch"),
        ((8, 2, 0, 0, 0), "n_batches"),
    ],
)
def test_schedule_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        active_dims(*args)


# ------------------------------------------------------------------- the mask
def test_masked_dimensions_get_no_gradient(small, small_iae):
    # 40 rows, batch_size=10, no validation: 4 iterations per epoch, so iteration i
    # is (epoch, batch) = divmod(i, 4) and its active prefix is known.
    iae = small_iae()
    grads: list[torch.Tensor] = []
    decoder_inputs: list[torch.Tensor] = []

    def on_latent(module, inputs, z):
        if z.requires_grad:
            z.register_hook(lambda g: grads.append(g.detach().clone()))

    def on_decoder_input(module, inputs):
        if torch.is_grad_enabled():
            decoder_inputs.append(inputs[0].detach().clone())

    # Hooks travel with the deep copies made at fit.
    iae.encoder.register_forward_hook(on_latent)
    iae.decoder.register_forward_pre_hook(on_decoder_input)
    iae.fit(small)
    assert len(grads) == len(decoder_inputs) == 12
    for i, (grad, z_in) in enumerate(zip(grads, decoder_inputs, strict=True)):
        k = active_dims(D, 2, *divmod(i, 4), 4)
        assert torch.all(grad[:, k:] == 0), f"iteration {i}: gradient reached masked dims"
        assert torch.all(grad[:, :k].abs().sum(0) > 0), f"iteration {i}: active dim unused"
        assert torch.all(z_in[:, k:] == 0)
        assert torch.all(z_in[:, :k] != 0)
    assert [active_dims(D, 2, *divmod(i, 4), 4) for i in (0, 2, 4, 8)] == [1, 3, 5, 8]


def test_history_follows_the_schedule(small, small_iae):
    iae = small_iae(max_epochs=4).fit(small)
    assert iae.n_batches_ == 4
    assert iae.n_warmup_epochs_ == 2
    assert iae.active_dims_curve_ == [4, 8, 8, 8]
    assert iae.n_iter_ == len(iae.loss_curve_) == 4
    assert iae.validation_scores_ == []
    assert iae.best_validation_score_ is None
    assert iae.best_epoch_ == 3
