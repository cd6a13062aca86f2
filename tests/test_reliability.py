"""Faults and hostile input: every case ends in a clear error or a correct result.

Each case states the exact exception type, words its message must contain, and that
nothing in the estimator (or on disk) changed. The cases are classes of fault, not one
reproduction each: a failing fit, an interrupted fit, a diverging fit, extreme finite
values, the user's global torch state, crafted model files.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import ldelib
from ldelib import GMM, GMMN, CausalConvMDN, IncrementalAutoencoder, LatentDensityEstimator
from ldelib.metrics import mmd2_unbiased, parzen_log_likelihood

X = np.random.default_rng(0).normal(size=(300, 3))
SMALL_MDN = {"n_components": 2, "hidden_channels": 8, "max_epochs": 2, "device": "cpu"}
SMALL_GMMN = {"hidden_sizes": (8,), "noise_dim": 2, "max_epochs": 2, "device": "cpu"}


def _state(model) -> dict:
    """Everything an estimator holds, in a form two snapshots can be compared by."""
    out = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name == "_sample_rng_":
            continue  # parameters, and the sampling stream (compared by drawing)
        if isinstance(value, torch.nn.Module):
            out[name] = (
                id(value),
                value.training,
                [p.detach().clone() for p in value.state_dict().values()],
            )
        elif isinstance(value, np.ndarray):
            out[name] = value.copy()
        else:
            out[name] = value
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], list):
            if x[:2] != y[:2] or not all(
                torch.equal(p, q) for p, q in zip(x[2], y[2], strict=True)
            ):
                return False
        elif x != y and not (x is None and y is None):
            return False
    return True


# ------------------------------------------------------------ transactional fit
class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt without stopping pytest."""


# (name, a new estimator, how to make its next fit fail, the exception it raises)
FAILING_FITS = [
    (
        "mdn-diverges",
        lambda: CausalConvMDN(**SMALL_MDN, random_state=0),
        {"learning_rate": 1e3, "init": "random"},
        FloatingPointError,
    ),
    (
        "mdn-bad-param",
        lambda: CausalConvMDN(**SMALL_MDN, random_state=0),
        {"batch_size": 0},
        ValueError,
    ),
    ("gmm-bad-param", lambda: GMM(2, random_state=0), {"n_components": -1}, ValueError),
    ("gmm-one-row", lambda: GMM(2, random_state=0), {}, ValueError),
    (
        "gmmn-diverges",
        lambda: GMMN(**SMALL_GMMN, random_state=0),
        {"learning_rate": 1e3},
        FloatingPointError,
    ),
]


@pytest.mark.parametrize(
    ("name", "factory", "change", "error"), FAILING_FITS, ids=[c[0] for c in FAILING_FITS]
)
@pytest.mark.parametrize("fitted_before", [False, True])
def test_a_failed_fit_leaves_the_estimator_as_it_was(name, factory, change, error, fitted_before):
    model = factory()
    if fitted_before:
        model.fit(X)
        before_samples = model.sample(5, random_state=0)
    before = _state(model)
    model.set_params(**change)
    data = X[:1] if name == "gmm-one-row" else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(error):
            model.fit(data)
    assert _same(_state(model), before)
    if fitted_before:
        np.testing.assert_array_equal(model.sample(5, random_state=0), before_samples)
    else:
        with pytest.raises(NotFittedError):
            model.sample(1)


@pytest.mark.parametrize("fitted_before", [False, True])
def test_an_interrupted_fit_leaves_the_estimator_as_it_was(fitted_before, monkeypatch):
    model = CausalConvMDN(**SMALL_MDN, dropout=0.5, init="random", random_state=0)
    if fitted_before:
        model.fit(X)
    before = _state(model)
    calls = {"n": 0}
    original = torch.optim.Adam.step

    def interrupting_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupting_step)
    with pytest.raises(_Interrupt):
        model.fit(X * 2)
    assert _same(_state(model), before)
    if fitted_before:
        assert not model.module_.training  # dropout off: two scorings agree
        np.testing.assert_array_equal(model.score_samples(X[:5]), model.score_samples(X[:5]))


def test_an_interrupted_autoencoder_and_latent_fit_change_nothing(monkeypatch):
    Z = X
    lde = LatentDensityEstimator(GMM(2, random_state=0)).fit(Z)
    before = _state(lde)

    def broken_fit(self, X, y=None):
        raise _Interrupt

    monkeypatch.setattr(GMM, "fit", broken_fit)
    with pytest.raises(_Interrupt):
        lde.fit(Z * 3)
    assert _same(_state(lde), before)

    encoder = torch.nn.Linear(3, 2)
    decoder = torch.nn.Linear(2, 3)
    iae = IncrementalAutoencoder(encoder, decoder, 2, max_epochs=1, device="cpu", random_state=0)
    monkeypatch.setattr(
        torch.optim.Adam, "step", lambda self, *a, **k: (_ for _ in ()).throw(_Interrupt())
    )
    with pytest.raises(_Interrupt):
        iae.fit(X.astype(np.float32))
    assert not hasattr(iae, "encoder_")


# ------------------------------------------------------------------ divergence
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_a_diverging_mdn_raises_or_returns_a_sound_model(seed):
    model = CausalConvMDN(**SMALL_MDN, init="random", learning_rate=1e3, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
    except FloatingPointError as error:
        assert "learning_rate" in str(error)
        with pytest.raises(NotFittedError):
            model.score(X)
        return
    assert model.score(X) > -3 * 10  # not collapsed: a standard normal scores about -4.3
    assert np.isfinite(model.sample(200, random_state=0)).all()


def test_a_diverging_gmmn_raises_with_what_to_change():
    with pytest.raises(FloatingPointError, match="learning_rate"):
        GMMN(**SMALL_GMMN, learning_rate=1e3, random_state=0).fit(X)


# --------------------------------------------------------- extreme finite values
@pytest.mark.parametrize("magnitude", [1e-300, 1e-150, 1e150, 1e200, 1e300])
@pytest.mark.parametrize(
    "model",
    [GMM(2, random_state=0), CausalConvMDN(**SMALL_MDN, random_state=0)],
    ids=["gmm", "mdn"],
)
def test_scaled_data_gives_finite_scores_shifted_by_the_log_scale(magnitude, model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(X * magnitude)
        scores = model.score_samples(X * magnitude)
    assert np.isfinite(scores).all()
    unit = type(model)(**model.get_params()).fit(X).score_samples(X)
    np.testing.assert_allclose(scores, unit - 3 * np.log(magnitude), rtol=1e-6, atol=1e-3)


def test_a_constant_huge_column_fits():
    Z = X.copy()
    Z[:, 1] = 1e40
    for model in (
        GMM(2, random_state=0),
        CausalConvMDN(**SMALL_MDN, random_state=0),
        GMMN(**SMALL_GMMN, random_state=0),
    ):
        model.fit(Z)
        assert np.isfinite(model.sample(50, random_state=0)).all()


@pytest.mark.parametrize(
    "model",
    [GMM(2, random_state=0), CausalConvMDN(**SMALL_MDN, random_state=0)],
    ids=["gmm", "mdn"],
)
def test_points_far_outside_score_minus_infinity_never_nan(model):
    model.fit(X)
    far = np.array([[1e300, 0.0, 0.0], [-1e300, 1e300, 1e-300], [0.0, 0.0, 0.0]])
    scores = model.score_samples(far)
    assert not np.isnan(scores).any()
    assert np.isfinite(scores[2])
    assert (scores[:2] < -1e6).all()


def test_float64_models_score_far_points_finitely():
    model = CausalConvMDN(**SMALL_MDN, dtype="float64", random_state=0).fit(X)
    scores = model.score_samples(np.array([[1e30, 0.0, 0.0]]))
    assert np.isfinite(scores).all()
    assert model.sample(3, random_state=0).dtype == np.float64


def test_metrics_on_huge_values_are_finite():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    for scale in (1e-160, 1e160):
        value = mmd2_unbiased(A * scale, B * scale)
        assert np.isfinite(value)
        assert value == pytest.approx(mmd2_unbiased(A, B), rel=1e-6, abs=1e-9)
    for scale in (1e-160, 1e160):
        result = parzen_log_likelihood(A * scale, B * scale, X_valid=B[::-1] * scale)
        reference = parzen_log_likelihood(A, B, X_valid=B[::-1])
        assert result.mean == pytest.approx(reference.mean - 3 * np.log(scale), rel=1e-9)


# ------------------------------------------------------------- global torch state
@pytest.mark.parametrize(
    "factory",
    [
        lambda: CausalConvMDN(**SMALL_MDN, random_state=0),
        lambda: CausalConvMDN(**SMALL_MDN, init="random", random_state=0),
        lambda: GMMN(**SMALL_GMMN, random_state=0),
        lambda: GMM(2, random_state=0),
    ],
)
def test_the_users_default_dtype_does_not_matter(factory):
    expected = factory().fit(X).sample(5, random_state=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = factory().fit(X)
        got = model.sample(5, random_state=0)
        assert (
            np.isfinite(model.score_samples(X[:5])).all()
            if hasattr(model, "score_samples") and not isinstance(model, GMMN)
            else True
        )
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- properties
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 3)), elements=finite))
def test_gmm_fits_any_finite_data_or_says_why(Z):
    model = GMM(2, random_state=0, n_init=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z)
    except ValueError:
        return
    assert not np.isnan(model.score_samples(Z)).any()
    assert np.isfinite(model.sample(3, random_state=0)).all()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(4, 12), st.integers(1, 3)), elements=finite))
def test_mdn_fits_any_finite_data_or_says_why(Z):
    model = CausalConvMDN(
        n_components=1, hidden_channels=4, max_epochs=1, device="cpu", random_state=0
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z)
    except (ValueError, FloatingPointError):
        return
    assert not np.isnan(model.score_samples(Z)).any()
    assert np.isfinite(model.sample(3, random_state=0)).all()


# ------------------------------------------------------------------ command line
def _cli_files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.normal(size=(200, 3)))
    np.save(tmp_path / "one_d.npy", rng.normal(size=200))
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 2.0]]))
    (tmp_path / "text.npy").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "folder").mkdir()
    GMM(2, random_state=0).fit(rng.normal(size=(200, 3))).save(tmp_path / "gmm.ldelib")
    GMMN(**SMALL_GMMN, random_state=0).fit(rng.normal(size=(200, 3))).save(
        tmp_path / "gmmn.ldelib"
    )
    (tmp_path / "foreign.ldelib").write_text("not a model")


# (argv with {d} for the folder, exit status, words the one-line message must hold)
CLI_CASES = [
    (["fit", "{d}/missing.npy", "--out", "{d}/m.ldelib"], 2, "No such file"),
    (["fit", "{d}/folder", "--out", "{d}/m.ldelib"], 2, "is a folder"),
    (["fit", "{d}/text.npy", "--out", "{d}/m.ldelib"], 2, "not a .npy file"),
    (["fit", "{d}/one_d.npy", "--out", "{d}/m.ldelib"], 2, "2-D numeric array"),
    (["fit", "{d}/nan.npy", "--out", "{d}/m.ldelib"], 2, "NaN"),
    (
        ["fit", "{d}/z.npy", "--model", "gmm", "--param", "bogus=1", "--out", "{d}/m.ldelib"],
        2,
        "bogus",
    ),
    (
        [
            "fit",
            "{d}/z.npy",
            "--model",
            "gmm",
            "--param",
            "n_components=-1",
            "--out",
            "{d}/m.ldelib",
        ],
        2,
        "n_components",
    ),
    (["fit", "{d}/z.npy", "--model", "gmm", "--out", "{d}/no/such/m.ldelib"], 2, "does not exist"),
    (
        [
            "fit",
            "{d}/z.npy",
            "--model",
            "mdn",
            "--param",
            "init=random",
            "--param",
            "learning_rate=1000",
            "--param",
            "max_epochs=2",
            "--param",
            "random_state=0",
            "--param",
            "device=cpu",
            "--out",
            "{d}/m.ldelib",
        ],
        1,
        "learning_rate",
    ),
    (["score", "{d}/z.npy", "{d}/z.npy"], 2, "numpy array file"),
    (["score", "{d}/missing.ldelib", "{d}/z.npy"], 2, "No model file"),
    (["score", "{d}/foreign.ldelib", "{d}/z.npy"], 2, "not a readable ldelib model file"),
    (["score", "{d}/gmmn.ldelib", "{d}/z.npy"], 2, "no tractable density"),
    (["score", "{d}/gmm.ldelib", "{d}/one_d.npy"], 2, "2-D numeric array"),
    (["sample", "{d}/gmm.ldelib", "5", "--out", "{d}/no/such/s.npy"], 2, "does not exist"),
    (["sample", "{d}/folder", "5", "--out", "{d}/s.npy"], 2, "folder"),
    (["convert", "{d}/missing.ldelib", "{d}/new.ldelib"], 2, "No model file"),
]


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    CLI_CASES,
    ids=[" ".join(c[0][:2]) + f" {i}" for i, c in enumerate(CLI_CASES)],
)
def test_the_command_line_reports_every_error_in_one_line(tmp_path, capsys, argv, status, words):
    from ldelib.cli import main

    _cli_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert main([a.format(d=tmp_path) for a in argv]) == status
    err = capsys.readouterr().err  # progress bars may come first
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_debug_shows_the_traceback(tmp_path):
    from ldelib.cli import main

    _cli_files(tmp_path)
    with pytest.raises(ValueError, match=r"not a \.npy file"):
        main(["--debug", "fit", str(tmp_path / "text.npy"), "--out", str(tmp_path / "m")])


def test_outputs_are_written_exactly_where_reported(tmp_path, capsys):
    from ldelib.cli import main

    _cli_files(tmp_path)
    assert (
        main(["sample", str(tmp_path / "gmm.ldelib"), "4", "--out", str(tmp_path / "samples")])
        == 0
    )
    assert str(tmp_path / "samples") in capsys.readouterr().out
    assert np.load(tmp_path / "samples").shape == (4, 3)


# -------------------------------------------------------------------- crafted files
def _crafted(tmp_path, model, edit):
    from ldelib.persistence import read_model_file, write_model_file

    path = tmp_path / "model.ldelib"
    model.fit(X).save(path)
    config, tensors = read_model_file(path)
    edit(config, tensors)
    write_model_file(path, config, tensors)
    return path


CRAFTED = [
    (
        "gmm-means-shape",
        lambda: GMM(2, random_state=0),
        lambda c, t: t.update(means_=t["means_"][:1]),
        "means_",
    ),
    (
        "gmm-weights",
        lambda: GMM(2, random_state=0),
        lambda c, t: t.update(weights_=t["weights_"] * 3),
        "weights_",
    ),
    (
        "gmm-nan",
        lambda: GMM(2, random_state=0),
        lambda c, t: t.update(covariances_=t["covariances_"] * np.nan),
        "NaN",
    ),
    (
        "gmm-method-name",
        lambda: GMM(2, random_state=0),
        lambda c, t: c["attributes"].update(sample=1),
        "unexpected attribute",
    ),
    (
        "gmm-dimension",
        lambda: GMM(2, random_state=0),
        lambda c, t: c["attributes"].update(n_features_in_=-3),
        "n_features_in_",
    ),
    (
        "gmmn-bandwidths",
        lambda: GMMN(**SMALL_GMMN, random_state=0),
        lambda c, t: t.update(bandwidths_=-t["bandwidths_"]),
        "bandwidths_",
    ),
    (
        "gmmn-weights",
        lambda: GMMN(**SMALL_GMMN, random_state=0),
        lambda c, t: t.popitem(),
        "damaged",
    ),
    (
        "unknown-class",
        lambda: GMM(2, random_state=0),
        lambda c, t: c.update({"class": "builtins.eval"}),
        "unknown estimator class",
    ),
    (
        "bad-param",
        lambda: GMM(2, random_state=0),
        lambda c, t: c["params"].update(n_components="__import__('os')"),
        "damaged",
    ),
]


@pytest.mark.parametrize(
    ("name", "factory", "edit", "words"), CRAFTED, ids=[c[0] for c in CRAFTED]
)
def test_crafted_files_are_refused_with_what_is_wrong(tmp_path, name, factory, edit, words):
    path = _crafted(tmp_path, factory(), edit)
    content = path.read_bytes()
    with pytest.raises(ValueError, match=words):
        ldelib.load(path).sample(2)  # sample: a param that loads must still be checked
    assert path.read_bytes() == content
