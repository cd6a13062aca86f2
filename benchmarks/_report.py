"""Benchmark results: rows, the run's provenance, and their JSON / markdown / PNG files."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Measurement", "Report", "environment", "measure"]

_PACKAGES = ("ldelib", "torch", "numpy", "scipy", "scikit-learn", "zuko", "matplotlib")


def environment() -> dict[str, Any]:
    """Machine, interpreter, thread count and package versions of this run."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": versions,
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]) if sys.argv else "",
    }


def _release_free_memory() -> None:
    # glibc keeps freed heap pages: without handing them back, a block that reuses memory
    # an earlier one freed shows no growth in the resident set, however much it used.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    """Wall time and peak memory of a block (see :func:`measure`)."""

    seconds: float = math.nan
    peak_mb: float | None = None


@contextmanager
def measure(poll: float = 0.005) -> Iterator[Measurement]:
    """Time a block, and its peak memory above the starting point.

    Memory is the growth of the process's resident set, polled from ``/proc`` in a
    thread after free heap pages are handed back to the system (CPU), or torch's
    peak-allocation counter (CUDA); ``None`` where neither is available.
    """
    result = Measurement()
    _release_free_memory()
    start_rss, peak = _rss_bytes(), [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            stop.wait(poll)

    watcher = threading.Thread(target=watch, daemon=True) if start_rss is not None else None
    if watcher is not None:
        watcher.start()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if cuda:
            torch.cuda.synchronize()
        result.seconds = time.perf_counter() - start
        if watcher is not None:
            assert start_rss is not None  # the watcher runs only then
            stop.set()
            watcher.join()
            peak[0] = max(peak[0], _rss_bytes() or 0)
            result.peak_mb = max(0, peak[0] - start_rss) / 2**20
        if cuda:
            result.peak_mb = torch.cuda.max_memory_allocated() / 2**20


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Report:
    """The results of one suite: rows of named values, figures and provenance.

    Attributes
    ----------
    suite : str
    quick : bool
    config : dict
        Everything that defines the run: sizes, splits, seeds, budgets.
    rows : list of dict
        One dict per measured result; missing keys render as blanks.
    notes : list of str
        Lines printed under the tables (protocols, caveats, published figures).
    """

    suite: str
    quick: bool
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    tables: list[tuple[str, Sequence[str], Callable[[dict[str, Any]], bool]]] = field(
        default_factory=list
    )
    started: float = field(default_factory=time.perf_counter)

    def add(self, **row: Any) -> dict[str, Any]:
        self.rows.append(row)
        printable = "  ".join(f"{k}={_fmt(v, 4)}" for k, v in row.items() if v is not None)
        print(f"[{self.suite}] {printable}", flush=True)
        return row

    def table(
        self,
        title: str,
        columns: Sequence[str],
        where: Callable[[dict[str, Any]], bool] = lambda row: True,
    ) -> None:
        """Declare a markdown table over the rows matching ``where``."""
        self.tables.append((title, columns, where))

    def pyplot(self) -> Any:
        """``matplotlib.pyplot`` on the Agg backend, or None (with a note) without it."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.notes.append("Figures not drawn: matplotlib is not installed.")
            return None
        return plt

    def save_figure(self, fig: Any, out: str | os.PathLike[str], name: str) -> None:
        """Write ``fig`` as ``<name>[-quick].png`` into ``out``, close it, list it."""
        import matplotlib.pyplot as plt

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{'-quick' if self.quick else ''}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        self.figures.append(str(path))

    def markdown(self, digits: int = 4) -> str:
        env = self.meta["environment"]
        lines = [
            f"# Benchmark `{self.suite}`{' (quick)' if self.quick else ''}",
            "",
            f"Command: `{env['command']}`  ",
            f"Wall time: {self.meta['wall_s']:.0f} s on {env['cpu']} "
            f"({env['cpu_count']} cores, torch threads {env['torch_threads']}"
            f"{', ' + env['cuda'] if env['cuda'] else ''}); "
            + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
            "",
            "Configuration: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in self.config.items()),
            "",
        ]
        for title, columns, where in self.tables:
            lines += [f"## {title}", "", "| " + " | ".join(columns) + " |"]
            lines.append("|" + "---|" * len(columns))
            for row in filter(where, self.rows):
                lines.append("| " + " | ".join(_fmt(row.get(c), digits) for c in columns) + " |")
            lines.append("")
        if self.notes:
            lines += ["## Notes", "", *(f"- {n}" for n in self.notes), ""]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in self.figures]
        return "\n".join(lines) + "\n"

    @property
    def meta(self) -> dict[str, Any]:
        if not hasattr(self, "_meta"):
            self._meta = {"environment": environment(), "wall_s": math.nan}
        return self._meta

    def write(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write ``<suite>.json`` and ``<suite>.md`` into ``out``; return every file."""
        self.meta["wall_s"] = time.perf_counter() - self.started
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        stem = self.suite + ("-quick" if self.quick else "")
        payload = {
            "suite": self.suite,
            "quick": self.quick,
            "config": self.config,
            **self.meta,
            "rows": self.rows,
            "notes": self.notes,
            "figures": [Path(f).name for f in self.figures],
        }
        json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
        text = json.dumps(_finite(payload), indent=1, default=_json_default, allow_nan=False)
        json_path.write_text(text + "\n")
        md_path.write_text(self.markdown())
        return [json_path, md_path, *map(Path, self.figures)]


def _finite(value: Any) -> Any:
    """The payload with NaN and infinities as ``null``: strict JSON for any reader."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
