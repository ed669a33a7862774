"""The README's headline: what the demo's answers cost and how fast they came, and the bench's targets.

Made by ``make results`` (``python -m lab.headline``) from ``bench/results/demo.json``
and ``bench/results/serving.json``, which the same target writes just before.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from lab.bench_tables import targets_table
from lab.results import ROOT, ReportMissing, report
from lab.results_pages import provenance, replace_section
from splitexit.shared.tiers import TIERS


def demo_rows(demo: dict[str, Any]) -> str:
    tiers = [tier.value for tier in TIERS]
    rows = [
        "| model | samples | accuracy | answered on " + " / ".join(tiers) + " | cost cut vs final layer "
        "| latency p50 of answers from " + " / ".join(tiers) + " |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, summary in (("fmnist-cnn (Fashion-MNIST images)", demo), ("minilm-sentiment (imdb)", demo["text"])):
        shares = " / ".join(f"{summary[f'exit_share_{tier}']:.0%}" for tier in tiers)
        latency = summary["latency_by_exit_tier"]
        p50s = " / ".join(f"{latency[tier]['p50_s'] * 1e3:.1f}" if tier in latency else "–" for tier in tiers)
        rows.append(
            f"| {model} | {summary['samples']:.0f} | {summary['accuracy']:.1%} | {shares} "
            f"| {1 - summary['cost_relative_to_final_layer']:.0%} | {p50s} ms |"
        )
    return "\n".join(rows)


def headline() -> str:
    demo = json.loads(report("demo.json", "make results").read_text())
    serving = json.loads(report("serving.json", "make results").read_text())
    return "\n\n".join(
        [
            provenance("make results"),
            "`make demo`'s run: real test samples through three tiers on loopback, the tiers' default thresholds "
            "(α = 0.8 at every exit); cost counts every block run and every link crossed "
            "([docs/results/demo.md](docs/results/demo.md)).",
            demo_rows(demo),
            "`make bench`'s targets, served against bare onnxruntime in the same run "
            "([docs/results/bench.md](docs/results/bench.md)):",
            targets_table(serving).split("\n\n", 1)[1],
            "The policies on whole test streams: [docs/results/policies.md](docs/results/policies.md); faults, "
            "fuzz and "
            "soak: [docs/results/faults.md](docs/results/faults.md).",
        ]
    )


def main() -> None:
    readme = ROOT / "README.md"
    try:
        readme.write_text(replace_section(readme.read_text(), "headline", headline()))
    except ReportMissing as missing:
        sys.exit(f"lab.headline: {missing}")
    print(f"updated {readme.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
