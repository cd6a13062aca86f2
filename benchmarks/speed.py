"""Suite ``speed``: throughput of ``log_prob``, ``sample`` and training, side by side.

For each dimension D, every model is fitted on the same synthetic rows (a Gaussian
mixture target), then timed in this one process: ``score_samples`` on 10,000 rows,
``sample(10,000)`` and one training epoch over the fitting rows, each the best of a few
repeats, in rows per second, and as a ratio to zuko's MAF. The LDE's arithmetic is
counted and set against the same matrix products run alone, which says how much of its
time goes to anything but them; its cached sampling, one dimension at a time from cached
activations, is set against the naive loop that re-runs the network on every prefix.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ldelib.datasets import make_target
from ldelib.models import GMM, CausalConvMDN
from ldelib.peers import ZukoFlowPeer, zuko_available

from ._report import Report
from ._suite import Suite

LDE = "LDE (CausalConvMDN)"
IDLE = "LDE, idle network"
MODELS = (LDE, IDLE, "LDE, paper network", "GMM", "zuko MAF", "zuko NSF")
#: Models whose sampling and scoring take minutes above this D: left out there.
SLOW, SLOW_MAX_D = ("LDE, paper network", "zuko NSF"), 128
#: The naive sampling loop costs O(D^2) network passes: at D = 512 it runs for minutes.
NAIVE_MAX_D = 128
#: Clusters of the data, and the K of the LDE's anchor and the GMM.
N_CLUSTERS = 20


def best_seconds(fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> float:
    """The shortest of ``repeats`` timed calls of ``fn``, after one untimed warm-up."""
    if warm_up:
        fn()  # first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rows_per_second(
    fn: Callable[[int], Any], n_max: int, repeats: int, min_seconds: float = 0.5
) -> tuple[float, int]:
    """Throughput of ``fn(n)`` on ``n`` rows, and the ``n`` it was measured at.

    ``n`` grows from 256 until one call takes ``min_seconds`` or ``n`` reaches ``n_max``
    (those calls are the warm-up), so slow models are timed on fewer rows and fast ones
    on enough for the clock; then the best of ``repeats`` calls counts.
    """
    n = min(256, n_max)
    while True:
        start = time.perf_counter()
        fn(n)
        seconds = time.perf_counter() - start
        if seconds >= min_seconds or n >= n_max:
            break
        n = min(n_max, max(2 * n, int(1.2 * n * min_seconds / max(seconds, 1e-6))))
    return n / best_seconds(lambda: fn(n), repeats, warm_up=False), n


def _model(label: str, epochs: int, seed: int) -> Any:
    neural: dict[str, Any] = {
        "max_epochs": epochs,
        "validation_fraction": 0.0,
        "random_state": seed,
    }
    if label == LDE:
        # One mixture: the rates are of K = N_CLUSTERS components, as the GMM's (an
        # average of M mixtures has M K, and costs M times as much per row).
        return CausalConvMDN(N_CLUSTERS, n_average=1, device="cpu", **neural)
    if label == "LDE, paper network":
        return CausalConvMDN(architecture="paper", device="cpu", **neural)
    if label == "GMM":
        return GMM(N_CLUSTERS, random_state=seed)
    flow: Literal["maf", "nsf"] = "maf" if label == "zuko MAF" else "nsf"
    return ZukoFlowPeer(flow, device="cpu", **neural)


def _products(model: CausalConvMDN, rows: int) -> list[tuple[int, int, int]]:
    """The LDE's matrix products for ``rows`` rows of ``log_prob``: (m, k, n) shapes."""
    d, k = model.n_features_in_, model.n_components_
    shapes = [
        (rows * d, module.in_features, module.out_features)  # every position
        for name, module in model.module_.net.named_modules()
        if isinstance(module, torch.nn.Linear) and name != "input"
    ]
    if model.module_.anchor is not None:
        shapes.append((rows, d, d * k))  # the whitening of all components
    return shapes


def lde_flops(model: CausalConvMDN) -> int:
    """Floating-point operations of the LDE's matrix products per row of ``log_prob``."""
    return sum(2 * m * k * n for m, k, n in _products(model, 1))


def _matmul_seconds(model: CausalConvMDN, rows: int, repeats: int) -> float:
    """The LDE's matrix products for ``rows`` rows, alone, at their shapes."""
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in _products(model, rows)]

    def run() -> None:
        with torch.no_grad():
            for a, b in operands:
                torch.mm(a, b)

    return best_seconds(run, repeats)


def cached_sampling(model: CausalConvMDN, n: int, repeats: int) -> dict[str, float]:
    """Seconds of the LDE's network drawing ``n`` rows cached and naively, and the gap.

    ``max_abs_diff`` is the largest difference of the two draws from the same noise (they
    are the same samples, up to rounding).
    """
    module = model.module_

    def draw(cached: bool, rows: int = n) -> torch.Tensor:
        return module.sample(rows, torch.Generator().manual_seed(1), cached=cached)[0]

    max_abs_diff = float((draw(True, 64) - draw(False, 64)).abs().max())  # and a warm-up
    cached_s = best_seconds(lambda: draw(True), repeats)
    naive_s = best_seconds(lambda: draw(False), repeats, warm_up=False)
    return {
        "cached_s": cached_s,
        "naive_s": naive_s,
        "cached_speedup": naive_s / cached_s,
        "max_abs_diff": max_abs_diff,
    }


def _idle(model: CausalConvMDN) -> CausalConvMDN:
    """The fitted LDE with its network's output layer at zero: what a fit that no epoch
    improved leaves (where the mixture is already the best model), so the mixture alone."""
    idle = copy.deepcopy(model)
    with torch.no_grad():
        idle.module_.net.output.weight.zero_()
        idle.module_.net.output.bias.zero_()
    return idle


def run(
    out: Path, quick: bool, seeds: list[int] | None = None, budget_s: float | None = None
) -> Report:
    del budget_s  # timings, not fits to a budget
    seed = (seeds or [0])[0]
    dims = (8, 64) if quick else (8, 16, 32, 64, 128, 256, 512)
    threads = (1,) if quick else (1, 2)
    n_fit, n_eval, repeats, epochs = (2000, 500, 1, 1) if quick else (10_000, 10_000, 3, 1)
    n_cached_sampling = 64 if quick else 1000
    labels = [m for m in MODELS if not m.startswith("zuko") or zuko_available()]
    missing = [m for m in MODELS if m not in labels]
    report = Report(
        "speed",
        quick,
        {
            "dims": dims,
            "threads": threads,
            "n_fit_rows": n_fit,
            "n_eval_rows": n_eval,
            "n_cached_sampling_rows": n_cached_sampling,
            "repeats": repeats,
            "seed": seed,
            "data": f"make_target('gmm', D, n_components={N_CLUSTERS}): a random mixture of "
            "well-separated full-covariance clusters",
            "models": f"defaults of each model; the LDE and GMM with K = {N_CLUSTERS}, the K "
            "that the anchor chooses on MNIST latents",
        },
    )
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for d in dims:
            sizes = (n_fit, n_eval, repeats, epochs, n_cached_sampling)
            _run_dimension(report, d, n_threads, labels, seed, *sizes)
    _tables(report, n_cached_sampling)
    if missing:
        report.notes.append(f"Not run (package missing): {', '.join(missing)}.")
    return report


def _run_dimension(
    report: Report,
    d: int,
    n_threads: int,
    labels: list[str],
    seed: int,
    n_fit: int,
    n_eval: int,
    repeats: int,
    epochs: int,
    n_cached_sampling: int,
) -> None:
    target = make_target("gmm", d, n_components=N_CLUSTERS)
    X = target.sample(n_fit, random_state=seed)
    X_eval = target.sample(n_eval, random_state=seed + 1)
    rows: dict[str, dict[str, Any]] = {}
    lde: CausalConvMDN | None = None
    for label in labels:
        if d > SLOW_MAX_D and label in SLOW:
            continue
        if label == IDLE:
            if lde is None:
                continue
            model: Any = _idle(lde)
            fit_s = anchor_s = train_per_s = None
        else:
            model = _model(label, epochs, seed)
            start = time.perf_counter()
            model.fit(X)
            fit_s = time.perf_counter() - start
            anchor_s = (getattr(model, "anchor_", None) or {}).get("fit_s", 0.0)
            if isinstance(model, GMM):
                train_per_s = n_fit / fit_s  # EM to convergence: GMM has no epochs
            else:
                train_per_s = n_fit * epochs / (fit_s - anchor_s)
            if label == LDE:
                lde = model

        # Functions rather than lambdas: mypy cannot infer a lambda with defaults.
        def score(n: int, m: Any = model, x: np.ndarray = X_eval) -> Any:
            return m.score_samples(x[:n])

        def sample(n: int, m: Any = model) -> Any:
            return m.sample(n, random_state=seed)

        logprob_per_s, n_scored = rows_per_second(score, n_eval, repeats)
        sample_per_s, n_sampled = rows_per_second(sample, n_eval, repeats)
        row = report.add(
            threads=n_threads,
            D=d,
            model=label,
            logprob_per_s=logprob_per_s,
            logprob_rows=n_scored,
            sample_per_s=sample_per_s,
            sample_rows=n_sampled,
            train_per_s=train_per_s,
            fit_s=fit_s,
            anchor_fit_s=anchor_s or None,
            K=getattr(model, "n_components_", None),
        )
        if label == LDE:
            flops = lde_flops(model)
            row["gflop_per_row"] = flops / 1e9
            row["lde_gflops"] = flops * row["logprob_per_s"] / 1e9
            row["matmul_gflops"] = (
                flops * n_scored / _matmul_seconds(model, n_scored, repeats) / 1e9
            )
            row["matmul_share"] = row["lde_gflops"] / row["matmul_gflops"]
            if d <= NAIVE_MAX_D:
                row.update(cached_sampling(model, n_cached_sampling, repeats))
        rows[label] = row
    maf = rows.get("zuko MAF")
    for row in rows.values():
        for key in ("logprob", "sample", "train"):
            value = row[f"{key}_per_s"]
            row[f"{key}_vs_maf"] = value / maf[f"{key}_per_s"] if maf and value else None


def _tables(report: Report, n_cached_sampling: int) -> None:
    report.table(
        "Rows per second (and ratio to zuko MAF); train: one epoch (GMM: EM to convergence)",
        [
            "threads",
            "D",
            "model",
            "K",
            "logprob_per_s",
            "logprob_vs_maf",
            "sample_per_s",
            "sample_vs_maf",
            "train_per_s",
            "train_vs_maf",
            "fit_s",
        ],
    )
    report.table(
        "The LDE's arithmetic: GFLOP per row of log_prob, achieved GFLOP/s, the same "
        "matrix products alone, and the share of that rate achieved",
        [
            "threads",
            "D",
            "gflop_per_row",
            "lde_gflops",
            "matmul_gflops",
            "matmul_share",
            "anchor_fit_s",
        ],
        lambda r: r["model"] == LDE,
    )
    report.table(
        f"The LDE's network drawing {n_cached_sampling} rows: cached steps against the naive "
        "loop that re-runs it on every prefix (seconds), and the largest difference of "
        "the two draws from the same noise",
        ["threads", "D", "cached_s", "naive_s", "cached_speedup", "max_abs_diff"],
        lambda r: r["model"] == LDE and "cached_s" in r,
    )
    report.notes += [
        (
            "log_prob: score_samples of numpy rows (float64 in and out, the library's "
            "path); sample: sample(n) to numpy. Each is timed on as many rows (up to "
            "n_eval_rows; logprob_rows, sample_rows) as one call needs to last 0.5 s, the "
            "best of the repeats after the calls that found that size."
        ),
        (
            "train: rows per second of a fit of one epoch without validation, less the "
            "anchor mixture's EM (anchor_fit_s, paid once per fit) for the default LDE."
        ),
        (
            f"{IDLE}: the fitted LDE with its network's output layer set to zero, as a fit "
            "leaves it when no epoch beats the mixture on validation; it is then the "
            "mixture exactly, and scores and draws without running the network."
        ),
        (
            f"{', '.join(SLOW)}: run up to D = {SLOW_MAX_D} only (at D = 128 they score "
            "100 to 10,000 times slower than MAF)."
        ),
        f"The naive sampling loop is timed up to D = {NAIVE_MAX_D} only (it costs D^2 passes).",
        "threads: torch.set_num_threads for every fit and timing of that row.",
    ]


__all__ = ["MODELS", "best_seconds", "cached_sampling", "lde_flops", "rows_per_second", "run"]


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "speed", run, "rows per second of log_prob, sample and training, D = 8 to 512, 1 and 2 threads"
)
