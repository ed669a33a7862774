"""Fuzz every RPC of every tier with hostile messages: 0 INTERNAL, no crash, and the next good request answered.

About 2,200 hostile calls (hypothesis, derandomized so CI repeats the same run)
to three real tier processes in plaintext, and half as many over mutual TLS with
the device's bearer token. Every method the schema declares must have been called,
with messages and with raw bytes, so a new RPC cannot go unfuzzed. A freeze of
the event loop, such as the 16 s one a wrongly shaped tensor once caused, shows
up as a good request delayed by seconds; the figures of ``make faults``
(docs/results/faults.md) give the delays.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from bench.hostile import fuzzed_testbed, run_fuzz
from bench.hostile_calls import Dialer
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed


@pytest.fixture(scope="module", params=["plaintext", "mutual-tls"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Testbed, Dialer]]:
    """Tiers of their own, plaintext, then over mutual TLS with the device's token."""
    with fuzzed_testbed(tmp_path_factory.mktemp("logs"), tls=request.param == "mutual-tls") as bed_and_dial:
        yield bed_and_dial


def schema_rpcs() -> set[str]:
    """Every method of every service protos/splitexit.proto declares, and the health check's."""
    services = [*pb.DESCRIPTOR.services_by_name.values(), health_pb2.DESCRIPTOR.services_by_name["Health"]]
    return {f"{service.name}.{method.name}" for service in services for method in service.methods}


def test_hostile_messages_get_clear_statuses_and_the_tiers_keep_serving(
    fuzzed: tuple[Testbed, Dialer], images: list[LabelledImage], manifest: Manifest
) -> None:
    bed, dial = fuzzed
    activations = {str(block): [1, *manifest.block(block).input.per_sample_shape()] for block in (3, 4, 5, 6)}
    report = run_fuzz(dial, images[0].png, activations, scale=0.5 if bed.tls_dir else 1.0)  # TLS: the suite's time

    called = {rpc for rpc, statuses in report.by_rpc.items() if sum(statuses.values()) > 0}
    expected = schema_rpcs()
    assert expected - called == set() and {f"raw {rpc}" for rpc in expected} - called == set(), sorted(called)
    assert report.messages >= (2500 if bed.tls_dir is None else 1250), report.by_rpc
    assert report.bad == [], "\n".join(report.bad[:20])
    for rpc in expected - {"Device.ListModels", "Health.List", "Health.Watch"}:  # those whose requests can be wrong
        assert set(report.by_rpc[rpc]) - {"OK"}, f"{rpc}: every hostile message passed: {report.by_rpc[rpc]}"
    batch = report.by_rpc["Device.InferBatch"]
    assert batch.get("OK", 0) and batch.get("INVALID_ARGUMENT", 0) and batch.get("RESOURCE_EXHAUSTED", 0), batch
    assert report.by_rpc["Tier.ContinueBatches"].get("OK", 0), report.by_rpc["Tier.ContinueBatches"]
    assert report.good_failed == 0 and report.good_during_s
    assert max(report.good_during_s) < 2.0, "a hostile request held up good ones (the event loop froze?)"
    for tier, process in bed.processes.items():
        assert process.process.poll() is None, f"the {tier.value} died: {process.log_path.read_text()[-2000:]}"
    with dial(Tier.DEVICE) as channel:
        answer = pb_grpc.DeviceStub(channel).Infer(pb.InferRequest(image=images[1].png), timeout=10)
    assert answer.label_name
