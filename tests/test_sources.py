"""Rows on disk: streaming statistics, fits from a file, scores written to a file."""

from __future__ import annotations

import numpy as np
import pytest

from ldelib import GMM, CausalConvMDN
from ldelib._sources import CHUNK, Standardizer, open_rows

SMALL_MDN = {"n_components": 2, "hidden_channels": 8, "max_epochs": 2, "device": "cpu"}


# The data's constant column is on purpose (files and arrays must standardise it alike):
# the warning it draws is tested in test_reliability.py.
pytestmark = pytest.mark.filterwarnings("ignore::ldelib.DegenerateDataWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2500, 4)) * [1.0, 20.0, 1e-3, 5.0] + [3.0, -1.0, 0.0, 1e6]
    X[:, 2] = 7.0  # a constant column
    path = tmp_path_factory.mktemp("rows") / "x.npy"
    np.save(path, X)
    return X, path


@pytest.mark.parametrize("chunk", [7, 1000, CHUNK])
def test_streaming_statistics_equal_numpys(data, chunk, monkeypatch):
    import ldelib._sources as sources

    monkeypatch.setattr(sources, "CHUNK", chunk)
    monkeypatch.setattr(sources.chunks, "__defaults__", (chunk,))
    X, path = data
    streamed = Standardizer.of_rows(open_rows(path), "x")
    in_memory = Standardizer.of_array(X)
    np.testing.assert_allclose(streamed.data_mean, X.mean(axis=0), rtol=1e-13)
    # A column at 1e6 with spread 5 loses 1e-12 of its spread to cancellation either way.
    np.testing.assert_allclose(streamed.data_scale[[0, 1, 3]], X.std(axis=0)[[0, 1, 3]], rtol=1e-9)
    assert streamed.data_scale[2] == 1.0 and streamed.equal[2]
    np.testing.assert_allclose(streamed.transform(X), in_memory.transform(X), atol=1e-8)


@pytest.mark.parametrize("kind", ["path", "memmap"])
@pytest.mark.parametrize(
    "factory",
    [
        lambda: CausalConvMDN(**SMALL_MDN, random_state=0),
        lambda: CausalConvMDN(**SMALL_MDN, init="random", random_state=0),
        lambda: GMM(3, random_state=0),
    ],
    ids=["mdn", "mdn-random", "gmm"],
)
def test_a_file_gives_the_model_its_array_gives(data, kind, factory):
    X, path = data
    source = path if kind == "path" else np.load(path, mmap_mode="r")
    from_array, from_file = factory().fit(X), factory().fit(source)
    np.testing.assert_allclose(from_file.mean_, from_array.mean_, rtol=1e-9)
    np.testing.assert_allclose(
        from_file.score_samples(X[:200]), from_array.score_samples(X[:200]), rtol=1e-5, atol=1e-5
    )


def test_scores_stream_to_a_file(data, tmp_path):
    X, path = data
    model = GMM(2, random_state=0).fit(X)
    out = tmp_path / "ll.npy"
    written = model.score_samples(path, out=out)
    np.testing.assert_array_equal(np.load(out), model.score_samples(X))
    assert isinstance(written, np.memmap) and written.shape == (len(X),)
    np.testing.assert_array_equal(model.score_samples(path), model.score_samples(X))


def test_scores_to_a_folder_are_refused_before_scoring(data, tmp_path):
    X, path = data
    model = GMM(2, random_state=0).fit(X)
    (tmp_path / "ll.npy").mkdir()
    with pytest.raises(IsADirectoryError, match=r"ll\.npy': it is a folder"):
        model.score_samples(path, out=tmp_path / "ll.npy")
    assert [p.name for p in tmp_path.iterdir()] == ["ll.npy"]  # no temporary left


def test_bad_rows_on_disk_name_the_file_and_rows_and_write_nothing(data, tmp_path):
    X, _ = data
    bad = X.copy()
    bad[2400, 1] = np.nan  # in a late chunk
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    model = GMM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"bad\.npy' holds NaN or infinity at row 2400"):
        model.score_samples(path, out=tmp_path / "ll.npy")
    with pytest.raises(ValueError, match="row 2400"):
        CausalConvMDN(**SMALL_MDN).fit(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (None, FileNotFoundError, "No such file"),
        (np.zeros(5), ValueError, "2-D numeric"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([["a", "b"]]), ValueError, "2-D numeric"),
        (b"text", ValueError, "not a .npy file"),
    ],
)
def test_bad_files(tmp_path, content, error, words):
    path = tmp_path / "x.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(error, match=words):
        GMM(1).fit(path)


def test_a_file_with_another_width_is_refused_for_scoring(data, tmp_path):
    X, _ = data
    np.save(tmp_path / "narrow.npy", X[:, :3])
    with pytest.raises(ValueError, match="3 features"):
        GMM(1, random_state=0).fit(X).score_samples(tmp_path / "narrow.npy")


def test_gmm_fits_em_on_at_most_max_fit_rows(data, monkeypatch):
    from sklearn.mixture import GaussianMixture

    X, path = data
    seen = []
    fit = GaussianMixture.fit

    def recording(self, Z, y=None):
        seen.append(np.array(Z, copy=True))
        return fit(self, Z, y)

    monkeypatch.setattr(GaussianMixture, "fit", recording)
    capped = GMM(2, max_fit_rows=500, random_state=0).fit(X)
    assert capped.n_iter_ >= 1 and np.isfinite(capped.score_samples(X)).all()
    on_disk = GMM(2, max_fit_rows=500, random_state=0).fit(path)
    GMM(2, random_state=0).fit(X)
    # EM itself got 500 distinct rows from the array and from the file, all 2,500 uncapped.
    assert [rows.shape for rows in seen] == [(500, 4), (500, 4), (2500, 4)]
    assert all(len(np.unique(rows, axis=0)) == len(rows) for rows in seen)
    # The subsample is the same draw from the same stream either way.
    np.testing.assert_allclose(on_disk.means_, capped.means_, rtol=1e-6, atol=1e-8)


def test_validate_every_steps_on_rows_on_disk(data):
    _, path = data
    model = CausalConvMDN(**SMALL_MDN, init="random", validate_every=10, random_state=0).fit(path)
    assert len(model.validation_scores_) >= 2


def test_a_dataloader_gives_the_model_its_array_gives(data, tmp_path, monkeypatch):
    import tempfile

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    X, _ = data
    loader = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=300, shuffle=False)
    for factory in (
        lambda: GMM(3, random_state=0),
        lambda: CausalConvMDN(**SMALL_MDN, random_state=0),
    ):
        from_array, from_loader = factory().fit(X), factory().fit(loader)
        np.testing.assert_allclose(
            from_loader.score_samples(X[:200]), from_array.score_samples(X[:200]), atol=1e-5
        )
    from_iterator = GMM(3, random_state=0).fit(iter(np.array_split(X, 9)))
    np.testing.assert_allclose(from_iterator.means_, GMM(3, random_state=0).fit(X).means_)
    assert list(tmp_path.iterdir()) == []  # the spooled rows are gone


@pytest.mark.parametrize(
    ("batches", "words"),
    [
        ([np.zeros((5, 4)), np.zeros((5, 3))], "Batch 1 of X has 3 columns, but batch 0 had 4"),
        (
            [np.ones((5, 2)), np.ones((5, 2)), np.full((5, 2), np.nan)],
            r"Batch 2 of X \(rows 10:15\)",
        ),
        ([np.ones(5)], "Batch 0 of X is a 1-D"),
        ([], "yielded no rows"),
    ],
)
def test_bad_batches_name_the_batch_and_leave_nothing(tmp_path, monkeypatch, batches, words):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = GMM(1)
    with pytest.raises(ValueError, match=words):
        model.fit(iter(batches))
    assert list(tmp_path.iterdir()) == [] and not hasattr(model, "means_")


def test_latent_density_estimator_passes_latents_on_disk_through(data):
    from ldelib import LatentDensityEstimator

    X, path = data
    in_memory = LatentDensityEstimator(GMM(2, random_state=0)).fit(X)
    on_disk = LatentDensityEstimator(GMM(2, random_state=0)).fit(path)
    assert on_disk.latent_dim_ == 4 and on_disk.input_shape_ == (4,)
    np.testing.assert_allclose(on_disk.log_prob(X[:100]), in_memory.log_prob(X[:100]))
    encoded = LatentDensityEstimator(GMM(2, random_state=0), encoder=lambda x: x[:, :2]).fit(path)
    assert encoded.latent_dim_ == 2
