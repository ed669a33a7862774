"""TLS on every port, mutual TLS between tiers, tier identities, bearer tokens: real handshakes on loopback."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.certs import credential_in, issue, write_dev_pki
from splitexit.client import TLS, AsyncClient, ClientError, is_serving
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import PkiFiles, Testbed, free_port

TOKEN = "s3cret-token-for-tests"
REFLECTION_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    write_dev_pki(folder)
    return folder


@pytest.fixture(scope="module")
def secure_bed(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three tiers speaking mutual TLS; the device wants a token, also on its HTTPS gateway."""
    ports = {tier: free_port() for tier in Tier}
    settings = {Tier.DEVICE: {"auth_token": TOKEN}, Tier.CLOUD: {"reflection": "false"}}
    with Testbed(ports, settings, http_port=free_port(), log_dir=tmp_path_factory.mktemp("logs"), tls_dir=pki) as bed:
        yield bed


def tls_as(pki: Path, name: str) -> TLS:
    return PkiFiles.of(pki, name).client_tls()


def infer(address: str, tls: TLS | bool, token: str | None, image: bytes, threshold: float = 1.0) -> pb.InferResponse:
    async def go() -> pb.InferResponse:
        async with AsyncClient(address, tls=tls, token=token, retries=0, timeout_s=10) as client:
            return (await client.infer(image, threshold=threshold)).message

    return asyncio.run(go())


def test_mutual_tls_all_the_way_to_the_cloud(secure_bed: Testbed, pki: Path, images: list[LabelledImage]) -> None:
    answer = infer(secure_bed.device_address, tls_as(pki, "client"), TOKEN, images[0].png)
    assert answer.exit_tier == pb.TIER_NAME_CLOUD and [hop.tier for hop in answer.hops] == [
        pb.TIER_NAME_DEVICE,
        pb.TIER_NAME_EDGE,
        pb.TIER_NAME_CLOUD,
    ]
    assert not answer.degraded


def test_a_plaintext_client_gets_no_answer_from_a_tls_tier(secure_bed: Testbed, images: list[LabelledImage]) -> None:
    with pytest.raises(ClientError) as refused:
        infer(secure_bed.device_address, False, TOKEN, images[0].png)
    assert refused.value.code is grpc.StatusCode.UNAVAILABLE


def test_certificates_of_another_ca_and_expired_ones_are_refused(
    secure_bed: Testbed, pki: Path, tmp_path: Path
) -> None:
    stranger = write_dev_pki(tmp_path / "other-ca")
    other = TLS.from_files(pki / "ca.pem", stranger.identities["device"].cert, stranger.identities["device"].key)
    ca = credential_in(pki, "ca")
    expired = issue(ca, "device", tmp_path, valid_from=datetime.now(UTC) - timedelta(days=10), days=1, stem="expired")
    old = TLS.from_files(pki / "ca.pem", expired.cert, expired.key)
    edge = secure_bed.processes[Tier.EDGE].address
    for tls in (other, old):
        assert not asyncio.run(_health(edge, tls)), "the edge completed a handshake it must refuse"
    assert asyncio.run(_health(edge, tls_as(pki, "device")))


async def _health(address: str, tls: TLS) -> bool:
    return await is_serving(address, timeout_s=3.0, tls=tls)


@pytest.mark.parametrize(
    ("tier", "caller", "allowed"),
    [
        (Tier.EDGE, "client", False),
        (Tier.EDGE, "cloud", False),
        (Tier.EDGE, "device", True),
        (Tier.CLOUD, "client", False),
        (Tier.CLOUD, "edge", True),
        (Tier.CLOUD, "device", True),
    ],
)
def test_only_the_tiers_before_may_resume_samples(
    secure_bed: Testbed, pki: Path, tier: Tier, caller: str, allowed: bool
) -> None:
    files = PkiFiles.of(pki, caller)
    credentials = grpc.ssl_channel_credentials(files.ca.read_bytes(), files.key.read_bytes(), files.cert.read_bytes())

    async def go() -> grpc.StatusCode:
        async with grpc.aio.secure_channel(secure_bed.processes[tier].address, credentials) as channel:
            try:
                await pb_grpc.TierStub(channel).Continue(pb.ContinueRequest(model="nope", next_block=5), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    code = asyncio.run(go())
    assert (code is not grpc.StatusCode.PERMISSION_DENIED) == allowed, code  # allowed: the request itself is refused
    if allowed:
        assert code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("token", "works"), [(None, False), ("wrong", False), (TOKEN, True)])
def test_the_device_wants_its_token_over_grpc_and_https(
    secure_bed: Testbed, pki: Path, images: list[LabelledImage], token: str | None, works: bool
) -> None:
    tls = tls_as(pki, "client")
    if works:
        assert infer(secure_bed.device_address, tls, token, images[1].png, 0.0).exit_tier == pb.TIER_NAME_DEVICE
    else:
        with pytest.raises(ClientError) as refused:
            infer(secure_bed.device_address, tls, token, images[1].png, 0.0)
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED and "token" in str(refused.value)
    headers = {"Content-Type": "image/png", **({"Authorization": f"Bearer {token}"} if token else {})}
    reply = httpx.post(
        f"https://127.0.0.1:{secure_bed.http_port}/v1/infer",
        content=images[1].png,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(pki / "ca.pem")),
        timeout=10,
    )
    assert reply.status_code == (200 if works else 401), reply.text
    if not works:
        assert reply.headers["WWW-Authenticate"] == "Bearer" and TOKEN not in reply.text


def test_health_needs_no_token_and_reflection_can_be_off(secure_bed: Testbed, pki: Path) -> None:
    files = PkiFiles.of(pki, "client")
    credentials = grpc.ssl_channel_credentials(files.ca.read_bytes(), files.key.read_bytes(), files.cert.read_bytes())

    async def reflection_status(address: str) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(address, credentials) as channel:
            call = channel.stream_stream(REFLECTION_METHOD)(timeout=5)
            await call.done_writing()
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    async def device_health() -> int:
        async with grpc.aio.secure_channel(secure_bed.device_address, credentials) as device:
            return (await health_pb2_grpc.HealthStub(device).Check(health_pb2.HealthCheckRequest(), timeout=5)).status

    assert asyncio.run(device_health()) == health_pb2.HealthCheckResponse.SERVING  # no token sent
    assert asyncio.run(reflection_status(secure_bed.device_address)) is grpc.StatusCode.OK  # on by default
    assert asyncio.run(reflection_status(secure_bed.processes[Tier.CLOUD].address)) is grpc.StatusCode.UNIMPLEMENTED


def test_a_tier_without_certificates_or_plaintext_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPLITEXIT_")}
    env["SPLITEXIT_CLOUD_PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "splitexit", "serve", "cloud"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "SPLITEXIT_CLOUD_TLS_CERT_FILE" in done.stderr and "SPLITEXIT_CLOUD_PLAINTEXT=true" in done.stderr
    assert "Traceback" not in done.stderr
