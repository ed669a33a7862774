"""Clients this project did not write get the SDK's answers; a fuzzer of the OpenAPI spec finds no 5xx.

* Node: ``@grpc/grpc-js`` + ``@grpc/proto-loader`` reading ``protos/splitexit.proto``
  (``tests/interop/client.js``; ``make interop-deps`` runs ``npm ci``).
* Python without stubs: ``tests/interop/reflection_client.py`` learns the API by
  server reflection, under ``grpc.reflection.v1`` and ``v1alpha``.
* schemathesis (PyPI) against the gateway's ``/openapi.json``, bounded, seeded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitexit.client import Client
from splitexit.results import Prediction
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed
from tests.deploy_files import ROOT

INTEROP = ROOT / "tests" / "interop"
IMAGES = [ROOT / "samples" / name for name in ("shirt.png", "bag.png", "sneaker.png", "coat.png")]
SENTENCE = "The plot was thin and the acting wooden."


def lines(run: subprocess.CompletedProcess[str]) -> list[dict]:
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


@pytest.fixture(scope="module")
def sdk_answers(testbed: Testbed) -> list[Prediction]:
    with Client(testbed.device_address) as client:
        answers = [client.infer(image.read_bytes(), top_k=3) for image in IMAGES]
        return [*answers, client.infer(text=SENTENCE, model="minilm-sentiment", top_k=3)]


def wire_name(tier: Tier) -> str:
    """A tier as gRPC's JSON tools spell it: the proto's value name (``TIER_NAME_EDGE``)."""
    return pb.TierName.Name(tier.proto)


def assert_same_answer(theirs: dict, ours: Prediction) -> None:
    assert (theirs["label_name"], theirs["exit_tier"], theirs["exit_block"]) == (
        ours.label_name,
        wire_name(ours.exit_tier),
        ours.exit_block,
    )
    assert theirs["logits"] == pytest.approx(list(ours.logits), abs=1e-5)
    assert [c["label_name"] for c in theirs["top_k"]] == [c.label_name for c in ours.top_k]
    assert [h["tier"] for h in theirs["hops"]] == [wire_name(h.tier) for h in ours.hops]


def test_node_grpc_js_client_gets_the_sdks_answers(testbed: Testbed, sdk_answers: list[Prediction]) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (Debian: apt-get install nodejs npm)"
    assert (INTEROP / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "run `make interop-deps` (npm ci in tests/interop)"
    )
    run = subprocess.run(
        [
            node,
            str(INTEROP / "client.js"),
            testbed.device_address,
            "fmnist-cnn",
            *map(str, IMAGES),
            "--text",
            "minilm-sentiment",
            SENTENCE,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    models, metadata, *answers, error = lines(run)
    assert models["default_model"] == "fmnist-cnn" and "minilm-sentiment" in models["names"]
    with Client(testbed.device_address) as client:
        ours = client.model("fmnist-cnn")
    assert metadata["labels"] == list(ours.labels) and metadata["input_kind"] == "image"
    assert metadata["image"]["mean"] == pytest.approx(0.286) and metadata["tensor"]["shape"] == [1, 1, 28, 28]
    assert [h["tier"] for h in metadata["hosted"]] == ["TIER_NAME_DEVICE", "TIER_NAME_EDGE", "TIER_NAME_CLOUD"]
    assert len(answers) == len(sdk_answers)
    for theirs, expected in zip(answers, sdk_answers, strict=True):
        assert_same_answer(theirs, expected)
    assert error["code"] == "INVALID_ARGUMENT" and "not an image" in error["details"]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_a_reflection_only_client_gets_the_sdks_answers(
    testbed: Testbed, sdk_answers: list[Prediction], version: str
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            str(INTEROP / "reflection_client.py"),
            testbed.device_address,
            version,
            *map(str, IMAGES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    models, *answers = lines(run)
    assert {m["name"] for m in models["models"]} == {"fmnist-cnn", "minilm-sentiment", "minilm-bbc-topic"}
    for theirs, expected in zip(answers, sdk_answers[: len(IMAGES)], strict=True):
        assert_same_answer(theirs, expected)
    assert sdk_answers[0].exit_tier in set(Tier)


def test_schemathesis_finds_no_server_error_and_answers_match_the_spec(gateway_url: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{gateway_url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,  # it keeps a .schemathesis/ cache in its cwd
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
