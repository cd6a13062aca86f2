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
* at the smallest size (full run only), the LDE is also fitted on the rows loaded into
  memory, the contrast that shows what reading from disk saves.

Each fit and each scoring runs in a fresh Python process, one at a time (the GMM's two
share one, each phase measured alone), so its memory is measured alone: the peak
resident set (``VmHWM``, which counts the touched pages of the mapped file) and, sampled
in a thread, the peak anonymous memory (``RssAnon``: heap and tensors, no file pages,
i.e. with the page cache excluded). Times are seconds per million rows and milliseconds
per optimiser step; test log-likelihoods are set against the truth's. A last section
fits the smallest size for a fixed number of epochs on one process and on two with
``torchrun`` (the same global batch, hence the same steps) and compares their test
log-likelihoods, when this build can train on several processes.
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self  # typing.Self is Python 3.11+

from ldelib.datasets import make_target
from ldelib.datasets.targets import Target

from ._report import Report
from ._suite import Suite

__all__ = ["FULL", "QUICK", "D", "Plan", "distributed_fit_available", "rows_file", "run"]

#: Dimension of the latent rows.
D = 64
#: Rows generated (and read back for the truth's log-likelihood) at once.
CHUNK_ROWS = 65_536
#: Version of the recipe of the cached data files; a change regenerates them.
RECIPE = 2
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
    #: Budget of the in-memory fit at the smallest size; ``None``: no such fit.
    contrast_budget_s: float | None
    batch_size: int
    validate_every: int
    validation_fraction: float
    gmm_max_fit_rows: int
    #: Settings of the LDE beyond those above (the quick run uses a smaller network).
    lde: dict[str, Any] = field(default_factory=dict)
    n_components: int = 10
    #: Epochs of the 1- and 2-process fits compared (no time budget: the same steps).
    two_process_epochs: int = 1
    #: Threads of each measured process (OMP, MKL, OpenBLAS); ``None``: their defaults.
    threads: int | None = None

    def lde_params(self, seed: int, budget_s: float | None) -> dict[str, Any]:
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
    budget_s=2.0,
    contrast_budget_s=None,
    batch_size=256,
    validate_every=20,
    validation_fraction=0.1,
    gmm_max_fit_rows=3000,
    lde={"init": "random", "hidden_channels": 16, "dropout": 0.0},
    # A smoke test often shares the machine: one thread per process, since threads
    # waiting for a descheduled sibling make every step several times slower.
    threads=1,
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
        # A whole chunk drawn even for the last rows: a file is then exactly the first
        # rows of any larger file of its stream.
        rows[begin : begin + count] = target.sample(CHUNK_ROWS, random_state=rng)[:count]
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


def _phase(work: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
    """Run ``work`` alone: its seconds, the memory before it, and its peaks."""
    import gc

    from ._report import _release_free_memory

    gc.collect()
    _release_free_memory()  # freed heap back to the system: the base is what is held
    base = _status_mb()
    try:  # "5" resets VmHWM to the current resident set (Linux 4.0+)
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    start = time.perf_counter()
    with _Sampler() as sampler:
        value = work()
    seconds = time.perf_counter() - start
    end = _status_mb()
    measured = {
        "seconds": seconds,
        "start": start,
        "base_rss_mb": base.get("VmRSS"),
        "base_anon_mb": base.get("RssAnon"),
        "peak_anon_mb": sampler.peak.get("RssAnon"),
        "peak_file_mb": sampler.peak.get("RssFile"),
        "peak_rss_sampled_mb": sampler.peak.get("VmRSS"),
        "vmhwm_mb": end.get("VmHWM") if hwm_reset else None,
    }
    return measured, value


def _child() -> None:
    """A measuring process: ``python -c _CHILD SPEC_JSON``; see :func:`_measure`.

    It fits a model (``spec["fit"]``) and saves it, then scores files to ``.npy`` with
    ``out=`` (``spec["scores"]``, each with its model file), each phase measured alone.
    """
    import torch
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    from ldelib.models import GMM, CausalConvMDN
    from ldelib.persistence import load

    spec = json.loads(sys.argv[1])
    result: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "scores": []}
    fit = spec.get("fit")
    if fit is not None:
        steps: dict[str, Any] = {"n": 0, "first": None, "last": None}

        def before_step(*_: Any) -> None:
            if steps["first"] is None:
                steps["first"] = time.perf_counter()

        def after_step(*_: Any) -> None:
            steps["n"] += 1
            steps["last"] = time.perf_counter()

        register_optimizer_step_pre_hook(before_step)
        register_optimizer_step_post_hook(after_step)
        model = (CausalConvMDN if fit["model"] == "lde" else GMM)(**fit["params"])

        def fit_model() -> None:
            # In memory: the whole file read first, as np.load gives it.
            model.fit(np.load(fit["data"]) if fit["in_memory"] else fit["data"])

        measured, _ = _phase(fit_model)
        model.save(fit["model_path"])
        first, last = steps["first"], steps["last"]
        measured.update(
            steps=steps["n"],
            setup_s=None if first is None else first - measured["start"],
            train_s=None if first is None or last is None else last - first,
            epochs_started=getattr(model, "n_iter_", None),
            validations=len(getattr(model, "validation_scores_", None) or []),
            best_validation_score=getattr(model, "best_validation_score_", None),
            anchor_fit_s=(getattr(model, "anchor_", None) or {}).get("fit_s"),
            n_components=getattr(model, "n_components_", None),
        )
        result["fit"] = measured
        del model
    for job in spec.get("scores", []):
        scorer = load(job["model_path"])

        def score(m: Any = scorer, j: dict[str, str] = job) -> None:
            m.score_samples(j["data"], out=j["out"])

        measured, _ = _phase(score)
        result["scores"].append(measured)
        del scorer
    Path(spec["result"]).write_text(json.dumps(result))


_CHILD = "from benchmarks.scale import _child; _child()"


def _environment(threads: int | None) -> dict[str, str]:
    """The environment of a measured process: this one's, with ``threads`` set."""
    env = dict(os.environ)
    # The child imports this package by name, which is not installed: it lives in the
    # repository, importable from the folder that holds it, whatever the child's cwd.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


def _measure(spec: dict[str, Any], timeout: float, threads: int | None = None) -> dict[str, Any]:
    """Run :func:`_child` on ``spec`` in a fresh process; its measurements, or ``error``."""
    result_path = Path(spec["result"])
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", _CHILD, json.dumps(spec)]
    proc = _run(cmd, timeout, threads)
    if isinstance(proc, dict):
        return proc
    if proc.returncode != 0 or not result_path.exists():
        return {"error": f"exit {proc.returncode}: {_tail(proc)}"}
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def _run(
    cmd: list[str], timeout: float, threads: int | None
) -> subprocess.CompletedProcess[str] | dict[str, Any]:
    """Run a measuring child; the finished process, or ``{"error": ...}`` on a timeout."""
    try:
        return subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_environment(threads),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    return " / ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])


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
    for name in (
        "ldelib.training",
        "ldelib.base",
        "ldelib.models.mdn",
        "ldelib.models._mdn_fit",
        "ldelib.cli",
    ):
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
    data: Path,
    model_path: Path,
    params: dict[str, Any],
    work: Path,
    timeout: float,
    threads: int | None = None,
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
    # torchrun gives each rank OMP_NUM_THREADS=1 unless the environment sets it.
    proc = _run(cmd, timeout, threads)
    if isinstance(proc, dict):
        return proc
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not model_path.exists():
        return {"error": f"exit {proc.returncode}: {_tail(proc)}"}
    usage = json.loads(result_path.read_text()) if result_path.exists() else {}
    maxrss = usage.get("maxrss_kb")
    return {
        "wall_s": wall,
        "vmhwm_mb": None if maxrss is None else maxrss / 1024,
        "output": proc.stdout.strip().splitlines()[-2:],
    }


# ------------------------------------------------------------------------- suite
def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fit_columns(fit: dict[str, Any], batch_size: int | None, n_train: int) -> dict[str, Any]:
    """A fit's row entries from its measurements."""
    steps = fit.get("steps") or 0
    row = {
        "fit_s": fit["seconds"],
        "setup_s": fit.get("setup_s") if steps else None,
        "steps": steps or None,
        "fit_base_anon_mb": fit["base_anon_mb"],
        "fit_peak_anon_mb": fit["peak_anon_mb"],
        "fit_anon_growth_mb": _diff(fit["peak_anon_mb"], fit["base_anon_mb"]),
        "fit_vmhwm_mb": fit["vmhwm_mb"],
        "fit_peak_file_mb": fit["peak_file_mb"],
        "n_components": fit.get("n_components"),
        "validations": fit.get("validations") if steps else None,
    }
    train_s = fit.get("train_s")
    if steps and train_s and batch_size:
        seen = steps * batch_size
        row.update(
            rows_seen=seen,
            epochs=seen / n_train,
            ms_per_step=1000 * train_s / steps,
            s_per_M_rows=train_s / seen * 1e6,
        )
    return row


def _score_columns(score: dict[str, Any], ll_path: Path, truth: float) -> dict[str, Any]:
    """A scoring's row entries from its measurements and the log-likelihoods it wrote."""
    ll = np.load(ll_path, mmap_mode="r")
    mean, se = _mean_se(ll)
    return {
        "score_s": score["seconds"],
        "score_s_per_M_rows": score["seconds"] / len(ll) * 1e6,
        "score_base_anon_mb": score["base_anon_mb"],
        "score_peak_anon_mb": score["peak_anon_mb"],
        "score_anon_growth_mb": _diff(score["peak_anon_mb"], score["base_anon_mb"]),
        "score_vmhwm_mb": score["vmhwm_mb"],
        "test_ll": mean,
        "test_se": se,
        "truth_ll": truth,
        "gap_to_truth": truth - mean,
    }


@dataclass
class _Context:
    """What every measured run of one suite run shares."""

    report: Report
    plan: Plan
    seed: int
    work: Path
    test_path: Path
    truth_ll: float
    timeout: float

    def fit_and_score(
        self,
        n: int,
        data: Path,
        label: str,
        kind: str,
        params: dict[str, Any],
        in_memory: bool = False,
        separate: bool = True,
    ) -> dict[str, Any]:
        """Fit in a fresh process and score the test file (in another one if
        ``separate``, else in the same one after the fit); add and return the row."""
        tag = f"{kind}-{n}" + ("-memory" if in_memory else "")
        model_path, ll_path = self.work / f"{tag}.ldelib", self.work / f"ll-{tag}.npy"
        fit_spec = {
            "model": kind,
            "params": params,
            "data": str(data),
            "in_memory": in_memory,
            "model_path": str(model_path),
        }
        scores = [] if in_memory else [self._score_job(model_path, ll_path)]
        spec: dict[str, Any] = {"fit": fit_spec, "result": str(self.work / f"{tag}.json")}
        if not separate:
            spec["scores"] = scores
        where = "in memory (np.load)" if in_memory else "file (path, memmap)"
        row: dict[str, Any] = {"kind": "run", "N": n, "model": label, "data": where}
        row["budget_s"] = params.get("max_time")
        result = self._run(spec, row, f"{label}, N = {n:,} ({where}): fit")
        if result is None:
            return row
        n_train = n - round(float(params.get("validation_fraction", 0.0)) * n)
        row.update(_fit_columns(result["fit"], params.get("batch_size"), n_train))
        row["torch_threads"] = result["torch_threads"]
        if scores:
            if separate:
                spec = {"scores": scores, "result": str(self.work / f"{tag}-score.json")}
                result = self._run(spec, row, f"{label}, N = {n:,}: scoring")
                if result is None:
                    return row  # added, with the error
            row.update(_score_columns(result["scores"][0], ll_path, self.truth_ll))
            row["ll_file"] = str(ll_path)
        return self.report.add(**row)

    def _score_job(self, model_path: Path, ll_path: Path) -> dict[str, str]:
        return {"model_path": str(model_path), "data": str(self.test_path), "out": str(ll_path)}

    def _run(self, spec: dict[str, Any], row: dict[str, Any], what: str) -> dict[str, Any] | None:
        result = _measure(spec, self.timeout, self.plan.threads)
        if "error" in result:
            row["error"] = f"{what} failed: {result['error']}"
            self.report.notes.append(row["error"])
            self.report.add(**row)
            return None
        return result


def run(
    out: Path, quick: bool, seeds: list[int] | None = None, budget_s: float | None = None
) -> Report:
    seed = (seeds or [0])[0]
    plan = QUICK if quick else FULL
    if budget_s is not None:
        short = plan.contrast_budget_s
        plan = replace(
            plan,
            budget_s=budget_s,
            contrast_budget_s=None if short is None else min(short, budget_s),
        )
    data_dir = Path(out) / "cache" / "scale"
    work = data_dir / ("runs-quick" if quick else "runs")
    work.mkdir(parents=True, exist_ok=True)
    gmm_label = f"GMM (max_fit_rows={plan.gmm_max_fit_rows:,})"
    report = Report(
        "scale",
        quick,
        {
            "sizes": plan.sizes,
            "n_test": plan.n_test,
            "D": D,
            "data": "make_target('gmm', 64): 5 full-covariance Gaussians, exact log_prob; "
            f"float32 .npy files written in chunks of {CHUNK_ROWS} rows",
            "data_folder": str(data_dir),
            "seed": seed,
            "budget_s_per_lde_fit": plan.budget_s,
            "contrast_budget_s": plan.contrast_budget_s,
            "lde": plan.lde_params(seed, plan.budget_s),
            "gmm": plan.gmm_params(seed),
            "two_process_epochs": plan.two_process_epochs,
            "threads_per_process": plan.threads or "library defaults (torch: one per core)",
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
    ctx = _Context(
        report, plan, seed, work, test_path, truth_ll, 3 * plan.budget_s + (300 if quick else 3600)
    )

    for n in plan.sizes:
        path, how = rows_file(data_dir, "train", n, seed, target)
        if path is None:
            report.notes.append(f"N = {n:,} skipped: the training file {how}.")
            report.add(kind="skipped", N=n, model=LDE, error=f"not enough disk: {how}")
            continue
        report.notes.append(f"Training file, N = {n:,}: {how}.")
        ctx.fit_and_score(n, path, LDE, "lde", plan.lde_params(seed, plan.budget_s))
        ctx.fit_and_score(n, path, gmm_label, "gmm", plan.gmm_params(seed), separate=False)
        if n == plan.sizes[0]:
            if plan.contrast_budget_s is not None:
                in_memory = plan.lde_params(seed, plan.contrast_budget_s)
                ctx.fit_and_score(n, path, LDE, "lde", in_memory, in_memory=True)
            _two_processes(ctx, n, path)
    _tables(report, plan)
    return report


def _two_processes(ctx: _Context, n: int, data: Path) -> None:
    """The same fit (a fixed number of epochs, no time budget) on 1 and 2 processes."""
    report, plan = ctx.report, ctx.plan
    if not distributed_fit_available():
        report.notes.append(
            "2-process run not available in this build (its fit does not use "
            "ldelib.distributed, so torchrun would only run two independent fits)."
        )
        return
    params = plan.lde_params(ctx.seed, None)
    params["max_epochs"] = plan.two_process_epochs
    base = {"kind": "processes", "N": n, "model": LDE}
    one = ctx.work / f"lde-{n}-1proc.ldelib"
    two = ctx.work / f"lde-{n}-2proc.ldelib"
    spec: dict[str, Any] = {
        "fit": {
            "model": "lde",
            "params": params,
            "data": str(data),
            "in_memory": False,
            "model_path": str(one),
        },
        "result": str(ctx.work / f"lde-{n}-1proc.json"),
    }
    row1: dict[str, Any] = {**base, "processes": 1}
    fit1 = ctx._run(spec, row1, "1-process fit")
    if fit1 is None:
        return
    fit2 = _torchrun_fit(data, two, params, ctx.work, ctx.timeout, plan.threads)
    row2: dict[str, Any] = {**base, "processes": 2}
    if "error" in fit2:
        row2["error"] = f"2-process run failed: {fit2['error']}"
        report.notes.append(row2["error"])
        report.add(**row2)
        return
    lls = [ctx.work / f"ll-lde-{n}-{p}proc.npy" for p in (1, 2)]
    jobs = [ctx._score_job(m, ll) for m, ll in zip((one, two), lls, strict=True)]
    spec = {"scores": jobs, "result": str(ctx.work / f"lde-{n}-procs-score.json")}
    scored = ctx._run(spec, row2, "scoring the 1- and 2-process models")
    if scored is None:
        return
    ll1 = np.asarray(np.load(lls[0], mmap_mode="r"))
    ll2 = np.asarray(np.load(lls[1], mmap_mode="r"))
    (mean1, se1), (mean2, se2) = _mean_se(ll1), _mean_se(ll2)
    f1 = fit1["fit"]
    report.add(
        **row1,
        epochs=plan.two_process_epochs,
        steps=f1["steps"],
        wall_s=f1["seconds"],
        fit_vmhwm_mb=f1["vmhwm_mb"],
        test_ll=mean1,
        test_se=se1,
    )
    diff = mean2 - mean1
    report.add(
        **row2,
        epochs=plan.two_process_epochs,
        wall_s=fit2["wall_s"],
        fit_vmhwm_mb=fit2["vmhwm_mb"],
        test_ll=mean2,
        test_se=se2,
        diff_vs_1=diff,
        paired_se=_mean_se(ll2 - ll1)[1],
        within_1se=bool(abs(diff) <= se1),
        output=fit2["output"],
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
            f"1 vs 2 processes (torchrun, gloo): N = {plan.sizes[0]:,}, "
            f"{plan.two_process_epochs} epoch(s), the same global batch of {plan.batch_size}",
            [
                "processes",
                "N",
                "epochs",
                "steps",
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
            "training rows). The LDE checks its budget at validations and epoch starts, so "
            "a fit can overrun it by up to validate_every steps."
        ),
        (
            "Each N's training file is the first N rows of the larger ones (chunk i of "
            "every file is drawn from the same seed); the test file is drawn separately."
        ),
    ]
    if plan.contrast_budget_s is not None:
        report.notes.append(
            "The in-memory row loads the whole file with np.load before fitting: the "
            "contrast to reading from the file, on a short budget (its memory peaks in "
            "the setup)."
        )
    if any(r.get("kind") == "processes" for r in report.rows):
        report.notes.append(
            "1 vs 2 processes: both fit the smallest file for a fixed number of epochs "
            "with no time budget, so they take the same optimiser steps (batch_size is "
            "the global batch: each of the 2 ranks takes half of every batch). wall_s: "
            "the fit alone for 1 process; the whole torchrun command for 2 (start-up, "
            "imports, rendezvous included). fit_vmhwm_mb for 2: the largest process "
            "(ru_maxrss of torchrun's children). within_1se: |diff_vs_1| at most the "
            "1-process test s.e.; paired_se is the s.e. of the per-row difference."
        )
    report.notes.append(
        "The GMM is fitted and scores the test file in one process, each phase measured "
        "alone (the peak reset after the fit); the LDE's fit and scoring run in separate "
        "processes."
    )
    if plan.lde:
        report.notes.append(
            "Quick run: a small randomly initialised LDE "
            f"({', '.join(f'{k}={v}' for k, v in plan.lde.items())}) instead of the default "
            "anchored one, whose anchor search alone outlasts the quick run; the "
            "numbers check the machinery, not the model."
        )


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite("scale", run, "fits and scoring of 1 to 10 million 64-D rows read from disk")
