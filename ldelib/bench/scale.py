"""Suite ``scale``: fitting and scoring latent sets of millions of rows kept on disk.

The rows come from a 64-D Gaussian mixture with an exact log-density
(``make_target("gmm", 64)``), written chunk by chunk to ``.npy`` files under
``OUT/cache/scale`` (float32, seeded; reused when present) and never held whole in
memory: 1, 3 and 10 million training rows in the full run, 20,000 and 60,000 in
``--quick``, and a separate test file from the same target. For each size:

* ``CausalConvMDN`` is fitted from the file's path (a time budget, validation every
  ``validate_every`` steps) and scores the test file to a ``.npy`` with ``out=``;
* ``GMM(max_fit_rows=...)``, EM on a seeded subsample, is fitted and scored the same way,
  as the baseline;
* at the smallest size, the LDE is also fitted on the rows loaded into memory, the
  contrast that shows what reading from disk saves.

Each fit and each scoring runs in a fresh Python process, one at a time, so its memory
is measured alone: the peak resident set (``VmHWM``, which counts the touched pages of
the mapped file) and, sampled in a thread, the peak anonymous memory (``RssAnon``: heap
and tensors, no file pages, i.e. with the page cache excluded). Times are seconds per
million rows and milliseconds per optimiser step; test log-likelihoods are set against
the truth's. A last section fits the smallest size on two processes with ``torchrun``
(same global batch) and compares its test log-likelihood with the one-process fit,
when this build can train on several processes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self  # typing.Self is Python 3.11+

from ..datasets import make_target
from ..datasets.targets import Target
from ._report import Report

__all__ = ["FULL", "QUICK", "D", "Plan", "distributed_fit_available", "rows_file", "run"]

#: Dimension of the latent rows.
D = 64
#: Rows generated (and read back for the truth's log-likelihood) at once.
CHUNK_ROWS = 65_536
#: Version of the recipe of the cached data files; a change regenerates them.
RECIPE = 1
#: Free disk space kept beyond a data file before it is written.
DISK_MARGIN = 512 * 2**20
#: Seed streams of the data files: training and test rows never share draws.
STREAMS = {"train": 0, "test": 1}

LDE = "LDE (CausalConvMDN)"


@dataclass(frozen=True)
class Plan:
    """Sizes, budgets and model settings of one run (quick or full)."""

    sizes: tuple[int, ...]
    n_test: int
    budget_s: float
    contrast_budget_s: float
    batch_size: int
    validate_every: int
    validation_fraction: float
    gmm_max_fit_rows: int
    #: Settings of the LDE beyond those above (the quick run uses a smaller network).
    lde: dict[str, Any] = field(default_factory=dict)
    n_components: int = 10

    def lde_params(self, seed: int, budget_s: float) -> dict[str, Any]:
        return {
            "n_components": self.n_components,
            "batch_size": self.batch_size,
            "validate_every": self.validate_every,
            "validation_fraction": self.validation_fraction,
            "max_epochs": 10_000,  # the time budget ends the fit
            "max_time": budget_s,
            "device": "cpu",
            "random_state": seed,
            **self.lde,
        }

    def gmm_params(self, seed: int) -> dict[str, Any]:
        return {
            "n_components": self.n_components,
            "max_fit_rows": self.gmm_max_fit_rows,
            "random_state": seed,
        }


FULL = Plan(
    sizes=(1_000_000, 3_000_000, 10_000_000),
    n_test=1_000_000,
    budget_s=600.0,
    contrast_budget_s=120.0,
    batch_size=256,
    validate_every=1000,
    validation_fraction=0.01,
    gmm_max_fit_rows=100_000,
)

# The default (anchored) LDE first fits its mixture anchor with a search over the
# regularisation, several EM runs in 64-D: longer than the whole quick run. The quick
# run trains a small randomly initialised network instead; it checks the machinery.
QUICK = Plan(
    sizes=(20_000, 60_000),
    n_test=20_000,
    budget_s=4.0,
    contrast_budget_s=2.0,
    batch_size=256,
    validate_every=25,
    validation_fraction=0.1,
    gmm_max_fit_rows=5000,
    lde={"init": "random", "hidden_channels": 16, "n_blocks": 2, "dropout": 0.0},
)


# ------------------------------------------------------------------------- data
def _target() -> Target:
    return make_target("gmm", D)


def _recipe(stream: str, n: int, seed: int) -> dict[str, Any]:
    return {
        "recipe": RECIPE,
        "target": "make_target('gmm', 64)",
        "stream": stream,
        "n_rows": n,
        "seed": seed,
        "chunk_rows": CHUNK_ROWS,
        "dtype": "float32",
    }


def rows_file(
    folder: Path, stream: str, n: int, seed: int, target: Target | None = None
) -> tuple[Path | None, str]:
    """The ``.npy`` of ``n`` rows of ``stream`` ("train" or "test"), written if needed.

    Chunk ``i`` of every file of a stream is drawn from ``default_rng([seed, stream,
    i])``, so a smaller file is the first rows of a larger one. A file whose recipe (the
    ``.json`` beside it) matches is reused. Returns ``(path, what happened)``, or
    ``(None, why)`` when the disk lacks the room for it (the file plus a margin).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stream}-{n}-seed{seed}.npy"
    sidecar = path.with_suffix(".json")
    recipe = _recipe(stream, n, seed)
    if path.exists() and sidecar.exists():
        try:
            same = json.loads(sidecar.read_text()).get("recipe") == recipe
            rows = np.load(path, mmap_mode="r")
            if same and rows.shape == (n, D) and rows.dtype == np.float32:
                return path, "reused"
        except (OSError, ValueError):
            pass
    needed = n * D * 4 + 4096
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        return None, (
            f"needs {needed / 2**30:.2f} GiB (+{DISK_MARGIN / 2**30:.1f} GiB margin), "
            f"{free / 2**30:.2f} GiB free in {folder}"
        )
    target = target or _target()
    tmp = path.with_name(f".{path.name}.partial")
    start = time.perf_counter()
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, D))
    for i, begin in enumerate(range(0, n, CHUNK_ROWS)):
        count = min(CHUNK_ROWS, n - begin)
        rng = np.random.default_rng([seed, STREAMS[stream], i])
        rows[begin : begin + count] = target.sample(count, random_state=rng)
    rows.flush()
    del rows
    os.replace(tmp, path)
    sidecar.write_text(json.dumps({"recipe": recipe}, indent=1) + "\n")
    return path, f"written in {time.perf_counter() - start:.1f} s"


def truth_log_likelihoods(path: Path, target: Target | None = None) -> np.ndarray:
    """The target's exact log-density of every row of ``path``, chunk by chunk."""
    target = target or _target()
    rows = np.load(path, mmap_mode="r")
    out = np.empty(len(rows))
    for begin in range(0, len(rows), CHUNK_ROWS):
        out[begin : begin + CHUNK_ROWS] = target.log_prob(rows[begin : begin + CHUNK_ROWS])
    return out


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        return math.nan, math.nan
    return float(values.mean()), float(values.std() / math.sqrt(values.size))


# ------------------------------------------------------------- the child process
_STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def _status_mb() -> dict[str, float]:
    """Memory lines of ``/proc/self/status`` in MiB (empty where there is no /proc)."""
    values: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in _STATUS_FIELDS:
                    values[key] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


class _Sampler:
    """The peaks of ``RssAnon``, ``RssFile`` and ``VmRSS``, polled in a thread."""

    def __init__(self, poll: float = 0.005) -> None:
        self.poll = poll
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> None:
        for key, value in _status_mb().items():
            self.peak[key] = max(self.peak.get(key, 0.0), value)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.poll)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _child() -> None:
    """Entry point of a measuring process: ``python -c ... SPEC_JSON``; see ``_measure``."""
    import gc

    import torch
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    from ..models import GMM, CausalConvMDN
    from ..persistence import load
    from ._report import _release_free_memory

    spec = json.loads(sys.argv[1])
    task = spec["task"]
    steps: dict[str, Any] = {"n": 0, "first": None, "last": None}

    def before_step(*_: Any) -> None:
        if steps["first"] is None:
            steps["first"] = time.perf_counter()

    def after_step(*_: Any) -> None:
        steps["n"] += 1
        steps["last"] = time.perf_counter()

    register_optimizer_step_pre_hook(before_step)
    register_optimizer_step_post_hook(after_step)
    model: Any
    if task == "fit":
        kind = CausalConvMDN if spec["model"] == "lde" else GMM
        model = kind(**spec["params"])
    else:
        model = load(spec["model_path"])
    gc.collect()
    _release_free_memory()
    base = _status_mb()
    try:  # "5" resets VmHWM to the current resident set (Linux 4.0+)
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    start = time.perf_counter()
    with _Sampler() as sampler:
        if task == "fit":
            data = spec["data"]
            X = np.load(data) if spec["in_memory"] else data
            model.fit(X)
            del X
        else:
            model.score_samples(spec["data"], out=spec["out"])
    seconds = time.perf_counter() - start
    end = _status_mb()
    result: dict[str, Any] = {
        "seconds": seconds,
        "base_rss_mb": base.get("VmRSS"),
        "base_anon_mb": base.get("RssAnon"),
        "peak_anon_mb": sampler.peak.get("RssAnon"),
        "peak_file_mb": sampler.peak.get("RssFile"),
        "peak_rss_sampled_mb": sampler.peak.get("VmRSS"),
        "vmhwm_mb": end.get("VmHWM") if hwm_reset else None,
        "torch_threads": torch.get_num_threads(),
    }
    if task == "fit":
        model.save(spec["model_path"])
        first, last = steps["first"], steps["last"]
        result.update(
            steps=steps["n"],
            setup_s=(first - start) if first is not None else seconds,
            train_s=(last - first) if first is not None and last is not None else None,
            epochs_started=getattr(model, "n_iter_", None),
            validations=len(getattr(model, "validation_scores_", []) or []),
            best_validation_score=getattr(model, "best_validation_score_", None),
            anchor_fit_s=(getattr(model, "anchor_", None) or {}).get("fit_s"),
            n_components=getattr(model, "n_components_", None),
        )
    Path(spec["result"]).write_text(json.dumps(result))


_CHILD = "from ldelib.bench.scale import _child; _child()"


def _measure(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one fit or scoring in a fresh process; its measurements, or ``error``."""
    result_path = Path(spec["result"])
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", _CHILD, json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0 or not result_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " / ".join(tail)}
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


# ------------------------------------------------------------- several processes
_USES_DISTRIBUTED = re.compile(
    r"^\s*(from\s+\.+\s+import\s+.*\bdistributed\b|from\s+\.+distributed\s+import"
    r"|import\s+ldelib\.distributed|from\s+ldelib\.distributed\s+import"
    r"|from\s+ldelib\s+import\s+.*\bdistributed\b)",
    re.MULTILINE,
)


def distributed_fit_available() -> bool:
    """Whether this build's fit joins a ``torchrun`` job (its training uses
    :mod:`ldelib.distributed`); without it, ``torchrun`` would run independent fits."""
    if importlib.util.find_spec("ldelib.distributed") is None:
        return False
    for name in ("ldelib.training", "ldelib.base", "ldelib.models.mdn", "ldelib.cli"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        try:
            if _USES_DISTRIBUTED.search(Path(spec.origin).read_text()):
                return True
        except OSError:
            continue
    return False


# The launcher's children's largest resident set: torchrun waits for its workers, so
# RUSAGE_CHILDREN of this wrapper covers them.
_WRAP = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 'maxrss_kb': usage.ru_maxrss}))\n"
    "sys.exit(rc)\n"
)


def _torchrun_fit(
    data: Path, model_path: Path, params: dict[str, Any], work: Path, timeout: float
) -> dict[str, Any]:
    """``torchrun --nproc_per_node 2 -m ldelib fit`` with ``params``; wall time, memory."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    fit = ["--nproc_per_node", "2", "-m", "ldelib", "fit", str(data), "--model", "mdn"]
    fit += ["--out", str(model_path)]
    for key, value in params.items():
        fit += ["--param", f"{key}={json.dumps(value)}"]
    result_path = work / "torchrun.json"
    result_path.unlink(missing_ok=True)
    model_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", _WRAP, str(result_path), *launcher, *fit]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not model_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " / ".join(tail)}
    usage = json.loads(result_path.read_text()) if result_path.exists() else {}
    maxrss = usage.get("maxrss_kb")
    return {
        "wall_s": wall,
        "vmhwm_mb": None if maxrss is None else maxrss / 1024,
        "output": proc.stdout.strip().splitlines()[-2:],
    }


# ------------------------------------------------------------------------- suite
def _fit_row(report: Report, n: int, label: str, data: str, fit: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": "run", "N": n, "model": label, "data": data}
    if "error" in fit:
        row["error"] = fit["error"]
        report.notes.append(f"{label}, N = {n:,} ({data}): fit failed, {fit['error']}")
        return row
    steps = fit.get("steps") or 0
    row.update(
        budget_s=fit.get("budget_s"),
        fit_s=fit["seconds"],
        setup_s=fit.get("setup_s") if steps else None,
        steps=steps or None,
        fit_base_anon_mb=fit["base_anon_mb"],
        fit_peak_anon_mb=fit["peak_anon_mb"],
        fit_anon_growth_mb=_diff(fit["peak_anon_mb"], fit["base_anon_mb"]),
        fit_vmhwm_mb=fit["vmhwm_mb"],
        fit_peak_file_mb=fit["peak_file_mb"],
        torch_threads=fit["torch_threads"],
        n_components=fit.get("n_components"),
        validations=fit.get("validations"),
    )
    train_s, batch = fit.get("train_s"), fit.get("batch_size")
    if steps and train_s and batch:
        seen = steps * batch
        row.update(
            rows_seen=seen,
            epochs=seen / fit["n_train"],
            ms_per_step=1000 * train_s / steps,
            s_per_M_rows=train_s / seen * 1e6,
        )
    return row


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _score_into(
    row: dict[str, Any], score: dict[str, Any], ll_path: Path, n_test: int, truth: float
) -> None:
    if "error" in score:
        row["error"] = f"scoring failed, {score['error']}"
        return
    mean, se = _mean_se(np.load(ll_path, mmap_mode="r"))
    row.update(
        score_s=score["seconds"],
        score_s_per_M_rows=score["seconds"] / n_test * 1e6,
        score_peak_anon_mb=score["peak_anon_mb"],
        score_anon_growth_mb=_diff(score["peak_anon_mb"], score["base_anon_mb"]),
        score_vmhwm_mb=score["vmhwm_mb"],
        test_ll=mean,
        test_se=se,
        truth_ll=truth,
        gap_to_truth=truth - mean,
    )


def run(
    out: Path, quick: bool, seeds: list[int] | None = None, budget_s: float | None = None
) -> Report:
    seed = (seeds or [0])[0]
    plan = QUICK if quick else FULL
    if budget_s is not None:
        plan = replace(
            plan, budget_s=budget_s, contrast_budget_s=min(plan.contrast_budget_s, budget_s)
        )
    data_dir = Path(out) / "cache" / "scale"
    work = data_dir / ("runs-quick" if quick else "runs")
    work.mkdir(parents=True, exist_ok=True)
    child_timeout = 3 * plan.budget_s + (120 if quick else 1800)
    report = Report(
        "scale",
        quick,
        {
            "sizes": plan.sizes,
            "n_test": plan.n_test,
            "D": D,
            "data": "make_target('gmm', 64): 5 full-covariance Gaussians, exact log_prob; "
            f"float32 .npy files in {data_dir}, written in chunks of {CHUNK_ROWS}",
            "seed": seed,
            "budget_s_per_lde_fit": plan.budget_s,
            "contrast_budget_s": plan.contrast_budget_s,
            "lde": {k: v for k, v in plan.lde_params(seed, plan.budget_s).items()},
            "gmm": plan.gmm_params(seed),
        },
    )
    target = _target()
    test_path, how = rows_file(data_dir, "test", plan.n_test, seed, target)
    if test_path is None:
        report.notes.append(f"Nothing run: the test file {how}.")
        return report
    report.notes.append(f"Test file ({plan.n_test:,} rows): {how}.")
    truth_ll, truth_se = _mean_se(truth_log_likelihoods(test_path, target))
    report.add(kind="truth", model="truth (exact density)", test_ll=truth_ll, test_se=truth_se)

    one_process: tuple[Path, dict[str, Any]] | None = None
    for n in plan.sizes:
        path, how = rows_file(data_dir, "train", n, seed, target)
        if path is None:
            report.notes.append(f"N = {n:,} skipped: the training file {how}.")
            report.add(kind="skipped", N=n, model=LDE, error=f"not enough disk: {how}")
            continue
        report.notes.append(f"Training file, N = {n:,}: {how}.")
        n_train = n - round(plan.validation_fraction * n)
        runs: list[tuple[str, str, dict[str, Any], float, bool]] = [
            (LDE, "lde", plan.lde_params(seed, plan.budget_s), plan.budget_s, False),
            (
                f"GMM (max_fit_rows={plan.gmm_max_fit_rows:,})",
                "gmm",
                plan.gmm_params(seed),
                0,
                False,
            ),
        ]
        if n == plan.sizes[0]:
            contrast = plan.lde_params(seed, plan.contrast_budget_s)
            runs.append((LDE, "lde", contrast, plan.contrast_budget_s, True))
        for label, kind, params, budget, in_memory in runs:
            tag = f"{kind}-{n}" + ("-memory" if in_memory else "")
            model_path, ll_path = work / f"{tag}.ldelib", work / f"ll-{tag}.npy"
            fit = _measure(
                {
                    "task": "fit",
                    "model": kind,
                    "params": params,
                    "data": str(path),
                    "in_memory": in_memory,
                    "model_path": str(model_path),
                    "result": str(work / f"{tag}-fit.json"),
                },
                child_timeout,
            )
            fit.update(budget_s=budget or None, batch_size=params.get("batch_size"))
            fit["n_train"] = n_train
            data = "in memory (np.load)" if in_memory else "file (path, memmap)"
            row = _fit_row(report, n, label, data, fit)
            if "error" not in row and not in_memory:
                score = _measure(
                    {
                        "task": "score",
                        "model_path": str(model_path),
                        "data": str(test_path),
                        "out": str(ll_path),
                        "result": str(work / f"{tag}-score.json"),
                    },
                    child_timeout,
                )
                _score_into(row, score, ll_path, plan.n_test, truth_ll)
                if kind == "lde" and n == plan.sizes[0] and "error" not in row:
                    one_process = (ll_path, row)
            report.add(**row)

    _two_processes(report, plan, seed, data_dir, work, test_path, one_process, child_timeout)
    _tables(report, plan)
    return report


def _two_processes(
    report: Report,
    plan: Plan,
    seed: int,
    data_dir: Path,
    work: Path,
    test_path: Path,
    one_process: tuple[Path, dict[str, Any]] | None,
    timeout: float,
) -> None:
    n = plan.sizes[0]
    if one_process is None:
        report.notes.append(
            "2-process run not attempted: the 1-process fit it compares with failed."
        )
        return
    if not distributed_fit_available():
        report.notes.append(
            "2-process run not available in this build (its fit does not use "
            "ldelib.distributed, so torchrun would only run two independent fits)."
        )
        return
    ll1_path, row1 = one_process
    params = plan.lde_params(seed, plan.budget_s)
    model_path, ll_path = work / f"lde-{n}-2proc.ldelib", work / f"ll-lde-{n}-2proc.npy"
    fit = _torchrun_fit(data_dir / f"train-{n}-seed{seed}.npy", model_path, params, work, timeout)
    row: dict[str, Any] = {"kind": "processes", "processes": 2, "N": n, "model": LDE}
    if "error" in fit:
        report.notes.append(f"2-process run failed: {fit['error']}")
        report.add(**row, error=fit["error"])
        return
    score = _measure(
        {
            "task": "score",
            "model_path": str(model_path),
            "data": str(test_path),
            "out": str(ll_path),
            "result": str(work / f"lde-{n}-2proc-score.json"),
        },
        timeout,
    )
    if "error" in score:
        report.notes.append(f"2-process model could not score the test file: {score['error']}")
        report.add(**row, error=score["error"])
        return
    ll1 = np.asarray(np.load(ll1_path, mmap_mode="r"))
    ll2 = np.asarray(np.load(ll_path, mmap_mode="r"))
    mean2, se2 = _mean_se(ll2)
    _, paired_se = _mean_se(ll2 - ll1)
    diff = mean2 - row1["test_ll"]
    report.add(
        kind="processes",
        processes=1,
        N=n,
        model=LDE,
        wall_s=row1["fit_s"],
        fit_vmhwm_mb=row1["fit_vmhwm_mb"],
        test_ll=row1["test_ll"],
        test_se=row1["test_se"],
    )
    report.add(
        **row,
        wall_s=fit["wall_s"],
        fit_vmhwm_mb=fit["vmhwm_mb"],
        test_ll=mean2,
        test_se=se2,
        diff_vs_1=diff,
        paired_se=paired_se,
        within_1se=bool(abs(diff) <= row1["test_se"]),
        output=fit["output"],
    )


def _tables(report: Report, plan: Plan) -> None:
    def runs(row: dict[str, Any]) -> bool:
        return row.get("kind") == "run"

    report.table(
        "Fits: time and memory (MiB; one fresh process per fit)",
        [
            "N",
            "model",
            "data",
            "budget_s",
            "fit_s",
            "setup_s",
            "steps",
            "epochs",
            "ms_per_step",
            "s_per_M_rows",
            "fit_base_anon_mb",
            "fit_peak_anon_mb",
            "fit_anon_growth_mb",
            "fit_vmhwm_mb",
            "fit_peak_file_mb",
        ],
        runs,
    )
    report.table(
        f"Scoring the {plan.n_test:,} test rows to a .npy (out=), and the test "
        "log-likelihood (nats per row) against the truth's",
        [
            "N",
            "model",
            "score_s",
            "score_s_per_M_rows",
            "score_peak_anon_mb",
            "score_anon_growth_mb",
            "score_vmhwm_mb",
            "test_ll",
            "test_se",
            "truth_ll",
            "gap_to_truth",
        ],
        lambda r: runs(r) and "test_ll" in r,
    )
    report.table(
        "Truth: the target's exact log-density of the test rows",
        ["model", "test_ll", "test_se"],
        lambda r: r.get("kind") == "truth",
    )
    if any(r.get("kind") == "processes" for r in report.rows):
        report.table(
            f"1 vs 2 processes (torchrun, gloo), N = {plan.sizes[0]:,}, the same global "
            f"batch of {plan.batch_size} and budget",
            [
                "processes",
                "N",
                "wall_s",
                "fit_vmhwm_mb",
                "test_ll",
                "test_se",
                "diff_vs_1",
                "paired_se",
                "within_1se",
            ],
            lambda r: r.get("kind") == "processes",
        )
    report.notes += [
        (
            "Memory, per process, in MiB: base_anon is the anonymous memory after imports "
            "and before the fit or scoring (torch alone is some 200 MiB); peak_anon the "
            "largest RssAnon during it, sampled every 5 ms (heap, tensors; no file pages); "
            "anon_growth their difference; vmhwm the exact peak resident set during it "
            "(VmHWM, reset at the start), which also counts the pages of the memory-mapped "
            "data file the process touched; peak_file the largest RssFile (those pages and "
            "the shared libraries). File pages are page cache: shared and reclaimable, not "
            "memory the fit holds, so 'page cache excluded' reads anon; vmhwm is the upper "
            "bound."
        ),
        (
            "Time: fit_s is the whole fit; setup_s the part before the first optimiser "
            "step (streaming standardisation passes, validation rows, mixture anchor); "
            "ms_per_step and s_per_M_rows cover the first to the last step, validations "
            "included, over steps x batch_size rows seen (epochs: those rows over the "
            "training rows). A budget ends the LDE's fit at the first validation after it."
        ),
        (
            "Each N's training file is the first N rows of the larger ones (chunk i of "
            "every file is drawn from the same seed); the test file is drawn separately."
        ),
        (
            "The in-memory row loads the whole file with np.load before fitting: the "
            "contrast to reading from the file, on a short budget (its memory peaks in "
            "the setup)."
        ),
    ]
    if plan.lde:
        report.notes.append(
            "Quick run: a small randomly initialised LDE "
            f"({', '.join(f'{k}={v}' for k, v in plan.lde.items())}) instead of the default "
            "anchored one, whose anchor search alone outlasts the quick run; the "
            "numbers check the machinery, not the model."
        )
