"""The proto is the one schema: the SDK's results, the HTTP models and the OpenAPI document follow it.

Every field of every answer message must be in each derived view; and a field
added to ``InferResponse`` in a copy of the proto, generated into a scratch
folder with nothing else edited, must reach a real device's HTTP answer, its
OpenAPI document and the SDK's result (``tests/with_stubs.py`` runs the checkout
on those stubs). The gateway validates what it returns: a model that lags the
messages makes the answer a 500 problem naming the field, not a silent pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from protos.generate import PROTO, generate
from splitexit import results
from splitexit.client import is_serving
from splitexit.device.http_models import (
    ANSWERS,
    AS_IS,
    BATCH_AS_IS,
    BATCH_NOT_OVER_HTTP,
    BATCH_OTHER_FORM,
    HTTP_NAMES,
    NOT_OVER_HTTP,
    OTHER_FORM,
    InferBatchJSON,
    InferJSON,
    InferQuery,
)
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_views as views
from splitexit.shared.schema import answer_messages
from splitexit.testbed import free_port
from tests.deploy_files import ROOT

ADDED = "added_for_the_test"
SHIRT = ROOT / "samples" / "shirt.png"


def proto_fields(message_name: str) -> list[str]:
    return [field.name for field in pb.DESCRIPTOR.message_types_by_name[message_name].fields]


def view_fields(view: type) -> list[str]:
    return [field.name for field in dataclasses.fields(view)]


@pytest.mark.parametrize("message", [m.name for m in answer_messages(pb.DESCRIPTOR)])
def test_every_field_of_an_answer_is_in_the_sdk_view_and_the_http_model(message: str) -> None:
    assert view_fields(getattr(views, message)) == proto_fields(message), f"run `make proto`: {message} lags"
    assert list(ANSWERS[message].model_fields) == proto_fields(message)


def test_the_sdk_results_are_the_views() -> None:
    """Prediction and ModelInfo add only the wire message they were read from."""
    assert view_fields(results.Prediction) == [*proto_fields("InferResponse"), "message"]
    assert view_fields(results.ModelInfo) == [*proto_fields("ModelMetadataResponse"), "message"]
    assert view_fields(results.BatchPrediction) == [*proto_fields("InferBatchResponse"), "message"]
    assert view_fields(results.ModelList) == proto_fields("ListModelsResponse")
    assert view_fields(results.PolicyState) == proto_fields("PolicyState")


def test_every_request_field_is_taken_over_http_or_said_why_not() -> None:
    fields = set(proto_fields("InferRequest"))
    assert fields == set(AS_IS) | OTHER_FORM.keys() | NOT_OVER_HTTP.keys()
    assert set(AS_IS) <= set(InferJSON.model_fields) and {"threshold", "policy"} <= set(InferQuery.model_fields)
    assert InferJSON.model_fields["top_k"].metadata, "a uint32's range comes from the proto"


def test_every_batch_request_field_is_taken_over_http_or_said_why_not() -> None:
    fields = set(proto_fields("InferBatchRequest"))
    assert fields == set(BATCH_AS_IS) | BATCH_OTHER_FORM.keys() | BATCH_NOT_OVER_HTTP.keys()
    assert set(BATCH_AS_IS) <= set(InferBatchJSON.model_fields) and {"threshold", "policy"} <= set(
        InferBatchJSON.model_fields
    )


def test_the_openapi_document_has_every_field(gateway_url: str) -> None:
    spec = httpx.get(f"{gateway_url}/openapi.json", timeout=10).json()
    schemas = spec["components"]["schemas"]
    for message in answer_messages(pb.DESCRIPTOR):
        name = HTTP_NAMES.get(message.name, message.name)
        if name in schemas:  # the messages the gateway serves (not PolicyState, StreamResponse)
            assert list(schemas[name]["properties"]) == proto_fields(message.name), name
    assert {"Answer", "ModelList", "ModelMetadata", "Hop", "StageTimings", "Degradation"} <= set(schemas)
    documented = spec["paths"]["/v1/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(AS_IS) <= set(documented["properties"])
    batch = spec["paths"]["/v1/infer/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(BATCH_AS_IS) <= set(batch["properties"]) and "BatchAnswer" in schemas
    assert schemas["Answer"]["properties"]["exit_block"]["description"].startswith("the exit taken")  # the proto's


@pytest.fixture(scope="module")
def extended_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stubs of a copy of the proto whose ``InferResponse`` has one field more; nothing else is edited."""
    scratch = tmp_path_factory.mktemp("extended-proto")
    text = PROTO.read_text()
    last_field = "  Degradation degradation = 15;\n"
    assert text.count(last_field) == 1, "the test looks for InferResponse's last field"
    proto = scratch / "splitexit.proto"
    proto.write_text(text.replace(last_field, f"{last_field}  uint32 {ADDED} = 99;  // a field no code knows\n"))
    generate(scratch / "stubs", proto)
    return scratch / "stubs"


def on_stubs(stubs: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "with_stubs.py"), str(stubs), *args]


@pytest.fixture(scope="module")
def device_on(extended_stubs: Path, edge_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start a device (gRPC, HTTP) on the extended stubs: ``device_on(*extra_args)`` -> (grpc, http) addresses."""
    started: list[subprocess.Popen[bytes]] = []
    folder = tmp_path_factory.mktemp("extended-device")
    shutil.copytree(ROOT / "models" / "fmnist-cnn", folder / "models" / "fmnist-cnn")

    def start(*extra: str) -> tuple[str, str]:
        port, http_port = free_port(), free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("SPLITEXIT_DEVICE_")}
        env.update(
            {
                "SPLITEXIT_MODELS_DIR": str(folder / "models"),
                "SPLITEXIT_DEVICE_PORT": str(port),
                "SPLITEXIT_DEVICE_HTTP_PORT": str(http_port),
                "SPLITEXIT_DEVICE_METRICS_PORT": "0",
                "SPLITEXIT_DEVICE_PLAINTEXT": "true",
                "SPLITEXIT_DEVICE_DRAIN_GRACE_S": "0",
                "SPLITEXIT_DEVICE_NEXT_TIER": edge_address,
                "SPLITEXIT_DEVICE_STATE_DIR": str(folder / f"state-{port}"),
            }
        )
        log = folder / f"device-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                on_stubs(extended_stubs, *extra, "-m", "splitexit", "serve", "device"),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        deadline = time.monotonic() + 60
        while not asyncio.run(is_serving(f"127.0.0.1:{port}")):
            assert process.poll() is None, f"the device on the extended stubs exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the device on the extended stubs did not start"
            time.sleep(0.2)
        return f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}"

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def test_a_field_added_to_the_proto_reaches_the_http_answer_the_openapi_document_and_the_sdk(
    device_on: object, extended_stubs: Path
) -> None:
    grpc_address, http = device_on()  # type: ignore[operator]
    answer = httpx.post(
        f"{http}/v1/infer?threshold=1", content=SHIRT.read_bytes(), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()[ADDED] == 0 and answer.json()["exit_tier"] == "CLOUD"
    documented = httpx.get(f"{http}/openapi.json").json()["components"]["schemas"]["Answer"]["properties"]
    assert documented[ADDED]["description"] == "a field no code knows"
    sdk = (
        "import dataclasses, json, sys\n"
        "from splitexit import Client\n"
        "from splitexit.results import Prediction\n"
        "from splitexit.shared.proto import splitexit_pb2 as pb\n"
        "with Client(sys.argv[1]) as client:\n"
        "    answer = client.infer(open(sys.argv[2], 'rb').read(), threshold=1.0)\n"
        f"built = Prediction.from_message(pb.InferResponse(exit_tier=pb.TIER_NAME_EDGE, {ADDED}=7))\n"
        f"print(json.dumps([answer.{ADDED}, built.{ADDED}, answer.exit_tier.name]))\n"
    )
    run = subprocess.run(
        on_stubs(extended_stubs, "-c", sdk, grpc_address, str(SHIRT)), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [0, 7, "CLOUD"]


def test_the_gateway_validates_its_answer_against_its_schema(device_on: object) -> None:
    _, http = device_on("--stale-http", ADDED)  # type: ignore[operator]
    answer = httpx.post(
        f"{http}/v1/infer?threshold=0", content=SHIRT.read_bytes(), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "INTERNAL" and ADDED in answer.json()["detail"], answer.json()
    assert httpx.get(f"{http}/healthz").status_code == 200, "the device keeps serving"
