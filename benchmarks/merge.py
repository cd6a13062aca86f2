"""Merge the JSON results of several runs of one suite into one result file.

    python benchmarks/merge.py SUITE OUT PART.json [PART.json ...]
        [--old OLD.json --from-old MODEL [MODEL ...]]

Long suites run as several processes side by side (``python -m benchmarks latents --seeds 0``
and ``--seeds 1 2 --dims 8 16``, say). This concatenates their rows, keeps each part's
command, machine and wall time in ``config["parts"]``, and writes ``OUT/<suite>.json``
and ``.md`` with the suite's own tables (summaries are recomputed).

``--old`` / ``--from-old`` add the rows of the named models from an earlier result file
of the same suite: for models whose code did not change, on suites whose data are
regenerated identically (synthetic targets, bundled datasets), so that only the changed
models are re-run. Those rows are marked ``"from": OLD.json``; where the default LDE is
re-run, their paired leads (against the LDE of their own run) are cleared.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

if not __package__:
    # Run as a script, its own folder comes first on sys.path: the package it belongs
    # to is importable from the folder above.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import SUITES
from benchmarks._report import Report

#: The default LDE's label, and the row fields that hold paired leads against it.
LDE = "LDE (CausalConvMDN)"
_LEADS = ("lde_lead", "lde_lead_se")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("out")
    parser.add_argument("parts", nargs="+")
    parser.add_argument("--old", help="an earlier result file of the same suite")
    parser.add_argument("--from-old", nargs="+", default=[], help="model labels to take from it")
    args = parser.parse_args()
    parts = [{**json.loads(Path(p).read_text()), "path": Path(p)} for p in args.parts]
    if args.old:
        old = json.loads(Path(args.old).read_text())
        rows = [
            {**r, "from": Path(args.old).name}
            for r in old["rows"]
            if r.get("kind") != "summary" and r.get("model") in args.from_old
        ]
        if LDE not in args.from_old:
            # A paired lead is against the LDE of its own run, which the new parts replace.
            for row in rows:
                for key in _LEADS:
                    if row.get(key) is not None:
                        row[key] = None
        missing = set(args.from_old) - {r["model"] for r in rows}
        if missing:
            raise SystemExit(f"{args.old} has no rows of {sorted(missing)}")
        parts.append({**old, "rows": rows, "notes": [], "old": True})
    config = dict(parts[0]["config"])
    config["seeds"] = sorted({s for p in parts for s in p["config"].get("seeds", [])})
    for key in ("dims", "latent_dims"):  # parts split by dimension: the run covers them all
        if key in config:
            config[key] = sorted({d for p in parts for d in p["config"].get(key, [])})
    config["parts"] = [
        {
            "command": p["environment"]["command"],
            "wall_s": p["wall_s"],
            "cpu": p["environment"]["cpu"],
            "seeds": p["config"].get("seeds"),
            "latent_dims": p["config"].get("latent_dims"),
            "rows": len(p["rows"]),
            **({"models": args.from_old} if p.get("old") else {}),
        }
        for p in parts
    ]
    merge_command = shlex.join(["python", "benchmarks/merge.py", *sys.argv[1:]])
    report = Report(args.suite, parts[0]["quick"], config)
    report.rows = [row for p in parts for row in p["rows"] if row.get("kind") != "summary"]
    tabulate = SUITES[args.suite].tabulate
    if tabulate is None:
        raise SystemExit(f"the tables of {args.suite!r} are not rebuilt from its rows")
    tabulate(report)
    report.meta["environment"] = {
        **parts[0]["environment"],
        "command": " && ".join(
            [*(p["environment"]["command"] for p in parts if not p.get("old")), merge_command]
        ),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in parts:  # the parts' figures travel with the merged result
        for name in [] if p.get("old") else p["figures"]:
            if p["path"].parent.resolve() != out.resolve():
                shutil.copyfile(p["path"].parent / name, out / name)
            report.figures.append(str(out / name))
    extra = [n for p in parts for n in p["notes"] if n not in report.notes]
    report.notes += list(dict.fromkeys(extra))
    # The new parts ran side by side: the longest is the wall time of this result.
    report.started -= max(p["wall_s"] for p in parts if not p.get("old"))
    print("wrote", *report.write(args.out))


if __name__ == "__main__":
    main()
