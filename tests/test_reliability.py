"""Faults and hostile input: every case ends in a clear error or a correct result.

Each case states the exact exception type, words its message must contain, and that
nothing in the estimator (or on disk) changed. The cases are classes of fault, not one
reproduction each: a failing fit, an interrupted fit, a diverging fit, extreme finite
values, the user's global torch state, crafted model files.
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import ldelib
from ldelib import (
    GMM,
    GMMN,
    CausalConvMDN,
    DegenerateDataWarning,
    IncrementalAutoencoder,
    LatentDensityEstimator,
)
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
    # Sound: within a nat per dimension of the true density of X, N(0, I), on either side;
    # an untrained model of random weights is 1 to 2.5 nats/row below it, a collapsed one is
    # tens of nats below, a degenerate spike on the rows far above.
    truth = np.mean(-0.5 * (X**2).sum(axis=1) - 1.5 * np.log(2 * np.pi))
    assert abs(model.score(X) - truth) <= X.shape[1]
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegenerateDataWarning)
            model.fit(Z)
        # Fitted, and told the column is constant (GMMN has no density to warn about).
        said = [str(w.message) for w in caught if w.category is DegenerateDataWarning]
        assert len(said) == (0 if isinstance(model, GMMN) else 1)
        assert all("column 1 constant" in m for m in said)
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


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 3)), elements=finite))
def test_gmm_fits_any_finite_data_or_says_why(Z):
    model = GMM(2, random_state=0, n_init=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # Repeated values are most of what these draw: the warning is tested below.
            warnings.simplefilter("ignore", DegenerateDataWarning)
            model.fit(Z)
    except ValueError:
        return
    assert not np.isnan(model.score_samples(Z)).any()
    assert np.isfinite(model.sample(3, random_state=0)).all()


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(4, 12), st.integers(1, 3)), elements=finite))
def test_mdn_fits_any_finite_data_or_says_why(Z):
    model = CausalConvMDN(
        n_components=1, hidden_channels=4, max_epochs=1, device="cpu", random_state=0
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DegenerateDataWarning)  # as above
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


# ---------------------------------------------------------------- clear errors (issue 21)
_META = (
    "{name} is a tensor on the 'meta' device, which has a shape and a dtype but no values; "
    "create it on 'cpu' or 'cuda' instead."
)


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


def _fitted_gmm() -> GMM:
    return GMM(2, random_state=0).fit(X)


def _fitted_mdn() -> CausalConvMDN:
    return CausalConvMDN(**SMALL_MDN, random_state=0).fit(X)


@pytest.mark.parametrize(
    ("factory", "call", "name"),
    [
        (lambda: GMM(2, random_state=0), lambda m: m.fit(_meta(10, 3)), "X"),
        (lambda: CausalConvMDN(**SMALL_MDN), lambda m: m.fit(_meta(10, 3)), "X"),
        (lambda: GMMN(**SMALL_GMMN), lambda m: m.fit(_meta(10, 3)), "X"),
        (lambda: GMM(2), lambda m: m.fit(iter([_meta(10, 3)])), "Batch 0 of X"),
        (lambda: LatentDensityEstimator("gmm"), lambda m: m.fit(_meta(10, 3)), "X"),
        (_fitted_gmm, lambda m: m.score_samples(_meta(4, 3)), "X"),
        (_fitted_gmm, lambda m: m.score_samples(_meta(4, 1), n_dims=1), "X"),
        (_fitted_gmm, lambda m: m.log_prob(_meta(4, 3)), "X"),
        (_fitted_gmm, lambda m: m.score(_meta(4, 3)), "X"),
        (_fitted_gmm, lambda m: m.sample(2, given=_meta(1)), "given"),
        (_fitted_mdn, lambda m: m.score_samples(_meta(4, 3)), "X"),
        (_fitted_mdn, lambda m: m.score(_meta(4, 3)), "X"),
        (_fitted_mdn, lambda m: m.sample(2, given=_meta(2, 1)), "given"),
        (
            lambda: LatentDensityEstimator(GMM(2, random_state=0)).fit(X),
            lambda m: m.log_prob(_meta(4, 3)),
            "X",
        ),
        (
            lambda: LatentDensityEstimator(GMM(2, random_state=0)).fit(X),
            lambda m: m.score(_meta(4, 3)),
            "X",
        ),
    ],
)
def test_meta_tensors_are_refused_by_name(tmp_path, monkeypatch, factory, call, name):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where batches are spooled
    model = factory()
    before = _state(model)
    params = model.get_params()
    with pytest.raises(TypeError) as caught:
        call(model)
    assert str(caught.value) == _META.format(name=name)
    assert _same(before, _state(model)) and model.get_params() == params
    if hasattr(model, "score_samples") and hasattr(model, "n_features_in_"):
        np.testing.assert_array_equal(model.score_samples(X[:5]), factory().score_samples(X[:5]))
    assert list(tmp_path.glob(".ldelib-*")) == []  # no spooled rows left behind


def test_meta_tensors_are_refused_by_the_metrics():
    with pytest.raises(ValueError) as caught:
        parzen_log_likelihood(_meta(5, 3), X[:4], bandwidth=0.5)
    assert str(caught.value) == _META.format(name="samples")


def test_parzen_far_point_is_finite_and_exact():
    # Squared distances of 1e160 overflow float64; the log-likelihood, -5e299, does not.
    from decimal import Decimal, getcontext

    getcontext().prec = 60
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(20, 2))
    point = np.array([[1e160, -3.0], [0.5, 0.25]])
    h = 1e10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = parzen_log_likelihood(samples, point, bandwidth=h)

    def reference(x: np.ndarray) -> float:
        # Exact squared distances, then a log-sum-exp shifted by the nearest one.
        exponents = [
            -sum((Decimal(float(a)) - Decimal(float(b))) ** 2 for a, b in zip(x, s, strict=True))
            / (2 * Decimal(h) ** 2)
            for s in samples
        ]
        top = max(exponents)
        lse = top + sum((e - top).exp() for e in exponents).ln()
        norm = Decimal(len(samples)).ln() + (2 * Decimal(np.pi) * Decimal(h) ** 2).ln()
        return float(lse - norm)

    expected = [reference(x) for x in point]
    np.testing.assert_allclose(result.log_likelihoods, expected, rtol=1e-12)
    assert result.mean == pytest.approx(np.mean(expected), rel=1e-12)


def test_parzen_point_beyond_float64_is_refused_by_name():
    samples = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError) as caught:
        parzen_log_likelihood(samples, np.array([[0.0, 0.0], [1e160, 0.0]]), bandwidth=0.5)
    reach = float(np.abs(samples).max())
    assert str(caught.value) == (
        f"X_test row 1 (largest magnitude 1e+160) is so far from every sample (largest "
        f"magnitude {reach:.3g}) that its Parzen log-likelihood at the bandwidth 0.5 is "
        "below -1.8e+308 nats, beyond float64's range. Check that X_test and the samples "
        "are in the same units, or drop such rows."
    )


FAR = np.array([[1e30, 0.0, 0.0], [0.0, 1e20, 0.0], [1e17, -1e17, 1e17]])


@pytest.mark.parametrize("options", [{}, {"init": "random"}, {"architecture": "paper"}])
def test_mdn_scores_rows_far_beyond_float32_in_float64(options):
    params = {**SMALL_MDN, "max_epochs": 2, **options}
    if options.get("architecture") == "paper":
        params.pop("hidden_channels")
    model = CausalConvMDN(**params, random_state=0).fit(X)
    near = X[:5]
    alone = model.score_samples(near)
    before = _state(model)
    scores = model.score_samples(np.vstack([near, FAR]))
    assert _same(before, _state(model))  # no float64 module left behind
    assert next(model.module_.parameters()).dtype == torch.float32
    np.testing.assert_allclose(scores[:5], alone, rtol=1e-6)  # still the float32 pass
    assert np.isfinite(scores).all()
    # The same network in float64, run directly on the standardised rows.
    network = copy.deepcopy(model.module_).double()
    Z = torch.from_numpy(((FAR - model.mean_) / model.scale_)[:, model.ordering_])
    with torch.no_grad():
        direct = network(Z).numpy() - np.log(model.scale_).sum()
    np.testing.assert_allclose(scores[5:], direct, rtol=1e-9)
    tensor = model.score_samples(torch.tensor(FAR))
    np.testing.assert_allclose(tensor.detach().numpy(), scores[5:], rtol=1e-12)


def test_mdn_far_rows_match_the_anchor_mixture_computed_independently():
    model = CausalConvMDN(**SMALL_MDN, random_state=0).fit(X)
    with torch.no_grad():  # no corrections: the model is its anchor mixture exactly
        model.module_.net.output.weight.zero_()
        model.module_.net.output.bias.zero_()
    anchor = model.module_.anchor
    log_w = anchor.log_weights.double().numpy()
    means = anchor.means.double().numpy()
    inverse = anchor.inverse_cholesky.double().numpy()
    Z = ((FAR - model.mean_) / model.scale_)[:, model.ordering_]
    eps = np.einsum("kij,nkj->nki", inverse, Z[:, None, :] - means[None])
    log_n = (
        -0.5 * np.square(eps).sum(-1)
        + np.log(np.diagonal(inverse, axis1=1, axis2=2)).sum(-1)
        - 1.5 * np.log(2 * np.pi)
    )
    log_w = log_w - logsumexp(log_w)
    expected = logsumexp(log_w + log_n, axis=1) - np.log(model.scale_).sum()
    scores = model.score_samples(FAR)
    assert np.isfinite(scores).all() and (scores < -1e30).all()
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


TOO_FEW = [
    (
        lambda: CausalConvMDN(**SMALL_MDN),
        3,
        (
            "CausalConvMDN needs at least 4 samples to fit, got n_samples = 3. Its start "
            "(init='auto') is a Gaussian mixture fitted to the rows left after holding out "
            "validation_fraction=0.1 (at least one row); it chooses reg_covar by held-out "
            "likelihood, holding out 20% of those rows (at least one) and fitting each "
            "candidate on the rest, which must hold at least 2. Use init='random' to fit on "
            "fewer rows."
        ),
    ),
    (
        lambda: CausalConvMDN(),
        2,
        (
            "CausalConvMDN needs at least 4 samples to fit, got n_samples = 2. Its start "
            "(init='auto') is a Gaussian mixture fitted to the rows left after holding out "
            "validation_fraction=0.1 (at least one row); it chooses n_components and "
            "reg_covar by held-out likelihood, holding out 20% of those rows (at least one) "
            "and fitting each candidate on the rest, which must hold at least 2. Use "
            "init='random' to fit on fewer rows."
        ),
    ),
    (
        lambda: CausalConvMDN(3, max_epochs=1, device="cpu"),
        4,
        (
            "CausalConvMDN needs at least 5 samples to fit, got n_samples = 4. Its start "
            "(init='auto') is a Gaussian mixture fitted to the rows left after holding out "
            "validation_fraction=0.1 (at least one row); it chooses reg_covar by held-out "
            "likelihood, holding out 20% of those rows (at least one) and fitting each "
            "candidate on the rest, which must hold at least 3 (one per component of "
            "n_components=3). Use init='random' to fit on fewer rows."
        ),
    ),
    (
        lambda: CausalConvMDN(validation_fraction=0),
        2,
        (
            "CausalConvMDN needs at least 3 samples to fit, got n_samples = 2. Its start "
            "(init='auto') is a Gaussian mixture fitted to every row; it chooses n_components "
            "and reg_covar by held-out likelihood, holding out 20% of those rows (at least "
            "one) and fitting each candidate on the rest, which must hold at least 2. Use "
            "init='random' to fit on fewer rows."
        ),
    ),
    (
        lambda: GMM(5),
        3,
        (
            "GMM needs at least 5 samples to fit, got n_samples = 3. A mixture of "
            "n_components=5 needs at least one row per component."
        ),
    ),
    (
        lambda: GMM("auto"),
        2,
        (
            "GMM needs at least 3 samples to fit, got n_samples = 2. Choosing n_components by "
            "held-out likelihood holds out validation_fraction=0.2 of the rows (at least one) "
            "and fits each candidate on the rest, which must hold at least 2. Give a single "
            "n_components and reg_covar to fit on every row."
        ),
    ),
    (
        lambda: GMM([1, 5], reg_covar="auto", validation_fraction=0.5),
        8,  # round(0.5 * 9) = 4 held out of 9 leaves 5: 9 is enough
        (
            "GMM needs at least 9 samples to fit, got n_samples = 8. Choosing n_components "
            "and reg_covar by held-out likelihood holds out validation_fraction=0.5 of the rows "
            "(at least one) and fits each candidate on the rest, which must hold at least 5 "
            "(one per component of n_components=5). Give a single n_components and reg_covar "
            "to fit on every row."
        ),
    ),
    (lambda: GMMN(**SMALL_GMMN), 1, "GMMN needs at least 2 samples to fit, got n_samples = 1."),
]


@pytest.mark.parametrize(("factory", "n", "message"), TOO_FEW)
def test_too_few_rows_name_the_minimum_and_why(tmp_path, factory, n, message):
    rows = np.random.default_rng(0).normal(size=(n, 2))
    model = factory()
    with pytest.raises(ValueError) as caught:
        model.fit(rows)
    assert str(caught.value) == message
    assert not hasattr(model, "n_features_in_")
    # The same rows on disk: the same minimum, and the file untouched.
    path = tmp_path / "rows.npy"
    np.save(path, rows)
    content, stamp = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(ValueError) as caught:
        model.fit(path)
    assert str(caught.value) == message.replace(f"got n_samples = {n}", f"{str(path)!r} has {n}")
    assert not hasattr(model, "n_features_in_")
    assert path.read_bytes() == content and path.stat().st_mtime_ns == stamp
    # The minimum is exact: that many rows fit.
    minimum = int(re.search(r"at least (\d+) samples", message)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ldelib.DegenerateDataWarning)  # 2 rows in 2-D
        factory().fit(np.random.default_rng(0).normal(size=(minimum, 2)))


def test_gmm_max_fit_rows_below_the_minimum_is_refused():
    model = GMM(5, max_fit_rows=4)
    with pytest.raises(ValueError) as caught:
        model.fit(X)
    assert str(caught.value) == (
        "The GMM parameter max_fit_rows must be at least 5, the fewest rows this mixture can "
        "be fitted on; got 4. A mixture of n_components=5 needs at least one row per "
        "component."
    )
    assert not hasattr(model, "n_features_in_")


BIG = np.finfo(np.float64).max
_rng = np.random.default_rng(0)
AWKWARD = {
    "+-max in a column": np.column_stack(
        [_rng.choice([-1.0, 1.0], 40) * BIG * _rng.uniform(0.5, 1.0, 40), _rng.normal(size=40)]
    ),
    "+-max, two rows": np.array([[BIG, 0.0], [-BIG, 1.0], [BIG, 2.0], [-BIG, 3.0], [0.0, 4.0]]),
    "max and tiny": np.column_stack([_rng.uniform(0, BIG, 30), _rng.normal(size=30) * 1e-300]),
    "max and ordinary columns": np.column_stack(
        [BIG * np.linspace(-1.0, 1.0, 30), _rng.normal(size=30), np.arange(30.0)]
    ),
}


@pytest.mark.parametrize("name", list(AWKWARD))
@pytest.mark.parametrize(
    "factory",
    [
        lambda: GMM(2, random_state=0, n_init=1),
        lambda: CausalConvMDN(n_components=1, hidden_channels=4, max_epochs=1, device="cpu"),
    ],
    ids=["gmm", "mdn"],
)
def test_data_near_the_float64_limit_fits_without_spurious_warnings(factory, name):
    # pytest makes RuntimeWarning an error: an overflow in a finiteness check or in the
    # standardisation of valid data fails here.
    Z = AWKWARD[name]
    model = factory().set_params(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ldelib.DegenerateDataWarning)
        model.fit(Z)
    scores = model.score_samples(Z)
    assert np.isfinite(scores).all()
    assert np.isfinite(model.sample(5, random_state=0)).all()
    assert np.isfinite(model.score(Z))


def test_discrete_pixels_warn_with_what_to_do():
    from sklearn.datasets import load_digits

    pixels = load_digits().data[:400]
    for model, hint in [
        (GMM(2, random_state=0), ", drop constant columns or raise reg_covar (now 1e-06)."),
        (CausalConvMDN(**SMALL_MDN, random_state=0), " or drop constant columns."),
    ]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(pixels)
        expected = (
            f"{type(model).__name__}: X has columns 0, 16, 31, 32, 39 and 3 more constant and "
            "columns 1, 2, 3, 4, 5 and 51 more with few distinct values (column 1: 8 "
            "distinct values among 400 rows): a density fitted by maximum likelihood can "
            "put ever narrower peaks on repeated values, so its log-likelihoods measure the "
            "regularisation rather than the data. Dequantise discrete data (add uniform "
            f"noise of one quantisation step){hint}"
        )
        assert [str(w.message) for w in caught] == [expected]  # once: not for the anchor too
        assert caught[0].category is ldelib.DegenerateDataWarning
        assert caught[0].filename == __file__  # points at the user's fit


def test_a_collapsed_held_out_score_warns():
    # One row of the second column differs from the others; with this seed it is held
    # out, and every candidate scores it some 2.5e6 nats below the rest.
    Z = np.column_stack([np.random.default_rng(0).normal(size=200), np.zeros(200)])
    Z[7, 1] = 1.0
    with pytest.warns(ldelib.DegenerateDataWarning) as caught:
        model = GMM([1, 2], random_state=1).fit(Z)
    score = max(model.candidate_scores_.values())
    assert score < -1e6
    # The reference: a Gaussian with the data's means and variances, per dimension in
    # standard units (both columns have unit spread there).
    gaussian = -0.5 * (np.log(2 * np.pi) + 1)
    gap = gaussian - (score + np.log(model.scale_).sum()) / 2
    expected = (
        "GMM: X has column 1 with few distinct values (column 1: 2 distinct values among 200 "
        "rows): a density fitted by maximum likelihood can put ever narrower peaks on "
        "repeated values, so its log-likelihoods measure the regularisation rather than the "
        f"data. Its held-out log-likelihood, {score:.4g} nats per row, is {gap:.3g} nats per "
        "dimension below that of a Gaussian with the data's means and variances: the fit is "
        "degenerate. Dequantise discrete data (add uniform noise of one quantisation step), "
        "drop constant columns or raise reg_covar (now 1e-06)."
    )
    assert [str(w.message) for w in caught] == [expected]


@pytest.mark.parametrize(
    "data",
    [
        X,
        X.astype(np.float32).astype(np.float64),  # float32 latents
        np.random.default_rng(3).normal(size=(5000, 4)).astype(np.float32),
        np.random.default_rng(0).integers(0, 17, size=(300, 3)) / 16.0
        + np.random.default_rng(1).uniform(0, 1 / 16, size=(300, 3)),  # dequantised
    ],
    ids=["normal", "float32-rounded", "float32-5000", "dequantised"],
)
def test_continuous_data_does_not_warn(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ldelib.DegenerateDataWarning)
        GMM("auto", reg_covar="auto", random_state=0).fit(data)
        CausalConvMDN(**SMALL_MDN, random_state=0).fit(data)


@pytest.mark.parametrize(
    ("factory", "limit", "dtype"),
    [
        (lambda: GMM(2, standardize=False, random_state=0), "1.3e+151", "float64"),
        (lambda: CausalConvMDN(**SMALL_MDN, standardize=False), "1.8e+16", "float32"),
    ],
    ids=["gmm", "mdn"],
)
def test_unstandardised_values_too_large_to_square_are_refused(tmp_path, factory, limit, dtype):
    Z = AWKWARD["+-max in a column"]
    name = type(factory()).__name__
    message = (
        f"{{where}} holds values up to {np.abs(Z).max():.3g}, and with standardize=False "
        f"{name} computes with them as they are: beyond about {limit} their squares "
        f"overflow {dtype}. Use standardize=True (the default), which fits any finite data."
    )
    model = factory()
    with pytest.raises(ValueError) as caught:
        model.fit(Z)
    assert str(caught.value) == message.format(where="X")
    assert not hasattr(model, "n_features_in_")
    path = tmp_path / "z.npy"
    np.save(path, Z)
    content = path.read_bytes()
    with pytest.raises(ValueError) as caught:
        model.fit(path)
    assert str(caught.value) == message.format(where=repr(str(path)))
    assert not hasattr(model, "n_features_in_") and path.read_bytes() == content


def test_mean_log_likelihood_near_the_float64_limit():
    # A sum of two such values overflows; their mean and spread do not.
    values = np.array([-1.7e308, -1.5e308])
    mean, std_err = ldelib.metrics.mean_log_likelihood(values)
    assert mean == pytest.approx(-1.6e308, rel=1e-15)
    assert std_err == pytest.approx(0.1e308 / np.sqrt(2), rel=1e-12)


def test_a_degenerate_data_warning_made_an_error_leaves_the_model_unfitted():
    pixels = np.random.default_rng(0).integers(0, 4, size=(200, 2)).astype(float)
    model = GMM(2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ldelib.DegenerateDataWarning)
        with pytest.raises(ldelib.DegenerateDataWarning):
            model.fit(pixels)
    assert not hasattr(model, "n_features_in_")
