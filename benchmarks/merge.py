"""Merge the JSON results of several runs of one suite into one result file.

    python benchmarks/merge.py latents OUT PART.json [PART.json ...]

Long suites run as several processes side by side (``ldelib bench latents --seeds 0``
and ``--seeds 1 2 --dims 8 16``, say). This concatenates their rows, keeps each part's
command, machine and wall time in ``config["parts"]``, and writes ``OUT/<suite>.json``
and ``.md`` with the suite's own tables.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from ldelib.bench._report import Report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("out")
    parser.add_argument("parts", nargs="+")
    args = parser.parse_args()
    parts = [json.loads(Path(p).read_text()) for p in args.parts]
    config = dict(parts[0]["config"])
    config["seeds"] = sorted({s for p in parts for s in p["config"].get("seeds", [])})
    config["parts"] = [
        {
            "command": p["environment"]["command"],
            "wall_s": p["wall_s"],
            "cpu": p["environment"]["cpu"],
            "seeds": p["config"].get("seeds"),
            "latent_dims": p["config"].get("latent_dims"),
            "rows": len(p["rows"]),
        }
        for p in parts
    ]
    report = Report(args.suite, parts[0]["quick"], config)
    report.rows = [row for p in parts for row in p["rows"]]
    module = importlib.import_module(f"ldelib.bench.{args.suite.replace('-', '_')}")
    module.tabulate(report)
    report.meta["environment"] = {
        **parts[0]["environment"],
        "command": " && ".join(p["environment"]["command"] for p in parts),
    }
    extra = [n for p in parts for n in p["notes"] if n not in report.notes]
    report.notes += list(dict.fromkeys(extra))
    report.started -= max(p["wall_s"] for p in parts)  # the parts ran side by side
    print("wrote", *report.write(args.out))


if __name__ == "__main__":
    main()
