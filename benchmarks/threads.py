"""Fit and score times at 1 and 2 torch threads, on a quiet and on a loaded machine.

    python benchmarks/threads.py --out benchmarks/results/threads.md

Each measurement runs in a fresh process (``torch.set_num_threads`` before any work) so
that no thread pool outlives its setting. "Loaded" runs two busy-looping processes, one
per core of a 2-core machine, for the length of the measurement, as a second job would.
``library`` is what ``fit`` and ``score_samples`` do on their own, the user's global
thread setting left at torch's default.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from typing import Any

#: name: (rows, D, estimator parameters)
CASES: dict[str, tuple[int, int, dict[str, Any]]] = {
    "small (8-D, anchored, width 16)": (2_000, 8, {"max_epochs": 3}),
    "medium (32-D, random start, width 64)": (
        5_000,
        32,
        {"max_epochs": 1, "init": "random", "n_components": 10},
    ),
    "large (64-D, random start, width 64, batch 256)": (
        10_000,
        64,
        {"max_epochs": 1, "init": "random", "n_components": 10, "batch_size": 256},
    ),
}
SCORE_ROWS = 50_000

CHILD = r"""
import json, sys, time
import numpy as np, torch
threads, rows, d, params = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
from ldelib import CausalConvMDN
rng = np.random.default_rng(0)
X = rng.normal(size=(rows, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
X[: rows // 2] += 2.0
t = time.perf_counter()
model = CausalConvMDN(random_state=0, device="cpu", **params).fit(X)
fit = time.perf_counter() - t
Z = np.tile(X, (max(1, SCORE_ROWS // rows), 1))[:SCORE_ROWS]
model.score_samples(Z[:1000])
t = time.perf_counter()
model.score_samples(Z)
score = len(Z) / (time.perf_counter() - t)
from ldelib._threads import step_flops
flops = step_flops(model.module_, model.batch_size, d)
print(json.dumps({"fit_s": fit, "score_rows_s": score, "threads": torch.get_num_threads(),
                  "flops": flops}))
""".replace("SCORE_ROWS", str(SCORE_ROWS))


def _spin(stop: float) -> None:
    while time.time() < stop:
        pass


def measure(threads: int, rows: int, d: int, params: dict, loaded: bool) -> dict:
    hogs = []
    if loaded:
        stop = time.time() + 600
        hogs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(2)]
        for hog in hogs:
            hog.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps([threads, rows, d, params])],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    finally:
        for hog in hogs:
            hog.kill()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="markdown file for the table")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    lines = [
        f"# Threads: fit and score at 1 and 2 torch threads ({os.cpu_count()} cores)",
        "",
        (
            "Command: `python benchmarks/threads.py --out benchmarks/results/threads.md`; "
            f"scoring {SCORE_ROWS:,} rows; best and worst of {args.repeats} runs."
        ),
        "",
        "| case | multiply-adds per step | machine | threads | fit s | score rows/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, (rows, d, params) in CASES.items():
        for loaded in (False, True):
            for threads in (1, 2, 0):
                runs = [measure(threads, rows, d, params, loaded) for _ in range(args.repeats)]
                fits = sorted(r["fit_s"] for r in runs)
                scores = sorted(r["score_rows_s"] for r in runs)
                label = str(threads) if threads else f"library ({runs[0]['threads']})"
                row = (
                    f"| {name} | {runs[0]['flops']:.2g} | {'loaded' if loaded else 'quiet'} "
                    f"| {label} | "
                    f"{fits[0]:.2f}-{fits[-1]:.2f} | {scores[-1]:,.0f}-{scores[0]:,.0f} |"
                )
                print(row, flush=True)
                lines.append(row)
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
