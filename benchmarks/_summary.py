"""Aggregate per-seed rows into one summary row per (group, model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._report import Report

__all__ = ["summarise"]


def summarise(report: Report, keys: Sequence[str], with_truth: bool = False) -> None:
    """Append ``kind="summary"`` rows: mean over seeds of the per-dim log-likelihood.

    ``pm`` is the standard deviation over seeds, or the standard error of the mean test
    log-likelihood when there is a single seed; ``gap_to_truth`` is the model's mean
    minus the truth's mean (nats/dim) when ``with_truth``.
    """
    runs = [r for r in report.rows if r.get("kind") != "summary"]
    groups: dict[tuple, list[dict]] = {}
    for row in runs:
        groups.setdefault((*(row.get(k) for k in keys), row["model"]), []).append(row)
    truths = {
        g[:-1]: np.mean([r["ll_per_dim"] for r in rows])
        for g, rows in groups.items()
        if g[-1] == "truth"
    }
    for group, rows in groups.items():
        values = np.array([r["ll_per_dim"] for r in rows])
        pm = values.std(ddof=1) if len(values) > 1 else rows[0]["se_per_dim"]
        summary = {
            "kind": "summary",
            **dict(zip(keys, group[:-1], strict=True)),
            "model": group[-1],
            "ll_per_dim": float(values.mean()),
            "pm": float(pm),
            "n_seeds": len(values),
            "estimate": rows[0].get("estimate", "").split(",")[0],
            "fit_s": _mean(rows, "fit_s"),
            "epochs": _mean(rows, "epochs"),
        }
        if with_truth and group[:-1] in truths and group[-1] != "truth":
            summary["gap_to_truth"] = float(values.mean() - truths[group[:-1]])
        report.rows.append(summary)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None
