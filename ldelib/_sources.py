"""The rows a fit reads: in memory, or on disk (a ``.npy`` file or memmap) read chunk by chunk.

A latent set larger than memory is passed to ``fit`` or ``score_samples`` as the path of
a ``.npy`` file (opened with ``mmap_mode="r"``) or as an ``np.memmap``. Nothing reads
all of it at once: the statistics of the standardisation come from one streaming pass
(exact, float64), training gathers its minibatches by index, and scores are written
chunk by chunk.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ._arrays import check_has_values
from ._atomic import atomic_path

__all__ = [
    "DiskRows",
    "InMemory",
    "OnDisk",
    "RowSource",
    "Standardizer",
    "is_batches",
    "is_on_disk",
    "open_rows",
    "spooled",
]

#: Rows read at once by the streaming passes (64 columns: 32 MB as float64).
CHUNK = 65_536


def is_on_disk(X: object) -> bool:
    """Whether ``X`` names rows on disk: a path or a memmap."""
    return isinstance(X, (str, os.PathLike, np.memmap))


def is_batches(X: object) -> bool:
    """Whether ``X`` yields batches of rows: a DataLoader, a generator or an iterator."""
    from torch.utils.data import DataLoader

    return isinstance(X, (DataLoader, Iterator))


@contextmanager
def spooled(batches: Iterable[Any], name: str = "X") -> Iterator[np.memmap]:
    """The rows of an iterable of batches, written once to a temporary file and mapped.

    A DataLoader (or any iterable) can be read only in its own order, while a fit draws
    its own shuffles and validation rows: so the batches are written, as they come, to a
    raw file in the temporary folder (``TMPDIR``; it needs the data's size free), which
    is then fitted like any file on disk and deleted afterwards. Each batch is a tensor,
    an array, or a tuple or list whose first item is one (as a ``TensorDataset`` gives).
    """
    fd, path = tempfile.mkstemp(prefix=".ldelib-rows-", suffix=".raw")
    try:
        n, width = 0, None
        dtype: type[np.floating] = np.float64
        with os.fdopen(fd, "wb") as f:
            for i, batch in enumerate(batches):
                rows = _batch_rows(batch, i, name)
                if width is None:
                    width = rows.shape[1]
                    dtype = np.float32 if rows.dtype == np.float32 else np.float64
                elif rows.shape[1] != width:
                    raise ValueError(
                        f"Batch {i} of {name} has {rows.shape[1]} columns, but batch 0 had "
                        f"{width}; every batch must have the same width."
                    )
                if not np.isfinite(rows).all():
                    raise ValueError(
                        f"Batch {i} of {name} (rows {n}:{n + len(rows)}) holds NaN or "
                        "infinity; density models need finite values."
                    )
                f.write(np.ascontiguousarray(rows, dtype=dtype).tobytes())
                n += len(rows)
        if width is None or n == 0:
            raise ValueError(f"{name} yielded no rows; at least 2 are needed.")
        yield np.memmap(path, dtype=dtype, mode="r", shape=(n, width))
    finally:
        os.unlink(path)


def _batch_rows(batch: Any, i: int, name: str) -> np.ndarray:
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (Tensor, np.ndarray)):
        batch = batch[0]
    check_has_values(batch, f"Batch {i} of {name}")
    rows = batch.detach().cpu().numpy() if isinstance(batch, Tensor) else np.asarray(batch)
    if rows.ndim != 2 or rows.dtype.kind not in "biuf":
        raise ValueError(
            f"Batch {i} of {name} is a {rows.ndim}-D {rows.dtype} array of shape "
            f"{rows.shape}; batches must be 2-D numeric arrays of shape (rows, n_dims)."
        )
    return rows


def open_rows(X: str | os.PathLike[str] | np.memmap, name: str = "X") -> np.ndarray:
    """The rows of a ``.npy`` path (memory-mapped, read-only) or of a memmap, checked.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        For a missing path or a folder.
    ValueError
        For a file that is not a ``.npy``, or an array that is not 2-D and numeric.
    """
    if isinstance(X, np.memmap):
        rows, where = X, f"the memmap {name}"
    else:
        path = os.fspath(X)
        where = repr(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{where} is a folder; give the path of a .npy file.")
        with open(path, "rb") as f:  # a missing or unreadable file raises its own OSError
            magic = f.read(6)
        if magic != b"\x93NUMPY":
            raise ValueError(f"{where} is not a .npy file; save arrays with numpy.save.")
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{where} cannot be memory-mapped: {error}") from None
    if rows.ndim != 2 or rows.dtype.kind not in "biuf":
        raise ValueError(
            f"{where} holds a {rows.ndim}-D {rows.dtype} array of shape {rows.shape}; a 2-D "
            "numeric array of shape (n_rows, n_dims) is needed."
        )
    if 0 in rows.shape:
        raise ValueError(f"{where} is empty (shape {rows.shape}).")
    return rows


def describe(X: str | os.PathLike[str] | np.memmap, name: str = "X") -> str:
    """How messages name a source of rows."""
    return f"the memmap {name}" if isinstance(X, np.memmap) else repr(os.fspath(X))


def chunks(rows: np.ndarray, where: str, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float64 chunk)`` over the rows, refusing NaN and infinity by row range."""
    for start in range(0, len(rows), size):
        # A copy even when the rows already are float64: torch cannot share read-only
        # memory, and a chunk must not change under a caller that keeps it.
        chunk = np.array(rows[start : start + size], dtype=np.float64)
        if not np.isfinite(chunk).all():
            bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise ValueError(
                f"{where} holds NaN or infinity at row {bad} (in rows {start}:"
                f"{start + len(chunk)}); density models need finite values."
            )
        yield start, chunk


@dataclass(frozen=True)
class Standardizer:
    """Column statistics and the map to standard units, as :func:`ldelib.base` uses them.

    Columns are divided by their largest magnitude (``size``) before anything is summed
    or squared, so no finite float64 input overflows; ``mean`` and ``std`` are those of
    the divided columns. A column whose values are all equal, or whose spread is below
    float64's smallest normal number, is constant: unit scale, deviations kept.
    """

    size: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    equal: np.ndarray

    @property
    def constant(self) -> np.ndarray:
        return self.equal | (self.std * self.size < np.finfo(np.float64).tiny)

    @property
    def data_mean(self) -> np.ndarray:
        return self.mean * self.size

    @property
    def data_scale(self) -> np.ndarray:
        return np.where(self.constant, 1.0, self.std * self.size)

    @classmethod
    def identity(cls, d: int) -> Standardizer:
        """No standardisation (``standardize=False``)."""
        one = np.ones(d)
        return cls(one, np.zeros(d), one, np.zeros(d, dtype=bool))

    @classmethod
    def of_array(cls, X: np.ndarray) -> Standardizer:
        """The statistics of rows in memory."""
        size = np.abs(X).max(axis=0)
        size = np.where(size > 0, size, 1.0)
        Y = X / size
        return cls(size, Y.mean(axis=0), Y.std(axis=0), (X == X[:1]).all(axis=0))

    @classmethod
    def of_rows(cls, rows: np.ndarray, where: str) -> Standardizer:
        """The statistics of rows on disk, in two streaming passes (exact, float64).

        The first pass finds each column's largest magnitude and whether its values are
        all equal; the second merges per-chunk means and squared deviations (Chan et
        al., 1979), which agrees with numpy's two-pass result to rounding.
        """
        d = rows.shape[1]
        size, low, high = np.zeros(d), np.full(d, np.inf), np.full(d, -np.inf)
        for _, chunk in chunks(rows, where):
            size = np.maximum(size, np.abs(chunk).max(axis=0))
            low, high = np.minimum(low, chunk.min(axis=0)), np.maximum(high, chunk.max(axis=0))
        size = np.where(size > 0, size, 1.0)
        n, mean, m2 = 0, np.zeros(d), np.zeros(d)
        for _, chunk in chunks(rows, where):
            Y = chunk / size
            k, chunk_mean = len(Y), Y.mean(axis=0)
            delta = chunk_mean - mean
            mean = mean + delta * (k / (n + k))
            m2 = m2 + ((Y - chunk_mean) ** 2).sum(axis=0) + delta**2 * (n * k / (n + k))
            n += k
        return cls(size, mean, np.sqrt(m2 / n), low == high)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows in standard units (float64)."""
        constant = self.constant
        Z = (X / self.size - self.mean) / np.where(constant, 1.0, self.std)
        Z[:, constant] *= self.size[constant]
        Z[:, self.equal] = 0.0
        return Z


class DiskRows:
    """Standardised rows of a file, gathered by index: ``rows[index]`` is a tensor.

    It stands where :func:`ldelib.training.train_module` takes a tensor of training
    rows: ``len(rows)`` and ``rows[index_tensor]``. Only the rows asked for are read.
    """

    def __init__(
        self, source: OnDisk, positions: np.ndarray, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.source, self.positions, self.dtype, self.device = source, positions, dtype, device

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Tensor) -> Tensor:
        Z = self.source.take(self.positions[index.numpy()])
        return torch.as_tensor(Z, dtype=self.dtype, device=self.device)


#: Rows of a file that the checks after a fit read (the soundness check, the warnings).
_CHECK_ROWS = 4096


class RowSource(ABC):
    """A fit's training rows, standardised as they are read: what every model's ``_fit``
    hook receives, whether the rows are in memory (:class:`InMemory`) or on disk
    (:class:`OnDisk`).

    ``take`` reads rows by position, ``subsample`` a seeded subset, ``gather`` the
    training rows in the form :func:`ldelib.training.train_module` takes; a model sets
    ``columns`` to read every row in its own column order. ``rows`` are the raw rows,
    ``standardizer`` their standardisation, ``where`` how messages name them.
    """

    #: Whether the rows are read from disk on demand: a model bounds what it reads then.
    on_disk: ClassVar[bool] = False

    def __init__(self, rows: np.ndarray, standardizer: Standardizer, where: str) -> None:
        self.rows, self.standardizer, self.where = rows, standardizer, where
        self.columns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @abstractmethod
    def _read(self, positions: np.ndarray) -> np.ndarray:
        """The standardised rows at ``positions``, in the data's column order, float64."""

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The standardised rows at ``positions`` (in that order), float64."""
        Z = self._read(positions)
        # Row-major whatever the column order: a column gather leaves a copy in column-
        # major order, and EM's float32 sums (so its iterations to tol) follow the layout.
        return Z if self.columns is None else np.ascontiguousarray(Z[:, self.columns])

    def all(self) -> np.ndarray:
        """Every row, standardised."""
        return self.take(np.arange(len(self)))

    def subsample(
        self, max_rows: int, rng: np.random.Generator, among: np.ndarray | None = None
    ) -> np.ndarray:
        """All rows (or those at positions ``among``), or a seeded subsample of
        ``max_rows`` of them, standardised, in the rows' order (``rng`` draws only for
        a subsample)."""
        if among is None and len(self) <= max_rows:
            return self.all()
        positions = np.arange(len(self)) if among is None else np.asarray(among)
        if len(positions) > max_rows:
            positions = rng.choice(positions, size=max_rows, replace=False)
        # Sorted positions read a file front to back.
        return self.take(np.sort(positions))

    @abstractmethod
    def gather(
        self, positions: np.ndarray, dtype: torch.dtype, device: torch.device
    ) -> Tensor | DiskRows:
        """The standardised rows at ``positions``, as ``train_module`` takes them."""

    def spread(self) -> np.ndarray:
        """Each column's spread in standard units: 1, or 0 for a constant column."""
        return np.where(self.standardizer.constant, 0.0, 1.0)

    def for_checks(self) -> np.ndarray:
        """Standardised rows, in the data's column order, for the checks after a fit."""
        return self._read(np.arange(min(len(self), _CHECK_ROWS)))


class InMemory(RowSource):
    """Rows in memory, standardised once, up front."""

    def __init__(self, rows: np.ndarray, standardizer: Standardizer, where: str = "X") -> None:
        super().__init__(rows, standardizer, where)
        self.Z = standardizer.transform(rows)

    def _read(self, positions: np.ndarray) -> np.ndarray:
        return self.Z[positions]

    def all(self) -> np.ndarray:
        return self.Z if self.columns is None else np.ascontiguousarray(self.Z[:, self.columns])

    def gather(self, positions: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.as_tensor(self.take(positions), dtype=dtype, device=device)

    def for_checks(self) -> np.ndarray:
        return self.Z


class OnDisk(RowSource):
    """Rows on disk (a ``.npy`` file or memmap), read and standardised only when asked."""

    on_disk = True

    def _read(self, positions: np.ndarray) -> np.ndarray:
        return self.standardizer.transform(np.asarray(self.rows[positions], dtype=np.float64))

    def gather(self, positions: np.ndarray, dtype: torch.dtype, device: torch.device) -> DiskRows:
        """The rows at ``positions``, read only when indexed."""
        return DiskRows(self, positions, dtype, device)


@contextmanager
def result_file(out: str | os.PathLike[str] | None, n: int) -> Iterator[np.ndarray]:
    """An array of ``n`` results: in memory, or a ``.npy`` at ``out`` that appears whole.

    The file is written next to ``out`` and renamed over it only when the block ends
    without error, so a failure leaves nothing (and no partial file) behind.
    """
    if out is None:
        yield np.empty(n)
        return
    with atomic_path(out, suffix=".npy") as tmp:
        result = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n,))
        yield result
        result.flush()
        del result
