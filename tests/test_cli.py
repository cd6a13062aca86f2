"""The command line: every command, its ``--json`` output, help texts and error reports.

The error cases here complement ``CLI_CASES`` in ``test_reliability.py`` (which are not
repeated): together they cover a missing data or model file, a foreign file, a ``.npy``
given as a model, NaN in the data, an unknown model, parameter or parameter value, an
unwritable output and a model without a density.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import ldelib
from ldelib import GMM, GMMN, CausalConvMDN, IncrementalAutoencoder, LatentDensityEstimator
from ldelib.cli import main
from ldelib.cli._parser import build_parser
from ldelib.persistence import FORMAT_VERSION, read_model_file
from ldelib.persistence.describe import Fitted, training_summary

SMALL_MDN = {"n_components": 2, "hidden_channels": 8, "max_epochs": 2, "device": "cpu"}
SMALL_GMMN = {"hidden_sizes": (8,), "noise_dim": 2, "max_epochs": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One folder of inputs and a fitted, saved object of every saveable class.

    Module-scoped: fitting is most of the cost, and no test may write into this folder
    (the error cases check that nothing appears in it).
    """
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    np.save(folder / "z.npy", X)
    nan = X.copy()
    nan[7, 1] = np.nan
    np.save(folder / "nan.npy", nan)
    (folder / "folder").mkdir()
    (folder / "foreign.ldelib").write_text("not a model")
    import safetensors.torch

    safetensors.torch.save_file({"w": torch.zeros(2)}, str(folder / "other.safetensors"))
    models = {
        "gmm": GMM([1, 2], random_state=0).fit(X),
        "gmmn": GMMN(**SMALL_GMMN, random_state=0).fit(X),
        "mdn": CausalConvMDN(**SMALL_MDN, random_state=0).fit(X),
        "lde": LatentDensityEstimator(GMM(2, random_state=0), encoder=lambda x: x).fit(X),
        "iae": IncrementalAutoencoder(
            torch.nn.Linear(3, 2),
            torch.nn.Linear(2, 3),
            2,
            warmup_epochs=0,
            max_epochs=2,
            device="cpu",
            random_state=0,
        ).fit(X.astype(np.float32)),
    }
    for name, model in models.items():
        model.save(folder / f"{name}.ldelib")
    return folder, X, models


def _run(argv, capsys):
    """Exit status, stdout and stderr of one command (argv items are made strings)."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ------------------------------------------------------------------------ commands
def test_demo_quick_writes_a_picture(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--quick", "--target", "banana", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("truth (exact density)", "CausalConvMDN", "GMM (10 full-covariance)"):
        assert row in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.numerics
def test_fit_score_sample_round_trip(tmp_path, capsys):
    data = tmp_path / "z.npy"
    np.save(data, np.random.default_rng(0).normal(size=(300, 3)))
    model = tmp_path / "m.ldelib"
    params = ["max_epochs=3", "device=cpu", "random_state=0", "hidden_channels=8"]
    argv = ["fit", data, "--model", "mdn", *(a for p in params for a in ("--param", p))]
    status, out, _ = _run([*argv, "--out", model], capsys)
    assert status == 0
    best = ldelib.load(model).best_validation_score_
    assert f"best validation log-likelihood: {best:.6g} nats/row" in out.splitlines()
    scores = tmp_path / "s.npy"
    status, out, _ = _run(["score", model, data, "--out", scores], capsys)
    assert status == 0
    fitted, X = ldelib.load(model), np.load(data)
    # The command scores the file in its own batches: equal to the rows scored in memory up
    # to the float32 network's rounding, which the batching moves (see test_properties).
    tol = (2 * 8 + 1) * X.shape[1] * np.finfo(np.float32).eps
    np.testing.assert_allclose(np.load(scores), fitted.score_samples(X), rtol=tol, atol=tol)
    mean = np.load(scores).mean()
    assert out.startswith(f"mean log-likelihood: {mean:.4f} ± ")

    def sample(n, *seed):
        path = tmp_path / f"x{n}{''.join(seed)}.npy"
        assert main(["sample", str(model), str(n), "--out", str(path), *seed]) == 0
        return np.load(path)

    seven = sample(7, "--seed", "1")
    assert seven.shape == (7, 3)
    # --seed is random_state: the draws sample() makes in Python, the same on every call.
    np.testing.assert_array_equal(seven, fitted.sample(7, random_state=1))
    np.testing.assert_array_equal(sample(7, "--seed", "1"), seven)
    assert not np.array_equal(sample(7, "--seed", "2"), seven)
    # The draws are the fitted density's: mean and variance those of the N(0, I) rows it
    # was fitted to, within four standard errors of the two samples.
    many = sample(4000, "--seed", "3")
    se_mean = np.sqrt(X.var(axis=0) / len(X) + many.var(axis=0) / len(many))
    assert np.all(np.abs(many.mean(axis=0) - X.mean(axis=0)) <= 4 * se_mean)
    se_var = np.sqrt(2 / len(X) + 2 / len(many)) * X.var(axis=0)
    assert np.all(np.abs(many.var(axis=0) - X.var(axis=0)) <= 4 * se_var)


def test_fit_seed_is_the_random_state_and_the_saved_model_keeps_the_users_params(
    saved, tmp_path, capsys
):
    folder = saved[0]

    def fit(*extra):
        path = tmp_path / f"gmm{len(list(tmp_path.iterdir()))}.ldelib"
        argv = ["fit", folder / "z.npy", "--model", "gmm", *extra, "--out", path]
        assert _run(argv, capsys)[0] == 0
        return ldelib.load(path)

    one, again, other = fit("--seed", "3"), fit("--seed", "3"), fit("--seed", "4")
    assert one.random_state == 3
    np.testing.assert_array_equal(one.means_, again.means_)
    np.testing.assert_array_equal(one.means_, GMM(random_state=3).fit(folder / "z.npy").means_)
    assert not np.array_equal(one.means_, other.means_)
    # Fitted with a progress bar, saved as the user asked: verbose is not theirs.
    assert one.verbose == 0
    assert fit("--param", "verbose=2").verbose == 2


def test_params_lists_every_parameter_with_its_default(capsys):
    from ldelib.models import MODELS

    for name, cls in MODELS.items():
        status, out, _ = _run(["params", name], capsys)
        assert status == 0
        lines = out.splitlines()
        assert lines[0].startswith(f"{cls.__name__} parameters")
        defaults = cls().get_params()
        expected = [f"  {k}={defaults[k]!r}  " for k in inspect.signature(cls).parameters]
        listed = [line for line in lines[1:] if line[2] != " "]
        assert len(listed) == len(expected)
        assert all((line + "  ").startswith(e) for line, e in zip(listed, expected, strict=True))
    _, out, _ = _run(["params", "gmm"], capsys)
    assert "max_time=None" in out and "Wall-clock budget of the fit in seconds" in out
    assert "``" not in out and ":class:" not in out  # plain text, not reStructuredText


def test_fit_labels_a_gmmn_score_as_an_mmd_not_a_likelihood(saved, tmp_path, capsys):
    folder, _, _ = saved
    params = ["max_epochs=2", "device=cpu", "random_state=0", "hidden_sizes=[8]", "noise_dim=2"]
    argv = ["fit", folder / "z.npy", "--model", "gmmn"]
    argv += [a for p in params for a in ("--param", p)]
    status, out, _ = _run([*argv, "--out", tmp_path / "g.ldelib"], capsys)
    assert status == 0
    mmd2 = -ldelib.load(tmp_path / "g.ldelib").best_validation_score_
    assert mmd2 > 0
    assert f"best validation MMD²: {mmd2:.6g}" in out.splitlines()
    assert "log-likelihood" not in out


def test_score_json_is_the_only_output(saved, tmp_path, capsys, monkeypatch):
    folder, X, models = saved
    monkeypatch.chdir(tmp_path)
    status, out, _ = _run(["score", folder / "gmm.ldelib", folder / "z.npy", "--json"], capsys)
    assert status == 0
    result = json.loads(out)
    assert result["mean"] == pytest.approx(models["gmm"].score(X))
    assert result["standard_error"] > 0
    assert result["nats_per_dim"] == pytest.approx(result["mean"] / 3)
    assert (result["n_rows"], result["n_features"], result["out"]) == (200, 3, None)
    assert result["unit"] == "nats/row" and result["class"] == "GMM"

    status, out, _ = _run(
        ["score", folder / "mdn.ldelib", folder / "z.npy", "--json", "--out", "ll.npy"], capsys
    )
    assert status == 0
    result = json.loads(out)
    assert result["out"] == "ll.npy"
    np.testing.assert_allclose(np.load("ll.npy").mean(), result["mean"])


# ---------------------------------------------------------------------------- info
@pytest.mark.parametrize("name", ["gmm", "gmmn", "mdn", "lde", "iae"])
def test_info_describes_every_saveable_class(saved, capsys, name):
    folder, _, models = saved
    model = models[name]
    path = str(folder / f"{name}.ldelib")

    status, out, err = _run(["info", path, "--json"], capsys)
    assert status == 0 and "error" not in err
    info = json.loads(out)
    assert info["class"] == type(model).__name__
    assert info["file"] == {
        "format": "ldelib",
        "format_version": FORMAT_VERSION,
        "ldelib_version": ldelib.__version__,
        "torch_version": torch.__version__,
    }
    assert info["path"] == path
    params = model.get_params(deep=False)
    assert set(info["params"]) == set(params)
    for param, value in params.items():
        if param in info["not_stored"]:
            assert info["params"][param] is None
        elif not hasattr(value, "get_params"):  # the LDE's density: checked below
            plain = list(value) if isinstance(value, tuple) else value
            assert info["params"][param] == plain, param
    training = info["training"]
    if name in ("gmm", "gmmn", "mdn"):
        assert info["n_features"] == model.n_features_in_ == 3
        assert info["input_shape"] is None and info["not_stored"] == []
        assert info["params"]["random_state"] == 0
    else:
        assert info["not_stored"] == ["encoder", "decoder"]
        assert info["params"]["encoder"] is None and info["params"]["decoder"] is None
        assert info["input_shape"] == [3]
    if name == "gmm":
        assert info["params"]["n_components"] == [1, 2]
        assert training["n_components"] == model.n_components_
        assert training["converged"] is model.converged_
        assert training["n_iter"] == model.n_iter_
        assert training["lower_bound"] == pytest.approx(model.lower_bound_)
        assert training["candidate_scores"] == pytest.approx(model.candidate_scores_)
    elif name == "gmmn":
        assert training["best_validation_mmd2"] == pytest.approx(-model.best_validation_score_)
        assert training["n_iter"] == 2
    elif name == "mdn":
        assert training["best_validation_log_likelihood"] == pytest.approx(
            model.best_validation_score_
        )
    elif name == "lde":
        assert info["n_features"] == 3
        assert info["params"]["density"]["class"] == "GMM"
        assert info["params"]["density"]["params"]["n_components"] == 2
        assert training["density"] == "GMM"
        assert training["n_components"] == model.density_.n_components_
    else:  # iae: D is its latent size
        assert info["n_features"] == 2
        assert training["best_validation_loss"] == pytest.approx(-model.best_validation_score_)

    status, out, _ = _run(["info", path], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["file", path]
    assert ["class", type(model).__name__] in [line.split() for line in lines]
    assert f"written by ldelib {ldelib.__version__}" in out
    for param in params:
        assert any(line.split()[:1] == [param] for line in lines), param
    for item in training_summary(Fitted.of(model)):
        assert any(line.strip().startswith(item.label) for line in lines), item.label
    # Aligned: every value starts in one column.
    column = len(lines[0]) - len(path)
    assert all(len(line) <= column or line[column - 1] == " " for line in lines)


def test_info_text_names_the_units(saved, capsys):
    folder, _, _ = saved
    _, mdn, _ = _run(["info", folder / "mdn.ldelib"], capsys)
    assert "best validation log-likelihood" in mdn and "nats/row" in mdn
    _, gmmn, _ = _run(["info", folder / "gmmn.ldelib"], capsys)
    assert "best validation MMD²" in gmmn and "log-likelihood" not in gmmn
    _, iae, _ = _run(["info", folder / "iae.ldelib"], capsys)
    assert "best validation reconstruction loss (mse)" in iae
    assert "latent dimensions (D)" in iae and "not stored" in iae


@pytest.mark.parametrize("name", ["gmm", "gmmn", "mdn", "lde", "iae"])
def test_fit_and_info_share_one_training_summary(saved, name):
    """The summary of a model in memory (fit) and of its file (info) are the same."""
    folder, _, models = saved
    config, _ = read_model_file(folder / f"{name}.ldelib")
    from_file = training_summary(Fitted.from_config(config))
    in_memory = training_summary(Fitted.of(models[name]))
    assert from_file == in_memory and from_file


def test_each_class_summarises_its_own_training():
    # The persistence layer holds no model's terms: a class names its own, and a class
    # without a summary gets only what the attribute names promise.
    from ldelib._summary import SummaryItem

    class Plain:
        pass

    class Own:
        @staticmethod
        def _summarise_training(params, attributes):
            return [SummaryItem("steps", "steps taken", attributes["steps_"])]

    attributes = {"steps_": 3, "n_iter_": 7}
    assert training_summary(Fitted("Own", {}, attributes, klass=Own)) == [
        SummaryItem("steps", "steps taken", 3)
    ]
    assert [i.key for i in training_summary(Fitted("Plain", {}, attributes, klass=Plain))] == [
        "n_iter"
    ]
    from ldelib.persistence import describe

    source = inspect.getsource(describe)
    for name in ("CausalConvMDN", "GMMN", "IncrementalAutoencoder", "LatentDensityEstimator"):
        assert f'== "{name}"' not in source  # no branch on a class name


# --------------------------------------------------------------------------- help
def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_argument_has_help():
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"demo", "fit", "score", "sample", "info", "convert"} <= set(commands)
    for name, command in [("ldelib", parser), *commands.items()]:
        for action in command._actions:
            assert action.help and action.help.strip(), f"{name}: {action.dest} has no help"


def test_python_m_ldelib_help():
    result = subprocess.run(
        [sys.executable, "-m", "ldelib", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ldelib")
    for command in ("fit", "score", "sample", "info"):
        assert command in result.stdout
    # The benchmarks are not part of the installed library: python -m benchmarks runs them.
    assert "bench" not in result.stdout


# ------------------------------------------------------------------------- errors
# (argv with {d} for the shared folder, exit status, words the one error line must hold)
ERROR_CASES = [
    (["info", "{d}/missing.ldelib"], 2, "No model file at '{d}/missing.ldelib'"),
    (["sample", "{d}/missing.ldelib", "3", "--out", "{d}/s.npy"], 2, "No model file"),
    (["score", "{d}/gmm.ldelib", "{d}/missing.npy"], 2, "No such file"),
    (["info", "{d}/foreign.ldelib"], 2, "not a readable ldelib model file"),
    (["info", "{d}/other.safetensors"], 2, "not an ldelib model file"),
    (["score", "{d}/other.safetensors", "{d}/z.npy"], 2, "not an ldelib model file"),
    (["info", "{d}/z.npy"], 2, "numpy array file (.npy), not an ldelib model file"),
    (["sample", "{d}/z.npy", "3", "--out", "{d}/s.npy"], 2, "numpy array file"),
    (["info", "{d}/folder"], 2, "is a folder"),
    (["score", "{d}/gmm.ldelib", "{d}/nan.npy"], 2, "NaN"),
    (["score", "{d}/mdn.ldelib", "{d}/nan.npy", "--out", "{d}/ll.npy"], 2, "NaN"),
    (["fit", "{d}/z.npy", "--param", "oops", "--out", "{d}/m.ldelib"], 2, "KEY=VALUE"),
    (["fit", "{d}/z.npy", "--param", "=1", "--out", "{d}/m.ldelib"], 2, "KEY=VALUE"),
    (["fit", "{d}/z.npy", "--param", "max_epochs=two", "--out", "{d}/m.ldelib"], 2, "max_epochs"),
    (["fit", "{d}/z.npy", "--model", "gmmn", "--param", "foo=1", "--out", "{d}/m"], 2, "foo"),
    (
        ["fit", "{d}/z.npy", "--param", "max_epoch=3", "--out", "{d}/m.ldelib"],
        2,
        (
            "CausalConvMDN has no parameter 'max_epoch'; did you mean 'max_epochs'? "
            "(`ldelib params mdn` lists them)"
        ),
    ),
    (
        ["fit", "{d}/z.npy", "--param", "tol=0.1", "--param", "tol=0.2", "--out", "{d}/m"],
        2,
        "--param tol is given twice",
    ),
    (
        ["fit", "{d}/z.npy", "--seed", "1", "--param", "random_state=2", "--out", "{d}/m"],
        2,
        "Give the seed once",
    ),
    (
        ["fit", "{d}/z.npy", "--model", "gmm", "--out", "{d}/folder"],
        2,
        "Cannot write '{d}/folder': it is a folder",
    ),
    (
        ["score", "{d}/gmm.ldelib", "{d}/z.npy", "--out", "{d}/folder"],
        2,
        "Cannot write '{d}/folder': it is a folder",
    ),
    (
        ["score", "{d}/gmm.ldelib", "{d}/z.npy", "--out", "{d}/no/such/ll.npy"],
        2,
        "'{d}/no/such/ll.npy': the folder '{d}/no/such' does not exist",
    ),
    (
        ["sample", "{d}/gmm.ldelib", "3", "--out", "{d}/folder"],
        2,
        "Cannot write '{d}/folder': it is a folder",
    ),
    (["score", "{d}/gmmn.ldelib", "{d}/z.npy", "--json"], 2, "no tractable density"),
    (["score", "{d}/lde.ldelib", "{d}/z.npy"], 2, "not a density model"),
    (["score", "{d}/iae.ldelib", "{d}/z.npy"], 2, "loads only in Python"),
    (["sample", "{d}/iae.ldelib", "3", "--out", "{d}/s.npy"], 2, "ldelib info"),
]


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    ERROR_CASES,
    ids=[" ".join(c[0][:2]).replace("{d}/", "") + f" {i}" for i, c in enumerate(ERROR_CASES)],
)
def test_bad_input_is_reported_in_one_line(saved, capsys, argv, status, words):
    folder, _, _ = saved
    before = sorted(p.name for p in folder.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning must not hide the error
        got, out, err = _run([a.format(d=folder) for a in argv], capsys)
    assert got == status
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"ldelib {argv[0]}: error: ")
    assert words.format(d=folder) in errors[0]
    assert "Traceback" not in err
    assert out == "" or "--json" not in argv  # no half a JSON object on stdout
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_an_unknown_model_name_is_refused_by_argparse(saved, capsys):
    folder, _, _ = saved
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(folder / "z.npy"), "--model", "foo", "--out", str(folder / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "invalid choice: 'foo'" in errors[0]
    assert errors[0].startswith("ldelib fit: error: ") and "Traceback" not in err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    data = tmp_path / "bad.npy"
    np.save(data, np.array([[np.nan, 1.0], [0.0, 1.0]]))
    assert main(["fit", str(data), "--out", str(tmp_path / "m.ldelib")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.ldelib"), str(data)]) == 2


# ----------------------------------------------------------------- output paths
def test_outputs_are_written_exactly_where_reported(saved, tmp_path, capsys, monkeypatch):
    """Relative paths without a suffix stay as written: no ``.npy`` is appended."""
    folder, _, _ = saved
    monkeypatch.chdir(tmp_path)

    status, out, _ = _run(
        [
            "fit",
            folder / "z.npy",
            "--model",
            "gmm",
            "--param",
            "n_components=2",
            "--out",
            "m.ldelib",
        ],
        capsys,
    )
    assert status == 0 and out.splitlines()[0].endswith("; saved m.ldelib")
    assert ldelib.load("m.ldelib").n_features_in_ == 3

    status, out, _ = _run(["score", "m.ldelib", folder / "z.npy", "--out", "ll"], capsys)
    assert status == 0 and out.splitlines()[-1] == "wrote 200 log-likelihoods to ll"
    assert np.load("ll").shape == (200,)

    status, out, _ = _run(["sample", "m.ldelib", "4", "--out", "samples"], capsys)
    assert status == 0 and out.splitlines() == ["wrote 4 samples of 3 dims to samples"]
    assert np.load("samples").shape == (4, 3)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ll", "m.ldelib", "samples"]


def test_labels_fit_score_and_sample_a_conditional_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 600)]
    X = rng.normal(size=(600, 2)) + 4 * (y == "dog")[:, None]
    data, labels, one = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "one.npy"
    np.save(data, X)
    np.save(labels, y)
    np.save(one, np.array("dog"))
    model = tmp_path / "m.ldelib"
    argv = ["fit", data, "--model", "gmm", "--labels", labels, "--seed", "0", "--out", model]
    assert _run(argv, capsys)[0] == 0
    fitted = ldelib.load(model)
    assert fitted.conditional and fitted.classes_.tolist() == ["cat", "dog", "emu"]
    status, out, _ = _run(["score", model, data, "--labels", labels], capsys)
    assert status == 0
    assert out.startswith(f"mean log-likelihood: {fitted.score(X, y):.4f} ± ")
    drawn = tmp_path / "s.npy"
    assert (
        _run(["sample", model, 5, "--label", "dog", "--seed", "1", "--out", drawn], capsys)[0] == 0
    )
    np.testing.assert_array_equal(np.load(drawn), fitted.sample(5, y="dog", random_state=1))
    assert (
        _run(["sample", model, 5, "--labels", one, "--seed", "1", "--out", drawn], capsys)[0] == 0
    )
    np.testing.assert_array_equal(np.load(drawn), fitted.sample(5, y="dog", random_state=1))
    # Without the labels, or with labels a model was not fitted with: said in the CLI's terms.
    status, _, err = _run(["score", model, data], capsys)
    assert status != 0 and "was fitted with --labels" in err
    np.save(labels, y[:10])
    status, _, err = _run([*argv[:-2], "--out", tmp_path / "n.ldelib"], capsys)
    assert status != 0 and "one label (shape (600,))" in err
    assert not (tmp_path / "n.ldelib").exists()  # refused before anything is written
    np.save(labels, y)
    status, _, err = _run(
        ["fit", data, "--model", "gmmn", "--labels", labels, "--out", model], capsys
    )
    assert status != 0 and "cannot condition on --labels" in err
