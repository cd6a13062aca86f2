"""The results folder's tools (benchmarks/merge.py, benchmarks/headline.py) on the committed runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"

pytestmark = pytest.mark.skipif(
    not (RESULTS / "README.md").exists(), reason="no committed benchmark results here"
)


def _run(*args: str | Path) -> None:
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=ROOT)


def test_headline_page_is_what_headline_writes(tmp_path):
    copy = shutil.copytree(RESULTS, tmp_path / "results")
    _run(BENCHMARKS / "headline.py", "--results", copy)
    assert (copy / "README.md").read_bytes() == (RESULTS / "README.md").read_bytes(), (
        "benchmarks/results/README.md is stale: run python benchmarks/headline.py"
    )


def test_merge_of_one_committed_result_keeps_its_rows(tmp_path):
    _run(BENCHMARKS / "merge.py", "digits", tmp_path, RESULTS / "digits.json")
    merged = json.loads((tmp_path / "digits.json").read_text())
    committed = json.loads((RESULTS / "digits.json").read_text())
    assert merged["rows"] == committed["rows"]
    assert "python benchmarks/merge.py digits" in merged["environment"]["command"]


def test_rows_from_an_old_run_lose_their_leads_over_a_replaced_lde(tmp_path):
    committed = json.loads((RESULTS / "digits.json").read_text())
    lde, kept = "LDE (CausalConvMDN)", ["KernelDensity", "zuko NSF"]
    # An old run whose rows carry leads against its own LDE.
    old_rows = [
        {**r, "lde_lead": 1.0, "lde_lead_se": 0.1} if r.get("model") in kept else r
        for r in committed["rows"]
    ]
    (tmp_path / "old.json").write_text(json.dumps({**committed, "rows": old_rows}))
    # A "new run" of the LDE alone: the other models' rows come from the old file.
    part = {**committed, "rows": [r for r in committed["rows"] if r.get("model") == lde]}
    (tmp_path / "part.json").write_text(json.dumps(part))
    _run(
        BENCHMARKS / "merge.py", "digits", tmp_path / "out", tmp_path / "part.json",
        "--old", tmp_path / "old.json", "--from-old", *kept,
    )  # fmt: skip
    rows = json.loads((tmp_path / "out" / "digits.json").read_text())["rows"]
    old = [r for r in rows if r.get("model") in kept and r.get("kind") != "summary"]
    assert old and all(r["from"] == "old.json" for r in old)
    # Their leads were against the LDE of their own run, which this one replaces.
    assert all(r.get("lde_lead") is None and r.get("lde_lead_se") is None for r in old)
