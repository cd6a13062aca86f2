"""The ``variations`` suite in quick mode, and its batched form of ``vary``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from marks import needs_mnist

from benchmarks import variations
from ldelib import GMM, LatentDensityEstimator


def test_keeps_are_zero_the_powers_of_two_and_d():
    assert variations.keeps(8) == [0, 1, 2, 4, 8]
    assert variations.keeps(12) == [0, 1, 2, 4, 8, 12]
    assert variations.keeps(1) == [0, 1]


def test_the_suite_takes_dims_and_an_autoencoder_cache():
    assert variations.SUITE.options == {"dims"} and variations.SUITE.uses_autoencoders


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_vary_many_draws_what_vary_draws_one_row_at_a_time(keep):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(10, 4))
    X = rng.normal(size=(300, 4)) @ W.T
    lde = LatentDensityEstimator(
        GMM(2, random_state=0),
        encoder=lambda x: x @ np.linalg.pinv(W).T,
        decoder=lambda z: z @ W.T,
    ).fit(X)
    batched = variations.vary_many(lde, X[3:4], keep, 5, random_state=7)
    assert batched.shape == (1, 5, 10)
    np.testing.assert_array_equal(
        batched[0], lde.vary(X[3], keep=keep, n_samples=5, random_state=7)
    )
    # Several rows: each keeps its own prefix, and its variations differ when keep < D.
    many = variations.vary_many(lde, X[:3], keep, 5, random_state=7)
    latents = lde.encode(many.reshape(15, 10)).reshape(3, 5, 4)
    np.testing.assert_allclose(
        latents[:, :, :keep], np.repeat(lde.encode(X[:3])[:, None, :keep], 5, 1)
    )
    assert np.ptp(latents[:, :, keep:], axis=1).min() > 0


@pytest.mark.slow
@needs_mnist
def test_quick_suite(tmp_path):
    out = tmp_path / "out"
    report = variations.run(out=out, quick=True, seeds=None, cache_dir=tmp_path / "cache")
    written = report.write(out)
    payload = json.loads(written[0].read_text())
    assert payload["suite"] == "variations" and payload["quick"] is True
    assert payload["wall_s"] > 0
    assert payload["figures"] == ["variations-quick.png", "variations-curves-quick.png"]
    for figure in payload["figures"]:
        assert (out / figure).stat().st_size > 1000

    rows = payload["rows"]
    (judge,) = [r for r in rows if r["kind"] == "classifier"]
    assert judge["dataset"] == "mnist" and 0.8 < judge["test_accuracy"] <= 1
    runs = [r for r in rows if r["kind"] == "variations"]
    assert {(r["ae"], r["k"]) for r in runs} == {
        (ae, k) for ae in ("plain", "IAE") for k in (0, 1, 2, 4, 8)
    }
    for row in runs:
        assert row["D"] == 8 and row["n_sources"] == 30 and row["n_variations"] == 8
        for key in ("class_kept", "class_kept_true_label", "class_kept_vs_reconstruction"):
            assert 0 <= row[key] <= 1
    for ae in ("plain", "IAE"):
        by_k = {r["k"]: r for r in runs if r["ae"] == ae}
        full = by_k[8]
        # All latents kept: every variation is the reconstruction, up to float rounding.
        assert full["pixel_distance_to_source"] < 1e-5
        assert full["pixel_distance_between"] < 1e-5
        assert full["class_kept_vs_reconstruction"] == 1.0
        # Fewer latents kept: the variations move away from the source and from each other.
        assert by_k[0]["pixel_distance_to_source"] > 0.01
        assert by_k[0]["pixel_distance_between"] > 0.01
        assert by_k[0]["pixel_distance_to_source"] > by_k[4]["pixel_distance_to_source"]
        # Keeping everything keeps the class at least as well as any k, within noise.
        for k, row in by_k.items():
            noise = 2 * math.hypot(row["class_kept_se"], full["class_kept_se"])
            assert row["class_kept"] <= full["class_kept"] + noise, (ae, k)
        # An ordinary sample (k = 0) keeps the source's class less often than the
        # reconstruction does.
        assert by_k[0]["class_kept"] < full["class_kept"]
        assert by_k[0]["class_kept_vs_reconstruction"] < 0.6
    density = [r for r in rows if r["kind"] == "density"]
    assert {r["ae"] for r in density} == {"plain", "IAE"}
    assert all(math.isfinite(r["lde_test_ll"]) for r in density)

    markdown = written[1].read_text()
    assert markdown.startswith("# Benchmark `variations` (quick)")
    assert markdown.count("| dataset | D | ae | seed | k=0 | k=1 | k=2 | k=4 | k=8 |") == 5
    assert "| dataset | n_train | n_test | test_accuracy |" in markdown
    targets = [n for n in payload["notes"] if n.startswith("Target (mnist, D=8)")]
    assert len(targets) == 1 and ("holds" in targets[0] or "fails" in targets[0])
    assert "k = D/4 = 2" in targets[0]
    # Each by-k table row says what the per-k rows say.
    table = next(
        r
        for r in rows
        if r["kind"] == "by_k" and r["quantity"] == "class_kept" and r["ae"] == "IAE"
    )
    assert table["k=2"] == next(r["class_kept"] for r in runs if r["ae"] == "IAE" and r["k"] == 2)
