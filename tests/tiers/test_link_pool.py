"""A link pool over real cloud processes on loopback, no Docker needed.

Three ``splitexit serve cloud`` replicas; real Fashion-MNIST activations
(the blocks before the cloud's, run with onnxruntime) go through a
:class:`~splitexit.shared.link_pool.LinkPool` whose look-up names the three.
Samples are spread over every replica; when one is killed mid-load, no sample
is lost (retried on another replica); the look-up dropping a replica closes its link.
tests/deploy/test_compose_pools.py does the same through Docker's DNS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from splitexit.samples import LabelledImage
from splitexit.shared.link import Answers, TierLink
from splitexit.shared.link_pool import LinkPool, open_link, resolve_replicas
from splitexit.shared.manifest import Manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tensors import encode
from splitexit.shared.tiers import Tier
from splitexit.testbed import TierProcess, free_port, start_tier

pytestmark = pytest.mark.slow
REPLICAS = 3


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TierProcess]]:
    started: list[TierProcess] = []
    try:
        for i in range(REPLICAS):
            started.append(start_tier(Tier.CLOUD, free_port(), None, {}, tmp_path_factory.mktemp(f"cloud{i}")))
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def activations(manifest: Manifest, images: list[LabelledImage]) -> tuple[int, list[pb.Tensor]]:
    """The cloud's first block, and the activations real test images have when they reach it."""
    first = manifest.default_ranges[Tier.CLOUD].first
    sessions = [
        ort.InferenceSession(str(DEFAULT_MODELS_DIR / manifest.name / f"block{k}.onnx")) for k in range(1, first)
    ]
    tensors = []
    for image in images[:30]:
        x = decode_image(image.png, manifest.input)
        for session in sessions:
            _, x = session.run(["logits", "activation"], {"x": x})
        tensors.append(encode(np.asarray(x)))
    return first, tensors


def pool_over(clouds: list[TierProcess]) -> LinkPool:
    async def resolve(host: str, port: int) -> list[str]:
        return [cloud.address for cloud in clouds if cloud.process.poll() is None]

    return LinkPool("clouds:0", 64 << 20, resolve=resolve)


async def send_all(pool: LinkPool, first: int, tensors: list[pb.Tensor], count: int) -> list[pb.InferResponse | str]:
    async def one(i: int) -> pb.InferResponse | str:
        await asyncio.sleep(i * 0.01)
        message = pb.ContinueRequest(
            model="fmnist-cnn", request_id=f"s{i}", next_block=first, activation=tensors[i % len(tensors)], timeout_s=10
        )
        try:
            return await pool.call(message, 10)
        except Exception as exc:  # noqa: BLE001 -- every failure counts
            return repr(exc)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def started(pool: LinkPool, replicas: int = REPLICAS) -> LinkPool:
    pool.start()
    for _ in range(100):
        if len(pool.replicas) == replicas and all(link.reachable for links in pool.replicas.values() for link in links):
            return pool
        await asyncio.sleep(0.05)
    raise AssertionError(f"the pool did not see {replicas} serving replicas: {pool.replicas}")


def test_open_link_pools_names_and_not_addresses() -> None:
    async def kinds() -> list[type]:  # a link opens its channel on the running event loop, as a tier does
        links = [open_link(address, 1 << 20) for address in ("127.0.0.1:50053", "[::1]:50053", "cloud:50053")]
        for link in links:
            await link.close()
        return [type(link) for link in links]

    assert asyncio.run(kinds()) == [TierLink, TierLink, LinkPool]
    assert asyncio.run(resolve_replicas("localhost", 50053)) == ["127.0.0.1:50053"]


def test_samples_spread_over_every_replica(
    clouds: list[TierProcess], activations: tuple[int, list[pb.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []  # the replica each sample went to
    real_call_many = TierLink.call_many

    def counted(link: TierLink, requests: Sequence[pb.ContinueRequest], timeouts_s: Sequence[float]) -> Answers:
        used.extend(link.address for _ in requests)
        return real_call_many(link, requests, timeouts_s)

    monkeypatch.setattr(TierLink, "call_many", counted)

    async def go() -> list[pb.InferResponse | str]:
        pool = await started(pool_over(clouds))
        try:
            return await send_all(pool, *activations, count=60)
        finally:
            await pool.close()

    answers = asyncio.run(go())
    assert all(isinstance(a, pb.InferResponse) and a.exit_tier == pb.TIER_NAME_CLOUD for a in answers), answers[:3]
    shares = {address: used.count(address) / len(used) for address in set(used)}
    assert len(used) == len(answers) and len(shares) == REPLICAS and min(shares.values()) >= 0.2, shares


def test_a_replica_killed_mid_load_loses_no_sample(
    clouds: list[TierProcess], activations: tuple[int, list[pb.Tensor]]
) -> None:
    victim = clouds[0]

    async def go() -> tuple[list[pb.InferResponse | str], int]:
        pool = await started(pool_over(clouds))
        load = asyncio.create_task(send_all(pool, *activations, count=150))
        await asyncio.sleep(0.5)
        victim.process.kill()
        answers = await load
        for _ in range(100):  # the next look-up drops the dead replica
            if len(pool.replicas) == REPLICAS - 1:
                break
            await asyncio.sleep(0.05)
        left = len(pool.replicas)
        await pool.close()
        return answers, left

    answers, left = asyncio.run(go())
    lost = [a for a in answers if not isinstance(a, pb.InferResponse)]
    assert not lost, f"{len(lost)} of {len(answers)} samples lost: {lost[:3]}"
    assert left == REPLICAS - 1, "the dead replica's link was not closed"


def test_a_group_a_replica_refuses_in_part_is_answered_by_another(
    clouds: list[TierProcess],
    activations: tuple[int, list[pb.Tensor]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, tensors = activations
    crowded = start_tier(Tier.CLOUD, free_port(), None, {"max_in_flight": "1"}, tmp_path)  # takes 1 of a group

    async def go() -> list[tuple[int, object]]:
        pool = await started(pool_over([crowded, clouds[-1]]), replicas=2)
        outcomes = []
        try:
            for group in range(2):  # one group to each replica, in turn
                requests = [
                    pb.ContinueRequest(model="fmnist-cnn", request_id=f"g{group}-{n}", next_block=first, activation=t)
                    for n, t in enumerate(tensors[:8])
                ]
                async for chunk in pool.call_many(requests, [10.0] * len(requests)):
                    outcomes += chunk
        finally:
            await pool.close()
        return outcomes

    try:
        with caplog.at_level(logging.INFO, logger="splitexit.shared.link_pool"):
            outcomes = asyncio.run(go())
    finally:
        crowded.stop()
    assert len(outcomes) == 16
    assert all(isinstance(o, pb.InferResponse) and o.exit_tier == pb.TIER_NAME_CLOUD for _, o in outcomes), outcomes
    assert f"replica {crowded.address} of clouds failed 7 samples" in caplog.text, caplog.text
