from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import ldelib
from ldelib import CausalConvMDN
from ldelib.base import BaseDensityEstimator

FAST = {"max_epochs": 3, "hidden_channels": 8, "n_components": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(150, 4))


@pytest.mark.parametrize("architecture", ["residual", "paper"])
@pytest.mark.parametrize("ordering", ["natural", "variance"])
def test_save_load_round_trip(tmp_path, data, architecture, ordering):
    model = CausalConvMDN(**FAST, architecture=architecture, ordering=ordering, random_state=0)
    model.fit(data * [1, 3, 2, 0.5])
    path = tmp_path / "model.ldelib"
    model.save(path)
    for loaded in (CausalConvMDN.load(path), ldelib.load(path), BaseDensityEstimator.load(path)):
        assert isinstance(loaded, CausalConvMDN)
        assert loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))
        np.testing.assert_array_equal(
            loaded.sample(6, random_state=1), model.sample(6, random_state=1)
        )
        assert loaded.loss_curve_ == model.loss_curve_
        np.testing.assert_array_equal(loaded.ordering_, model.ordering_)
        assert not loaded.module_.training


def test_pickle_round_trip(data):
    model = CausalConvMDN(**FAST, random_state=0).fit(data)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.score_samples(data), model.score_samples(data))
    # The sampling stream travels too: the next draws are the same.
    np.testing.assert_array_equal(copy.sample(5), model.sample(5))


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_a_file_that_runs_code_is_refused_unrun(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ldelib"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"format": "ldelib.model", "x": _Exploit(str(marker))}))
    else:
        torch.save({"format": "ldelib.model", "x": _Exploit(str(marker))}, path)
    with pytest.raises(ValueError, match="not a readable ldelib model file"):
        CausalConvMDN.load(path)
    assert not marker.exists()


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not an ldelib model file"):
        ldelib.load(path)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"PK\x03\x04broken"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "broken.ldelib"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable"):
        ldelib.load(path)


def test_truncated_file(tmp_path, data):
    path = tmp_path / "model.ldelib"
    CausalConvMDN(**FAST, random_state=0).fit(data).save(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="ldelib model file"):
        ldelib.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ldelib.load(tmp_path / "nope.ldelib")


class OtherModel(BaseDensityEstimator):
    def __init__(
        self, standardize: bool = True, random_state: int | None = None, verbose: int = 0
    ) -> None:
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, Z, rng):
        self.cov_ = np.cov(Z.T).reshape(Z.shape[1], Z.shape[1])

    def _sample(self, n_samples, generator):
        return torch.randn(n_samples, self.n_features_in_, generator=generator)


def test_loading_the_wrong_class(tmp_path, data):
    path = tmp_path / "other.ldelib"
    OtherModel(random_state=0).fit(data).save(path)
    with pytest.raises(ValueError, match="holds a OtherModel, not a CausalConvMDN"):
        CausalConvMDN.load(path)
    assert isinstance(ldelib.load(path), OtherModel)


def test_unknown_class_and_tampered_params(tmp_path, data):
    from ldelib.io import read_model_file, write_model_file

    path = tmp_path / "model.ldelib"
    CausalConvMDN(**FAST, random_state=0).fit(data).save(path)
    config, tensors = read_model_file(path)
    write_model_file(path, {**config, "class": "os.system"}, tensors)
    with pytest.raises(ValueError, match="unknown estimator class"):
        ldelib.load(path)
    write_model_file(path, {**config, "params": {**config["params"], "bogus": 1}}, tensors)
    with pytest.raises(ValueError, match="damaged"):
        ldelib.load(path)
    write_model_file(path, config, {k: v for k, v in tensors.items() if "blocks" not in k})
    with pytest.raises(ValueError, match="damaged"):
        ldelib.load(path)


def test_saved_config_is_plain_json(tmp_path, data):
    import json

    path = tmp_path / "model.ldelib"
    CausalConvMDN(**FAST, random_state=0).fit(data).save(path)
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    assert config["class"] == "CausalConvMDN"
    assert config["params"]["n_components"] == 2
    assert set(payload["tensors"]) >= {"mean_", "scale_", "ordering_"}


def test_array_parameters_are_saved(tmp_path, data):
    from ldelib import GMMN

    model = GMMN(
        bandwidths=np.array([0.5, 1.0]),
        hidden_sizes=(8,),
        max_epochs=2,
        device="cpu",
        random_state=0,
    ).fit(data)
    model.save(tmp_path / "gmmn.ldelib")
    loaded = ldelib.load(tmp_path / "gmmn.ldelib")
    assert loaded.bandwidths == [0.5, 1.0]
    np.testing.assert_array_equal(
        loaded.sample(5, random_state=0), model.sample(5, random_state=0)
    )
