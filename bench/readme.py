"""Render the README's results tables from the shipped manifest and the JSON reports.

``make results`` runs the demo and the benchmark, then this script, which
replaces what stands between each ``<!-- results:NAME -->`` marker pair.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.manifest import load_manifest
from shared.settings import DEFAULT_MODELS_DIR
from splitexit.report import format_summary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def model_table() -> str:
    manifest = load_manifest(DEFAULT_MODELS_DIR / "fmnist-cnn")
    hosts = {tier.value: hosted for tier, hosted in manifest.default_ranges.items()}
    rows = [
        "| exit | test accuracy (10,000 images) | MACs of the block | hosted by default on |",
        "|---:|---:|---:|---|",
    ]
    for block, accuracy in zip(manifest.blocks, manifest.exit_accuracy, strict=True):
        tiers = ", ".join(name for name, hosted in hosts.items() if block.index in hosted)
        rows.append(f"| {block.index} | {accuracy:.2%} | {block.macs:,} | {tiers} |")
    return f"Model `{manifest.name}` (Fashion-MNIST, early-exit ResNet-style CNN):\n\n" + "\n".join(rows)


def demo_table() -> str:
    summary = json.loads((RESULTS / "demo.json").read_text())
    return f"`make demo` (default thresholds α=0.8, {summary['samples']:.0f} test images):\n\n```\n{format_summary(summary)}\n```"


def bench_table() -> str:
    report = json.loads((RESULTS / "serving.json").read_text())
    rows = [
        "| setting | mean exit block | served p50 | bare onnxruntime p50 | served ÷ bare | stream samples/s | link bytes/sample |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["settings"].items():
        rows.append(
            f"| {name} | {r['mean_exit_block']:.2f} | {r['served_p50_ms']:.2f} ms | {r['bare_onnxruntime_p50_ms']:.2f} ms "
            f"| {r['served_over_bare_p50']:.1f}× | {r['stream_samples_per_s']:.0f} | {r['link_bytes_per_sample']:,.0f} |"
        )
    return (
        f"`make bench` ({report['samples']} images one at a time over loopback, three processes on this 2-core machine; "
        "bare = the same blocks in one process with no gRPC):\n\n" + "\n".join(rows)
    )


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in {"model": model_table, "demo": demo_table, "bench": bench_table}.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        text = pattern.sub(lambda m: f"{m.group(1)}{render()}\n{m.group(2)}", text)
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
