"""The code that draws the gallery's figures (docs/gallery.md): the demo's densities and
the MNIST example's samples and interpolation. Their text is readable where the gallery
shows them, shrunk to the width of a page, and the tiles of decoded images are laid out
pixel for pixel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.text import Text

from ldelib.cli import _demo
from ldelib.datasets import make_target

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: The width, in pixels, of the documentation's text column (furo), where figures shrink to.
PAGE_PX = 700
#: The smallest text, in pixels, that is comfortable to read on a screen.
READABLE_PX = 11


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smallest_text_px(fig, dpi: float) -> tuple[float, str]:
    """The smallest text of ``fig`` saved at ``dpi``, in pixels once the picture is shown
    at most ``PAGE_PX`` wide; and that text."""
    fig.canvas.draw()
    shrink = min(1.0, PAGE_PX / (fig.get_figwidth() * dpi))
    texts = [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_window_extent().width > 0
    ]
    assert texts, "the figure has no text to check"
    smallest = min(texts, key=lambda t: t.get_fontsize())
    return smallest.get_fontsize() * dpi / 72 * shrink, smallest.get_text()


class _StandIn:
    """A fitted model, as far as the demo's figure is concerned: the target itself."""

    def __init__(self, target) -> None:
        self.score_samples = target.log_prob
        self.sample = target.sample


def test_demo_figure_is_readable_at_page_width():
    target = make_target("spiral")
    models = {"CausalConvMDN": _StandIn(target), "GMM (10 full-covariance)": _StandIn(target)}
    fig = _demo.draw(target, models, seed=0)
    try:
        px, text = _smallest_text_px(fig, _demo.DPI)
    finally:
        plt.close(fig)
    assert px >= READABLE_PX, f"{text!r} is {px:.1f} px high at page width"


def test_mnist_figures_are_readable_at_page_width():
    mnist = _example("mnist_generate")
    rng = np.random.default_rng(0)
    panels = {name: rng.random((24, 28, 28)) for name in ("AE + GMM", "AE + LDE", "IAE + LDE")}
    figures = {
        "samples": mnist.samples_figure(panels),
        "interpolation": mnist.interpolation_figure(rng.random((10, 28, 28)), -rng.random(10)),
    }
    for name, fig in figures.items():
        try:
            px, text = _smallest_text_px(fig, mnist.DPI)
        finally:
            plt.close(fig)
        assert px >= READABLE_PX, f"{name}: {text!r} is {px:.1f} px high at page width"


def test_tiles_are_placed_pixel_for_pixel():
    mnist = _example("mnist_generate")
    # Tiles of distinct values, each with one marked corner: any shift, flip or overlap
    # of a tile would move or overwrite a value.
    images = np.stack([np.full((28, 28), i / 10) for i in range(7)])
    images[:, 0, -1] = 1.0
    grid = mnist.tile_grid(images, rows=2, gap=1, fill=-1.0)
    assert grid.shape == (2 * 28 + 1, 4 * 28 + 3)
    for i, image in enumerate(images):
        r, c = divmod(i, 4)
        tile = grid[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28]
        np.testing.assert_array_equal(tile, image)
    assert (grid[28, :] == -1).all() and (grid[:, 28] == -1).all()  # the gaps
    assert (grid[29:, 3 * 29 :] == -1).all()  # the empty cell
