"""The SDK (``splitexit.Client`` / ``AsyncClient``) against the real testbed, and its channel behaviour.

Answers and discovery come from the shared three-tier testbed. What the device
cannot be made to do on demand (fail with UNAVAILABLE a set number of times,
speak TLS, check a token) is shown with a small real gRPC server in this file
that serves ``Device.Infer`` and records what reached it.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

import splitexit
from splitexit.client import TLS, AsyncClient, Client, request
from splitexit.results import ClientError, Prediction
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port


def test_sync_client_answers_with_typed_results(testbed: Testbed, images: list[LabelledImage]) -> None:
    with splitexit.Client(testbed.device_address) as client:
        answer = client.infer(images[0].png, top_k=3, threshold=1.0)
    assert isinstance(answer, Prediction) and answer.exit_tier is Tier.CLOUD and answer.exit_block == 6
    assert len(answer.top_k) == 3 and answer.top_k[0].label == answer.label
    assert [hop.tier for hop in answer.hops] == [Tier.DEVICE, Tier.EDGE, Tier.CLOUD]
    assert answer.to_dict()["exit_tier"] == "CLOUD" and answer.latency_s > 0


def test_policy_and_top_k_reach_the_device(testbed: Testbed, images: list[LabelledImage]) -> None:
    with Client(testbed.device_address) as client:
        early = client.infer(images[1].png, threshold=0.0, top_k=1)
        named = client.infer(images[1].png, policy="splitee")
        with pytest.raises(ClientError) as caught:
            client.infer(images[1].png, policy="no-such-policy")
    assert (early.exit_tier, early.exit_block, len(early.top_k)) == (Tier.DEVICE, 1, 1)
    assert named.policy == "splitee"
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "no-such-policy" in caught.value.message


def test_discovery_describes_the_contract_and_a_tensor_built_from_it_gets_the_image_answer(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    from PIL import Image

    with Client(testbed.device_address) as client:
        listing = client.list_models()
        default, models = listing.default_model, listing.models
        info = client.model("fmnist-cnn")
        with pytest.raises(ClientError) as unknown:
            client.model("nope")
        prep = info.preprocessing
        pixels = np.asarray(Image.open(io.BytesIO(images[2].png)).convert("L"), dtype=np.float32) / 255
        tensor = ((pixels - prep["mean"]) / prep["std"]).astype(np.float32)[None, None]
        from_tensor = client.infer(tensor=tensor, threshold=1.0)
        from_image = client.infer(images[2].png, threshold=1.0)
        unnormalised = client.infer(tensor=pixels[None, None], threshold=1.0)
    assert default == "fmnist-cnn" and {m.name for m in models} == {
        "fmnist-cnn",
        "minilm-sentiment",
        "minilm-bbc-topic",
    }
    assert info.input_kind == "image" and prep["mean"] == pytest.approx(0.286) and prep["std"] == pytest.approx(0.353)
    assert list(info.message.tensor.shape) == [1, 1, 28, 28] and info.message.tensor.dtype == pb.DATA_TYPE_FP32
    assert info.labels[0] == "T-shirt/top" and info.num_blocks == 6 and info.hosted[0].tier is Tier.DEVICE
    assert info.hosted[0].first_block == 1 and info.image is not None and info.image.channels == 1 and info.text is None
    assert "splitee" in info.policies and info.default_policy in info.policies
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    np.testing.assert_allclose(from_tensor.logits, from_image.logits, atol=1e-4)
    assert not np.allclose(unnormalised.logits, from_image.logits, atol=1e-2)  # why the contract is published
    text = next(m for m in models if m.name == "minilm-sentiment")
    assert text.input_kind == "text" and text.preprocessing["max_tokens"] == 128
    assert list(text.message.tensor.shape) == [1, -1] and text.message.tensor.dtype == pb.DATA_TYPE_INT64


def test_infer_many_keeps_at_most_max_in_flight_and_answers_everything(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    sent: list[int] = []

    def lazily() -> Iterator[pb.InferRequest]:
        for i, image in enumerate(images[:40]):
            sent.append(i)
            yield request(image.png, request_id=f"s{i}")

    with Client(testbed.device_address) as client:
        answers = client.infer_many(lazily(), max_in_flight=3)
        first = next(answers)
        assert len(sent) <= 4, "it read more requests than max_in_flight allows before the first answer"
        rest = list(answers)
    ids = {a.request_id for a in [first, *rest] if isinstance(a, Prediction)}
    assert ids == {f"s{i}" for i in range(40)}


def test_text_that_is_not_utf8_fails_in_the_client_with_a_clear_error() -> None:
    with pytest.raises(UnicodeEncodeError):
        request(text="\udcff")
    with pytest.raises(ValueError, match="exactly one of image, text and tensor"):
        request(b"png", text="both")


# ------------------------------------------------------------ the channel: retries, TLS, token


@dataclass
class Recorder:
    """A real gRPC server standing in for a device: fails ``fail_first`` calls with ``code``, then answers."""

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    fail_first: int = 0
    _: KW_ONLY
    calls: int = 0
    tokens: list[str] = field(default_factory=list)

    async def infer(self, request: pb.InferRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        self.calls += 1
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))
        if self.calls <= self.fail_first:
            await context.abort(self.code, f"failure {self.calls}")
        return pb.InferResponse(label=3, label_name="Dress", exit_tier=pb.TIER_NAME_EDGE, exit_block=3)


async def serve_recorder(recorder: Recorder, credentials: grpc.ServerCredentials | None, calls: object) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        recorder.infer, pb.InferRequest.FromString, pb.InferResponse.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("splitexit.v1.Device", {"Infer": handler}),))
    port = free_port()
    if credentials is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    try:
        return await calls(f"127.0.0.1:{port}")  # type: ignore[operator]
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("code", "fail_first", "retries", "calls", "answered"),
    [
        (grpc.StatusCode.UNAVAILABLE, 2, 4, 3, True),
        (grpc.StatusCode.UNAVAILABLE, 9, 2, 3, False),
        (grpc.StatusCode.UNAVAILABLE, 1, 0, 1, False),
        (grpc.StatusCode.INVALID_ARGUMENT, 1, 4, 1, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 4, 1, False),
        (grpc.StatusCode.INTERNAL, 1, 4, 1, False),
    ],
    ids=[
        "unavailable-retried",
        "retries-bounded",
        "retries-off",
        "invalid-not-retried",
        "exhausted-not-retried",
        "internal-not-retried",
    ],
)
def test_only_unavailable_is_retried(
    code: grpc.StatusCode, fail_first: int, retries: int, calls: int, answered: bool
) -> None:
    recorder = Recorder(code, fail_first)

    async def call(address: str) -> Prediction | ClientError:
        async with AsyncClient(address, retries=retries, timeout_s=10) as client:
            try:
                return await client.infer(b"png")
            except ClientError as exc:
                return exc

    result = asyncio.run(serve_recorder(recorder, None, call))
    assert recorder.calls == calls
    assert isinstance(result, Prediction) == answered
    if not answered:
        assert isinstance(result, ClientError) and result.code == code and result.message.startswith("failure")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_a_client_certificate_and_a_token(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=cert.read_bytes(), require_client_auth=True
    )
    recorder = Recorder()

    async def calls(address: str) -> tuple[Prediction, ClientError]:
        async with AsyncClient(address, tls=TLS.from_files(cert, cert, key), token="s3cret") as client:
            answer = await client.infer(b"png")
        async with AsyncClient(address, tls=TLS.from_files(cert), timeout_s=3, retries=0) as no_client_cert:
            try:
                await no_client_cert.infer(b"png")
            except ClientError as exc:
                return answer, exc
        raise AssertionError("a client without a certificate was let in")

    answer, refused = asyncio.run(serve_recorder(recorder, server_credentials, calls))
    assert answer.label_name == "Dress" and answer.exit_tier is Tier.EDGE
    assert recorder.tokens == ["Bearer s3cret"]
    assert refused.code == grpc.StatusCode.UNAVAILABLE
