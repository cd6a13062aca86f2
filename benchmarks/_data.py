"""Image splits and trained autoencoders for the benchmark suites, cached on disk.

Every suite that needs an autoencoder asks for it by (dataset, latent size, schedule,
training size, epochs, seed); the first asker trains and saves it, later ones load it,
so a full run trains each autoencoder once and the suites stay independent.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ldelib.autoencoders import make_conv_autoencoder
from ldelib.datasets import load_fashion_mnist, load_mnist
from ldelib.incremental import IncrementalAutoencoder

__all__ = [
    "SCHEDULES",
    "SPLITS",
    "GridPoint",
    "Images",
    "LatentGrid",
    "TrainedAutoencoder",
    "autoencoder",
    "both_schedules",
    "images",
]

DATASETS = ("mnist", "fashion", "mnist+fashion")

#: How :func:`images` splits, for the records of every suite that uses it.
SPLITS = (
    "train and validation images: disjoint, from a seeded permutation of the official "
    "training split; test images: a seeded subset of the official test split; pixels / 255"
)

#: The autoencoder schedules the suites compare: plain, and incremental (IAE).
SCHEDULES = ("plain", "IAE")


@dataclass
class Images:
    """Disjoint train / validation rows from the training split, test rows from the test split.

    Pixels are float32 in [0, 1], shape (n, 1, 28, 28); ``*_domain`` says which dataset
    each row came from (0 MNIST, 1 Fashion-MNIST), ``*_label`` its class (0 to 9).
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    train_domain: np.ndarray
    valid_domain: np.ndarray
    test_domain: np.ndarray
    train_label: np.ndarray
    valid_label: np.ndarray
    test_label: np.ndarray


def _load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    loader = load_mnist if name == "mnist" else load_fashion_mnist
    return loader(split)


def images(dataset: str, n_train: int, n_valid: int, n_test: int, seed: int = 0) -> Images:
    """Shuffled, disjoint splits; ``"mnist+fashion"`` takes half of each size from each."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    parts = ["mnist", "fashion"] if dataset == "mnist+fashion" else [dataset]
    share = len(parts)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("train", "valid", "test")}
    domains: dict[str, list[np.ndarray]] = {k: [] for k in out}
    labels: dict[str, list[np.ndarray]] = {k: [] for k in out}
    for name in parts:
        domain = 0 if name == "mnist" else 1
        train_pool, train_labels = _load(name, "train")
        order = rng.permutation(len(train_pool))
        n_tr, n_va = n_train // share, n_valid // share
        test_pool, test_labels = _load(name, "test")
        test_order = rng.permutation(len(test_pool))[: n_test // share]
        for key, positions, pool, classes in (
            ("train", order[:n_tr], train_pool, train_labels),
            ("valid", order[n_tr : n_tr + n_va], train_pool, train_labels),
            ("test", test_order, test_pool, test_labels),
        ):
            out[key].append(pool[positions])
            labels[key].append(np.asarray(classes)[positions])
            domains[key].append(np.full(len(positions), domain))

    def pixels(key: str) -> np.ndarray:
        return np.concatenate(out[key])[:, None].astype(np.float32) / 255.0

    return Images(
        pixels("train"),
        pixels("valid"),
        pixels("test"),
        *(np.concatenate(domains[k]) for k in ("train", "valid", "test")),
        *(np.concatenate(labels[k]).astype(np.int64) for k in ("train", "valid", "test")),
    )


#: Names the design of make_conv_autoencoder in the cache's file names, so that weights
#: of an earlier design (2: its last layer upsamples then convolves) are never loaded.
_DESIGN = 2


@dataclass
class TrainedAutoencoder:
    model: IncrementalAutoencoder
    fit_s: float
    cached: bool


def autoencoder(
    data: Images,
    *,
    key: str,
    latent_dim: int,
    incremental: bool,
    epochs: int,
    seed: int,
    cache_dir: Path | None,
    width: int = 32,
) -> TrainedAutoencoder:
    """The reference conv autoencoder trained on ``data.train`` (cached under ``key``).

    The plain and the incremental autoencoder of one (key, size, seed) start from the
    same weights and get the same data, epochs and early stopping; the incremental one
    activates its latents over the first half of the epochs.
    """
    torch.manual_seed(seed)
    encoder, decoder = make_conv_autoencoder(28, 1, latent_dim, width=width)
    schedule = "iae" if incremental else "plain"
    # The width too: one of another width would not load into these modules.
    name = f"ae{_DESIGN}-{key}-d{latent_dim}-w{width}-{schedule}-e{epochs}-s{seed}.pt"
    path = None if cache_dir is None else Path(cache_dir) / name
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        model = IncrementalAutoencoder.load(path, encoder=encoder, decoder=decoder)
        fit_s = json.loads(path.with_suffix(".json").read_text())["fit_s"]
        return TrainedAutoencoder(model, fit_s, True)
    start = time.perf_counter()
    model = IncrementalAutoencoder(
        copy.deepcopy(encoder),
        copy.deepcopy(decoder),
        latent_dim=latent_dim,
        warmup_epochs=epochs / 2 if incremental else 0,
        max_epochs=epochs,
        n_iter_no_change=epochs,  # a fixed budget; the best validation epoch is kept
        validation_fraction=0.05,
        device="cpu",
        random_state=seed,
    ).fit(data.train)
    fit_s = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        path.with_suffix(".json").write_text(json.dumps({"fit_s": fit_s}))
    return TrainedAutoencoder(model, fit_s, False)


def both_schedules(
    data: Images, key: str, latent_dim: int, *, epochs: int, seed: int, cache_dir: Path | None
) -> Iterator[tuple[str, TrainedAutoencoder]]:
    """The plain, then the incremental reference autoencoder (width 16) of ``data``.

    ``key`` names the training images in the cache (see :func:`autoencoder`). Each is
    trained (or loaded from the cache) only when the loop reaches it, so work done
    between the two happens in the same order as in a plain loop.
    """
    for schedule in SCHEDULES:
        ae = autoencoder(
            data,
            key=key,
            latent_dim=latent_dim,
            incremental=schedule == "IAE",
            epochs=epochs,
            seed=seed,
            cache_dir=cache_dir,
            width=16,
        )
        yield schedule, ae


class GridPoint(NamedTuple):
    """One trained autoencoder of a :class:`LatentGrid`, with the images it was trained on."""

    dataset: str
    seed: int
    latent_dim: int
    schedule: str
    data: Images
    ae: TrainedAutoencoder


@dataclass(frozen=True)
class LatentGrid:
    """Datasets, latent sizes, image counts and epochs of the autoencoder-grid suites.

    ``latents`` and ``ordering`` use the same grid, so whichever runs first trains the
    autoencoders and the other loads them from the cache.
    """

    datasets: tuple[str, ...]
    dims: tuple[int, ...]
    n_train: int
    n_valid: int
    n_test: int
    epochs: int

    @classmethod
    def of(cls, quick: bool) -> LatentGrid:
        """The grid of a ``--quick`` or of a full run."""
        if quick:
            return cls(("mnist",), (8,), 2000, 500, 1000, 3)
        return cls(("mnist", "fashion"), (8, 16, 32, 64), 10_000, 1000, 5000, 12)

    def autoencoders(self, seeds: Sequence[int], cache_dir: Path | None) -> Iterator[GridPoint]:
        """Every (dataset, seed, latent size, schedule), each autoencoder in turn."""
        for dataset in self.datasets:
            for seed in seeds:
                data = images(dataset, self.n_train, self.n_valid, self.n_test, seed=seed)
                for d in self.dims:
                    for schedule, ae in both_schedules(
                        data,
                        f"{dataset}-n{self.n_train}",
                        d,
                        epochs=self.epochs,
                        seed=seed,
                        cache_dir=cache_dir,
                    ):
                        yield GridPoint(dataset, seed, d, schedule, data, ae)
