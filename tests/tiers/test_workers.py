"""``workers: 2``: two cloud processes share one port, both answer (each counts on its own /metrics), and
SIGTERM drains the pool to exit 0; the device refuses a pool with one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from splitexit.samples import LabelledImage
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import Tier
from splitexit.testbed import LOOPBACK, TierLaunch, TierProcess, free_port, start_tier, tier_env, wait_workers
from tests.tiers.test_link_batches import continue_requests

CONNECTIONS = 16  # the kernel spreads connections over the workers: all on one worker has odds 2**-15
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # a channel that shares no connection with the others


def answered_ok(metrics_port: int) -> float:
    """Continue calls this worker answered OK, from its own /metrics."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "splitexit_requests_total" and sample.labels.get("code") == "OK"
    )


def final_label(model: HostedModel, image: LabelledImage) -> int:
    """The label the final exit gives ``image``, run here on the same segments."""
    x = decode_image(image.png, model.manifest.input)
    run = model.run(1, x, [(1.0,) * model.manifest.num_blocks], [model.manifest.num_blocks])[0]
    return int(np.argmax(run.logits))


async def ask_on_own_connections(address: str, requests: list[pb.ContinueRequest]) -> list[pb.InferResponse]:
    """Each request on a channel of its own, ``CONNECTIONS`` channels in turn."""
    channels = [grpc.aio.insecure_channel(address, OWN_CONNECTION) for _ in range(CONNECTIONS)]
    try:
        stubs = [pb_grpc.TierStub(channel) for channel in channels]
        return await asyncio.gather(
            *(stubs[n % CONNECTIONS].Continue(request, timeout=30) for n, request in enumerate(requests))
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def cloud_pool(log_dir: Path) -> tuple[TierProcess, int]:
    """A cloud of ``workers: 2`` on a free port, once both workers serve; and the first worker's metrics port."""
    port, metrics_port = free_port(), free_port()
    env = tier_env(Tier.CLOUD, LOOPBACK, port, None, {"workers": "2"}, log_dir, metrics_port=metrics_port)
    pool = TierLaunch(tier=Tier.CLOUD, address=f"{LOOPBACK}:{port}", env=env, log_path=log_dir / "cloud.log").start()
    try:
        wait_workers(metrics_port, 2)
    except BaseException:
        pool.stop()
        raise
    return pool, metrics_port


def test_two_cloud_workers_share_the_port_and_both_answer(
    tmp_path: Path, image_model: HostedModel, images: list[LabelledImage]
) -> None:
    samples = images[: 2 * CONNECTIONS]
    requests = continue_requests(image_model, samples, first=5)  # the cloud's first block by default
    expected = [final_label(image_model, image) for image in samples]
    pool, metrics_port = cloud_pool(tmp_path)
    try:
        answers = asyncio.run(ask_on_own_connections(pool.address, requests))
        per_worker = [answered_ok(metrics_port), answered_ok(metrics_port + 1)]
    finally:
        pool.stop()
    assert [a.label for a in answers] == expected
    assert all(a.exit_block == 6 for a in answers)
    assert sum(per_worker) == len(requests) and min(per_worker) > 0, per_worker
    assert pool.process.returncode == 0, pool.log_path.read_text()[-2000:]
    log = pool.log_path.read_text()
    started, serving = (
        re.findall(r"cloud worker \d: pid (\d+)", log),
        re.findall(r"cloud serving .* \(pid (\d+)\)", log),
    )
    assert len(set(started)) == 2 and sorted(started) == sorted(serving)
    assert log.count("cloud stopped") == 2 and "all 2 workers stopped" in log


def test_an_edge_with_several_connections_reaches_every_worker_of_its_cloud(
    tmp_path: Path, image_model: HostedModel, images: list[LabelledImage]
) -> None:
    samples = images[: 2 * CONNECTIONS]
    requests = continue_requests(image_model, samples, first=3)  # the edge's first block; threshold 1: to the cloud
    expected = [final_label(image_model, image) for image in samples]
    pool, metrics_port = cloud_pool(tmp_path)
    edge = None
    try:
        connections = {"link_connections": str(CONNECTIONS)}
        edge = start_tier(Tier.EDGE, free_port(), pool.address, connections, tmp_path / "edge")
        answers = asyncio.run(ask_in_turn(edge.address, requests))
        per_worker = [answered_ok(metrics_port), answered_ok(metrics_port + 1)]
    finally:
        if edge is not None:
            edge.stop()
        pool.stop()
    assert [a.label for a in answers] == expected
    assert all(a.exit_tier == pb.TIER_NAME_CLOUD for a in answers)
    assert sum(per_worker) == len(requests) and min(per_worker) > 0, per_worker


async def ask_in_turn(address: str, requests: list[pb.ContinueRequest]) -> list[pb.InferResponse]:
    """Each request on one channel, one after another: the edge sends each on its next link in turn."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TierStub(channel)
        return [await stub.Continue(request, timeout=30) for request in requests]


def test_a_pool_killed_outright_takes_its_workers_with_it(tmp_path: Path) -> None:
    pool, _ = cloud_pool(tmp_path)
    try:
        pids = [int(pid) for pid in re.findall(r"cloud worker \d: pid (\d+)", pool.log_path.read_text())]
        assert len(pids) == 2
        pool.process.kill()  # SIGKILL: the pool passes nothing on
        pool.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        for pid in left:  # a worker this test started, left behind: stopped here, not by the next run
            os.kill(pid, signal.SIGKILL)
    finally:
        pool.stop()
    assert not left, f"workers {left} outlived their pool"
    assert pool.log_path.read_text().count("cloud stopped") == 2, pool.log_path.read_text()[-2000:]


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (a worker whose parent died is reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_device_refuses_workers_in_one_line() -> None:
    env = {**os.environ, "SPLITEXIT_DEVICE_WORKERS": "2", "SPLITEXIT_DEVICE_PLAINTEXT": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "splitexit", "serve", "device"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "splitexit serve device: refusing to start: workers > 1 is for the edge and the cloud: "
        "the device's policies learn online into one state_dir"
    ]
