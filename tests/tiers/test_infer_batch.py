"""``Device.InferBatch`` on the real three tiers: answers equal to the unary ones, per-sample errors, the limits."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from lab.text_data import sentiment
from splitexit.client import AsyncClient, Client, batch_request, request, tensor_message
from splitexit.results import BatchPrediction
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import ImageInput, Manifest
from splitexit.shared.preprocess import SMALL_IMAGE_BYTES, open_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed
from tests.tiers.test_bad_input import assert_status, device_call

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def batch_call(address: str, message: pb.InferBatchRequest) -> pb.InferBatchResponse:
    async def go() -> pb.InferBatchResponse:
        async with grpc.aio.insecure_channel(address) as channel:
            return await pb_grpc.DeviceStub(channel).InferBatch(message, timeout=60)

    return asyncio.run(go())


def assert_row_is_the_unary_answer(batch: pb.InferBatchResponse, i: int, unary: pb.InferResponse) -> None:
    k = batch.top_k
    assert (batch.labels[i], batch.exit_blocks[i], batch.exit_tiers[i]) == (
        unary.label,
        unary.exit_block,
        unary.exit_tier,
    )
    assert batch.confidences[i] == pytest.approx(unary.confidence, rel=1e-5)
    assert batch.costs[i] == pytest.approx(unary.cost)
    assert (batch.degraded[i], batch.policies[i]) == (unary.degraded, unary.policy)
    assert list(batch.top_k_labels[i * k : (i + 1) * k]) == [p.label for p in unary.top_k]
    assert list(batch.top_k_probabilities[i * k : (i + 1) * k]) == pytest.approx(
        [p.probability for p in unary.top_k], rel=1e-5
    )


@pytest.mark.parametrize("threshold", [None, 0.9])
def test_a_batch_of_images_gets_the_unary_answers(
    testbed: Testbed, images: list[LabelledImage], threshold: float | None
) -> None:
    chosen = images[:48]
    plan = None if threshold is None else pb.Plan(threshold=threshold)
    ids = [f"img-{image.index}" for image in chosen]
    started = time.perf_counter()
    batch = batch_call(
        testbed.device_address,
        pb.InferBatchRequest(images=[image.png for image in chosen], policy=plan, top_k=3, request_ids=ids),
    )
    call_s = time.perf_counter() - started
    assert not batch.errors and list(batch.request_ids) == ids and batch.top_k == 3
    assert len(batch.latencies_s) == len(chosen) and 0 < min(batch.latencies_s) <= max(batch.latencies_s) < call_s
    assert batch.model == "fmnist-cnn" and batch.label_names[0] == "T-shirt/top"
    for i, image in enumerate(chosen):
        assert_row_is_the_unary_answer(
            batch, i, device_call(testbed.device_address, request(image.png, threshold=threshold, top_k=3))
        )
    assert len(set(batch.exit_tiers)) > 1, "the batch's samples exit at different tiers"
    accuracy = np.mean([label == image.label for label, image in zip(batch.labels, chosen)])
    assert accuracy > 0.8


def test_a_corrupt_image_gets_its_own_error_and_the_rest_are_answered(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    corrupt = images[3].png[:40]
    pngs = [image.png for image in images[:8]]
    pngs[3] = corrupt
    batch = batch_call(testbed.device_address, pb.InferBatchRequest(images=pngs, top_k=2))
    [error] = batch.errors
    assert (error.index, error.code) == (3, INVALID.value[0])
    assert_status(lambda: device_call(testbed.device_address, request(corrupt)), INVALID, error.message)
    assert batch.labels[3] == -1 and list(batch.top_k_labels[6:8]) == [-1, -1] and batch.request_ids[3]
    assert batch.latencies_s[3] == 0 and min(batch.latencies_s[:3]) > 0
    for i in (0, 1, 2, 4, 5, 6, 7):
        assert_row_is_the_unary_answer(batch, i, device_call(testbed.device_address, request(pngs[i], top_k=2)))


def test_images_the_decode_threads_take_keep_their_place_among_those_decoded_in_place(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    large = [_large_png(image.png, seed) for seed, image in enumerate(images[:3])]
    assert min(len(png) for png in large) > SMALL_IMAGE_BYTES, "these must go to the decode threads"
    truncated = large[2][: SMALL_IMAGE_BYTES + 100]
    pngs = [large[0], images[5].png, truncated, images[6].png, large[1]]
    batch = batch_call(testbed.device_address, pb.InferBatchRequest(images=pngs, top_k=2))
    [error] = batch.errors
    assert (error.index, error.code) == (2, INVALID.value[0])
    assert_status(lambda: device_call(testbed.device_address, request(truncated)), INVALID, error.message)
    for i in (0, 1, 3, 4):
        assert_row_is_the_unary_answer(batch, i, device_call(testbed.device_address, request(pngs[i], top_k=2)))


def _large_png(png: bytes, seed: int) -> bytes:
    """``png`` scaled to 256x256 with a little noise: well over the size decoded in place."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L").resize((256, 256)), dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-8, 9, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_a_tensor_batch_is_split_into_its_samples(
    testbed: Testbed, images: list[LabelledImage], manifest: Manifest
) -> None:
    assert isinstance(manifest.input, ImageInput)
    tensors = np.concatenate([open_image(image.png).tensor(manifest.input) for image in images[:5]])
    assert tensors.shape[0] == 5
    batch = batch_call(testbed.device_address, pb.InferBatchRequest(tensor=tensor_message(tensors), top_k=1))
    assert not batch.errors
    for i, image in enumerate(images[:5]):
        assert_row_is_the_unary_answer(batch, i, device_call(testbed.device_address, request(image.png, top_k=1)))


def test_a_batch_of_texts_gets_the_unary_answers(testbed: Testbed) -> None:
    texts = [sample.text for sample in sentiment("imdb")[:12]]
    message = pb.InferBatchRequest(model="minilm-sentiment", texts=[t.encode() for t in texts], top_k=2)
    message.texts.append(b"\xff\xfe not UTF-8")
    batch = batch_call(testbed.device_address, message)
    [error] = batch.errors
    assert (error.index, error.code) == (12, INVALID.value[0]) and "UTF-8" in error.message
    assert list(batch.label_names) == ["negative", "positive"]
    for i, text in enumerate(texts):
        unary = device_call(testbed.device_address, request(text=text, model="minilm-sentiment", top_k=2))
        assert_row_is_the_unary_answer(batch, i, unary)


@pytest.mark.parametrize(
    ("message", "code", "phrases"),
    [
        (pb.InferBatchRequest(), INVALID, ("no samples", "exactly one of")),
        (pb.InferBatchRequest(images=[b"x"], texts=[b"y"]), INVALID, ("images and texts",)),
        (pb.InferBatchRequest(model="no-such-model", images=[b"x"]), grpc.StatusCode.NOT_FOUND, ("no-such-model",)),
        (pb.InferBatchRequest(images=[b"x"] * 257), grpc.StatusCode.RESOURCE_EXHAUSTED, ("257", "at most 256")),
        (pb.InferBatchRequest(images=[b"x"] * 2, request_ids=["a"]), INVALID, ("2 samples but 1 request_ids",)),
        (pb.InferBatchRequest(tensor=pb.Tensor(dtype=pb.DATA_TYPE_FP32)), INVALID, ("[N, ...]",)),
        (  # wrong for every sample: one error for the call, not one per sample
            pb.InferBatchRequest(
                tensor=pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[3, 1, 27, 28], raw=bytes(3 * 27 * 28 * 4))
            ),
            INVALID,
            ("the batch tensor must have shape [3, 1, 28, 28]", "got [3, 1, 27, 28]"),
        ),
        (
            pb.InferBatchRequest(tensor=pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[3, 1, 28, 28], raw=bytes(7))),
            INVALID,
            ("needs 9,408 raw bytes, got 7",),
        ),
        (
            pb.InferBatchRequest(tensor=pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[10**12, 1, 28, 28])),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ("1,000,000,000,000 samples", "at most 256"),
        ),
    ],
)
def test_a_batch_wrong_as_a_whole_fails_with_a_clear_status(
    testbed: Testbed, message: pb.InferBatchRequest, code: grpc.StatusCode, phrases: tuple[str, ...]
) -> None:
    assert_status(lambda: batch_call(testbed.device_address, message), code, *phrases)


def test_the_sdk_returns_typed_columns_and_each_failure(testbed: Testbed, images: list[LabelledImage]) -> None:
    pngs = [image.png for image in images[:6]]
    with Client(testbed.device_address) as client:
        result = client.infer_batch([*pngs, b"not an image"], top_k=2, threshold=0.5, request_ids="abcdefg")
        unary = client.infer(pngs[0], top_k=2, threshold=0.5)
    assert isinstance(result, BatchPrediction) and len(result) == 7 and result.request_ids[6] == "g"
    failure = result.failures[6]
    assert set(result.failures) == {6} and (failure.code, failure.request_id) == (INVALID, "g")
    assert all(isinstance(tier, Tier) for tier in result.exit_tiers[:6]) and result.exit_tiers[6] is None
    assert result.exit_tiers[0] is unary.exit_tier
    assert result.ranked(0) == [(p.label_name, pytest.approx(p.probability, rel=1e-5)) for p in unary.top_k]
    assert result.ranked(6) == [] and result.to_dict()["errors"][0]["index"] == 6
    row = result.prediction(0)
    assert (row.label_name, row.exit_block, row.top_k[0].label) == (unary.label_name, unary.exit_block, unary.label)
    assert row.latency_s == result.latencies_s[0] > 0 and row.hops[0].tier is Tier.DEVICE
    with pytest.raises(ValueError, match="exactly one of images, texts and tensor"):
        batch_request([b"x"], texts=["y"])


def test_the_async_sdk_sends_a_tensor_batch(testbed: Testbed, images: list[LabelledImage], manifest: Manifest) -> None:
    assert isinstance(manifest.input, ImageInput)
    tensors = np.concatenate([open_image(image.png).tensor(manifest.input) for image in images[:4]])

    async def go() -> tuple[BatchPrediction, list[int]]:
        async with AsyncClient(testbed.device_address) as client:
            batch = await client.infer_batch(tensor=tensors)
            singles = [await client.infer(image.png) for image in images[:4]]
        return batch, [single.label for single in singles]

    batch, labels = asyncio.run(go())
    assert not batch.failures and list(batch.labels) == labels


def test_http_batch_answers_as_grpc_with_each_sample_error_in_the_body(
    gateway_url: str, testbed: Testbed, images: list[LabelledImage]
) -> None:
    pngs = [image.png for image in images[:5]]
    pngs[2] = b"not an image"
    body = {"images_base64": [base64.b64encode(png).decode() for png in pngs], "threshold": 0.9, "top_k": 2}
    answer = httpx.post(f"{gateway_url}/v1/infer/batch", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    grpc_answer = batch_call(
        testbed.device_address, pb.InferBatchRequest(images=pngs, policy=pb.Plan(threshold=0.9), top_k=2)
    )
    assert data["labels"] == list(grpc_answer.labels) and data["exit_blocks"] == list(grpc_answer.exit_blocks)
    assert data["exit_tiers"][2] == "TIER_NAME_UNSPECIFIED" and set(data["exit_tiers"][:2]) <= {
        "DEVICE",
        "EDGE",
        "CLOUD",
    }
    [error] = data["errors"]
    assert (error["index"], error["code"], error["message"]) == (2, INVALID.value[0], grpc_answer.errors[0].message)
    texts = httpx.post(
        f"{gateway_url}/v1/infer/batch", json={"model": "minilm-sentiment", "texts": ["A wonderful film.", "Dull."]}
    )
    assert texts.status_code == 200 and len(texts.json()["labels"]) == 2 and not texts.json()["errors"]


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({}, 400, "no samples"),
        ({"images_base64": ["aGk="], "model": "no-such-model"}, 404, "no-such-model"),
        ({"images_base64": ["aGk="] * 257}, 413, "at most 256"),
        ({"images_base64": ["aGk=", "%%%"]}, 400, "images_base64[1] is not valid base64"),
        ({"images_base64": ["aGk="], "texts": ["hi"]}, 400, "not both"),
        ({"texts": "one string"}, 400, "texts"),
    ],
)
def test_http_batch_wrong_as_a_whole_is_a_problem(gateway_url: str, body: dict, status: int, phrase: str) -> None:
    answer = httpx.post(f"{gateway_url}/v1/infer/batch", json=body, timeout=30)
    assert answer.status_code == status and phrase in answer.json()["detail"], answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_http_batch_wants_json(gateway_url: str) -> None:
    answer = httpx.post(f"{gateway_url}/v1/infer/batch", content=b"x", headers={"Content-Type": "image/png"})
    assert answer.status_code == 415 and "application/json" in answer.json()["detail"]
