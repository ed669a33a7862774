"""Samples as columns on a link (``ContinueColumns``): packed by the sender, answered as the same requests would be.

A real cloud tier answers one message of columns and one of the same samples as
requests: same labels, exits and logits (within 1e-5). A column that is wrong as
a whole refuses each of its samples under its id, a sample with bad values is
refused alone, and the rest of the message is answered.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.samples import LabelledImage
from splitexit.shared import link as link_module
from splitexit.shared.columns import pack, unpack
from splitexit.shared.errors import NextTierTooSlow
from splitexit.shared.link import TierLink
from splitexit.shared.pipeline import ColumnEntry, Refused
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tensors import encode
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed
from tests.tiers.test_link_batches import continue_requests

FIRST = 5  # the cloud's first block by default
CODES = {code.value[0]: code for code in grpc.StatusCode}


@pytest.fixture(scope="module")
def requests(image_model: HostedModel, images: list[LabelledImage]) -> list[pb.ContinueRequest]:
    """Eight samples resuming at the cloud, with two plans, two top-k and a timeout each, as the link sends them."""
    made = continue_requests(image_model, images[:8], FIRST)
    for n, request in enumerate(made):
        request.policy.threshold = 1.0 if n % 2 else 0.0
        request.top_k = 3 if n % 3 else 2
        request.timeout_s = 20.0
    return made


def answers_to(address: str, batch: pb.ContinueBatch) -> dict[str, pb.StreamResponse]:
    async def go() -> list[pb.StreamResponse]:
        async with grpc.aio.insecure_channel(address, [("grpc.max_receive_message_length", 64 << 20)]) as channel:
            call = pb_grpc.TierStub(channel).ContinueBatches(timeout=30)
            await call.write(batch)
            await call.done_writing()
            return [answer async for message in call for answer in message.answers]

    found = asyncio.run(go())
    by_id = {(a.response.request_id if a.HasField("response") else a.error.request_id): a for a in found}
    assert len(by_id) == len(found), "an id was answered twice"
    return by_id


def assert_same_answer(got: pb.InferResponse, expected: pb.InferResponse) -> None:
    assert (got.label, got.exit_block, got.exit_tier, got.policy) == (
        expected.label,
        expected.exit_block,
        expected.exit_tier,
        expected.policy,
    )
    np.testing.assert_allclose(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    assert [(c.label, c.label_name) for c in got.top_k] == [(c.label, c.label_name) for c in expected.top_k]


def test_pack_stacks_what_stacks_and_unpack_gives_back_each_sample(
    requests: list[pb.ContinueRequest], image_model: HostedModel
) -> None:
    lone = pb.ContinueRequest()
    lone.CopyFrom(requests[0])
    lone.next_block = FIRST + 1  # alone at its block: travels as a request
    quantized = pb.ContinueRequest()
    quantized.CopyFrom(requests[1])
    quantized.activation.CopyFrom(encode(np.frombuffer(requests[1].activation.raw, "<f4").reshape(1, -1), "int8"))

    batch = pack([*requests, lone, quantized])

    assert sorted(r.request_id for r in batch.requests) == sorted([lone.request_id, quantized.request_id])
    (columns,) = batch.columns
    assert list(columns.activations.shape) == [8, *requests[0].activation.shape[1:]]
    assert len(columns.plans) == 2 and list(columns.plan_of) == [n % 2 for n in range(8)]
    entries = unpack(columns, {image_model.name: image_model}.__getitem__, "cloud")
    for entry, request in zip(entries, requests, strict=True):
        assert isinstance(entry, ColumnEntry)
        assert (entry.request_id, entry.next_block, entry.top_k, entry.timeout_s) == (
            request.request_id,
            request.next_block,
            request.top_k,
            request.timeout_s,
        )
        assert entry.plan == Plan.from_proto(request.policy, image_model.manifest.num_blocks, TierThresholds.name)
        assert not entry.forbid_degraded
        np.testing.assert_array_equal(entry.x, np.frombuffer(request.activation.raw, "<f4").reshape(entry.x.shape))
        assert entry.x.base is not None  # a view of the column's tensor, not a copy


def test_columns_are_answered_as_the_same_requests_are(testbed: Testbed, requests: list[pb.ContinueRequest]) -> None:
    cloud = testbed.processes[Tier.CLOUD].address
    as_requests = answers_to(cloud, pb.ContinueBatch(requests=requests))
    columns = pack(requests)
    assert len(columns.columns) == 1 and not columns.requests
    as_columns = answers_to(cloud, columns)

    assert set(as_columns) == set(as_requests) == {r.request_id for r in requests}
    for request_id, expected in as_requests.items():
        assert expected.HasField("response"), expected.error
        assert as_columns[request_id].HasField("response"), as_columns[request_id].error
        assert_same_answer(as_columns[request_id].response, expected.response)


@pytest.mark.parametrize("columns", [True, False])
def test_a_link_gets_the_same_answers_with_columns_on_or_off(
    testbed: Testbed, requests: list[pb.ContinueRequest], columns: bool
) -> None:
    cloud = testbed.processes[Tier.CLOUD].address
    expected = answers_to(cloud, pb.ContinueBatch(requests=requests))

    async def go() -> list[pb.InferResponse]:
        link = TierLink(cloud, 64 << 20, columns=columns)
        try:
            return await asyncio.gather(*(link.call(request, 20.0) for request in requests))  # one message
        finally:
            await link.close()

    for request, answer in zip(requests, asyncio.run(go()), strict=True):
        assert answer.request_id == request.request_id
        assert_same_answer(answer, expected[request.request_id].response)


def test_a_bad_column_refuses_its_samples_and_a_bad_row_only_itself(
    testbed: Testbed, requests: list[pb.ContinueRequest]
) -> None:
    def column(prefix: str) -> pb.ContinueColumns:
        return pack([_renamed(request, f"{prefix}{n}") for n, request in enumerate(requests[:3])]).columns[0]

    nan_row, short, unknown, misshapen, bad_timeout = (column(p) for p in ("nan", "short", "unknown", "shape", "time"))
    raw = bytearray(nan_row.activations.raw)
    row_bytes = len(raw) // 3
    raw[row_bytes : row_bytes + 4] = np.float32(np.nan).tobytes()  # sample 1's first value
    nan_row.activations.raw = bytes(raw)
    del short.plan_of[-1]
    unknown.model = "no-such-model"
    misshapen.activations.shape[0] = 4
    bad_timeout.timeout_s[2] = -1.0
    good = _renamed(requests[3], "plain")

    answers = answers_to(
        testbed.processes[Tier.CLOUD].address,
        pb.ContinueBatch(requests=[good], columns=[nan_row, short, unknown, misshapen, bad_timeout]),
    )

    def status(request_id: str) -> grpc.StatusCode:
        answer = answers[request_id]
        return grpc.StatusCode.OK if answer.HasField("response") else CODES[answer.error.code]

    invalid, not_found, ok = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK
    assert [status(f"nan{n}") for n in range(3)] == [ok, invalid, ok]
    assert "NaN" in answers["nan1"].error.message
    assert [status(f"short{n}") for n in range(3)] == [invalid] * 3
    assert "plan_of" in answers["short0"].error.message
    assert [status(f"unknown{n}") for n in range(3)] == [not_found] * 3
    assert [status(f"shape{n}") for n in range(3)] == [invalid] * 3
    assert [status(f"time{n}") for n in range(3)] == [ok, ok, invalid]
    assert "timeout_s" in answers["time2"].error.message
    assert status("plain") is ok


def test_a_column_without_samples_is_one_clear_error(image_model: HostedModel) -> None:
    (refused,) = unpack(
        pb.ContinueColumns(model=image_model.name), {image_model.name: image_model}.__getitem__, "cloud"
    )
    assert isinstance(refused, Refused) and refused.error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "no request_ids" in refused.error.message


def _renamed(request: pb.ContinueRequest, request_id: str) -> pb.ContinueRequest:
    copy = pb.ContinueRequest()
    copy.CopyFrom(request)
    copy.request_id = request_id
    return copy


def test_call_many_sends_a_group_as_one_column_and_holds_each_sample_to_its_own_deadline(
    testbed: Testbed, requests: list[pb.ContinueRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = testbed.processes[Tier.CLOUD].address
    expected = answers_to(cloud, pb.ContinueBatch(requests=requests))
    sent: list[pb.ContinueBatch] = []
    real_pack = link_module.pack

    def recorded(group: list[pb.ContinueRequest]) -> pb.ContinueBatch:
        sent.append(real_pack(group))
        return sent[-1]

    monkeypatch.setattr(link_module, "pack", recorded)
    timeouts = [0.0 if n == 2 else 20.0 for n in range(len(requests))]  # sample 2 has no time at all

    async def go() -> list[list[tuple[int, object]]]:
        link = TierLink(cloud, 64 << 20)
        try:
            return [chunk async for chunk in link.call_many(requests, timeouts)]
        finally:
            await link.close()

    own_ids = [request.request_id for request in requests]
    chunks = asyncio.run(go())
    outcomes = dict(pair for chunk in chunks for pair in chunk)
    assert sorted(outcomes) == list(range(len(requests))), "every sample has exactly one outcome"
    assert isinstance(outcomes[2], NextTierTooSlow), outcomes[2]
    assert [request.request_id for request in requests] == own_ids, "the link's wire ids were not undone"
    for n, request in enumerate(requests):
        if n != 2:
            answer = outcomes[n]
            assert isinstance(answer, pb.InferResponse), answer
            assert answer.request_id == request.request_id
            assert_same_answer(answer, expected[request.request_id].response)
    assert len(sent) == 1 and len(sent[0].columns) == 1 and not sent[0].requests, "one message, one column"
