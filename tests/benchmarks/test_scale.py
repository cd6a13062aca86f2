"""The ``scale`` suite in quick mode: data on disk, fits and scoring measured per process."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import SUITES, run_suite
from benchmarks.scale import QUICK, D, distributed_fit_available, rows_file
from ldelib.models import GMM, CausalConvMDN


def _out_of_core_api() -> str | None:
    """Why this build cannot fit or score from a file, or None when it can."""
    fit = inspect.signature(CausalConvMDN).parameters
    score = inspect.signature(CausalConvMDN.score_samples).parameters
    if "validate_every" not in fit:
        return "CausalConvMDN has no validate_every (out-of-core fitting not in this build)"
    if "out" not in score:
        return "score_samples has no out= (scoring to disk not in this build)"
    if "max_fit_rows" not in inspect.signature(GMM).parameters:
        return "GMM has no max_fit_rows (subsampled EM not in this build)"
    return None


needs_out_of_core = pytest.mark.skipif(
    _out_of_core_api() is not None, reason=_out_of_core_api() or ""
)


def _diagonal_gaussian(train: np.ndarray, test: np.ndarray) -> float:
    """Mean test log-likelihood of independent Gaussians fitted to the training columns."""
    mean, var = train.mean(axis=0, dtype=np.float64), train.var(axis=0, dtype=np.float64)
    z2 = (test - mean) ** 2 / var
    return float(np.mean(-0.5 * (z2 + np.log(2 * np.pi * var)).sum(axis=1)))


def test_scale_is_a_suite():
    suite = SUITES["scale"]
    assert suite.options == frozenset() and not suite.uses_autoencoders


def test_rows_file_is_written_in_chunks_reused_and_nested(tmp_path):
    small, how = rows_file(tmp_path, "train", 1000, seed=3)
    assert small is not None and how.startswith("written")
    rows = np.load(small, mmap_mode="r")
    assert rows.shape == (1000, D) and rows.dtype == np.float32
    assert np.isfinite(rows).all()
    again, how = rows_file(tmp_path, "train", 1000, seed=3)
    assert again == small and how == "reused"
    # A larger file of the same stream starts with the smaller one; the test stream differs.
    large, _ = rows_file(tmp_path, "train", 70_000, seed=3)
    assert large is not None
    np.testing.assert_array_equal(np.load(large, mmap_mode="r")[:1000], rows)
    test, _ = rows_file(tmp_path, "test", 1000, seed=3)
    assert test is not None
    assert not np.array_equal(np.load(test), rows)
    # Another seed is another file.
    other, _ = rows_file(tmp_path, "train", 1000, seed=4)
    assert other != small


def test_a_size_that_does_not_fit_on_disk_is_skipped(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        "benchmarks.scale.shutil.disk_usage",
        lambda _: usage._replace(free=10 * 2**20),
    )
    path, why = rows_file(tmp_path, "train", 10_000_000, seed=0)
    assert path is None and "GiB free" in why
    assert not list(tmp_path.glob("*.npy"))


@pytest.mark.slow
@pytest.mark.network  # the two-process fit joins over loopback
@needs_out_of_core
def test_quick_suite(tmp_path):
    report = run_suite("scale", tmp_path, quick=True)
    json_path, md_path = report.write(tmp_path)[:2]
    payload = json.loads(json_path.read_text())
    assert payload["suite"] == "scale" and payload["quick"] is True
    assert payload["config"]["sizes"] == list(QUICK.sizes)
    markdown = md_path.read_text()
    assert markdown.startswith("# Benchmark `scale` (quick)")
    assert "| N | model | data |" in markdown

    rows = payload["rows"]
    assert not [r for r in rows if r.get("error")], [r["error"] for r in rows if r.get("error")]
    (truth,) = [r for r in rows if r["kind"] == "truth"]
    assert math.isfinite(truth["test_ll"]) and truth["test_se"] > 0
    folder, seed = Path(payload["config"]["data_folder"]), payload["config"]["seed"]
    test_rows, how = rows_file(folder, "test", payload["config"]["n_test"], seed=seed)
    assert how == "reused"
    test = np.load(test_rows).astype(np.float64)
    runs = [r for r in rows if r["kind"] == "run"]
    for n in QUICK.sizes:
        at_n = {r["model"]: r for r in runs if r["N"] == n and r["data"].startswith("file")}
        lde = at_n["LDE (CausalConvMDN)"]
        (gmm,) = [r for label, r in at_n.items() if label.startswith("GMM")]
        # Untimed EM on 3,000 rows of a 5-Gaussian mixture: within a quarter of a nat per
        # dimension of the truth (0.1 measured).
        assert gmm["test_ll"] >= truth["test_ll"] - 0.25 * D
        # The LDE starts from random weights on standardised rows, about independent
        # Gaussians per column, and its 2 s budget moves it a few nats/row from there:
        # it must not end below that diagonal Gaussian by over 0.1 nat per dimension.
        train, _ = rows_file(folder, "train", n, seed=seed)
        assert lde["test_ll"] >= _diagonal_gaussian(np.load(train), test) - 0.1 * D
        for row in (lde, gmm):
            for key in ("fit_peak_anon_mb", "fit_vmhwm_mb", "score_peak_anon_mb", "score_s"):
                assert math.isfinite(row[key]) and row[key] > 0, (n, row["model"], key)
            assert math.isfinite(row["score_s_per_M_rows"]) and row["score_s_per_M_rows"] > 0
            assert math.isfinite(row["test_ll"]) and row["test_se"] > 0
            assert row["truth_ll"] == truth["test_ll"]
            # No model beats the exact density beyond sampling noise on fresh rows.
            assert row["test_ll"] <= truth["test_ll"] + 4 * math.hypot(
                truth["test_se"], row["test_se"]
            )
            # The peak includes what was held before the work started.
            assert row["fit_peak_anon_mb"] >= row["fit_base_anon_mb"]
        assert lde["steps"] > 0 and lde["s_per_M_rows"] > 0 and lde["ms_per_step"] > 0
        assert 0 < lde["setup_s"] < lde["fit_s"]

    processes = [r for r in rows if r["kind"] == "processes"]
    if distributed_fit_available():
        one, two = sorted(processes, key=lambda r: r["processes"])
        assert (one["processes"], two["processes"]) == (1, 2)
        # The same steps from the same draws: the same model, up to rounding.
        assert two["within_1se"] is True
        assert abs(two["diff_vs_1"]) <= one["test_se"]
        assert "1 vs 2 processes" in markdown
    else:
        assert not processes
        assert any("2-process run not available" in note for note in payload["notes"])


def test_a_failing_child_reports_its_error(tmp_path):
    from benchmarks.scale import _measure

    data, _ = rows_file(tmp_path, "train", 100, seed=0)
    spec = {
        "fit": {
            "model": "lde",
            "params": {"batch_size": 0},
            "data": str(data),
            "in_memory": False,
            "model_path": str(tmp_path / "m.ldelib"),
        },
        "result": str(tmp_path / "r.json"),
    }
    result = _measure(spec, timeout=120)
    assert result["error"].startswith("exit 1:") and "batch_size" in result["error"]
    assert not (tmp_path / "m.ldelib").exists()
