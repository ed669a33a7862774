"""Metrics against a real Prometheus: what the tiers export, and every PromQL the dashboard draws.

A three-tier testbed with metrics ports, and the Debian package's Prometheus
scraping it every second with ``deploy/prometheus/prometheus.yml`` (targets
rewritten to the testbed's ports). The traffic is made of real test images
with plans that make each tier answer: α = 0 exits at the device's first
exit, α = 1 runs to the cloud's final block, α = 1 on the device's exits and 0
after them exits at the edge's first exit; plus requests with the tiers' own
thresholds and a few that fail. Then: every dashboard expression returns data
(finite values), promtool accepts the config and every tier's ``/metrics``,
and the counters move exactly as the answers say.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.local_prometheus import (
    PROMETHEUS_CONFIG,
    LocalPrometheus,
    PanelQuery,
    PrometheusUnavailable,
    dashboard_queries,
    ensure_prometheus,
    local_config,
)
from splitexit.client import AsyncClient
from splitexit.device.settings import DeviceSettings
from splitexit.results import ClientError
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest, load_manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port

MODEL = "fmnist-cnn"
RATE_WINDOW = "1m"  # what the dashboard's $__rate_interval becomes here: spans the whole test
CONCURRENCY = 8
ROUNDS = 75  # x 4 requests a round (one per plan): 300 requests


@dataclass
class Tools:
    prometheus: str
    promtool: str


@pytest.fixture(scope="module")
def tools() -> Tools:
    try:
        return Tools(*ensure_prometheus())
    except PrometheusUnavailable as exc:
        pytest.skip(f"NO REAL PROMETHEUS, metrics tests not run: {exc}")


@pytest.fixture(scope="module")
def served_manifest() -> Manifest:
    """The manifest of the model the testbed's tiers load (they read the same settings)."""
    return load_manifest(DeviceSettings().models_dir / MODEL)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    ports = {tier: free_port() for tier in Tier}
    metrics_ports = {tier: free_port() for tier in Tier}
    with Testbed(ports=ports, metrics_ports=metrics_ports, log_dir=tmp_path_factory.mktemp("logs")) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def prometheus(tools: Tools, bed: Testbed) -> Iterator[LocalPrometheus]:
    targets = {tier.value: f"127.0.0.1:{port}" for tier, port in bed.metrics_ports.items()}
    with LocalPrometheus(tools.prometheus, local_config(targets, scrape_interval="1s"), free_port()) as prom:
        yield prom


def scrape(bed: Testbed, tier: Tier) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{bed.metrics_ports[tier]}/metrics", timeout=5) as reply:
        return reply.read().decode()


def samples(bed: Testbed, tier: Tier, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` on ``tier``'s /metrics whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape(bed, tier))
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def plans(manifest: Manifest) -> dict[str, pb.Plan | None]:
    """One plan per tier that must answer, and None for the tiers' own thresholds."""
    blocks, device_last = manifest.num_blocks, manifest.default_ranges[Tier.DEVICE].last
    at_edge = [1.0] * device_last + [0.0] * (blocks - device_last)
    return {
        "device": pb.Plan(threshold=0.0),
        "edge": pb.Plan(exit_thresholds=at_edge),
        "cloud": pb.Plan(threshold=1.0),
        "own": None,
    }


async def send(
    address: str, requests: list[pb.InferRequest], concurrency: int = CONCURRENCY
) -> list[pb.InferResponse | grpc.StatusCode]:
    """Each request's answer, or the status code it failed with, in order."""
    slots = asyncio.Semaphore(concurrency)
    async with AsyncClient(address, retries=0) as client:  # each request counted once

        async def one(request: pb.InferRequest) -> pb.InferResponse | grpc.StatusCode:
            async with slots:
                try:
                    return (await client.infer_request(request)).message
                except ClientError as exc:
                    return exc.code

        return await asyncio.gather(*(one(request) for request in requests))


def mixed_round(images: list[LabelledImage], manifest: Manifest, round_: int) -> list[pb.InferRequest]:
    """One request per plan, on the next images of ``images`` (cycling)."""
    return [
        pb.InferRequest(model=MODEL, image=images[(round_ * 4 + k) % len(images)].png, policy=plan)
        for k, plan in enumerate(plans(manifest).values())
    ]


@pytest.fixture(scope="module")
def traffic(bed: Testbed, prometheus: LocalPrometheus, images: list[LabelledImage], served_manifest: Manifest) -> None:
    """A first round (every series appears and is scraped once), then a few hundred interleaved requests.

    Without the first scrape, a series born and finished between two scrapes
    would have a rate of 0 in Prometheus, which cannot know it started at 0.
    """
    first = [*mixed_round(images, served_manifest, 0), pb.InferRequest(model="no-such-model", image=images[0].png)]
    first.append(pb.InferRequest(model=MODEL, image=b"not an image"))
    answers = asyncio.run(send(bed.device_address, first))
    assert answers[-2:] == [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT]
    wait_scraped(bed, prometheus)

    bulk = [request for i in range(1, ROUNDS + 1) for request in mixed_round(images, served_manifest, i)]
    answers = asyncio.run(send(bed.device_address, bulk))
    assert all(isinstance(answer, pb.InferResponse) for answer in answers)
    wait_scraped(bed, prometheus)


def wait_scraped(bed: Testbed, prometheus: LocalPrometheus) -> None:
    """Until Prometheus holds every tier's current exit count (and the device's request count).

    Each tier is its own scrape target, so waiting for the device alone would let
    a query run before the edge's or cloud's latest samples are in.
    """
    counters = [(tier, "splitexit_exits_total") for tier in Tier] + [(Tier.DEVICE, "splitexit_requests_total")]
    for tier, name in counters:
        expected = samples(bed, tier, name)
        prometheus.wait_until(
            f'sum({name}{{tier="{tier.value}"}})',
            lambda result, expected=expected: bool(result) and float(result[0]["value"][1]) == expected,
        )


# -- Prometheus and the dashboard ----------------------------------------------------------------


def test_promtool_accepts_the_repository_config(tools: Tools) -> None:
    check = subprocess.run([tools.promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("tier", list(Tier), ids=lambda tier: tier.value)
def test_promtool_accepts_every_tiers_metrics(tier: Tier, tools: Tools, bed: Testbed, traffic: None) -> None:
    check = subprocess.run(
        [tools.promtool, "check", "metrics"], input=scrape(bed, tier), capture_output=True, text=True
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_prometheus_scrapes_every_tier(prometheus: LocalPrometheus, traffic: None) -> None:
    up = {series["metric"]["instance"]: series["value"][1] for series in prometheus.query('up{job="splitexit"}')}
    assert len(up) == len(Tier) and set(up.values()) == {"1"}, up


@pytest.mark.parametrize("query", dashboard_queries(RATE_WINDOW), ids=lambda q: f"{q.panel} [{q.legend}]")
def test_every_dashboard_query_returns_data(query: PanelQuery, prometheus: LocalPrometheus, traffic: None) -> None:
    result = prometheus.query(query.expr)
    assert result, f"panel {query.panel!r}: no data for {query.expr}"
    values = {tuple(sorted(series["metric"].items())): float(series["value"][1]) for series in result}
    assert all(math.isfinite(v) for v in values.values()), f"panel {query.panel!r}: {values} for {query.expr}"


def test_exit_share_from_prometheus_matches_the_answers(prometheus: LocalPrometheus, traffic: None) -> None:
    """Every tier answered some of the traffic, and the shares add up to the whole."""
    shares = {
        series["metric"]["tier"]: float(series["value"][1])
        for series in prometheus.query(
            "sum by (tier) (increase(splitexit_exits_total[5m])) / ignoring(tier) group_left() "
            "sum(increase(splitexit_exits_total[5m]))"
        )
    }
    assert set(shares) == {tier.value for tier in Tier} and all(share > 0 for share in shares.values()), shares
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)


# -- counters against known requests -------------------------------------------------------------


def test_threshold_zero_counts_exits_at_the_devices_first_exit(bed: Testbed, images: list[LabelledImage]) -> None:
    before = {
        "exits": samples(bed, Tier.DEVICE, "splitexit_exits_total", exit="1"),
        "ok": samples(bed, Tier.DEVICE, "splitexit_requests_total", method="Infer", code="OK"),
        "offloads": samples(bed, Tier.DEVICE, "splitexit_offloads_total"),
    }
    requests = [pb.InferRequest(image=image.png, policy=pb.Plan(threshold=0.0)) for image in images[:20]]
    answers = asyncio.run(send(bed.device_address, requests))
    assert {(answer.exit_tier, answer.exit_block) for answer in answers} == {(pb.TIER_NAME_DEVICE, 1)}
    assert samples(bed, Tier.DEVICE, "splitexit_exits_total", exit="1") - before["exits"] == 20
    assert samples(bed, Tier.DEVICE, "splitexit_requests_total", method="Infer", code="OK") - before["ok"] == 20
    assert samples(bed, Tier.DEVICE, "splitexit_offloads_total") == before["offloads"]


def test_threshold_one_counts_the_bytes_every_answer_sent(
    bed: Testbed, images: list[LabelledImage], served_manifest: Manifest
) -> None:
    links = {Tier.DEVICE: "device-edge", Tier.EDGE: "edge-cloud"}
    before = {tier: samples(bed, tier, "splitexit_offload_bytes_total", link=link) for tier, link in links.items()}
    final = str(served_manifest.num_blocks)
    cloud_exits = samples(bed, Tier.CLOUD, "splitexit_exits_total", exit=final)
    requests = [pb.InferRequest(image=image.png, policy=pb.Plan(threshold=1.0)) for image in images[:20]]
    answers = asyncio.run(send(bed.device_address, requests))
    sent = {tier: sum(h.bytes_sent for a in answers for h in a.hops if h.tier == tier.proto) for tier in links}
    assert all(sent.values()), sent
    for tier, link in links.items():
        assert samples(bed, tier, "splitexit_offload_bytes_total", link=link) - before[tier] == sent[tier], link
    assert samples(bed, Tier.CLOUD, "splitexit_exits_total", exit=final) - cloud_exits == 20


def test_cost_counters_add_up_the_answers(bed: Testbed, images: list[LabelledImage]) -> None:
    before = [samples(bed, Tier.DEVICE, name) for name in ("splitexit_cost_total", "splitexit_cost_final_layer_total")]
    answers = asyncio.run(send(bed.device_address, [pb.InferRequest(image=image.png) for image in images[:20]]))
    after = [samples(bed, Tier.DEVICE, name) for name in ("splitexit_cost_total", "splitexit_cost_final_layer_total")]
    assert math.isclose(after[0] - before[0], sum(a.cost for a in answers), rel_tol=1e-9)
    assert math.isclose(after[1] - before[1], sum(a.cost_final_layer for a in answers), rel_tol=1e-9)
    plans_made = samples(bed, Tier.DEVICE, "splitexit_plans_total", policy="thresholds")
    assert plans_made >= 20


def test_failures_are_counted_by_status_code_with_bounded_labels(bed: Testbed, images: list[LabelledImage]) -> None:
    labels = {"method": "Infer", "model": "unknown", "code": "NOT_FOUND"}
    before = samples(bed, Tier.DEVICE, "splitexit_requests_total", **labels)
    answers = asyncio.run(
        send(bed.device_address, [pb.InferRequest(model=f"m{i}", image=images[0].png) for i in range(3)])
    )
    assert answers == [grpc.StatusCode.NOT_FOUND] * 3
    assert samples(bed, Tier.DEVICE, "splitexit_requests_total", **labels) - before == 3
    assert "m1" not in scrape(bed, Tier.DEVICE), "a client's model name must not become a label value"
    assert samples(bed, Tier.DEVICE, "splitexit_requests_in_flight") == 0
