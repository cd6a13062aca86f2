"""Where the LDE's time goes: ``torch.profiler`` on scoring, one training step and sampling.

    python benchmarks/profile_lde.py --out benchmarks/results/profile.md

The module is the default anchored LDE (16 channels) over a random full-covariance
mixture of K components in D dimensions, its output layer drawn small and random
("trained", the network runs) or left at zero ("idle", the mixture exactly, as a fit that
no epoch improved leaves it). Each path is timed on one thread (best of three calls after
a warm-up), then profiled once; the table gives rows per second and the operators that
took the largest shares of the profiled time. Run it against another checkout
(``PYTHONPATH=...``) to compare versions: it uses only the module's public methods.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

if not __package__:
    # Run as a script, its own folder comes first on sys.path: the package it belongs
    # to is importable from the folder above.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.speed import best_seconds
from ldelib.nn.autoregressive import AutoregressiveMDN

#: (D, K) pairs profiled by default.
CASES = ((16, 5), (16, 20), (64, 5), (64, 20), (64, 40), (256, 20), (512, 20))
ROWS = {"log_prob": 8192, "sample": 4096, "train step": 64}
#: Above this D, a quarter of the rows for scoring and sampling, so a call stays short.
LARGE_D = 64


def _rows(path: str, d: int) -> int:
    return ROWS[path] if d <= LARGE_D or path == "train step" else ROWS[path] // 4


def module(d: int, k: int, trained: bool, seed: int = 0) -> AutoregressiveMDN:
    """The default anchored LDE over a random mixture; ``trained`` moves its output layer."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mdn = AutoregressiveMDN(d, k, hidden_channels=16, anchored=True)
    factors = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covariances = factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(d)
    assert mdn.anchor is not None
    mdn.anchor.set_mixture(np.full(k, 1 / k), 3 * rng.normal(size=(k, d)), covariances)
    if trained:
        with torch.no_grad():
            mdn.net.output.weight.normal_(0.0, 0.01)
    return mdn.eval()


def _paths(mdn: AutoregressiveMDN, d: int) -> dict[str, Callable[[], Any]]:
    z = torch.randn(_rows("log_prob", d), d)
    batch = torch.randn(ROWS["train step"], d)
    optimizer = torch.optim.Adam(mdn.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def log_prob() -> None:
        with torch.no_grad():
            mdn(z)

    def step() -> None:
        mdn.train()
        optimizer.zero_grad()
        (-mdn(batch).mean()).backward()
        optimizer.step()
        mdn.eval()

    return {
        "log_prob": log_prob,
        "sample": lambda: mdn.sample(_rows("sample", d), generator),
        "train step": step,
    }


def _top(fn: Callable[[], Any], n: int) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return ", ".join(
        f"{e.key.removeprefix('aten::')} {100 * e.self_cpu_time_total / total:.0f}%"
        for e in events[:n]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="markdown file for the table")
    parser.add_argument("--top", type=int, default=5, help="operators listed per path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Profile: where the LDE's time goes (one thread)",
        "",
        (
            f"Command: `python benchmarks/profile_lde.py --out ...`; rows per call: {ROWS}, a "
            f"quarter of them for scoring and sampling above D = {LARGE_D}."
        ),
        "",
        "| D | K | network | path | rows/s | largest operators (share of self time) |",
        "|---|---|---|---|---|---|",
    ]
    for d, k in CASES:
        for trained in (True, False):
            mdn = module(d, k, trained)
            for name, fn in _paths(mdn, d).items():
                if name == "train step" and not trained:
                    continue  # training runs the network whatever its output layer holds
                rate = _rows(name, d) / best_seconds(fn, repeats=3)
                row = (
                    f"| {d} | {k} | {'trained' if trained else 'idle'} | {name} | "
                    f"{rate:,.0f} | {_top(fn, args.top)} |"
                )
                print(row, flush=True)
                lines.append(row)
    if args.out:  # the rows were printed as they came
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
