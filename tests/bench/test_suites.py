"""Every benchmark suite in quick mode: it runs, writes its files, and its numbers hold up."""

from __future__ import annotations

import importlib
import inspect
import json
import math

import numpy as np
import pytest
from marks import needs_fashion, needs_mnist

from ldelib.bench import SUITES, run_suite
from ldelib.bench._models import MODELS
from ldelib.cli import main


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def _files(report, out):
    written = report.write(out)
    payload = json.loads(written[0].read_text())
    assert payload["suite"] == report.suite and payload["quick"] is True
    assert payload["environment"]["versions"]["torch"]
    assert payload["wall_s"] > 0
    markdown = written[1].read_text()
    assert markdown.startswith(f"# Benchmark `{report.suite}` (quick)")
    for figure in payload["figures"]:
        assert (out / figure).stat().st_size > 1000
    return payload


def test_toy_suite(out):
    report = run_suite("toy", out, quick=True)
    payload = _files(report, out)
    runs = [r for r in payload["rows"] if r.get("kind") != "summary"]
    assert {r["model"] for r in runs} >= {"truth", *MODELS} - {"zuko MAF", "zuko NSF"}
    truth = {r["target"]: r for r in runs if r["model"] == "truth"}
    for row in runs:
        assert math.isfinite(row["ll"])
        if row["model"] != "truth" and row["estimate"].startswith("exact"):
            # No model can beat the exact density beyond sampling noise on fresh data.
            t = truth[row["target"]]
            assert row["ll"] <= t["ll"] + 4 * math.hypot(t["se"], row["se"])
    assert payload["figures"] == ["toy-figure5-quick.png"]


@needs_mnist
def test_latents_parzen_and_ordering_suites_share_autoencoders(out):
    report = run_suite("latents", out, quick=True)
    payload = _files(report, out)
    assert {r["ae"] for r in payload["rows"]} == {"plain", "IAE"}
    assert all(math.isfinite(r["ll"]) for r in payload["rows"])
    # The LDE's paired lead over the GMM: its difference of means, with a paired s.e.
    leads = {r["ae"]: r for r in payload["rows"] if "lead_over_gmm" in r}
    assert set(leads) == {"plain", "IAE"}
    for ae, row in leads.items():
        gmm = next(r for r in payload["rows"] if r["ae"] == ae and r["model"] == "GMM (validated)")
        assert row["lead_over_gmm"] == pytest.approx(row["ll"] - gmm["ll"], abs=1e-9)
        assert 0 <= row["lead_se"] < max(row["se"], gmm["se"])
    cached = sorted(p.name for p in (out / "cache").glob("*.pt"))
    assert len(cached) == 2

    parzen = _files(run_suite("parzen", out, quick=True), out)
    pipelines = {r["pipeline"] for r in parzen["rows"]}
    assert {"AE + LDE", "IAE + LDE", "AE + GMM", "AE + GMMN"} <= pipelines
    assert any("published" in p for p in pipelines)

    ordering = _files(run_suite("ordering", out, quick=True), out)
    assert sorted(p.name for p in (out / "cache").glob("*.pt")) == cached  # reused
    curves = {r["ae"]: np.array(r["mse"]) for r in ordering["rows"]}
    # Every dimension on: both reconstruct; the incremental prefix of one latent is better.
    assert curves["IAE"][0] < curves["plain"][0]


@needs_mnist
@needs_fashion
def test_ood_suite(out):
    """Both directions, every score, AUROCs that mean what they say."""
    payload = _files(run_suite("ood", out, quick=True), out)
    measured = [r for r in payload["rows"] if not r.get("published")]
    assert {r["pair"] for r in measured} == {"Fashion-MNIST -> MNIST", "MNIST -> Fashion-MNIST"}
    scores = {r["score"] for r in measured}
    assert {
        "LDE: latent log-likelihood",
        "LDE: combined scores (sum, calibrated on in-distribution validation)",
        "reconstruction error alone",
        "GMM: latent log-likelihood",
    } <= scores
    for row in measured:
        assert 0 <= row["auroc"] <= 1 and 0 <= row["fpr95"] <= 1
    # Even a small autoencoder's latents tell the two datasets apart far better than chance.
    best = max(r["auroc"] for r in measured if r["pair"].startswith("Fashion"))
    assert best > 0.85
    published = {r["score"]: r["auroc"] for r in payload["rows"] if r.get("published")}
    assert published["PixelCNN++ likelihood, pixels (Ren et al., 2019)"] == 0.089
    assert "Target (Fashion-MNIST -> MNIST AUROC >= 0.99" in (out / "ood-quick.md").read_text()


@needs_mnist
@needs_fashion
def test_interpolation_suite(out):
    payload = _files(run_suite("interpolation", out, quick=True), out)
    assert {r["pairs"] for r in payload["rows"]} == {
        "MNIST-MNIST",
        "Fashion-Fashion",
        "MNIST-Fashion",
    }
    assert all(math.isfinite(r["ll_midpoint"]) for r in payload["rows"])


@needs_mnist
def test_mnist_pixels_suite_through_the_command_line(out, capsys):
    status = main(["bench", "mnist-pixels", "--quick", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    payload = json.loads((out / "mnist-pixels-quick.json").read_text())
    lde = payload["rows"][0]
    assert lde["model"] == "LDE (CausalConvMDN)" and math.isfinite(lde["ll"])
    assert "wrote" in capsys.readouterr().out


@needs_mnist
def test_a_budget_spent_before_any_epoch_is_reported_not_a_crash(out):
    """Under load the anchor's EM can take the whole budget: the anchor is the model."""
    report = run_suite("mnist-pixels", out / "tiny", quick=True, budget_s=1e-3)
    assert report.rows[0]["epochs"] == 0 and report.rows[0]["rows_per_s"] is None
    assert math.isfinite(report.rows[0]["ll"])
    assert any("No training epoch finished" in note for note in report.notes)


def test_unknown_suite_is_an_error(out):
    with pytest.raises(ValueError, match="unknown suite"):
        run_suite("nope", out)
    assert set(SUITES) == {
        "toy",
        "latents",
        "parzen",
        "ordering",
        "interpolation",
        "mnist-pixels",
        "digits",
        "speed",
        "scale",
        "ood",
        "variations",
    }


def test_every_suite_keeps_the_options_run_suite_passes():
    rows = ["out", "quick", "seeds", "budget_s", "models"]
    images = ["out", "quick", "seeds", "cache_dir", "budget_s"]
    expected = {
        "toy": rows,
        "digits": rows,
        "latents": [*images, "models", "dims"],
        "parzen": images,
        "ordering": images,
        "interpolation": images,
        "ood": [*images, "dims"],
        "variations": [*images, "dims"],
    }
    for name, parameters in expected.items():
        run = importlib.import_module(f"ldelib.bench.{name}").run
        assert list(inspect.signature(run).parameters) == parameters, name


def test_digits_suite(out):
    payload = _files(run_suite("digits", out, quick=True), out)
    runs = [r for r in payload["rows"] if r.get("kind") != "summary"]
    assert len(runs) >= 5 and all(math.isfinite(r["ll"]) for r in runs)
    # A continuous density on [0, 1]^64 made of 17 levels per pixel: a log-likelihood
    # far above 64 * log(17) per image would mean a bug in the dequantisation.
    assert all(r["ll"] < 64 * np.log(17) for r in runs)


def test_a_bad_budget_is_an_error(out, capsys):
    assert main(["bench", "toy", "--budget", "-1", "--out", str(out)]) == 2
    assert "budget_s must be a positive number" in capsys.readouterr().err


def test_speed_suite(out):
    payload = _files(run_suite("speed", out, quick=True), out)
    rows = payload["rows"]
    assert {r["D"] for r in rows} == {8, 64}
    for row in rows:
        for key in ("logprob_per_s", "sample_per_s", "train_per_s"):
            assert row[key] > 0
    maf = [r for r in rows if r["model"] == "zuko MAF"]
    assert all(r["logprob_vs_maf"] == pytest.approx(1.0) for r in maf)
    lde = [r for r in rows if r["model"] == "LDE (CausalConvMDN)"]
    # Counted arithmetic, and a rate no faster than the matrix products alone allow.
    assert all(0 < r["matmul_share"] < 1.5 and r["gflop_per_row"] > 0 for r in lde)
    # Cached and naive sampling: the same draws from the same noise, both timed.
    assert all(r["cached_s"] > 0 and r["naive_s"] > 0 and r["max_abs_diff"] < 1e-3 for r in lde)
    assert "cached steps against the naive loop" in (out / "speed-quick.md").read_text()


def test_a_subset_of_models_and_dims(out, capsys):
    args = ["bench", "digits", "--quick", "--models", "gmm", "kde", "--out", str(out / "sub")]
    assert main(args) == 0
    payload = json.loads((out / "sub" / "digits-quick.json").read_text())
    runs = [r for r in payload["rows"] if r.get("kind") != "summary"]
    assert {r["model"] for r in runs} == {"GMM (validated)", "KernelDensity"}
    assert main(["bench", "digits", "--quick", "--models", "flow", "--out", str(out)]) == 2
    assert "unknown model 'flow'" in capsys.readouterr().err
    assert main(["bench", "toy", "--quick", "--dims", "8", "--out", str(out)]) == 2
    assert "no --dims option" in capsys.readouterr().err
