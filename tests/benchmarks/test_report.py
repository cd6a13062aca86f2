from __future__ import annotations

import json
import time

import numpy as np

from benchmarks._report import Report, environment, measure


def test_report_writes_strict_json_and_declared_tables(tmp_path):
    report = Report("demo", False, {"seeds": [0]})
    report.add(model="a", ll=-1.23456, se=float("nan"), extra=np.float32(2.0))
    report.add(model="b", ll=-2.0, se=0.01)
    report.table("Scores", ["model", "ll", "se"], lambda r: r["model"] == "a")
    report.notes.append("a note")
    json_path, md_path = report.write(tmp_path)
    payload = json.loads(json_path.read_text())  # strict JSON: NaN became null
    assert payload["rows"][0]["se"] is None and payload["rows"][0]["extra"] == 2.0
    assert payload["config"] == {"seeds": [0]} and payload["wall_s"] >= 0
    markdown = md_path.read_text()
    assert "| a | -1.2346 |  |" in markdown and "| b |" not in markdown
    assert "- a note" in markdown


def test_environment_names_versions():
    env = environment()
    assert env["versions"]["numpy"] == np.__version__
    assert env["cpu_count"] >= 1


def test_measure_times_a_block_and_its_memory():
    # Twice: the second block reuses memory the first one freed, and must still count it.
    for _ in range(2):
        with measure() as m:
            time.sleep(0.02)
            block = np.ones(20_000_000)  # 160 MB, touched
            block += 1
            del block
        assert m.seconds >= 0.02
        if m.peak_mb is not None:
            assert m.peak_mb > 100
