"""The device's HTTP gateway against a real device process on the shared testbed's edge and cloud."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from splitexit.client import AsyncClient, Client, request
from splitexit.device.http_models import Answer, ModelList, Problem
from splitexit.results import ClientError, message_json
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import start_tier
from tests.conftest import free_port

MAX_IMAGE_BYTES = 64 << 10  # small, so that an oversized body fits in the socket buffers


@dataclass(frozen=True)
class Gateway:
    http: httpx.Client
    grpc_address: str


@pytest.fixture(scope="module")
def gateway(edge_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A device of its own, with its HTTP port, in front of the testbed's edge."""
    http_port = free_port()
    settings = {"http_port": str(http_port), "max_image_bytes": str(MAX_IMAGE_BYTES)}
    device = start_tier(Tier.DEVICE, free_port(), edge_address, settings, tmp_path_factory.mktemp("http-device"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
            yield Gateway(http, device.address)
    finally:
        device.stop()


def grpc_infer(address: str, message: pb.InferRequest) -> pb.InferResponse:
    async def go() -> pb.InferResponse:
        async with AsyncClient(address) as client:
            return (await client.infer_request(message)).message

    return asyncio.run(go())


def post_png(gateway: Gateway, png: bytes, **params: object) -> httpx.Response:
    return gateway.http.post("/v1/infer", content=png, params=params, headers={"Content-Type": "image/png"})


def post_json(gateway: Gateway, body: object) -> httpx.Response:
    return gateway.http.post("/v1/infer", json=body)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_raw_bytes_and_base64_json_give_the_grpc_answer(gateway: Gateway, images: list[LabelledImage]) -> None:
    for image in images[:3]:
        expected = grpc_infer(gateway.grpc_address, request(image.png, threshold=0.5))
        raw = post_png(gateway, image.png, threshold=0.5, top_k=3)
        by_json = post_json(gateway, {"image_base64": b64(image.png), "threshold": 0.5, "top_k": 3})
        for answer in (raw, by_json):
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["label"] == expected.label and body["label_name"] == expected.label_name
            assert body["exit_tier"] == Tier.from_proto(expected.exit_tier).name  # the short name: EDGE
            assert body["exit_block"] == expected.exit_block
            assert body["logits"] == pytest.approx(list(expected.logits), abs=1e-5)
            assert body["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
            assert [c["label"] for c in body["top_k"]][:1] == [expected.label] and len(body["top_k"]) == 3
            assert body["model"] == "fmnist-cnn" and body["request_id"]
            assert [hop["tier"] for hop in body["hops"]][0] == "DEVICE"
            Answer.model_validate(body)  # what OpenAPI documents is what is sent


def test_threshold_picks_the_exit(gateway: Gateway, images: list[LabelledImage]) -> None:
    blocks = gateway.http.get("/v1/models").json()["models"][0]["num_blocks"]
    early = post_png(gateway, images[0].png, threshold=0).json()
    assert (early["exit_tier"], early["exit_block"]) == ("DEVICE", 1)
    assert [hop["tier"] for hop in early["hops"]] == ["DEVICE"] and early["hops"][0]["bytes_sent"] == 0

    late = post_json(gateway, {"image_base64": b64(images[0].png), "threshold": 1}).json()
    assert (late["exit_tier"], late["exit_block"]) == ("CLOUD", blocks)
    assert [hop["tier"] for hop in late["hops"]] == ["DEVICE", "EDGE", "CLOUD"]
    assert isinstance(late["hops"][0]["bytes_sent"], int) and late["hops"][0]["bytes_sent"] > 0


def test_a_request_can_name_a_learning_policy(gateway: Gateway, images: list[LabelledImage]) -> None:
    """``policy=splitee`` puts the sample under SplitEE: its first plan is split 1 (UCB plays every arm once)."""
    raw = post_png(gateway, images[0].png, policy="splitee").json()
    by_json = post_json(gateway, {"image_base64": b64(images[1].png), "policy": "splitee"}).json()
    exits = [(answer["exit_tier"], answer["exit_block"]) for answer in (raw, by_json)]
    # split 1: exit 1 if C_1 > α, else straight to the final exit; split 2 likewise at exit 2
    assert exits[0] in {("DEVICE", 1), ("CLOUD", 6)} and exits[1] in {("DEVICE", 2), ("CLOUD", 6)}, exits


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


OVERSIZED = b"\x89PNG" + b"\0" * MAX_IMAGE_BYTES
# a DDS header whose pixel format Pillow does not implement (it raised NotImplementedError: INTERNAL)
BROKEN_DDS = (
    b"DDS "
    + struct.pack("<7I", 124, 0x1007, 28, 28, 28, 0, 0)
    + bytes(44)
    + struct.pack("<8I", 32, *[0] * 7)
    + bytes(804)
)
BAD_REQUESTS = {
    # id: (send, status, code, phrases)
    "not-an-image": (
        lambda g: post_png(g, b"GIF89a? definitely not pixels"),
        400,
        "INVALID_ARGUMENT",
        ["not an image"],
    ),
    "empty": (lambda g: post_png(g, b""), 400, "INVALID_ARGUMENT", ["empty"]),
    "unknown-model": (lambda g: post_png(g, b"x", model="no-such-model"), 404, "NOT_FOUND", ["no-such-model"]),
    "bad-threshold": (lambda g: post_png(g, g.png, threshold=1.5), 400, "INVALID_ARGUMENT", ["[0, 1]"]),
    "unknown-policy": (
        lambda g: post_png(g, g.png, policy="no-such-policy"),
        400,
        "INVALID_ARGUMENT",
        ["no policy named"],
    ),
    "bad-top-k": (lambda g: post_png(g, g.png, top_k=-1), 400, "INVALID_ARGUMENT", ["top_k"]),
    "oversized": (lambda g: post_png(g, OVERSIZED), 413, "RESOURCE_EXHAUSTED", [f"at most {MAX_IMAGE_BYTES:,} bytes"]),
    "oversized-chunked": (
        lambda g: g.http.post("/v1/infer", content=chunks(OVERSIZED), headers={"Content-Type": "image/png"}),
        413,
        "RESOURCE_EXHAUSTED",
        ["at most"],
    ),
    "oversized-json": (
        lambda g: post_json(g, {"image_base64": b64(OVERSIZED)}),
        413,
        "RESOURCE_EXHAUSTED",
        ["image_base64", "at most"],
    ),
    "bad-base64": (lambda g: post_json(g, {"image_base64": "not base64!"}), 400, "INVALID_ARGUMENT", ["base64"]),
    "bad-json": (
        lambda g: g.http.post("/v1/infer", content=b'{"image_base64": ', headers={"Content-Type": "application/json"}),
        400,
        "INVALID_ARGUMENT",
        ["JSON"],
    ),
    "json-without-image": (lambda g: post_json(g, {"model": "fmnist-cnn"}), 400, "INVALID_ARGUMENT", ["image_base64"]),
    "json-unknown-model": (
        lambda g: post_json(g, {"image_base64": b64(g.png), "model": "nope"}),
        404,
        "NOT_FOUND",
        ["nope"],
    ),
    "form-content-type": (
        lambda g: g.http.post(
            "/v1/infer", content=g.png, headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
        415,
        "INVALID_ARGUMENT",
        ["Content-Type"],
    ),
    "no-route": (lambda g: g.http.get("/v2/nothing"), 404, "NOT_FOUND", []),
    "no-docs": (lambda g: g.http.get("/docs"), 404, "NOT_FOUND", []),  # FastAPI's load a CDN: blank offline
    "no-redoc": (lambda g: g.http.get("/redoc"), 404, "NOT_FOUND", []),
    "unreadable-dds": (
        lambda g: post_png(g, BROKEN_DDS),
        400,
        "INVALID_ARGUMENT",
        ["not a readable image: Unknown pixel"],
    ),
    "unknown-model-metadata": (lambda g: g.http.get("/v1/models/nope"), 404, "NOT_FOUND", ["'nope'"]),
}


@dataclass(frozen=True)
class WithImage:
    """The gateway plus a good image, for the requests above that need one."""

    http: httpx.Client
    png: bytes


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_get_a_clear_error_then_the_next_is_served(
    gateway: Gateway, images: list[LabelledImage], case: tuple
) -> None:
    send, status, code, phrases = case
    answer = send(WithImage(gateway.http, images[0].png))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = Problem.model_validate(answer.json())
    assert (problem.status, problem.code, problem.title) == (status, code, code)
    for phrase in phrases:
        assert phrase in problem.detail, problem.detail
    assert "Traceback" not in answer.text and "BytesIO" not in answer.text
    assert post_png(gateway, images[0].png).status_code == 200


def test_healthz_and_models(gateway: Gateway) -> None:
    health = gateway.http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "SERVING", "next_tier": "SERVING"}
    listing = gateway.http.get("/v1/models").json()
    ModelList.model_validate(listing)
    assert listing["default_model"] == "fmnist-cnn"
    (model,) = [m for m in listing["models"] if m["name"] == "fmnist-cnn"]
    assert len(model["labels"]) == 10 and model["num_blocks"] >= 2
    device = next(h for h in model["hosted"] if h["tier"] == "DEVICE")
    assert device["first_block"] == 1 and 1 <= device["last_block"] < model["num_blocks"]
    with Client(gateway.grpc_address) as client:
        assert gateway.http.get("/v1/models/fmnist-cnn").json() == message_json(client.model("fmnist-cnn").message)


def test_an_image_over_the_limit_is_resource_exhausted_on_both_surfaces(gateway: Gateway) -> None:
    over = post_png(gateway, OVERSIZED)
    with Client(gateway.grpc_address) as client, pytest.raises(ClientError) as caught:
        client.infer(OVERSIZED)
    assert over.status_code == 413 and over.json()["code"] == caught.value.code.name == "RESOURCE_EXHAUSTED"


def test_openapi_documents_the_answer_and_the_problem_and_no_422(gateway: Gateway) -> None:
    spec = gateway.http.get("/openapi.json").json()
    infer = spec["paths"]["/v1/infer"]["post"]["responses"]
    assert infer["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Answer"}
    assert set(infer) == {"200", "400", "401", "404", "413", "415", "429", "500", "503", "504"}
    assert infer["400"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "422" not in json.dumps(spec["paths"]) and "HTTPValidationError" not in spec["components"]["schemas"]


def test_the_gateway_stops_with_the_device(edge_address: str, tmp_path: Path) -> None:
    http_port = free_port()
    device = start_tier(Tier.DEVICE, free_port(), edge_address, {"http_port": str(http_port)}, tmp_path)
    try:
        assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10).status_code == 200
    finally:
        device.stop()
    assert device.process.returncode == 0, device.log_path.read_text()[-2000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=2)


def test_text_as_json_or_plain_text_gives_the_grpc_answer(gateway: Gateway) -> None:

    text = "The food was cold and the service painfully slow."
    expected = grpc_infer(gateway.grpc_address, request(text=text, model="minilm-sentiment", threshold=0.9))
    by_json = post_json(gateway, {"model": "minilm-sentiment", "text": text, "threshold": 0.9})
    raw = gateway.http.post(
        "/v1/infer",
        content=text.encode(),
        params={"model": "minilm-sentiment", "threshold": 0.9},
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    for answer in (by_json, raw):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["label_name"], body["exit_block"]) == (expected.label_name, expected.exit_block)
        assert body["logits"] == pytest.approx(list(expected.logits), abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"content": b"caf\xe9", "headers": {"Content-Type": "text/plain"}}, "not valid UTF-8"),
        (
            {
                "content": b'{"model": "minilm-sentiment", "text": "\\ud800"}',
                "headers": {"Content-Type": "application/json"},
            },
            "bad JSON body",
        ),
        ({"json": {"model": "minilm-sentiment", "text": "ok", "image_base64": "AAAA"}}, "not both"),
        ({"json": {"model": "minilm-sentiment", "text": "word " * 300}}, "at most 128"),
    ],
    ids=["plain-bad-utf8", "json-lone-surrogate", "text-and-image", "too-long"],
)
def test_bad_text_is_a_400_with_the_message(gateway: Gateway, kwargs: dict[str, object], phrase: str) -> None:
    params = {"model": "minilm-sentiment"} if kwargs.get("headers", {}).get("Content-Type") == "text/plain" else None
    answer = gateway.http.post("/v1/infer", params=params, **kwargs)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "INVALID_ARGUMENT" and phrase in answer.json()["detail"]


def test_http_answers_as_fast_as_grpc_on_a_kept_alive_connection(gateway: Gateway, images: list[LabelledImage]) -> None:
    """Without TCP_NODELAY on the gateway's connections, Nagle's algorithm and delayed ACKs add ~40 ms to
    every answer: sequential HTTP was ~20x slower than gRPC for the same request. A ratio, in one run."""

    def median_seconds(send: Callable[[LabelledImage], object]) -> float:
        seconds = []
        for image in images[:30]:
            started = time.perf_counter()
            send(image)
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds)

    with grpc.insecure_channel(gateway.grpc_address) as channel:
        stub = pb_grpc.DeviceStub(channel)
        http = lambda image: gateway.http.post(  # noqa: E731
            "/v1/infer", content=image.png, headers={"Content-Type": "image/png"}
        ).raise_for_status()
        both = [http, lambda image: stub.Infer(request(image.png), timeout=10)]
        for send in both:
            send(images[0])  # connect first: the comparison is of answers, not handshakes
        http_s, grpc_s = (median_seconds(send) for send in both)
    assert http_s < 3 * grpc_s + 0.005, (http_s, grpc_s)
