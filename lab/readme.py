"""Render the README's results tables from the shipped manifest and the JSON reports.

``make results`` runs the demo and the benchmark, then this script, which
replaces what stands between each ``<!-- results:NAME -->`` marker pair.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.bench_tables import bench_section
from splitexit.link_profiles import LINK_PROFILES
from splitexit.report import format_summary, format_tier_times
from splitexit.shared.manifest import load_manifest
from splitexit.shared.settings import DEFAULT_MODELS_DIR

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def image_model_table() -> str:
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


def accuracy_row(name: str, accuracies: list[float]) -> str:
    return f"| {name} | " + " | ".join(f"{a:.1%}" for a in accuracies) + " |"


def text_model_table() -> str:
    """Accuracy per exit of the text models, from their packages' ``evaluation.json``."""
    sentiment = json.loads((DEFAULT_MODELS_DIR / "minilm-sentiment" / "evaluation.json").read_text())
    topic = json.loads((DEFAULT_MODELS_DIR / "minilm-bbc-topic" / "evaluation.json").read_text())
    exits = len(topic["test_accuracy"])
    rows = [
        "| task, test set | " + " | ".join(f"exit {k}" for k in range(1, exits + 1)) + " |",
        "|---|" + "---:|" * exits,
        accuracy_row(f"`minilm-bbc-topic`, BBC News ({topic['test_samples']} held-out articles)", topic["test_accuracy"]),
    ]
    for rotation in sentiment["rotations"]:
        trained = " + ".join(rotation["train_domains"])
        shipped = " (shipped)" if rotation["unseen_domain"] == sentiment["deployed_on"] else ""
        rows.append(accuracy_row(f"sentiment{shipped}, trained on {trained}: held-out {trained}", rotation["in_domain_accuracy"]))
        rows.append(accuracy_row(f"sentiment{shipped}, trained on {trained}: unseen {rotation['unseen_domain']}", rotation["cross_domain_accuracy"]))
    return "Text models (frozen all-MiniLM-L6-v2, one trained exit head per layer):\n\n" + "\n".join(rows)


def model_table() -> str:
    return image_model_table() + "\n\n" + text_model_table()


def demo_table() -> str:
    summary = json.loads((RESULTS / "demo.json").read_text())
    text = summary["text"]
    return (
        f"`make demo` (the tiers' default thresholds, α = 0.8 at every exit), {summary['samples']:.0f} Fashion-MNIST "
        f"test images, then {text['samples']:.0f} imdb sentences to `minilm-sentiment`, through the same running tiers:"
        f"\n\n```\nImages\n{format_summary(summary)}\n{format_tier_times(summary['tier_times'])}"
        f"\n\nText\n{format_summary(text)}\n{format_tier_times(text['tier_times'])}\n```\n\n"
        "Time per tier: mean over the samples that reached it; `own` leaves out the tiers after it."
    )


def bench_table() -> str:
    return bench_section(RESULTS / "serving.json")


def profiles_table() -> str:
    """The link profiles of the namespace testbed, from :data:`splitexit.link_profiles.LINK_PROFILES`."""
    rows = ["| profile | rate | burst | queue (latency) |", "|---|---:|---:|---:|"]
    for name, shaping in LINK_PROFILES.items():
        default = {"wan": " (default backhaul)", "wifi": " (default link)"}.get(name, "")
        cells = ("–",) * 3 if shaping is None else (shaping.rate, f"{shaping.burst_bytes / 1024:g} KiB", f"{shaping.latency_ms} ms")
        rows.append(f"| `{name}`{default} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def replace_section(text: str, name: str, content: str) -> str:
    """``text`` with what stands between the ``<!-- results:NAME -->`` marker pair replaced by ``content``."""
    pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no <!-- results:{name} --> ... <!-- /results:{name} --> markers")
    return pattern.sub(lambda m: f"{m.group(1)}{content}\n{m.group(2)}", text)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    sections = {"model": model_table, "demo": demo_table, "bench": bench_table, "profiles": profiles_table}
    for name, render in sections.items():
        text = replace_section(text, name, render())
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
