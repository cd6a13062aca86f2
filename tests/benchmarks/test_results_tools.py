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
