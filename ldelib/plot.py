"""Pictures of densities and samples (needs the ``plot`` extra: ``pip install ldelib[plot]``).

matplotlib is imported inside the functions, so ``import ldelib`` never needs it. Every
function takes an optional ``ax`` and returns the axes it drew on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["density_grid", "plot_density_2d", "plot_samples_2d"]

Bounds = tuple[float, float, float, float]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ldelib.plot needs matplotlib: pip install 'ldelib[plot]'") from e
    return plt


def density_grid(
    log_prob: Callable[[np.ndarray], np.ndarray], bounds: Bounds, resolution: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D log-density on a regular grid.

    Returns the grid coordinates ``x`` and ``y`` (1-D) and the density (not the log) of
    shape (resolution, resolution), indexed ``[y, x]`` as ``imshow`` expects.
    """
    x0, x1, y0, y1 = bounds
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    xx, yy = np.meshgrid(xs, ys)
    values = np.exp(np.asarray(log_prob(np.stack([xx.ravel(), yy.ravel()], axis=1))))
    return xs, ys, values.reshape(xx.shape)


def plot_density_2d(
    log_prob: Callable[[np.ndarray], np.ndarray],
    bounds: Bounds,
    ax: Axes | None = None,
    resolution: int = 200,
    title: str | None = None,
    cmap: str = "magma",
) -> Axes:
    """Draw the density ``exp(log_prob)`` over ``bounds = (xmin, xmax, ymin, ymax)``.

    ``log_prob`` is any callable from an (n, 2) array to (n,) log-densities, such as a
    fitted model's ``score_samples``.

    Example:
        >>> from ldelib.datasets import make_target
        >>> ax = plot_density_2d(make_target("ring").log_prob, (-3, 3, -3, 3), resolution=50)
    """
    plt = _pyplot()
    ax = ax if ax is not None else plt.figure().gca()
    _, _, density = density_grid(log_prob, bounds, resolution)
    ax.imshow(density, origin="lower", extent=bounds, cmap=cmap, aspect="auto")
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    if title:
        ax.set_title(title)
    return ax


def plot_samples_2d(
    samples: np.ndarray,
    bounds: Bounds | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Scatter 2-D samples (small, translucent points by default)."""
    plt = _pyplot()
    ax = ax if ax is not None else plt.figure().gca()
    samples = np.asarray(samples)
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"plot_samples_2d needs an (n, 2) array, got shape {samples.shape}.")
    kwargs = {"s": 2, "alpha": 0.4, "linewidths": 0, **scatter_kwargs}
    ax.scatter(samples[:, 0], samples[:, 1], **kwargs)
    if bounds is not None:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
    if title:
        ax.set_title(title)
    return ax
