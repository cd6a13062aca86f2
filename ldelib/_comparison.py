"""The result of a comparison: every fit, the ranking they give, and its reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import mean_log_likelihood

__all__ = ["ComparisonResult"]


@dataclass
class ComparisonResult:
    """Every fit of a :func:`~ldelib.compare.compare` run, and the ranking they give.

    Attributes
    ----------
    rows : list of dict
        One row per model and seed, as :func:`~ldelib.compare.measure_model` measures it.
    log_probs : dict of str to ndarray
        Each exact model's test log-densities, averaged over its seeds.
    skipped : dict of str to str
        Models that did not run, and why.
    n_train, n_test, n_features : int
    budget : float or None
        Wall-clock seconds per model and seed.
    seeds : list of int
    """

    rows: list[dict[str, Any]]
    log_probs: dict[str, np.ndarray]
    skipped: dict[str, str]
    n_train: int
    n_test: int
    n_features: int
    budget: float | None
    seeds: list[int]
    _ranking: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def ranking(self) -> list[dict[str, Any]]:
        """One row per model, best first: mean test log-likelihood over the seeds.

        ``ll`` and ``se`` are in nats per row (``ll_per_dim`` per dimension); ``gap`` is
        the model's mean difference from the best exact model on the same test rows and
        ``gap_se`` its paired standard error; ``seed_sd`` the standard deviation of the
        model's score over its seeds (with two or more). A model without a density (the
        GMMN) has a Parzen-window estimate, flagged in ``estimate``, and no ``gap``.
        """
        if self._ranking:
            return self._ranking
        by_model: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            by_model.setdefault(row["model"], []).append(row)
        exact = {m: lp for m, lp in self.log_probs.items() if m in by_model}
        best = max(exact, key=lambda m: float(exact[m].mean())) if exact else None
        ranked = []
        for model, rows in by_model.items():
            scores = [r["ll"] for r in rows]
            entry: dict[str, Any] = {"model": model, "estimate": rows[0]["estimate"]}
            if model in exact:
                ll, se = mean_log_likelihood(exact[model])
            else:  # Parzen: the mean of the seeds' estimates, and of their errors
                ll, se = float(np.mean(scores)), float(np.mean([r["se"] for r in rows]))
            entry.update(ll=ll, se=se, ll_per_dim=ll / self.n_features)
            gap = gap_se = None
            if best is not None and model in exact:
                gap, gap_se = mean_log_likelihood(exact[model] - exact[best])
            entry.update(gap=gap, gap_se=gap_se)
            entry["seed_sd"] = float(np.std(scores, ddof=1)) if len(scores) > 1 else None
            for key in ("fit_s", "logprob_per_s", "sample_per_s"):
                values = [r[key] for r in rows if r.get(key) is not None]
                entry[key] = float(np.mean(values)) if values else None
            ranked.append(entry)
        ranked.sort(key=lambda e: (e["model"] not in exact, -e["ll"]))
        self._ranking = ranked
        return ranked

    def to_markdown(self) -> str:
        """The ranking as a markdown table, with what was compared and what was skipped."""
        seeds = ", ".join(map(str, self.seeds))
        budget = "no limit" if self.budget is None else f"{self.budget:g} s"
        lines = [
            "# Density models compared",
            "",
            (
                f"{self.n_train} training rows, {self.n_test} test rows, D = {self.n_features}; "
                f"seeds {seeds}; wall-clock budget per model and seed: {budget}. Every model "
                "chose its hyperparameters on a validation split of the training rows only."
            ),
            "",
            (
                "| rank | model | test ll (nats/row) | ± se | nats/dim | gap to best | ± paired se "
                "| seed sd | fit s | log_prob rows/s | sample rows/s | estimate |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]

        def num(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        for rank, e in enumerate(self.ranking(), 1):
            lines.append(
                f"| {rank} | {e['model']} | {e['ll']:.4f} | {e['se']:.4f} | "
                f"{e['ll_per_dim']:.4f} | {num(e['gap'], '.4f')} | {num(e['gap_se'], '.4f')} | "
                f"{num(e['seed_sd'], '.4f')} | {num(e['fit_s'], '.1f')} | "
                f"{num(e['logprob_per_s'], '.3g')} | {num(e['sample_per_s'], '.3g')} | "
                f"{e['estimate']} |"
            )
        lines += [
            "",
            (
                "A gap more than about two paired standard errors from zero is a real "
                "difference on these test rows; the seed sd says how much a model's own "
                "fit varies. A Parzen estimate (GMMN) is a lower-quality stand-in for a "
                "density and is ranked after the exact models."
            ),
        ]
        if self.skipped:
            lines += ["", *(f"- Not run: {m} ({why})." for m, why in self.skipped.items())]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Everything measured, as plain JSON types."""
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_features": self.n_features,
            "budget_s": self.budget,
            "seeds": self.seeds,
            "ranking": self.ranking(),
            "runs": self.rows,
            "skipped": self.skipped,
        }

    def plot(self, path: str | Path) -> Path:
        """A bar chart of test log-likelihood per dimension, with paired errors (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ranked = self.ranking()[::-1]
        fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(ranked) + 1.2))
        values = [e["ll_per_dim"] for e in ranked]
        errors = [
            (e["gap_se"] if e["gap_se"] is not None else e["se"]) / self.n_features for e in ranked
        ]
        ax.barh([e["model"] for e in ranked], values, xerr=errors, color="tab:blue")
        ax.set_xlabel("test log-likelihood (nats per dimension)", fontsize=12)
        ax.tick_params(labelsize=11)
        low, high = min(values), max(values)
        pad = 0.1 * (high - low) + 1e-3
        ax.set_xlim(low - pad, high + pad)
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
        plt.close(fig)
        return Path(path)

    def save(self, out: str | Path) -> dict[str, str]:
        """Write ``compare.md``, ``compare.json`` and (with matplotlib) ``compare.png``."""
        from ._atomic import atomic_path

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "compare.md", "json": out / "compare.json"}
        with atomic_path(paths["markdown"]) as tmp:
            Path(tmp).write_text(self.to_markdown())
        with atomic_path(paths["json"]) as tmp:
            Path(tmp).write_text(json.dumps(self.to_json(), indent=1, default=_jsonable))
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            pass  # the figure is optional: the table and JSON hold everything
        else:
            paths["figure"] = out / "compare.png"
            with atomic_path(paths["figure"]) as tmp:
                self.plot(tmp)
        return {k: str(v) for k, v in paths.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
