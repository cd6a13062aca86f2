"""Cached (incremental) vs naive autoregressive sampling of CausalConvMDN.

Times ``AutoregressiveMDN.sample(cached=True)``, which steps through the dimensions
reusing cached activations, against ``cached=False``, which re-runs the whole network on
every prefix, and checks that both give the same samples for the same noise.

    python benchmarks/sampling_speed.py --dims 16 64 128 --n 1000
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from ldelib.bench.speed import best_seconds as best_of
from ldelib.nn import AutoregressiveMDN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--n", type=int, default=1000, help="samples per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--architecture", default="residual", choices=["residual", "paper"])
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    rows = []
    for d in args.dims:
        torch.manual_seed(0)
        model = AutoregressiveMDN(d, components=10, architecture=args.architecture).eval()
        z_cached, _ = model.sample(64, torch.Generator().manual_seed(0), cached=True)
        z_naive, _ = model.sample(64, torch.Generator().manual_seed(0), cached=False)
        max_diff = float((z_cached - z_naive).abs().max())
        cached = best_of(
            lambda m=model: m.sample(args.n, torch.Generator().manual_seed(1)), args.repeats
        )
        naive = best_of(
            lambda m=model: m.sample(args.n, torch.Generator().manual_seed(1), cached=False),
            args.repeats,
        )
        rows.append(
            {
                "D": d,
                "cached_s": cached,
                "naive_s": naive,
                "speedup": naive / cached,
                "max_abs_diff": max_diff,
            }
        )
        print(
            f"D={d:4d}  cached {cached:8.3f} s  naive {naive:8.3f} s  "
            f"speed-up x{naive / cached:6.1f}  max |diff| {max_diff:.1e}"
        )
    meta = {
        "n_samples": args.n,
        "architecture": args.architecture,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
