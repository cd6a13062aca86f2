"""Whether a fitted model is numerically sound: the last guard against a diverged fit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .base import BaseDensityEstimator

__all__ = ["check_sound"]


def check_sound(model: BaseDensityEstimator, Z: np.ndarray) -> None:
    """Raise FloatingPointError if training left a numerically broken model.

    A model whose samples are not finite or fly off far beyond the data, or that
    scores its own training rows far below a diagonal Gaussian, diverged: training
    kept the best weights it saw, and even those are unusable.
    """
    generator = torch.Generator(device=torch.device(model.device_)).manual_seed(0)
    with torch.no_grad():
        S = model._sample(256, generator).to("cpu", torch.float64).numpy()
    reach = float(np.abs(S).max()) if np.isfinite(S).all() else math.inf
    problem = None
    if reach > 1e3 * max(1.0, float(np.abs(Z).max())):
        problem = (
            "its samples hold NaN or infinite values"
            if math.isinf(reach)
            else f"its samples reach {reach:.3g} standard deviations from the mean"
        )
    elif model._has_log_prob():
        rows = torch.as_tensor(Z[:1024], dtype=model._dtype, device=torch.device(model.device_))
        with torch.no_grad():
            score = float(model._log_prob(rows).mean()) / Z.shape[1]
        # A diagonal Gaussian of the same rows, columns floored at 1e-3 std (a
        # constant column would make it infinite).
        gaussian = -0.5 * (math.log(2 * math.pi) + 1) - float(
            np.log(np.maximum(Z.std(axis=0), 1e-3)).mean()
        )
        if not score > gaussian - 10.0:
            problem = (
                f"it scores its training rows at {score:.4g} nats per dimension (in "
                f"standard units), far below a diagonal Gaussian's {gaussian:.4g}"
            )
    if problem is not None:
        lr = getattr(model, "learning_rate", None)
        hint = f" (now {lr})" if lr is not None else ""
        raise FloatingPointError(
            f"{type(model).__name__} diverged while training: {problem}. Lower "
            f"learning_rate{hint}, or check the data for extreme values."
        )
