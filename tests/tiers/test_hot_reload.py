"""Packages picked up while the tiers run (``model_poll_s``): three real tier processes and a temporary models_dir.

A package copied in is listed and answers on every tier; a broken replacement is
refused with a log line on each tier while the old package keeps answering; a good
replacement takes over without a failed request, each answer from one version or
the other.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # real tier processes

from torch import nn  # noqa: E402

from lab import fashion_mnist  # noqa: E402
from splitexit.client import Client  # noqa: E402
from splitexit.packaging import CheckData, EarlyExitNetwork, ImageInput, write_package  # noqa: E402
from splitexit.packaging.segments import Segment, SegmentedModel  # noqa: E402
from splitexit.results import ClientError, Prediction  # noqa: E402
from splitexit.shared.preprocess import decode_image, normalize_images  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402
from splitexit.testbed import Testbed, free_port  # noqa: E402
from tests.conftest import IMAGE_MODEL_DIR  # noqa: E402

NAME = "reload-net"
SPEC = ImageInput(channels=1, height=28, width=28, mean=0.286, std=0.353)
POLL_S = 0.2
WAIT_S = 30.0
REFUSAL = "refuses the package"


def package(out: Path, version: str, seed: int) -> SegmentedModel:
    """An untrained three-block CNN written by the public packager (a block per tier); the torch model it was made
    from."""
    torch.manual_seed(seed)
    blocks = [nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU()) for a, b in ((1, 4), (4, 8), (8, 8))]
    exits = [nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, 10)) for c, s in ((4, 14), (8, 7), (8, 4))]
    pixels, _ = fashion_mnist.load("test")
    x = torch.from_numpy(normalize_images(pixels[:64], SPEC))
    network = EarlyExitNetwork(
        name=NAME,
        blocks=blocks,
        exits=exits,
        example=x[:1],
        labels=list(fashion_mnist.LABELS),
        preprocessing=SPEC,
        data=CheckData(x),
        version=version,
    )
    write_package(network, out)
    return SegmentedModel(Segment(b, e) for b, e in zip(blocks, exits)).eval()


def expected_logits(model: SegmentedModel, png: bytes, exit_block: int) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(decode_image(png, SPEC)))[exit_block - 1][0].numpy()


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"not within {WAIT_S:.0f} s: {what}")


def served_by_every_tier(client: Client, png: bytes) -> bool:
    """True once an answer from the cloud's final exit comes back whole (every tier has the package)."""
    try:
        answer = client.infer(png, model=NAME, threshold=1.0, forbid_degraded=True)
    except ClientError:
        return False
    return answer.exit_tier is Tier.CLOUD


def matches(model: SegmentedModel, png: bytes, answer: Prediction) -> bool:
    return bool(np.abs(np.array(answer.logits) - expected_logits(model, png, answer.exit_block)).max() <= 1e-4)


@pytest.fixture()
def bed(tmp_path: Path) -> Iterator[Testbed]:
    models = tmp_path / "models"
    shutil.copytree(IMAGE_MODEL_DIR, models / IMAGE_MODEL_DIR.name)
    settings = {"models_dir": str(models), "model_poll_s": str(POLL_S)}
    ports = {tier: free_port() for tier in Tier}
    with Testbed(ports=ports, settings={tier: settings for tier in Tier}, log_dir=tmp_path / "logs") as running:
        yield running


def test_new_package_served_broken_replacement_refused_good_one_takes_over(bed: Testbed, tmp_path: Path) -> None:
    models, staging = tmp_path / "models", tmp_path / "staging"
    png = fashion_mnist.test_images(1, seed=3)[0].png
    v1 = package(staging / "v1", "1", seed=1)
    with Client(bed.device_address, timeout_s=10) as client:
        assert [info.name for info in client.list_models().models] == [IMAGE_MODEL_DIR.name]
        shutil.copytree(staging / "v1", models / NAME)
        wait_for("the new package answers from the cloud", lambda: served_by_every_tier(client, png))
        assert client.model(NAME).version == "1" and client.model(NAME).num_blocks == 3
        for threshold, tier in ((0.0, Tier.DEVICE), (1.0, Tier.CLOUD)):
            answer = client.infer(png, model=NAME, threshold=threshold)
            assert answer.exit_tier is tier and matches(v1, png, answer)

        package(staging / "v2", "2", seed=2)
        segment = staging / "v2" / "block2.onnx"
        segment.write_bytes(segment.read_bytes()[:-1] + b"\0")  # no longer what integrity.json lists
        (models / NAME).rename(staging / "v1-served")
        shutil.copytree(staging / "v2", models / NAME)
        logs = [bed.processes[tier].log_path for tier in Tier]
        wait_for("every tier logs the refusal", lambda: all(REFUSAL in log.read_text() for log in logs))
        assert "block2.onnx does not match integrity.json" in bed.processes[Tier.CLOUD].log_path.read_text()
        answer = client.infer(png, model=NAME, threshold=1.0)
        assert client.model(NAME).version == "1" and answer.exit_tier is Tier.CLOUD and matches(v1, png, answer)

        v3 = package(staging / "v3", "3", seed=3)
        answers, stop = request_while(client, png)
        shutil.rmtree(models / NAME)
        shutil.copytree(staging / "v3", models / NAME)
        wait_for("the device serves version 3", lambda: client.model(NAME).version == "3")
        wait_for(
            "version 3 answers from the cloud", lambda: matches(v3, png, client.infer(png, model=NAME, threshold=1.0))
        )
        stop()
    assert answers and all(isinstance(a, Prediction) for a in answers), [
        a for a in answers if not isinstance(a, Prediction)
    ]
    versions = {"1" if matches(v1, png, a) else "3" if matches(v3, png, a) else "neither" for a in answers}
    assert "neither" not in versions and "1" in versions


def request_while(client: Client, png: bytes) -> tuple[list[Prediction | ClientError], Callable[[], None]]:
    """Ask for device-exit answers back to back on a thread; the answers so far, and how to stop."""
    answers: list[Prediction | ClientError] = []
    done = threading.Event()

    def loop() -> None:
        with Client(client.address, timeout_s=10) as own:
            while not done.is_set():
                try:
                    answers.append(own.infer(png, model=NAME, threshold=0.0))
                except ClientError as exc:
                    answers.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join()

    return answers, stop
