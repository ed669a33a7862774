"""The results pages made from the shipped manifests and the JSON reports: ``python -m lab.results [PAGE ...]``.

``make bench`` renders ``bench`` after measuring; ``make results`` runs the demo,
the benchmark, the evaluation and the faults, then renders every page and the
README's headline (:mod:`lab.headline`). A page whose report is missing is
refused in one line naming the target that writes it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.bench_tables import bench_section
from lab.results_pages import chosen, write_page
from lab.scenarios import LARGE_MODELS_DIR
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


def exit_header(exits: int) -> list[str]:
    """The header of a table with one accuracy column per exit."""
    return [
        "| task, test set | " + " | ".join(f"exit {k}" for k in range(1, exits + 1)) + " |",
        "|---|" + "---:|" * exits,
    ]


def accuracy_row(name: str, accuracies: list[float]) -> str:
    return f"| {name} | " + " | ".join(f"{a:.1%}" for a in accuracies) + " |"


def text_model_table() -> str:
    """Accuracy per exit of the text models, from their packages' ``evaluation.json``."""
    sentiment = json.loads((DEFAULT_MODELS_DIR / "minilm-sentiment" / "evaluation.json").read_text())
    topic = json.loads((DEFAULT_MODELS_DIR / "minilm-bbc-topic" / "evaluation.json").read_text())
    exits = len(topic["test_accuracy"])
    rows = [
        *exit_header(exits),
        accuracy_row(
            f"`minilm-bbc-topic`, BBC News ({topic['test_samples']} held-out articles)", topic["test_accuracy"]
        ),
    ]
    rows += sentiment_rows("sentiment", sentiment)
    return "Text models (frozen all-MiniLM-L6-v2, one trained exit head per layer):\n\n" + "\n".join(rows)


def sentiment_rows(model: str, evaluation: dict[str, Any]) -> list[str]:
    """Per training rotation of a sentiment package's ``evaluation.json``: exit accuracy held out and unseen."""
    rows = []
    for rotation in evaluation["rotations"]:
        trained = " + ".join(rotation["train_domains"])
        shipped = " (shipped)" if rotation["unseen_domain"] == evaluation["deployed_on"] else ""
        rows.append(
            accuracy_row(f"{model}{shipped}, trained on {trained}: held-out {trained}", rotation["in_domain_accuracy"])
        )
        rows.append(
            accuracy_row(
                f"{model}{shipped}, trained on {trained}: unseen {rotation['unseen_domain']}",
                rotation["cross_domain_accuracy"],
            )
        )
    return rows


def large_model_table() -> str:
    """Accuracy per exit of the 12-layer encoder's packages (models-large/): BBC topics and sentiment."""
    topic, sentiment = (
        json.loads((ROOT / LARGE_MODELS_DIR / package / "evaluation.json").read_text())
        for package in ("mpnet-bbc-topic", "mpnet-sentiment")
    )
    rows = [
        *exit_header(len(topic["test_accuracy"])),
        accuracy_row(
            f"`mpnet-bbc-topic`, BBC News ({topic['test_samples']} held-out articles)", topic["test_accuracy"]
        ),
        *sentiment_rows("`mpnet-sentiment`", sentiment),
    ]
    return (
        f"The papers' scale (frozen {sentiment['backbone']}, 12 layers × 768, one trained exit head per layer; "
        "its ONNX slices come from `make models-large`):\n\n" + "\n".join(rows)
    )


def model_table() -> str:
    return "\n\n".join([image_model_table(), text_model_table(), large_model_table()])


def demo_table(summary: dict[str, Any]) -> str:
    """The demo's summaries (what ``lab.demo --json`` wrote), images then text."""
    text = summary["text"]
    return (
        f"`make demo` (the tiers' default thresholds, α = 0.8 at every exit), {summary['samples']:.0f} Fashion-MNIST "
        f"test images, then {text['samples']:.0f} imdb sentences to `minilm-sentiment`, through the same running tiers:"
        f"\n\n```\nImages\n{format_summary(summary)}\n{format_tier_times(summary['tier_times'])}"
        f"\n\nText\n{format_summary(text)}\n{format_tier_times(text['tier_times'])}\n```\n\n"
        "Time per tier: mean over the samples that reached it; `own` leaves out the tiers after it."
    )


def profiles_table() -> str:
    """The link profiles of the namespace testbed, from :data:`splitexit.link_profiles.LINK_PROFILES`."""
    rows = ["| profile | rate | burst | queue (latency) |", "|---|---:|---:|---:|"]
    for name, shaping in LINK_PROFILES.items():
        default = {"wan": " (default backhaul)", "wifi": " (default link)"}.get(name, "")
        cells = (
            ("–",) * 3
            if shaping is None
            else (shaping.rate, f"{shaping.burst_bytes / 1024:g} KiB", f"{shaping.latency_ms} ms")
        )
        rows.append(f"| `{name}`{default} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


class ReportMissing(RuntimeError):
    """A report a page is made from has not been written; the message names the target that writes it."""


def report(name: str, target: str) -> Path:
    path = RESULTS / name
    if not path.is_file():
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        raise ReportMissing(f"{shown} is missing: run `{target}` first")
    return path


def demo_page() -> str:
    return demo_table(json.loads(report("demo.json", "make results").read_text()))


def bench_page() -> str:
    return bench_section(report("serving.json", "make bench"))


PAGES: dict[str, tuple[str, str, Callable[[], str]]] = {
    "model": ("The shipped models' exits", "make results", model_table),
    "demo": ("The demo's answers", "make results", demo_page),
    "bench": ("Serving against bare onnxruntime", "make bench", bench_page),
    "link-profiles": ("Link profiles of the namespace testbed", "make results", profiles_table),
}


def main(argv: list[str] | None = None) -> None:
    names = chosen("python -m lab.results", __doc__.split("\n", 1)[0], "page", list(PAGES), argv)
    try:
        for name in names:
            title, command, render = PAGES[name]
            print(f"wrote {write_page(name, title, command, render()).relative_to(ROOT)}")
    except ReportMissing as missing:
        sys.exit(f"lab.results: {missing}")


if __name__ == "__main__":
    main()
