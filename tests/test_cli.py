from __future__ import annotations

import numpy as np
import pytest

from ldelib.cli import main


def test_demo_quick_writes_a_picture(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--quick", "--target", "banana", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("truth (exact density)", "CausalConvMDN", "GMM (10 full-covariance)"):
        assert row in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_score_sample_round_trip(tmp_path, capsys):
    data = tmp_path / "z.npy"
    np.save(data, np.random.default_rng(0).normal(size=(300, 3)))
    model = tmp_path / "m.ldelib"
    assert (
        main(
            [
                "fit",
                str(data),
                "--model",
                "mdn",
                "--param",
                "max_epochs=3",
                "--param",
                "device=cpu",
                "--param",
                "random_state=0",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    scores = tmp_path / "s.npy"
    assert main(["score", str(model), str(data), "--out", str(scores)]) == 0
    assert np.load(scores).shape == (300,)
    samples = tmp_path / "x.npy"
    assert main(["sample", str(model), "7", "--out", str(samples), "--seed", "1"]) == 0
    assert np.load(samples).shape == (7, 3)
    assert "mean log-likelihood" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    data = tmp_path / "bad.npy"
    np.save(data, np.array([[np.nan, 1.0], [0.0, 1.0]]))
    assert main(["fit", str(data), "--out", str(tmp_path / "m.ldelib")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.ldelib"), str(data)]) == 2


def test_bad_param_syntax(tmp_path):
    data = tmp_path / "z.npy"
    np.save(data, np.zeros((4, 2)))
    with pytest.raises(SystemExit):
        main(["fit", str(data), "--param", "oops", "--out", str(tmp_path / "m")])
