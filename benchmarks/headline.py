"""Collect the headline tables of the committed full runs into benchmarks/results/README.md.

    python benchmarks/headline.py

Reads the JSON files that ``ldelib bench SUITE --out benchmarks/results`` wrote; every
number in the output comes from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODELS = (
    "LDE (CausalConvMDN)",
    "LDE, paper network",
    "GMM (K on validation)",
    "KernelDensity",
    "zuko MAF",
    "zuko NSF",
    "GMMN (Parzen)",
)
SHORT = {
    "LDE (CausalConvMDN)": "LDE",
    "LDE, paper network": "LDE paper net",
    "GMM (K on validation)": "GMM",
    "KernelDensity": "KDE",
    "zuko MAF": "MAF",
    "zuko NSF": "NSF",
    "GMMN (Parzen)": "GMMN*",
}


def _load(results: Path, suite: str) -> dict | None:
    path = results / f"{suite}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _best(values: dict[str, float], exclude: tuple[str, ...] = ()) -> str | None:
    exact = {k: v for k, v in values.items() if k not in exclude}
    return max(exact, key=exact.get) if exact else None


def toy(payload: dict) -> list[str]:
    rows = [r for r in payload["rows"] if r.get("kind") == "summary"]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    seeds = payload["config"]["seeds"]
    lines = [
        (
            f"### 2-D targets with exact densities (test nats/dim, mean ± sd over {len(seeds)} "
            f"seed{'s' if len(seeds) > 1 else ''}; **best exact model** in bold)"
        ),
        "",
        "| target | truth | " + " | ".join(SHORT[m] for m in MODELS) + " |",
        "|---|---|" + "---|" * len(MODELS),
    ]
    for target in targets:
        by = {r["model"]: r for r in rows if r["target"] == target}
        best = _best({m: by[m]["ll_per_dim"] for m in MODELS if m in by}, ("GMMN (Parzen)",))
        cells = []
        for m in MODELS:
            if m not in by:
                cells.append("")
                continue
            text = f"{by[m]['ll_per_dim']:.4f} ± {by[m]['pm']:.4f}"
            cells.append(f"**{text}**" if m == best else text)
        truth = by["truth"]["ll_per_dim"]
        lines.append(f"| {target} | {truth:.4f} | " + " | ".join(cells) + " |")
    return lines


def latents(payload: dict) -> list[str]:
    rows = payload["rows"]
    keys = list(dict.fromkeys((r["dataset"], r["ae"], r["D"]) for r in rows))
    lines = [
        (
            "### Autoencoder latents (test nats per latent vector, ± s.e.; **best exact model** "
            "in bold)"
        ),
        "",
        "| dataset | AE | D | " + " | ".join(SHORT[m] for m in MODELS) + " |",
        "|---|---|---|" + "---|" * len(MODELS),
    ]
    for key in keys:
        by = {r["model"]: r for r in rows if (r["dataset"], r["ae"], r["D"]) == key}
        best = _best({m: by[m]["ll"] for m in MODELS if m in by}, ("GMMN (Parzen)",))
        cells = []
        for m in MODELS:
            if m not in by:
                cells.append("")
                continue
            text = f"{by[m]['ll']:.2f} ± {by[m]['se']:.2f}"
            cells.append(f"**{text}**" if m == best else text)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return lines


def parzen(payload: dict) -> list[str]:
    lines = [
        (
            "### MNIST Parzen-window protocol (nats; ± s.e.; "
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
        "### Reconstruction MSE from the first k latents (test images)",
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
    by = {r["model"]: r for r in rows}
    best = _best({m: by[m]["ll_per_dim"] for m in MODELS if m in by}, ("GMMN (Parzen)",))
    n = len(payload["config"]["seeds"])
    lines = [
        (
            f"### 64-D dequantised digits (test nats per image, mean ± sd over {n} "
            f"seed{'s' if n > 1 else ''}; 1,000 training rows)"
        ),
        "",
        "| " + " | ".join(SHORT[m] for m in MODELS if m in by) + " |",
        "|" + "---|" * sum(m in by for m in MODELS),
    ]
    cells = []
    for m in MODELS:
        if m in by:
            text = f"{64 * by[m]['ll_per_dim']:.1f} ± {64 * by[m]['pm']:.1f}"
            cells.append(f"**{text}**" if m == best else text)
    return [*lines, "| " + " | ".join(cells) + " |"]


def interpolation(payload: dict) -> list[str]:
    lines = [
        "### Latent log-likelihood along straight paths between test images (nats)",
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
        ("parzen", parzen),
        ("ordering", ordering),
        ("interpolation", interpolation),
    ):
        payload = _load(results, suite)
        if payload is not None:
            parts += render(payload)
            parts += ["", f"Full table: [{suite}.md]({suite}.md)", ""]
    analysis = results / "analysis.md"
    if analysis.exists():  # the hand-written reading of these numbers
        parts += ["", analysis.read_text()]
    (results / "README.md").write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
