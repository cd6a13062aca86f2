"""``python -m benchmarks``: its help, its options, and what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import benchmarks.__main__ as cli
from benchmarks import SUITES

ROOT = Path(__file__).resolve().parents[2]


class _FakeReport:
    """Stands for a suite's report: prints progress to stdout as the real ones do."""

    def write(self, out):
        print("[fake] progress that must not reach stdout under --json")
        return [f"{out}/fake.json", f"{out}/fake.md"]


def test_json_prints_only_the_written_paths(tmp_path, capsys, monkeypatch):
    def fake_run_suite(name, out, *args, **kwargs):
        print(f"[{name}] a row")
        return _FakeReport()

    monkeypatch.setattr(cli, "run_suite", fake_run_suite)
    out = str(tmp_path / "res")
    assert cli.main(["toy", "--quick", "--out", out, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON
    assert result == {
        "suite": "toy",
        "quick": True,
        "out": out,
        "written": [f"{out}/fake.json", f"{out}/fake.md"],
    }
    assert "[toy] a row" in captured.err and "[fake] progress" in captured.err

    assert cli.main(["toy", "--out", out]) == 0
    assert capsys.readouterr().out.endswith(f"wrote {out}/fake.json, {out}/fake.md\n")


def test_every_argument_has_help():
    for action in cli._parser()._actions:
        assert action.help and action.help.strip(), f"{action.dest} has no help"


def test_python_m_benchmarks_help_lists_the_suites():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,  # the package is importable from the repository root
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m benchmarks")
    for name in SUITES:
        assert name in result.stdout
