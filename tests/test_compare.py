"""ldelib.compare and `ldelib compare`: every model on the same rows, ranked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from ldelib import compare as compare_module
from ldelib.cli import main
from ldelib.compare import MODELS, compare, measure_model


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 2)), rng.normal(size=(400, 2))


@pytest.fixture(scope="module")
def result(gaussian):
    train, test = gaussian
    return compare(train, test, models=["kde", "gmm"], budget=5, seeds=2, progress=False)


def test_every_model_fits_the_same_rows_and_is_ranked_by_test_likelihood(gaussian, result):
    _train, test = gaussian
    ranking = result.ranking()
    assert [e["model"] for e in ranking] == ["GMM (validated)", "KernelDensity"]
    assert ranking[0]["ll"] >= ranking[1]["ll"]
    # The data are N(0, I): the mixture is close to the truth, the kernel estimate below.
    truth = stats.multivariate_normal(np.zeros(2)).logpdf(test).mean()
    assert ranking[0]["ll"] == pytest.approx(truth, abs=0.05)
    assert ranking[0]["gap"] == 0.0 and ranking[0]["gap_se"] == 0.0
    # The gap is paired: its error is far below either score's own.
    assert ranking[1]["gap"] < 0
    assert 0 < ranking[1]["gap_se"] < ranking[1]["se"] / 2
    assert result.n_train == 600 and result.n_test == 400 and result.n_features == 2
    assert len(result.rows) == 4  # two models, two seeds
    assert {r["seed"] for r in result.rows} == {0, 1}
    for entry in ranking:
        assert entry["seed_sd"] is not None and entry["fit_s"] > 0
        assert entry["logprob_per_s"] > 0 and entry["sample_per_s"] > 0
        assert entry["ll_per_dim"] == pytest.approx(entry["ll"] / 2)


def test_the_averaged_log_densities_are_the_seeds_mean(gaussian, result):
    _, test = gaussian
    gmm = [r for r in result.rows if r["model"] == "GMM (validated)"]
    assert np.mean([r["ll"] for r in gmm]) == pytest.approx(
        result.log_probs["GMM (validated)"].mean()
    )
    assert result.log_probs["GMM (validated)"].shape == (len(test),)


def test_a_held_out_fraction_is_the_test_set_when_none_is_given(gaussian):
    train, _ = gaussian
    result = compare(train, models=["gmm"], test_fraction=0.25, budget=5, progress=False)
    assert (result.n_train, result.n_test) == (450, 150)


# Two seconds leave the generator's samples tight: the window's grid edge is expected.
@pytest.mark.filterwarnings("ignore:The selected Parzen bandwidth")
def test_a_model_without_a_density_is_flagged_and_ranked_last(gaussian):
    train, test = gaussian
    result = compare(train[:300], test[:100], models=["gmmn", "gmm"], budget=2, progress=False)
    last = result.ranking()[-1]
    assert last["model"] == "GMMN (Parzen)"
    assert last["estimate"].startswith("Parzen") and last["gap"] is None
    assert "Parzen" in result.to_markdown()


def test_a_missing_optional_package_skips_the_model_with_a_note(gaussian, monkeypatch):
    import ldelib.peers

    monkeypatch.setattr(ldelib.peers, "zuko_available", lambda: False)
    train, test = gaussian
    result = compare(train, test, models=["maf", "gmm"], budget=5, progress=False)
    assert [e["model"] for e in result.ranking()] == ["GMM (validated)"]
    assert "ldelib[peers]" in result.skipped["zuko MAF"]
    assert "Not run: zuko MAF" in result.to_markdown()


def test_the_command_line_compares_a_users_npy_files(tmp_path, gaussian, capsys):
    train, test = gaussian
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "results"
    argv = ["compare", str(tmp_path / "train.npy"), "--test", str(tmp_path / "test.npy")]
    code = main([*argv, "--models", "gmm", "kde", "--budget", "5", "--out", str(out), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert sorted(payload["files"]) == ["figure", "json", "markdown"]
    assert [e["model"] for e in payload["ranking"]] == ["GMM (validated)", "KernelDensity"]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    written = json.loads((out / "compare.json").read_text())
    assert written["ranking"] == payload["ranking"] and len(written["runs"]) == 2
    table = (out / "compare.md").read_text()
    assert "| 1 | GMM (validated) |" in table and "| 2 | KernelDensity |" in table


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a, b: (a, b[:, :1]), "train has 2 features but test has 1"),
        (lambda a, b: (np.where(np.arange(len(a))[:, None] == 3, np.nan, a), b), "NaN"),
        (lambda a, b: (a[:20], b), "at least 50 training rows"),
        (lambda a, b: (a[:, 0], b), "2-D numeric array"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    tmp_path, gaussian, capsys, make, message
):
    train, test = make(*gaussian)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "results"
    argv = ["compare", str(tmp_path / "train.npy"), "--test", str(tmp_path / "test.npy")]
    assert main([*argv, "--models", "gmm", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_the_command_line_refuses_conflicting_or_unknown_options(tmp_path, gaussian, capsys):
    np.save(tmp_path / "train.npy", gaussian[0])
    base = ["compare", str(tmp_path / "train.npy"), "--out", str(tmp_path / "r")]
    assert main([*base, "--test", "x.npy", "--test-fraction", "0.3"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--models", "flowz"])
    assert not (tmp_path / "r").exists()


def test_compare_refuses_an_unknown_model_a_bad_fraction_and_no_seeds(gaussian):
    train, test = gaussian
    with pytest.raises(ValueError, match="unknown model 'flowz'"):
        compare(train, test, models=["flowz"])
    with pytest.raises(ValueError, match="test_fraction"):
        compare(train, test_fraction=1.0)
    with pytest.raises(ValueError, match="at least one seed"):
        compare(train, test, models=["gmm"], seeds=0)


def test_measure_model_is_the_benchmarks_loop(gaussian, monkeypatch):
    # The suites measure their models through the same function (one comparison loop).
    from benchmarks import _models
    from benchmarks._report import Report

    calls = []
    measure = compare_module.measure_model

    def spy(*args, **kwargs):
        calls.append(args[0])
        return measure(*args, **kwargs)

    monkeypatch.setattr(compare_module, "measure_model", spy)
    train, test = gaussian
    report = Report("toy", True, {})
    row, _ = _models.evaluate(report, "KernelDensity", train, test, test, seed=0, budget=1.0)
    assert calls == ["KernelDensity"]
    assert row["estimate"].startswith("exact, h=") and "fit_peak_mb" in row


def test_every_model_name_has_a_label_and_an_estimator():
    for name, label in MODELS.items():
        assert compare_module.make_model(name, seed=0, budget=1.0) is not None
        assert compare_module.make_model(label, seed=0, budget=1.0) is not None


def test_the_row_of_one_model(gaussian):
    train, test = gaussian
    row, model, log_prob = measure_model("gmm", train, test, seed=0, budget=5.0, n_samples=100)
    assert row["model"] == "GMM (validated)" and row["D"] == 2
    assert row["ll"] == pytest.approx(log_prob.mean())
    assert row["estimate"] == f"exact, K={model.n_components_}, reg={model.reg_covar_:g}"
