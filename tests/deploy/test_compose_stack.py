"""docker-compose.yml on a real Docker engine: the three tiers and Prometheus as containers.

The project's own compose file, with docker-compose.local.yml (random loopback
ports, a locally built Prometheus, no start_interval: see
tests/deploy/test_compose_local.py), brought up with ``--wait``. Real Fashion-MNIST
images and real sentences go in through the device's published gRPC and HTTP
ports; Prometheus must scrape every tier and answer a dashboard query; the
compose file's load generator runs for a few seconds; then the edge container
crashes, the device answers degraded, and full answers return once the engine
has restarted the edge. ``down -v`` at the end. Grafana and the netem sidecars
cannot run here (no image, no sch_netem) and are not started.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from lab.text_data import sentiment
from splitexit.client import AsyncClient, request
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from tests.docker_engine import Stack, running_stack

pytestmark = pytest.mark.slow
STARTED = ("cloud", "edge", "device", "prometheus")
TEXT_MODEL = "minilm-sentiment"


@pytest.fixture(scope="module")
def stack(docker_images: dict[str, float]) -> Iterator[Stack]:
    print(f"\nimages built in {docker_images} s")
    with running_stack("splitexit-test", STARTED) as stack:
        yield stack


def infer_all(stack: Stack, requests: list[pb.InferRequest], timeout_s: float = 30.0) -> list[pb.InferResponse]:
    """Answers through the device's published gRPC port, over TLS with the stack's CA."""
    address = stack.address("device", 50051)

    async def go() -> list[pb.InferResponse]:
        async with AsyncClient(address, retries=0, tls=stack.tls) as client:
            answers = await asyncio.gather(*(client.infer_request(r, timeout_s) for r in requests))
            return [answer.message for answer in answers]

    return asyncio.run(go())


def test_images_over_grpc_and_http(stack: Stack, images: list[LabelledImage]) -> None:
    sample = images[:40]
    answers = infer_all(stack, [request(image.png) for image in sample])
    accuracy = sum(a.label == image.label for a, image in zip(answers, sample, strict=True)) / len(sample)
    assert accuracy >= 0.7, f"{accuracy:.2f} of real test images right through the containers"
    forced = infer_all(stack, [request(image.png, threshold=1.0) for image in sample[:8]])
    assert all(a.exit_tier == pb.TIER_NAME_CLOUD and len(a.hops) == 3 and not a.degraded for a in forced)
    http = f"https://{stack.address('device', 8080)}/v1/infer"
    for image, expected in zip(sample[:8], forced, strict=True):
        reply = httpx.post(
            http,
            content=image.png,
            params={"threshold": 1},
            headers={"Content-Type": "image/png"},
            verify=verify(stack),
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["label"], body["exit_tier"], len(body["hops"])) == (expected.label, "CLOUD", 3)


def test_texts_over_grpc_and_http(stack: Stack) -> None:
    texts = sentiment("imdb")[:30]
    answers = infer_all(stack, [request(text=t.text, model=TEXT_MODEL) for t in texts])
    accuracy = sum(a.label == t.label for a, t in zip(answers, texts, strict=True)) / len(texts)
    assert accuracy >= 0.6, f"{accuracy:.2f} of real sentences right through the containers"
    http = f"https://{stack.address('device', 8080)}/v1/infer"
    for text, expected in zip(texts[:5], answers[:5], strict=True):
        reply = httpx.post(
            http,
            content=text.text.encode(),
            params={"model": TEXT_MODEL},
            headers={"Content-Type": "text/plain"},
            verify=verify(stack),
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["label"] == expected.label


def verify(stack: Stack) -> ssl.SSLContext:
    """Trust the stack's development CA (the device's HTTPS gateway)."""
    return ssl.create_default_context(cafile=str(stack.ca_file))


def prometheus(stack: Stack, path: str, **params: str) -> dict:
    reply = httpx.get(f"http://{stack.address('prometheus', 9090)}/api/v1/{path}", params=params, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]


def test_prometheus_scrapes_every_tier_and_answers_a_dashboard_query(stack: Stack, images: list[LabelledImage]) -> None:
    from bench.local_prometheus import dashboard_queries

    [query] = [q for q in dashboard_queries("1m") if q.panel == "Requests/s by tier"]
    deadline, up, tiers = time.monotonic() + 90, set(), set()
    while time.monotonic() < deadline and not (len(up) == 3 and tiers == {"device", "edge", "cloud"}):
        infer_all(stack, [request(image.png, threshold=1.0) for image in images[:10]])
        targets = prometheus(stack, "targets")["activeTargets"]
        up = {t["discoveredLabels"]["__address__"] for t in targets if t["health"] == "up"}
        tiers = {series["metric"].get("tier") for series in prometheus(stack, "query", query=query.expr)["result"]}
        time.sleep(2)
    assert len(up) == 3, f"Prometheus scrapes {up}, not one target per tier"
    assert tiers == {"device", "edge", "cloud"}, f"{query.panel!r} shows {tiers}"


def test_the_compose_load_generator_runs_bounded(stack: Stack) -> None:
    output = stack(
        "run",
        "--rm",
        "--no-deps",
        "loadgen",
        "splitexit",
        "loadgen",
        "--address",
        "device:50051",
        "--tls-ca",
        "/certs/ca.pem",
        "--rate",
        "20",
        "--duration",
        "6",
        "--report-every",
        "6",
        timeout_s=90,
    )
    assert "answers/s" in output and "errors" not in output, output[-2000:]


def test_an_edge_crash_gives_degraded_answers_then_full_ones_after_its_restart(
    stack: Stack, images: list[LabelledImage]
) -> None:
    [edge] = stack.containers("edge")
    stack.kill_process(edge)
    crashed = time.monotonic()
    forced = [request(image.png, threshold=1.0) for image in images[:4]]
    degraded: list[pb.InferResponse] = []
    while not degraded and time.monotonic() - crashed < 30:
        degraded = [a for a in infer_all(stack, forced) if a.degraded]
    assert degraded, "no degraded answer while the edge was down"
    assert all(
        a.exit_tier == pb.TIER_NAME_DEVICE and a.degradation.reason == pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE
        for a in degraded
    )
    full: list[pb.InferResponse] = []
    while not full and time.monotonic() - crashed < 120:
        time.sleep(1)
        answers = infer_all(stack, forced)  # every request is answered, degraded or not
        full = [a for a in answers if not a.degraded and a.exit_tier == pb.TIER_NAME_CLOUD]
    print(f"\nedge crashed; full answers again after {time.monotonic() - crashed:.1f} s")
    assert full, "no full answer within 120 s of the edge's crash"
    assert stack.restarts(edge) >= 1, "the engine did not restart the crashed edge"
