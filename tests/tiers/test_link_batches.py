"""``Tier.ContinueBatches``: several samples per link message, each with its own answer or error."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from splitexit.samples import LabelledImage
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tensors import encode
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed


def continue_requests(model: HostedModel, images: list[LabelledImage], first: int) -> list[pb.ContinueRequest]:
    requests = []
    for n, image in enumerate(images):
        x = decode_image(image.png, model.manifest.input)
        activation = model.run(1, x, [(1.0,) * model.manifest.num_blocks], [first - 1])[0].activation
        requests.append(
            pb.ContinueRequest(
                model=model.name,
                request_id=f"r{n}",
                next_block=first,
                activation=encode(activation),
                policy=pb.Plan(threshold=1.0),
            )
        )
    return requests


def test_one_message_of_requests_gets_each_its_own_answer_or_error(
    testbed: Testbed, image_model: HostedModel, images: list[LabelledImage]
) -> None:
    first = 5  # the cloud's first block by default
    requests = continue_requests(image_model, images[:6], first)
    requests[3].next_block = 99  # one bad request inside the batch
    expected = {
        r.request_id: image_model.run(
            first, np.frombuffer(r.activation.raw, "<f4").reshape(r.activation.shape), [(1.0,) * 6], [6]
        )[0]
        for r in requests
        if r.next_block == first
    }

    async def go() -> list[pb.StreamResponse]:
        async with grpc.aio.insecure_channel(testbed.processes[Tier.CLOUD].address) as channel:
            call = pb_grpc.TierStub(channel).ContinueBatches(timeout=30)
            await call.write(pb.ContinueBatch(requests=requests))
            await call.done_writing()
            return [answer async for message in call for answer in message.answers]

    answers = asyncio.run(go())
    assert len(answers) == len(requests)
    errors = [a.error for a in answers if a.HasField("error")]
    assert [(e.request_id, e.code) for e in errors] == [("r3", grpc.StatusCode.OUT_OF_RANGE.value[0])]
    assert "cannot resume at block 99" in errors[0].message
    for answer in (a.response for a in answers if a.HasField("response")):
        run = expected[answer.request_id]
        assert answer.exit_block == 6 and answer.label == int(np.argmax(run.logits))
        np.testing.assert_allclose(answer.logits, run.logits, rtol=1e-4, atol=1e-4)
