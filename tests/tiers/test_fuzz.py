"""Fuzz every RPC of every tier with hostile messages: 0 INTERNAL, no crash, and the next good request answered.

About 2,300 messages (hypothesis, derandomized so CI repeats the same run)
against three real tier processes. A freeze of the event loop, such as the
16 s one a wrongly shaped tensor once caused, shows up as a good request
delayed by seconds; the figures of ``make faults`` (docs/results/faults.md) give the delays.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from bench.hostile import run_fuzz
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Tiers of their own: the fuzz teaches their policies nonsense, which other tests must not see."""
    settings = {tier: {"default_timeout_s": "2"} for tier in Tier}
    with Testbed({tier: free_port() for tier in Tier}, settings, log_dir=tmp_path_factory.mktemp("logs")) as testbed:
        yield testbed


def test_hostile_messages_get_clear_statuses_and_the_tiers_keep_serving(
    bed: Testbed, images: list[LabelledImage], manifest: Manifest
) -> None:
    activations = {str(block): [1, *manifest.block(block).input.per_sample_shape()] for block in (3, 4, 5, 6)}
    edge, cloud = bed.processes[Tier.EDGE].address, bed.processes[Tier.CLOUD].address
    report = run_fuzz(bed.device_address, edge, cloud, images[0].png, activations)

    assert report.messages >= 2000, report.by_status
    assert report.bad == [], "\n".join(report.bad[:20])
    assert report.by_status["INVALID_ARGUMENT"] > report.messages / 3, report.by_status  # the checks were reached
    assert report.good_failed == 0 and report.good_during_s
    assert max(report.good_during_s) < 2.0, "a hostile request held up good ones (the event loop froze?)"
    for tier, process in bed.processes.items():
        assert process.process.poll() is None, f"the {tier.value} died: {process.log_path.read_text()[-2000:]}"
    with grpc.insecure_channel(bed.device_address) as channel:
        answer = pb_grpc.DeviceStub(channel).Infer(pb.InferRequest(image=images[1].png), timeout=10)
    assert answer.label_name
