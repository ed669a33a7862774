"""The README's headline: what the demo's answers cost and how fast they came, and the bench's targets.

Two generated sections, each with its own provenance line: ``headline`` from
``bench/results/demo.json`` (``make results`` writes it just before), and
``targets`` from ``bench/results/serving.json``, which ``make bench`` (and so
``make results``) rewrites after every run, so that the README's targets are
always those of the latest ``docs/results/bench.md``.
``python -m lab.headline [SECTION ...]`` (default: both).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from lab.bench_tables import targets_table
from lab.results import ROOT, ReportMissing, report
from lab.results_pages import chosen, provenance, replace_section
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


def demo_headline() -> str:
    demo = json.loads(report("demo.json", "make results").read_text())
    return "\n\n".join(
        [
            provenance("make results"),
            "`make demo`'s run: real test samples through three tiers on loopback, the tiers' default thresholds "
            "(α = 0.8 at every exit); cost counts every block run and every link crossed "
            "([docs/results/demo.md](docs/results/demo.md)).",
            demo_rows(demo),
        ]
    )


def targets_headline() -> str:
    serving = json.loads(report("serving.json", "make bench").read_text())
    return "\n\n".join(
        [
            provenance("make bench"),
            "`make bench`'s targets, served against bare onnxruntime in the same run "
            "([docs/results/bench.md](docs/results/bench.md)):",
            targets_table(serving).split("\n\n", 1)[1],
            "The policies on whole test streams: [docs/results/policies.md](docs/results/policies.md); faults, "
            "fuzz and soak: [docs/results/faults.md](docs/results/faults.md).",
        ]
    )


SECTIONS: dict[str, Callable[[], str]] = {"headline": demo_headline, "targets": targets_headline}


def main(argv: list[str] | None = None) -> None:
    names = chosen("python -m lab.headline", __doc__.split("\n", 1)[0], "section", list(SECTIONS), argv)
    readme = ROOT / "README.md"
    try:
        text = readme.read_text()
        for name in names:
            text = replace_section(text, name, SECTIONS[name]())
    except ReportMissing as missing:
        sys.exit(f"lab.headline: {missing}")
    readme.write_text(text)
    print(f"updated {readme.relative_to(ROOT)}: {', '.join(names)}")


if __name__ == "__main__":
    main()
