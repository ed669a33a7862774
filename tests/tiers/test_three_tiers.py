"""Three real tier processes on loopback: parity with torch, where samples exit, the trace."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import torch

from splitexit.client import AsyncClient, request
from splitexit.results import ClientError, Prediction
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tensors import encode
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed
from tests.conftest import IMAGE_MODEL_DIR
from training.cnn import load_reference


async def infer_all(address: str, images: list[LabelledImage], threshold: float | None) -> list[Prediction]:
    async with AsyncClient(address) as client:
        return await asyncio.gather(*(client.infer(image.png, threshold=threshold) for image in images))


@pytest.fixture(scope="module")
def torch_exit_logits(images: list[LabelledImage], manifest: Manifest) -> np.ndarray:
    """``[exit, sample, class]`` logits of the single-process torch model."""
    model = load_reference(IMAGE_MODEL_DIR)
    x = torch.from_numpy(np.concatenate([decode_image(i.png, manifest.input) for i in images]))
    with torch.no_grad():
        return np.stack([logits.numpy() for logits in model(x)])


def test_three_tier_answers_equal_torch_at_the_same_exit(
    testbed: Testbed, images: list[LabelledImage], torch_exit_logits: np.ndarray
) -> None:
    threshold = 0.9  # mid-range: some samples exit on each tier
    answers = asyncio.run(infer_all(testbed.device_address, images, threshold))
    assert len(answers) == len(images) >= 200
    for i, answer in enumerate(answers):
        expected = torch_exit_logits[answer.exit_block - 1, i]
        np.testing.assert_allclose(np.array(answer.logits), expected, atol=1e-4, rtol=0)
        assert answer.label == int(expected.argmax())
        confidences = [c for hop in answer.hops for c in hop.exit_confidences]
        # it exited at the first exit whose confidence beat the threshold, or the final one
        assert all(c <= threshold for c in confidences[:-1])
        assert confidences[-1] > threshold or answer.exit_block == len(torch_exit_logits)
    tiers = {a.exit_tier for a in answers}
    assert tiers == set(Tier), f"exits only on {tiers}"


def test_threshold_one_sends_everything_to_the_cloud_final_exit(
    testbed: Testbed, images: list[LabelledImage], manifest: Manifest
) -> None:
    answers = asyncio.run(infer_all(testbed.device_address, images[:40], threshold=1.0))
    assert {(a.exit_tier, a.exit_block) for a in answers} == {(Tier.CLOUD, manifest.num_blocks)}
    for answer in answers:
        device, edge, cloud = answer.hops
        assert (device.first_block, device.last_block) == (1, manifest.default_ranges["device"].last)
        assert (edge.first_block, edge.last_block) == (device.last_block + 1, manifest.default_ranges["edge"].last)
        assert (cloud.first_block, cloud.last_block) == (edge.last_block + 1, manifest.num_blocks)
        assert device.bytes_sent > 0 and edge.bytes_sent > 0 and cloud.bytes_sent == 0
        # every block ran and both links were crossed: exactly the final-layer cost (λ·6 + o_de + o_ec)
        assert answer.cost == pytest.approx(answer.cost_final_layer) == pytest.approx(0.8)


def test_threshold_zero_exits_everything_at_the_first_exit(testbed: Testbed, images: list[LabelledImage]) -> None:
    answers = asyncio.run(infer_all(testbed.device_address, images[:40], threshold=0.0))
    assert {(a.exit_tier, a.exit_block) for a in answers} == {(Tier.DEVICE, 1)}
    assert all(len(a.hops) == 1 and a.hops[0].bytes_sent == 0 for a in answers)
    assert all(a.cost < a.cost_final_layer for a in answers)


def test_answer_carries_top_k_timings_and_request_id(testbed: Testbed, images: list[LabelledImage]) -> None:
    async def go() -> Prediction:
        async with AsyncClient(testbed.device_address, timeout_s=10) as client:
            return await client.infer(images[0].png, threshold=1.0, request_id="sample-0", top_k=3)

    answer = asyncio.run(go())
    assert answer.request_id == "sample-0" and answer.model == "fmnist-cnn" and answer.policy == "override"
    assert [p.label for p in answer.top_k][0] == answer.label and len(answer.top_k) == 3
    assert answer.top_k[0].probability == pytest.approx(answer.confidence)
    device, edge, cloud = (hop.timings for hop in answer.hops)
    assert device.decode_s > 0 and device.compute_s > 0 and device.network_s >= 0
    assert device.total_s >= device.decode_s + device.compute_s + device.network_s
    assert device.total_s > edge.total_s > cloud.total_s > 0


def test_infer_stream_answers_every_request_and_reports_bad_ones_in_line(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    requests = [request(image.png, request_id=f"r{i}") for i, image in enumerate(images[:30])]
    requests.insert(7, request(b"not an image", request_id="bad"))

    async def go() -> list[Prediction | ClientError]:
        async with AsyncClient(testbed.device_address) as client:
            return [answer async for answer in client.infer_many(requests, max_in_flight=4)]

    answers = asyncio.run(go())
    errors = {a.request_id: a for a in answers if isinstance(a, ClientError)}
    answered = {a.request_id for a in answers if isinstance(a, Prediction)}
    assert answered == {f"r{i}" for i in range(30)}
    assert set(errors) == {"bad"} and errors["bad"].code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an image" in errors["bad"].message


def test_edge_continue_unary_resumes_a_device_activation(
    testbed: Testbed,
    edge_address: str,
    images: list[LabelledImage],
    manifest: Manifest,
    torch_exit_logits: np.ndarray,
) -> None:
    """A generic client can resume a sample on the edge with the unary Continue."""
    model = load_reference(IMAGE_MODEL_DIR)
    x = torch.from_numpy(decode_image(images[0].png, manifest.input))
    with torch.no_grad():
        _, activation = model.segment(1)(x)

    async def go() -> pb.InferResponse:
        async with grpc.aio.insecure_channel(edge_address) as channel:
            return await pb_grpc.TierStub(channel).Continue(
                pb.ContinueRequest(
                    model="fmnist-cnn",
                    request_id="direct",
                    next_block=2,
                    activation=encode(activation.numpy()),
                    policy=pb.Plan(threshold=1.0),
                ),
                timeout=10,
            )

    answer = asyncio.run(go())
    assert [h.tier for h in answer.hops] == [pb.TIER_NAME_EDGE, pb.TIER_NAME_CLOUD]
    np.testing.assert_allclose(answer.logits, torch_exit_logits[-1, 0], atol=1e-4, rtol=0)


def test_health_and_reflection_on_every_tier(testbed: Testbed) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def services(address: str) -> tuple[int, set[str]]:
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            reply = await call.read()
            call.cancel()
            return health.status, {s.name for s in reply.list_services_response.service}

    expected = {"device": "splitexit.v1.Device", "edge": "splitexit.v1.Tier", "cloud": "splitexit.v1.Tier"}
    for tier, running in testbed.processes.items():
        status, names = asyncio.run(services(running.address))
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert {expected[tier.value], "grpc.health.v1.Health"} <= names
