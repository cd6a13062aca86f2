from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from ldelib.datasets import make_target
from ldelib.plot import density_grid, plot_density_2d, plot_samples_2d


def test_density_grid_orientation():
    # A density that depends on x only: rows (y) of the grid must be identical.
    xs, _, density = density_grid(lambda p: -(p[:, 0] ** 2), (-1, 1, -2, 2), resolution=5)
    assert density.shape == (5, 5)
    np.testing.assert_allclose(density[0], density[-1])
    np.testing.assert_allclose(density[0], np.exp(-(xs**2)))


def test_plots_return_their_axes():
    target = make_target("ring")
    ax = plot_density_2d(target.log_prob, (-3, 3, -3, 3), resolution=20, title="ring")
    assert ax.get_title() == "ring"
    ax = plot_samples_2d(target.sample(50, 0), (-3, 3, -3, 3), ax=ax)
    assert ax.get_xlim() == (-3, 3)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot_samples_2d(np.zeros((4, 3)))
