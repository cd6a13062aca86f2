"""Collect the headline tables of the committed full runs into benchmarks/results/README.md.

    python benchmarks/headline.py

Reads the JSON files that ``python -m benchmarks SUITE --out benchmarks/results``
wrote; every number in the output comes from them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODELS = (
    "LDE (CausalConvMDN)",
    "LDE, random init",
    "LDE, paper network",
    "GMM (validated)",
    "GMM (averaged)",
    "sklearn GMM (grid)",
    "KernelDensity",
    "zuko MAF",
    "zuko NSF",
    "GMMN (Parzen)",
)
SHORT = {
    "LDE (CausalConvMDN)": "LDE",
    "LDE, random init": "LDE random init",
    "LDE, paper network": "LDE paper net",
    "GMM (validated)": "GMM",
    "GMM (averaged)": "GMM averaged",
    "sklearn GMM (grid)": "sklearn GMM grid",
    "KernelDensity": "KDE",
    "zuko MAF": "MAF",
    "zuko NSF": "NSF",
    "GMMN (Parzen)": "GMMN*",
}


def _load(results: Path, suite: str) -> dict | None:
    path = results / f"{suite}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _present(rows: list[dict]) -> tuple[str, ...]:
    """The compared models that have rows, in table order."""
    seen = {r["model"] for r in rows}
    return tuple(m for m in MODELS if m in seen)


def _best(values: dict[str, float], exclude: tuple[str, ...] = ()) -> str | None:
    exact = {k: v for k, v in values.items() if k not in exclude}
    return max(exact, key=lambda k: exact[k]) if exact else None


def _cells(
    by: dict[str, dict], models: tuple[str, ...], text: Callable[[dict], str], best: str | None
) -> list[str]:
    """One table cell per model: ``text(row)``, bold for ``best``, empty where absent."""
    cells = []
    for m in models:
        if m not in by:
            cells.append("")
            continue
        shown = text(by[m])
        cells.append(f"**{shown}**" if m == best else shown)
    return cells


def toy(payload: dict) -> list[str]:
    rows = [r for r in payload["rows"] if r.get("kind") == "summary"]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    seeds = payload["config"]["seeds"]
    models = _present(rows)
    lines = [
        (
            f"## 2-D targets with exact densities (test nats/dim, mean ± sd over {len(seeds)} "
            f"seed{'s' if len(seeds) > 1 else ''}; **best exact model** in bold)"
        ),
        "",
        "| target | truth | " + " | ".join(SHORT[m] for m in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for target in targets:
        by = {r["model"]: r for r in rows if r["target"] == target}
        best = _best({m: by[m]["ll_per_dim"] for m in models if m in by}, ("GMMN (Parzen)",))
        cells = _cells(by, models, lambda r: f"{r['ll_per_dim']:.4f} ± {r['pm']:.4f}", best)
        truth = by["truth"]["ll_per_dim"]
        lines.append(f"| {target} | {truth:.4f} | " + " | ".join(cells) + " |")
    return lines


def latents(payload: dict) -> list[str]:
    rows = [r for r in payload["rows"] if r.get("kind") != "summary"]
    models = _present(rows)
    lde, gmm = "LDE (CausalConvMDN)", "GMM (validated)"
    keys = list(dict.fromkeys((r["dataset"], r["ae"], r["D"], r["seed"]) for r in rows))
    lines = [
        (
            "## Autoencoder latents (test nats per latent vector, ± s.e.; **best exact model** "
            "in bold; LDE − GMM: the LDE's lead over the validated mixture, ± its paired "
            "standard error where the run recorded it)"
        ),
        "",
        "| dataset | AE | D | seed | " + " | ".join(SHORT[m] for m in models) + " | LDE − GMM |",
        "|---|---|---|---|" + "---|" * (len(models) + 1),
    ]
    for key in keys:
        by = {r["model"]: r for r in rows if (r["dataset"], r["ae"], r["D"], r["seed"]) == key}
        best = _best({m: by[m]["ll"] for m in models if m in by}, ("GMMN (Parzen)",))
        cells = _cells(by, models, lambda r: f"{r['ll']:.2f} ± {r['se']:.2f}", best)
        lead = ""
        if lde in by and "lead_over_gmm" in by[lde]:  # paired: the same test rows
            lead = f"{by[lde]['lead_over_gmm']:+.2f} ± {by[lde]['lead_se']:.2f}"
        elif lde in by and gmm in by:
            lead = f"{by[lde]['ll'] - by[gmm]['ll']:+.2f}"
        lines.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(cells) + f" | {lead} |")
    return lines


def parzen(payload: dict) -> list[str]:
    lines = [
        (
            "## MNIST Parzen-window protocol (nats; ± s.e.; "
            f"{payload['config']['n_samples']:,} decoded samples per model)"
        ),
        "",
        "| pipeline | log-likelihood |",
        "|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(f"| {r['pipeline']} | {r['ll']:.1f} ± {r['se']:.1f} |")
    return lines


def ordering(payload: dict) -> list[str]:
    lines = [
        "## Reconstruction MSE from the first k latents (test images)",
        "",
        "| dataset | D | k=1 plain | k=1 IAE | k=D/4 plain | k=D/4 IAE | k=D plain | k=D IAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = payload["rows"]
    for dataset, d in dict.fromkeys((r["dataset"], r["D"]) for r in rows):
        by = {r["ae"]: r["mse"] for r in rows if (r["dataset"], r["D"]) == (dataset, d)}
        q = max(1, d // 4) - 1
        cells = [by[s][i] for i in (0, q, d - 1) for s in ("plain", "IAE")]
        lines.append(f"| {dataset} | {d} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return lines


def digits(payload: dict) -> list[str]:
    rows = [r for r in payload["rows"] if r.get("kind") == "summary"]
    if not rows:
        return []
    runs = [r for r in payload["rows"] if r.get("kind") != "summary"]
    models = _present(rows)
    n = len(payload["config"]["seeds"])
    lines = [
        (
            f"## scikit-learn digits (test nats per vector, mean ± sd over {n} "
            f"seed{'s' if n > 1 else ''}; 1,000 training rows; **best exact model** in bold; "
            "LDE − best other: the default LDE's lead over the best other exact model, mean "
            "over seeds ± the paired standard error)"
        ),
        "",
        "| data | D | " + " | ".join(SHORT[m] for m in models) + " | LDE − best other |",
        "|---|---|" + "---|" * (len(models) + 1),
    ]
    for data in dict.fromkeys(r.get("data", "digits") for r in rows):
        by = {r["model"]: r for r in rows if r.get("data", "digits") == data}
        d = next(r["D"] for r in runs if r.get("data", "digits") == data)
        best = _best({m: by[m]["ll_per_dim"] for m in models if m in by}, ("GMMN (Parzen)",))

        def nats(r: dict, d: int = d) -> str:  # per vector, this table's unit
            return f"{d * r['ll_per_dim']:.1f} ± {d * r['pm']:.1f}"

        cells = _cells(by, models, nats, best)
        rival = _best(
            {m: by[m]["ll_per_dim"] for m in models if m in by},
            ("GMMN (Parzen)", "LDE (CausalConvMDN)"),
        )
        leads = [
            (r["lde_lead"], r["lde_lead_se"])
            for r in runs
            if r.get("data", "digits") == data
            and r["model"] == rival
            and r.get("lde_lead") is not None  # None: from a run of another LDE
        ]
        lead = ""
        if rival is not None and leads:
            mean = sum(v for v, _ in leads) / len(leads)
            se = sum(e**2 for _, e in leads) ** 0.5 / len(leads)
            lead = f"{mean:+.2f} ± {se:.2f} ({SHORT[rival]})"
        lines.append(f"| {data} | {d} | " + " | ".join(cells) + f" | {lead} |")
    return lines


#: The dimensions the headline shows of the speed suite (speed.md has them all).
SPEED_DIMS = (8, 64, 512)


def speed(payload: dict) -> list[str]:
    rows = payload["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [
        (
            "## Throughput on this CPU (rows per second; × zuko MAF in brackets; train: "
            "one epoch, GMM: EM to convergence)"
        ),
        "",
        "| threads | D | model | log_prob | sample | train |",
        "|---|---|---|---|---|---|",
    ]
    for t in dict.fromkeys(r.get("threads", 0) for r in rows):
        for d in dict.fromkeys(r["D"] for r in rows):
            if d not in SPEED_DIMS:
                continue
            for m in models:
                r = next(
                    (
                        r
                        for r in rows
                        if r.get("threads", 0) == t and r["D"] == d and r["model"] == m
                    ),
                    None,
                )
                if r is None:
                    continue
                cells = [
                    ""
                    if r.get(f"{k}_per_s") is None
                    else f"{r[f'{k}_per_s']:,.0f} ({r[f'{k}_vs_maf']:.2f}x)"
                    if r.get(f"{k}_vs_maf") is not None
                    else f"{r[f'{k}_per_s']:,.0f}"
                    for k in ("logprob", "sample", "train")
                ]
                lines.append(f"| {t or ''} | {d} | {m} | " + " | ".join(cells) + " |")
    return lines


def interpolation(payload: dict) -> list[str]:
    lines = [
        "## Latent log-likelihood along straight paths between test images (nats)",
        "",
        "| AE | pairs | ends | midpoint | lowest point | dip below the lower end |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['ae']} | {r['pairs']} | {r['ll_ends']:.2f} | {r['ll_midpoint']:.2f} | "
            f"{r['ll_min']:.2f} | {r['dip']:.2f} ± {r['dip_se']:.2f} |"
        )
    return lines


def ood(payload: dict) -> list[str]:
    scores = (
        ("LDE: latent log-likelihood", "LDE ll"),
        ("LDE: combined scores (sum, calibrated on in-distribution validation)", "LDE combined"),
        ("LDE: typicality of the scores (density, same calibration)", "LDE typicality"),
        ("GMM: latent log-likelihood", "GMM ll"),
        ("zuko MAF: latent log-likelihood", "MAF ll"),
        ("reconstruction error alone", "recon. error"),
    )
    rows = [r for r in payload["rows"] if not r.get("published")]
    lines = [
        (
            "## Out-of-distribution detection from latents (test AUROC: in-distribution "
            "images scored above the other dataset's; **best** in bold)"
        ),
        "",
        "| trained on -> tested against | D | AE | " + " | ".join(s for _, s in scores) + " |",
        "|---|---|---|" + "---|" * len(scores),
    ]
    for key in dict.fromkeys((r["pair"], r["D"], r["ae"], r["seed"]) for r in rows):
        by = {
            r["score"]: r["auroc"] for r in rows if (r["pair"], r["D"], r["ae"], r["seed"]) == key
        }
        best = max(by.values())
        cells = [
            ""
            if name not in by
            else (f"**{by[name]:.4f}**" if by[name] == best else f"{by[name]:.4f}")
            for name, _ in scores
        ]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    published = [r for r in payload["rows"] if r.get("published")]
    if published:
        lines += [
            "",
            "Published pixel-space AUROCs, for context (not run here): "
            + "; ".join(f"{r['score']} {r['auroc']:.3f} ({r['pair']})" for r in published)
            + ".",
        ]
    return lines


def variations(payload: dict) -> list[str]:
    rows = [r for r in payload["rows"] if r.get("kind") == "variations"]
    lines = [
        (
            "## Variations keeping the first k latents: class kept (share of variations "
            "the classifier puts in the source's class) and mean pixel distance to the "
            "source's reconstruction"
        ),
        "",
        "| dataset | D | k | class kept, plain | class kept, IAE | distance, plain | distance, IAE |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, d in dict.fromkeys((r["dataset"], r["D"]) for r in rows):
        for k in sorted({1, max(1, d // 4), d // 2}):
            by = {
                r["ae"]: r
                for r in rows
                if (r["dataset"], r["D"], r["k"]) == (dataset, d, k) and r["seed"] == 0
            }
            if set(by) != {"plain", "IAE"}:
                continue
            cells = [f"{by[s]['class_kept']:.3f}" for s in ("plain", "IAE")]
            cells += [f"{by[s]['pixel_distance_to_source']:.4f}" for s in ("plain", "IAE")]
            lines.append(f"| {dataset} | {d} | {k} | " + " | ".join(cells) + " |")
    return lines


def warped(payload: dict) -> list[str]:
    """The summary rows: each model's nats per dimension and the share of the GMM's gap to
    the truth it closes, per target, D and training size."""
    rows = [r for r in payload["rows"] if r.get("kind") == "summary"]
    shown = [
        "truth",
        "GMM (validated)",
        "sklearn GMM (grid)",
        "LDE (CausalConvMDN)",
        "LDE, random init",
        "zuko MAF",
        "zuko NSF",
        "KernelDensity",
    ]
    lines = [
        (
            "## Warped mixtures with exact densities (test nats per dimension; the share of "
            "the GMM's gap to the truth closed in brackets)"
        ),
        "",
        "| target | D | rows | " + " | ".join(SHORT.get(m, m) for m in shown) + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for target, d, n in dict.fromkeys((r["target"], r["D"], r["n_train"]) for r in rows):
        by = {r["model"]: r for r in rows if (r["target"], r["D"], r["n_train"]) == (target, d, n)}
        best = max(
            (m for m in by if m != "truth"), key=lambda m: by[m]["ll_per_dim"], default=None
        )
        cells = []
        for m in shown:
            r = by.get(m)
            if r is None:
                cells.append("")
                continue
            cell = f"{r['ll_per_dim']:.4f}"
            if r.get("gap_closed") is not None and m != "truth":
                cell += f" ({r['gap_closed']:+.2f})"
            cells.append(f"**{cell}**" if m == best else cell)
        lines.append(f"| {target} | {d} | {n:,} | " + " | ".join(cells) + " |")
    return lines


def conditional(payload: dict) -> list[str]:
    """The conditional target's nats per dimension (the share of the GMM's gap closed) and
    the LDE's paired lead; on MNIST, likelihood, classifier accuracy and judged samples."""
    rows = payload["rows"]
    shown = ["truth", "GMM (conditional)", "LDE (conditional)", "zuko MAF (context)"]
    shown.append("zuko NSF (context)")
    lines = [
        (
            "## Conditional densities p(x | y) on a target with an exact density (test nats "
            "per dimension, the share of the conditional GMM's gap to the truth closed in "
            "brackets; LDE − GMM: the paired lead, ± its standard error)"
        ),
        "",
        "| task | D | " + " | ".join(shown) + " | LDE − GMM |",
        "|---|---|" + "---|" * (len(shown) + 1),
    ]
    for task, d in dict.fromkeys((r["task"], r["D"]) for r in rows if r["task"] != "mnist-iae"):
        by = {r["model"]: r for r in rows if (r["task"], r["D"], r["seed"]) == (task, d, 0)}
        best = max((m for m in by if m != "truth"), key=lambda m: by[m]["ll_per_dim"])
        cells = []
        for m in shown:
            r = by.get(m)
            cell = "" if r is None else f"{r['ll_per_dim']:.4f}"
            if r is not None and r.get("gap_closed") is not None and m != "truth":
                cell += f" ({r['gap_closed']:+.2f})"
            cells.append(f"**{cell}**" if m == best else cell)
        gmm = by.get("GMM (conditional)", {})
        lead = gmm.get("lde_lead_per_dim")
        cells.append("" if lead is None else f"{lead:+.4f} ± {gmm['lead_se_per_dim']:.4f}")
        lines.append(f"| {task} | {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "MNIST digits, incremental autoencoder: test log p(z | digit) per latent vector, "
            "the generative classifier's accuracy (the LogisticRegression judge's on the same "
            "latents), and the share of decoded samples per digit that a held-out pixel "
            "classifier calls that digit:"
        ),
        "",
        "| D | model | log p(z \\| y) | accuracy | judged as requested |",
        "|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["task"] == "mnist-iae" and r["seed"] == 0):
        ll = "" if r.get("ll") is None else f"{r['ll']:.2f} ± {r['se']:.2f}"
        judged = r.get("judged_as_requested")
        cells = [ll, f"{r['accuracy']:.4f}", "" if judged is None else f"{judged:.3f}"]
        lines.append(f"| {r['D']} | {r['model']} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    results = parser.parse_args().results
    parts = [
        "# Benchmark results",
        "",
        (
            "Full runs on the CPU of a 2-core machine (details, every row and the exact command "
            "at the top of each suite's markdown file). Regenerate this page with "
            "`python benchmarks/headline.py`."
        ),
        "",
        (
            "\\* GMMN has no density: its numbers are Parzen-window estimates (biased low), "
            "never the best."
        ),
        "",
    ]
    for suite, render in (
        ("toy", toy),
        ("latents", latents),
        ("digits", digits),
        ("warped", warped),
        ("speed", speed),
        ("parzen", parzen),
        ("ordering", ordering),
        ("interpolation", interpolation),
        ("ood", ood),
        ("variations", variations),
        ("conditional", conditional),
        ("scale", "## Out-of-core fits and scoring of millions of rows read from disk"),
    ):
        payload = _load(results, suite)
        if payload is None:
            continue
        if isinstance(render, str):  # a suite whose page is its own markdown file
            parts += [render]
        else:
            parts += render(payload)
        parts += ["", f"Full table: [{suite}.md]({suite}.md)", ""]
    analysis = results / "analysis.md"
    if analysis.exists():  # the hand-written reading of these numbers
        parts += ["", analysis.read_text()]
    (results / "README.md").write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
