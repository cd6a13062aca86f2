from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import ldelib
from ldelib import BaseDensityEstimator, BaseGenerativeModel, CausalConvMDN
from ldelib.persistence import read_model_file, register, write_model_file

FAST = {"max_epochs": 3, "hidden_channels": 8, "n_components": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(150, 4))


@pytest.mark.parametrize("architecture", ["residual", "paper"])
@pytest.mark.parametrize("ordering", ["natural", "variance"])
def test_save_load_round_trip(tmp_path, data, architecture, ordering):
    fast = {k: v for k, v in FAST.items() if architecture == "residual" or k != "hidden_channels"}
    model = CausalConvMDN(**fast, architecture=architecture, ordering=ordering, random_state=0)
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


@register("tests.OtherModel")
class OtherModel(BaseGenerativeModel):
    def __init__(
        self, standardize: bool = True, random_state: int | None = None, verbose: int = 0
    ) -> None:
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, rows, rng):
        Z = rows.all()
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

    from safetensors import safe_open

    path = tmp_path / "model.ldelib"
    CausalConvMDN(**FAST, random_state=0).fit(data).save(path)
    with safe_open(path, framework="pt") as f:
        config = json.loads(f.metadata()["config"])
        names = set(f.keys())
    assert config["class"] == "ldelib.CausalConvMDN"
    assert config["params"]["n_components"] == 2
    assert names >= {"mean_", "scale_", "ordering_"}


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


# ------------------------------------------------------------ registry and files
def test_the_registry_refuses_a_taken_name():
    from ldelib import GMM

    with pytest.raises(ValueError, match="already the file name of GMM"):

        @register("ldelib.GMM")
        class GMM2(GMM):
            pass


def test_a_user_subclass_never_takes_over_ldelib_files(tmp_path, data):
    from ldelib import GMM

    class GMMSubclass(GMM):  # same role as a user's `class GMM(ldelib.GMM)`
        pass

    path = tmp_path / "gmm.ldelib"
    GMM(2, random_state=0).fit(data).save(path)
    assert type(ldelib.load(path)) is GMM
    with pytest.raises(TypeError, match="not registered"):
        GMMSubclass(2, random_state=0).fit(data).save(tmp_path / "sub.ldelib")


def test_binary_file_objects(data):
    import io

    from ldelib import GMM

    model = GMM(2, random_state=0).fit(data)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = GMM.load(buffer)
    np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))


def test_a_failed_save_leaves_the_previous_file_whole(tmp_path, data, monkeypatch):
    from ldelib import GMM

    path = tmp_path / "gmm.ldelib"
    GMM(1, random_state=0).fit(data).save(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match=r"Could not save to .*gmm\.ldelib.*No space left"):
        GMM(3, random_state=0).fit(data).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmm.ldelib"]  # no temporary left


def test_saving_into_a_missing_folder_names_it(tmp_path, data):
    from ldelib import GMM

    with pytest.raises(FileNotFoundError, match="does not exist"):
        GMM(1, random_state=0).fit(data).save(tmp_path / "missing" / "gmm.ldelib")


def test_a_saved_file_gets_the_usual_permissions(tmp_path, data):
    from ldelib import GMM

    path = tmp_path / "gmm.ldelib"
    GMM(1, random_state=0).fit(data).save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_numpy_file_and_a_folder_are_not_models(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"numpy array file \(\.npy\), not an ldelib model"):
        ldelib.load(tmp_path / "z.npy")
    with pytest.raises(IsADirectoryError, match="folder"):
        ldelib.load(tmp_path)


def _tamper(path, edit_config=None, edit_tensors=None):
    config, tensors = read_model_file(path)
    if edit_config:
        edit_config(config)
    if edit_tensors:
        edit_tensors(tensors)
    write_model_file(path, config, tensors)


@pytest.mark.parametrize(
    ("config_edit", "tensor_edit", "match"),
    [
        (lambda c: c["attributes"].update(score_samples=1), None, "unexpected attribute"),
        (lambda c: c["attributes"].update(hack_=1), None, "unexpected attribute"),
        (lambda c: c["attributes"].pop("ordering_"), None, "missing attribute"),
        (None, lambda t: t.update(mean_=t["mean_"] * float("nan")), "NaN or infinity"),
        (None, lambda t: t.update(scale_=t["scale_"][:2]), "shape"),
        (None, lambda t: t.update(ordering_=torch.zeros_like(t["ordering_"])), "permutation"),
    ],
)
def test_restored_files_are_validated(tmp_path, data, config_edit, tensor_edit, match):
    path = tmp_path / "model.ldelib"
    CausalConvMDN(**FAST, random_state=0).fit(data).save(path)
    _tamper(path, config_edit, tensor_edit)
    with pytest.raises(ValueError, match=match):
        ldelib.load(path)


def _format_1_file(model, path):
    """A file as ldelib 0.1 wrote it: torch.save of a JSON config and flat tensors."""
    import json

    config, tensors = read_model_file_of(model)
    config["class"] = config["class"].removeprefix("ldelib.")
    payload = {
        "format": "ldelib.model",
        "format_version": 1,
        "config": json.dumps(config),
        "tensors": tensors,
    }
    torch.save(payload, path)


def read_model_file_of(model):
    import io

    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    return read_model_file(buffer)


def test_format_1_files_are_refused_with_the_way_to_convert(tmp_path, data):
    from ldelib import GMM
    from ldelib.cli import main

    model = GMM(2, random_state=0).fit(data)
    old, new = tmp_path / "old.ldelib", tmp_path / "new.ldelib"
    _format_1_file(model, old)
    with pytest.raises(ValueError, match="ldelib convert"):
        ldelib.load(old)
    assert main(["convert", str(old), str(new)]) == 0
    np.testing.assert_array_equal(ldelib.load(new).score_samples(data), model.score_samples(data))


# ---------------------------------------------------- the latent density estimator
@pytest.mark.parametrize("density", ["gmm", "estimator"])
def test_latent_density_estimator_round_trip(tmp_path, data, density):
    from ldelib import GMM, LatentDensityEstimator

    W = np.random.default_rng(1).normal(size=(4, 6))
    density = "gmm" if density == "gmm" else GMM(2, random_state=0)
    lde = LatentDensityEstimator(density, encoder=lambda x: x @ np.linalg.pinv(W))
    lde.fit(data @ W)
    path = tmp_path / "lde.ldelib"
    lde.save(path)
    loaded = LatentDensityEstimator.load(path, encoder=lde.encoder)
    assert loaded.encoder is lde.encoder and loaded.decoder is None
    assert set(loaded.get_params()) == set(lde.get_params())
    assert repr(loaded.density) == repr(lde.density)
    np.testing.assert_array_equal(loaded.log_prob(data @ W), lde.log_prob(data @ W))
    assert loaded.input_shape_ == (6,) and loaded.latent_dim_ == 4
    assert isinstance(ldelib.load(path, encoder=lde.encoder), LatentDensityEstimator)


# ------------------------------------------------- what a save may replace (issue 21)
def _fitted_gmm(data, k: int = 1):
    from ldelib import GMM

    return GMM(k, random_state=0).fit(data)


def test_saving_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, data):
    target = tmp_path / "models" / "real.ldelib"
    target.parent.mkdir()
    _fitted_gmm(data, 1).save(target)
    link = tmp_path / "link.ldelib"
    link.symlink_to(target)
    model = _fitted_gmm(data, 2)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    loaded = ldelib.load(target)  # the target holds the new model, not the old one
    np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.ldelib"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.ldelib", "models"]


def test_saving_through_a_dangling_symlink_creates_its_target(tmp_path, data):
    link = tmp_path / "link.ldelib"
    link.symlink_to("new.ldelib")  # relative, as users often write them
    model = _fitted_gmm(data)
    model.save(link)
    assert link.is_symlink()
    np.testing.assert_array_equal(
        ldelib.load(tmp_path / "new.ldelib").score_samples(data), model.score_samples(data)
    )


def test_a_symlink_loop_is_refused(tmp_path, data):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match=r"Cannot write '.*/a': its symlinks form a loop"):
        _fitted_gmm(data).save(tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_saving_keeps_an_existing_files_permissions(tmp_path, data):
    path = tmp_path / "private.ldelib"
    _fitted_gmm(data).save(path)
    path.chmod(0o600)
    _fitted_gmm(data, 2).save(path)
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_never_replaced(tmp_path, data):
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    model = _fitted_gmm(data)
    message = (
        f"Cannot write '{fifo}': it is a FIFO (named pipe), not a regular file, and ldelib "
        "never replaces one. Write to a file path, or pass an open file object instead."
    )
    with pytest.raises(OSError) as raised:
        model.save(fifo)
    assert str(raised.value) == message
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the FIFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary left
    # Through a symlink, the message names both.
    (tmp_path / "link").symlink_to(fifo)
    with pytest.raises(OSError, match=r"'.*link \(-> .*pipe\)': it is a FIFO"):
        model.save(tmp_path / "link")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_socket_is_never_replaced(tmp_path, data):
    import socket
    import stat

    path = tmp_path / "s"  # short: socket paths are limited to about 100 bytes
    if len(str(path)) > 100:
        pytest.skip("temporary folder too deep for a socket path")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OSError, match="it is a socket, not a regular file"):
            _fitted_gmm(data).save(path)
    assert stat.S_ISSOCK(path.stat().st_mode)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("S_IFCHR", "a character device"), ("S_IFBLK", "a block device")],
)
def test_a_device_is_never_replaced(tmp_path, data, monkeypatch, kind, name):
    import stat

    # A stand-in for /dev/full: a regular file that os.stat reports as a device node.
    device = tmp_path / "full"
    device.write_bytes(b"")
    real_stat = os.stat

    def fake_stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(device):
            mode = getattr(stat, kind) | 0o666
            return os.stat_result((mode, *tuple(result)[1:]))
        return result

    monkeypatch.setattr(os, "stat", fake_stat)
    replaced = []
    monkeypatch.setattr(os, "replace", lambda *a: replaced.append(a))
    with pytest.raises(OSError, match=f"it is {name}, not a regular file"):
        _fitted_gmm(data).save(device)
    assert replaced == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_an_open_file_object_is_written_through(tmp_path, data):
    model = _fitted_gmm(data)
    path = tmp_path / "m.ldelib"
    with open(path, "wb") as f:  # the way to write to a pipe or a device
        model.save(f)
    np.testing.assert_array_equal(ldelib.load(path).score_samples(data), model.score_samples(data))
