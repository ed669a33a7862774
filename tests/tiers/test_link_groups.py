"""A link message's samples run as one group (Pipeline.run_many, TierNode.process_many), each still answered alone.

Real tiers in this process: a cloud and an edge :class:`TierNode` with their onnxruntime
sessions, the edge linked to the session testbed's running cloud over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from splitexit.cloud.settings import CloudSettings
from splitexit.edge.settings import EdgeSettings
from splitexit.samples import LabelledImage
from splitexit.shared.columns import pack, unpack
from splitexit.shared.errors import ServingError
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.settings import TierSettings
from splitexit.shared.tier_servicer import TierServicer
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed
from tests.tiers.test_link_batches import continue_requests

METHOD = "ContinueBatches"
Chunk = list[tuple[str, Any]]  # (request_id, answer or error) of the samples answered together


def column_of(requests: Sequence[pb.ContinueRequest]) -> pb.ContinueColumns:
    for request in requests:
        request.timeout_s = 20.0
    batch = pack(requests)
    assert len(batch.columns) == 1 and not batch.requests
    return batch.columns[0]


async def run_group(node: TierNode, columns: pb.ContinueColumns) -> list[Chunk]:
    """The chunks the pipeline yields for one column, as (request_id, answer or error)."""
    entries = unpack(columns, node.registry.get, node.pipeline.where)
    chunks = node.pipeline.run_many(METHOD, entries, TierServicer(node).resume_many)
    async with contextlib.aclosing(chunks):
        return [[(entries[i].request_id, outcome) for i, outcome in chunk] async for chunk in chunks]


def chunks_from(settings: TierSettings, requests: Sequence[pb.ContinueRequest]) -> tuple[TierNode, list[Chunk]]:
    """A tier of ``settings`` in this process (watching its next tier, if any), and its chunks for ``requests``
    sent as one column."""

    async def go() -> tuple[TierNode, list[Chunk]]:
        node = TierNode.from_settings(settings)
        node.start()
        try:
            return node, await run_group(node, column_of(requests))
        finally:
            await node.close()

    return asyncio.run(go())


def requests_counted(node: TierNode, model: str, code: str) -> float:
    labels = {"tier": node.tier.value, "model": model, "method": METHOD, "code": code}
    return node.metrics.registry.get_sample_value("splitexit_requests_total", labels) or 0.0


def test_a_column_beyond_the_free_slots_is_answered_up_to_them_and_refused_after(
    image_model: HostedModel, images: list[LabelledImage]
) -> None:
    requests = continue_requests(image_model, images[:5], 5)

    node, chunks = chunks_from(CloudSettings(max_in_flight=3), requests)
    outcomes = dict(outcome for chunk in chunks for outcome in chunk)
    assert list(outcomes) != [] and sorted(outcomes) == sorted(r.request_id for r in requests)
    answered = [rid for rid, o in outcomes.items() if isinstance(o, pb.InferResponse)]
    refused = {rid: o for rid, o in outcomes.items() if isinstance(o, ServingError)}
    assert len(answered) == 3 and len(refused) == 2
    assert all(o.code is grpc.StatusCode.RESOURCE_EXHAUSTED for o in refused.values())
    assert all("CLOUD_MAX_IN_FLIGHT" in o.message for o in refused.values())
    assert node.admission.in_flight == 0  # every slot given back
    assert requests_counted(node, image_model.name, "OK") == 3
    assert requests_counted(node, image_model.name, "RESOURCE_EXHAUSTED") == 2


def test_a_bad_plan_in_a_column_refuses_only_the_samples_that_carry_it(
    image_model: HostedModel, images: list[LabelledImage]
) -> None:
    requests = continue_requests(image_model, images[:4], 5)
    requests[1].policy.threshold = 1.5  # not a probability
    requests[3].policy.threshold = 1.5

    _, chunks = chunks_from(CloudSettings(), requests)
    outcomes = dict(outcome for chunk in chunks for outcome in chunk)
    good, bad = [requests[0], requests[2]], [requests[1], requests[3]]
    assert all(isinstance(outcomes[r.request_id], pb.InferResponse) for r in good)
    for request in bad:
        error = outcomes[request.request_id]
        assert isinstance(error, ServingError) and error.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "threshold" in error.message


@pytest.mark.parametrize("forbid_degraded", [False, True])
def test_an_edge_answers_its_own_exits_first_and_the_rest_as_the_cloud_answers(
    testbed: Testbed, image_model: HostedModel, images: list[LabelledImage], forbid_degraded: bool
) -> None:
    requests = continue_requests(image_model, images[:8], 2)  # the edge's first block by default
    for n, request in enumerate(requests):
        request.policy.threshold = 0.0 if n % 2 else 1.0  # odd ones exit at block 2, even ones go to the cloud
        request.forbid_degraded = forbid_degraded
    settings = EdgeSettings(next_tier=testbed.processes[Tier.CLOUD].address, plaintext=True)

    _, (first, *rest) = chunks_from(settings, requests)
    exits = {rid: answer.exit_tier for rid, answer in first}
    assert exits == {r.request_id: Tier.EDGE.proto for n, r in enumerate(requests) if n % 2}
    later = dict(outcome for chunk in rest for outcome in chunk)
    assert sorted(later) == sorted(r.request_id for n, r in enumerate(requests) if not n % 2)
    for answer in later.values():
        assert isinstance(answer, pb.InferResponse) and answer.exit_tier == Tier.CLOUD.proto and not answer.degraded
        assert [hop.tier for hop in answer.hops] == [Tier.EDGE.proto, Tier.CLOUD.proto]


def test_an_edge_whose_cloud_is_gone_answers_a_column_degraded_or_refuses_as_each_sample_asks(
    image_model: HostedModel, images: list[LabelledImage]
) -> None:
    requests = continue_requests(image_model, images[:6], 2)
    for n, request in enumerate(requests):
        request.policy.threshold = 1.0  # every one would go on to the cloud
        request.forbid_degraded = n < 2
    settings = EdgeSettings(next_tier="127.0.0.1:9", plaintext=True)  # nothing listens there

    _, chunks = chunks_from(settings, requests)
    outcomes = dict(outcome for chunk in chunks for outcome in chunk)
    for n, request in enumerate(requests):
        outcome = outcomes[request.request_id]
        if n < 2:
            assert isinstance(outcome, ServingError) and outcome.code is grpc.StatusCode.UNAVAILABLE
        else:
            assert isinstance(outcome, pb.InferResponse) and outcome.degraded
            assert (
                outcome.exit_tier == Tier.EDGE.proto and outcome.exit_block == image_model.chain.hosted[Tier.EDGE].last
            )
