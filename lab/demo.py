"""`make demo` (``python -m lab.demo``): three tiers on loopback, real test images then real sentences, summaries.

Both model families go through the same running testbed: Fashion-MNIST test
images to the image CNN, then imdb sentences to the text model, which never saw
imdb in training (it learned sentiment from amazon and yelp reviews).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from lab import fashion_mnist
from lab.fashion_mnist import test_images
from lab.text_data import SENTIMENT_LABELS, sentiment
from splitexit.client import AsyncClient, request
from splitexit.report import (
    Outcome,
    format_answer,
    format_summary,
    format_tier_times,
    latency_by_exit_tier,
    summarize,
    tier_times,
)
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed

CONCURRENCY = 4
HTTP_PORT = 8080
METRICS_PORTS = {Tier.DEVICE: 9101, Tier.EDGE: 9102, Tier.CLOUD: 9103}
TEXT_MODEL = "minilm-sentiment"
TEXT_DOMAIN = "imdb"


async def send_all(address: str, requests: list[tuple[int, pb.InferRequest]]) -> list[Outcome]:
    """Send every (true label, request) as its own ``Infer`` call, ``CONCURRENCY`` at a time, in order."""
    slots = asyncio.Semaphore(CONCURRENCY)
    async with AsyncClient(address) as client:

        async def one(label: int, message: pb.InferRequest) -> Outcome:
            async with slots:
                started = time.perf_counter()
                answer = await client.infer_request(message)
                return Outcome(label, answer.message, time.perf_counter() - started)

        return await asyncio.gather(*(one(label, message) for label, message in requests))


def report(outcomes: list[Outcome], show: int, labels: list[str], notes: list[str] | None = None) -> dict[str, object]:
    """Print the first ``show`` answers (with a note each, if given), the summary and the time per tier."""
    for i, outcome in enumerate(outcomes[:show]):
        print(format_answer(outcome, labels) + (f"  {notes[i]}" if notes else ""))
    print(f"  ... {len(outcomes) - show} more\n\nSummary")
    summary = summarize(outcomes)
    print(format_summary(summary))
    times = tier_times(outcomes)
    print("Mean time per tier (samples that reached it; own = without the tiers after it)")
    print(format_tier_times(times))
    return {**summary, "tier_times": times, "latency_by_exit_tier": latency_by_exit_tier(outcomes)}


def metric_totals(port: int, names: set[str]) -> dict[tuple[str, str, str], float]:
    """``(sample name, tier, model) -> value`` for the counters ``names`` on one tier's ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                totals[sample.name, sample.labels["tier"], sample.labels["model"]] += sample.value
    return totals


def print_metrics_view(models: list[str]) -> None:
    """What the tiers' Prometheus counters alone say: exit share per tier and cost vs final layer."""
    totals: dict[tuple[str, str, str], float] = {}
    for port in METRICS_PORTS.values():
        totals |= metric_totals(
            port, {"splitexit_exits_total", "splitexit_cost_total", "splitexit_cost_final_layer_total"}
        )
    print("\nThe same, from the tiers' /metrics counters alone (what Prometheus and Grafana see)")
    for model in models:
        exits = {tier: totals.get(("splitexit_exits_total", tier.value, model), 0.0) for tier in Tier}
        answered = sum(exits.values()) or 1.0
        cost = totals.get(("splitexit_cost_total", "device", model), 0.0)
        final = totals.get(("splitexit_cost_final_layer_total", "device", model), 0.0) or 1.0
        shares = "  ".join(f"{tier.value} {exits[tier] / answered:6.1%}" for tier in Tier)
        print(f"  {model:<17} exits: {shares}   cost vs final layer {cost / final:6.1%}")


def run(samples: int, show: int, threshold: float | None, seed: int, json_path: Path | None = None) -> None:
    images = test_images(samples, seed)
    imdb = sentiment(TEXT_DOMAIN)
    sentences = [imdb[i] for i in np.random.default_rng(seed).choice(len(imdb), min(samples, len(imdb)), replace=False)]
    print("Starting cloud, edge and device on loopback (logs in .cache/logs/) ...")
    with Testbed(http_port=HTTP_PORT, metrics_ports=METRICS_PORTS) as bed:
        print(f"Device: gRPC {bed.device_address}, HTTP http://127.0.0.1:{HTTP_PORT}/v1/infer")
        urls = ", ".join(f"{tier.value} http://127.0.0.1:{port}/metrics" for tier, port in METRICS_PORTS.items())
        print(f"Prometheus metrics while the demo runs: {urls}")
        print("  (docker compose up adds Prometheus at http://localhost:9090 and Grafana at http://localhost:3000)")
        print(f"Sending {samples} Fashion-MNIST test images to the device over gRPC:")
        image_requests = [(image.label, request(image.png, threshold=threshold)) for image in images]
        image_outcomes = asyncio.run(send_all(bed.device_address, image_requests))
        print(f"Sending {len(sentences)} {TEXT_DOMAIN} sentences to {TEXT_MODEL} on the same tiers:")
        text_requests = [(s.label, request(text=s.text, model=TEXT_MODEL, threshold=threshold)) for s in sentences]
        text_outcomes = asyncio.run(send_all(bed.device_address, text_requests))
        print_metrics_view(["fmnist-cnn", TEXT_MODEL])
    print("\nImages (fmnist-cnn)")
    summary = report(image_outcomes, show, list(fashion_mnist.LABELS))
    print(f"\nText ({TEXT_MODEL}, trained on amazon + yelp reviews, deployed on unseen {TEXT_DOMAIN} sentences)")
    notes = [repr(s.text[:60] + ("…" if len(s.text) > 60 else "")) for s in sentences]
    summary["text"] = report(text_outcomes, show, list(SENTIMENT_LABELS), notes)
    print("\nThe three tiers have stopped.")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--show", type=int, default=10, help="answers to print one by one")
    parser.add_argument("--threshold", type=float, help="override the tiers' exit threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    args = parser.parse_args(argv)
    run(samples=args.samples, show=args.show, threshold=args.threshold, seed=args.seed, json_path=args.json)


if __name__ == "__main__":
    main()
