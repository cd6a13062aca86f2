"""Which density model fits *these* rows best: every model on the same rows and budget.

:func:`compare` fits each model to the same training rows under the same wall-clock
budget (each selects its own hyperparameters on a validation split of the training rows
only: K and ``reg_covar`` for the mixtures, epochs for the networks, the bandwidth for
KernelDensity), scores the same test rows and ranks the models by test log-likelihood.
The difference of each model from the best is paired, row by row on the same test rows,
so its standard error says whether a lead is noise of the test rows; with several seeds,
the spread of a model's score over its seeds says how much the fit itself varies (EM's
initialisation, a network's start), which a single seed cannot show. The benchmark
suites measure their models with :func:`measure_model`, so there is one comparison loop.

Examples
--------
>>> import numpy as np
>>> from ldelib.compare import compare
>>> X = np.random.default_rng(0).normal(size=(600, 2))
>>> result = compare(X, models=["gmm", "kde"], budget=5, progress=False)
>>> [row["model"] for row in result.ranking()]  # doctest: +SKIP
['GMM (validated)', 'KernelDensity']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._comparison import ComparisonResult
from .metrics import mean_log_likelihood, parzen_log_likelihood

__all__ = ["MODELS", "ComparisonResult", "compare", "make_model", "measure_model"]

#: The models a comparison can run: command-line name -> label, in table order.
MODELS: dict[str, str] = {
    "lde": "LDE (CausalConvMDN)",
    "lde-random": "LDE, random init",
    "lde-paper": "LDE, paper network",
    "gmm": "GMM (validated)",
    "gmm-avg": "GMM (averaged)",
    "gmm-grid": "sklearn GMM (grid)",
    "gmmn": "GMMN (Parzen)",
    "kde": "KernelDensity",
    "maf": "zuko MAF",
    "nsf": "zuko NSF",
}

#: Draws per model, for the sampling throughput and the GMMN's Parzen estimate.
N_SAMPLES = 10_000


def _label(name: str) -> str:
    """The label of a model given by name or label."""
    if name in MODELS:
        return MODELS[name]
    if name in MODELS.values():
        return name
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}.")


def missing_package(name: str) -> str | None:
    """Why model ``name`` cannot run here (a missing optional package), else ``None``."""
    from .peers import zuko_available

    if _label(name).startswith("zuko") and not zuko_available():
        return 'needs zuko: pip install "ldelib[peers]"'
    return None


def make_model(name: str, *, seed: int, budget: float | None) -> Any:
    """A fresh estimator for model ``name`` (a name or label of :data:`MODELS`).

    Every model but KernelDensity gets the wall-clock ``budget`` in seconds (``None``: no
    limit); every one is seeded with ``seed`` and runs on the CPU.
    """
    from .models import make_model as make
    from .peers import GridMixturePeer, KernelDensityPeer, ZukoFlowPeer

    label = _label(name)
    neural: dict[str, Any] = {"max_time": budget, "random_state": seed, "device": "cpu"}
    if label == MODELS["lde"]:
        return make("mdn", **neural)
    if label == MODELS["lde-random"]:
        return make("mdn", init="random", **neural)
    if label == MODELS["lde-paper"]:
        return make("mdn", architecture="paper", **neural)
    if label == MODELS["gmm"]:
        return make(
            "gmm", n_components="auto", reg_covar="auto", max_time=budget, random_state=seed
        )
    if label == MODELS["gmm-avg"]:
        return make(
            "gmm",
            n_components="auto",
            reg_covar="auto",
            n_average="auto",
            max_time=budget,
            random_state=seed,
        )
    if label == MODELS["gmm-grid"]:
        return GridMixturePeer(max_time=budget, random_state=seed)
    if label == MODELS["gmmn"]:
        return make("gmmn", **neural)
    if label == MODELS["kde"]:
        return KernelDensityPeer(random_state=seed)
    return ZukoFlowPeer("maf" if label == MODELS["maf"] else "nsf", **neural)


class _Seconds:
    seconds: float = 0.0


@contextmanager
def _stopwatch() -> Iterator[_Seconds]:
    timer = _Seconds()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def _components(n_components: int, n_average: int) -> str:
    """K of a mixture, as ``"40 (x7)"`` where it averages seven of 40 components."""
    return str(n_components) if n_average == 1 else f"{n_components // n_average} (x{n_average})"


def _describe(model: Any) -> str:
    """What the fit chose, for the table's ``estimate`` column."""
    from .models import GMM, CausalConvMDN
    from .peers import GridMixturePeer, KernelDensityPeer

    if isinstance(model, (GMM, GridMixturePeer)):
        return f"exact, K={_components(model.n_components_, getattr(model, 'n_average_', 1))}, reg={model.reg_covar_:g}"
    if isinstance(model, CausalConvMDN) and model.anchor_ is not None:
        k = _components(model.n_components_, model.anchor_.get("n_average", 1))
        return f"exact, GMM K={k} + {model.best_epoch_ + 1} epochs"
    if getattr(model, "start_scores_", None):  # the race of two starts, won by the random one
        return f"exact, random start + {model.best_epoch_ + 1} epochs"
    if isinstance(model, KernelDensityPeer):
        return f"exact, h={model.bandwidth_:.3g}"
    return "exact"


def measure_model(
    name: str,
    train: np.ndarray,
    test: np.ndarray,
    *,
    seed: int,
    budget: float | None,
    valid: np.ndarray | None = None,
    n_samples: int = N_SAMPLES,
    timer: Callable[[], AbstractContextManager[Any]] = _stopwatch,
) -> tuple[dict[str, Any], Any, np.ndarray | None]:
    """Fit model ``name`` on ``train`` and measure it on ``test``.

    Returns the row of measurements, the fitted model and its test log-densities
    (``None`` for a model without a density). The row holds the test log-likelihood in
    nats per row and per dimension with the standard error of the mean, how it was
    obtained (exact; for the GMMN, which has no density, a Parzen-window estimate from
    ``n_samples`` draws with the window chosen on ``valid``, which must then be given),
    fit seconds, the rows per second of ``log_prob`` and of ``sample``, and epochs run.
    ``timer()`` times each step; a timer with a ``peak_mb`` (the benchmarks' measures
    memory) adds the fit's peak memory.
    """
    d = train.shape[1]
    label = _label(name)
    model = make_model(label, seed=seed, budget=budget)
    with timer() as fit:
        model.fit(train)
    with timer() as draw:
        samples = model.sample(n_samples, random_state=seed)
    row: dict[str, Any] = {"model": label, "D": d, "seed": seed}
    log_prob = None
    if hasattr(model, "score_samples"):
        with timer() as score:
            log_prob = np.asarray(model.score_samples(test), dtype=np.float64)
        ll, se = mean_log_likelihood(log_prob)
        row.update(estimate=_describe(model), logprob_per_s=len(test) / score.seconds)
    else:
        if valid is None:
            raise ValueError(f"{label} has no density: its Parzen window needs valid rows.")
        parzen = parzen_log_likelihood(samples, test, X_valid=valid)
        ll, se = parzen.mean, parzen.std_err
        row.update(estimate=f"Parzen h={parzen.bandwidth:.3g}")
    row.update(ll=ll, se=se, ll_per_dim=ll / d, se_per_dim=se / d, fit_s=fit.seconds)
    if hasattr(fit, "peak_mb"):
        row["fit_peak_mb"] = fit.peak_mb
    row.update(
        sample_per_s=n_samples / draw.seconds,
        epochs=getattr(model, "n_iter_", None),
        budget_s=budget if label != MODELS["kde"] else None,
    )
    return row, model, log_prob


def _rows(X: Any, what: str) -> np.ndarray:
    """``X`` as a finite float64 matrix, or a ValueError that names ``what``."""
    if isinstance(X, (str, Path)):
        from ._sources import open_rows

        X = open_rows(X)  # a checked .npy of numbers (never unpickled)
    try:
        rows = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not a numeric array ({error}).") from None
    if rows.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, features); got shape {rows.shape}.")
    if not np.isfinite(rows).all():
        bad = int((~np.isfinite(rows)).any(axis=1).sum())
        raise ValueError(f"{what} has {bad} rows with NaN or infinite values; remove them.")
    return rows


#: Fewest training rows a comparison takes (every model holds some out for validation).
MIN_TRAIN_ROWS = 50


def compare(
    train: Any,
    test: Any = None,
    *,
    test_fraction: float = 0.2,
    models: Sequence[str] | None = None,
    budget: float | None = 60.0,
    seeds: int | Sequence[int] = 1,
    random_state: int = 0,
    progress: bool = True,
) -> ComparisonResult:
    """Fit every model to the same rows under the same budget, and rank them on test rows.

    Parameters
    ----------
    train : array-like or path of a ``.npy`` file, shape (n_samples, n_features)
        Training rows. Each model chooses its hyperparameters on a validation split of
        these rows only.
    test : array-like or path, optional
        Test rows of the same width. ``None``: a seeded ``test_fraction`` of ``train`` is
        held out as test rows (and the rest trains).
    test_fraction : float, default=0.2
        Share of ``train`` held out as test rows when ``test`` is not given.
    models : sequence of str, optional
        Names (or labels) of :data:`MODELS`; ``None`` means every one. A model whose
        optional package is missing is skipped, with the reason in ``skipped``.
    budget : float or None, default=60
        Wall-clock seconds for each model's fit, every model alike (KernelDensity
        excepted, which has no budget and is quick); ``None``: no limit.
    seeds : int or sequence of int, default=1
        How many seeds to fit each model with (0, 1, ...), or which.
    random_state : int, default=0
        Seeds the split of ``train`` when ``test`` is not given.
    progress : bool, default=True
        Show a progress bar over models and seeds.

    Returns
    -------
    ComparisonResult
        ``ranking()`` holds the table; ``save(out)`` writes markdown, JSON and a PNG.

    Raises
    ------
    ValueError
        Rows that are not a finite 2-D array, widths that differ, too few rows, an
        unknown model, or a bad ``test_fraction``; nothing is fitted.
    """
    rows = _rows(train, "train")
    if test is None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}.")
        order = np.random.default_rng(random_state).permutation(len(rows))
        n_test = round(test_fraction * len(rows))
        rows, test_rows = rows[order[n_test:]], rows[order[:n_test]]
    else:
        test_rows = _rows(test, "test")
        if test_rows.shape[1] != rows.shape[1]:
            raise ValueError(
                f"train has {rows.shape[1]} features but test has {test_rows.shape[1]}; "
                "they must be rows of the same space."
            )
    if len(rows) < MIN_TRAIN_ROWS or len(test_rows) < 2:
        raise ValueError(
            f"compare needs at least {MIN_TRAIN_ROWS} training rows and 2 test rows (every "
            f"model holds some training rows out for validation); got {len(rows)} and "
            f"{len(test_rows)}."
        )
    names = [_label(m) for m in (models if models is not None else MODELS)]
    if not names:
        raise ValueError("models is empty; name at least one of " + ", ".join(MODELS) + ".")
    names = list(dict.fromkeys(names))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds must name at least one seed.")
    skipped = {m: why for m in names if (why := missing_package(m)) is not None}
    runnable = [m for m in names if m not in skipped]
    # The GMMN's Parzen window is chosen on training rows it was not scored on: a
    # seeded tenth of them (the networks hold out their own validation rows likewise).
    pick = np.random.default_rng(random_state + 1).permutation(len(rows))
    parzen_valid = rows[pick[: max(2, len(rows) // 10)]]
    runs: list[dict[str, Any]] = []
    sums: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(runnable) * len(seed_list), desc="compare", disable=not progress)
    with bar:
        for seed in seed_list:
            for name in runnable:
                bar.set_postfix({"model": name, "seed": seed})
                row, _, log_prob = measure_model(
                    name, rows, test_rows, seed=seed, budget=budget, valid=parzen_valid
                )
                runs.append(row)
                if log_prob is not None:
                    sums[name] = sums.get(name, 0.0) + log_prob
                bar.update()
    return ComparisonResult(
        rows=runs,
        log_probs={m: s / len(seed_list) for m, s in sums.items()},
        skipped=skipped,
        n_train=len(rows),
        n_test=len(test_rows),
        n_features=rows.shape[1],
        budget=budget,
        seeds=seed_list,
    )
