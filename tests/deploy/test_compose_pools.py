"""Pools on a real Docker engine: ``docker compose up --scale edge=2 --scale cloud=3``.

The device's link spreads samples over both edges, and each edge's over the
three clouds (shared/link_pool.py: one stream per replica found in Docker's
DNS). Every cloud replica must serve at least 20 % of the cloud-bound samples,
counted on its own /metrics; and when one cloud crashes under load, every
sample is still answered in full by the others (retried within its deadline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from splitexit.client import AsyncClient, request
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from tests.docker_engine import Stack, running_stack

pytestmark = pytest.mark.slow
SCALE = {"edge": 2, "cloud": 3}
CLOUD_METRICS_PORT = 9103


@pytest.fixture(scope="module")
def pools(docker_images: dict[str, float]) -> Iterator[Stack]:
    with running_stack("splitexit-pools", ("cloud", "edge", "device"), scale=SCALE) as stack:
        time.sleep(3)  # a look-up period of the links' DNS, so each pool knows every replica
        yield stack


def cloud_samples(stack: Stack) -> list[float]:
    """Samples each cloud replica answered, from its /metrics."""
    counts = []
    for index in range(1, SCALE["cloud"] + 1):
        text = httpx.get(f"http://{stack.address('cloud', CLOUD_METRICS_PORT, index)}/metrics", timeout=10).text
        counts.append(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "splitexit_requests_total" and sample.labels.get("code") == "OK"
            )
        )
    return counts


async def send(stack: Stack, images: list[LabelledImage], count: int, rate: float) -> list[pb.InferResponse | str]:
    """``count`` cloud-bound samples at ``rate`` per second; each answer, or the error it got."""

    async def one(client: AsyncClient, image: LabelledImage) -> pb.InferResponse | str:
        try:
            return (await client.infer_request(request(image.png, threshold=1.0), 10.0)).message
        except Exception as exc:  # noqa: BLE001 -- the test counts every failure, whatever it is
            return repr(exc)

    async with AsyncClient(stack.address("device", 50051), retries=0, tls=stack.tls) as client:
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(one(client, images[i % len(images)])))
            await asyncio.sleep(1 / rate)
        return list(await asyncio.gather(*tasks))


def full_answers(answers: list[pb.InferResponse | str]) -> int:
    return sum(
        isinstance(a, pb.InferResponse) and a.exit_tier == pb.TIER_NAME_CLOUD and not a.degraded for a in answers
    )


def test_every_cloud_replica_serves_a_fair_share(pools: Stack, images: list[LabelledImage]) -> None:
    before = cloud_samples(pools)
    answers = asyncio.run(send(pools, images, count=150, rate=50))
    assert full_answers(answers) == len(answers), [a for a in answers if isinstance(a, str)][:3]
    served = [after - b for after, b in zip(cloud_samples(pools), before, strict=True)]
    shares = [round(s / sum(served), 3) for s in served]
    print(f"\ncloud replicas' shares of {sum(served):.0f} samples: {shares}")
    assert sum(served) == len(answers)
    assert min(shares) >= 0.2, f"a cloud replica got less than 20 % of the samples: {shares}"


def test_a_cloud_replica_crashing_under_load_loses_no_sample(pools: Stack, images: list[LabelledImage]) -> None:
    victim = pools.containers("cloud")[0]

    async def load_and_crash() -> list[pb.InferResponse | str]:
        load = asyncio.create_task(send(pools, images, count=360, rate=120))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(pools.kill_process, victim)
        return await load

    answers = asyncio.run(load_and_crash())
    lost = [
        a
        for a in answers
        if not (isinstance(a, pb.InferResponse) and a.exit_tier == pb.TIER_NAME_CLOUD and not a.degraded)
    ]
    edge_logs = pools("logs", "--no-color", "edge")
    assert edge_logs.count("joins") >= SCALE["cloud"] * SCALE["edge"], "each edge's pool found every cloud"
    retried = edge_logs.count("trying another")
    print(
        f"\none of 3 clouds crashed under load: {len(answers) - len(lost)} of {len(answers)} answered in full, "
        f"{retried} samples retried on another replica"
    )
    assert pools.restarts(victim) >= 1, "the replica did not crash"
    assert not lost, f"{len(lost)} samples lost or degraded, e.g. {lost[:3]}"
