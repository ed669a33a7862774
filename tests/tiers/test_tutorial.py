"""docs/models.md's "Package your own model", run as written: package, serve on three tiers, query.

The commands come from the page's code blocks, so the page cannot drift from what
works; only the output folder (a temporary one) and the ports (free ones) change.
Then every tier's answers are checked against the torch network at the same exit.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # real tier processes

from lab import fashion_mnist  # noqa: E402
from splitexit.client import Client  # noqa: E402
from splitexit.packaging import EarlyExitNetwork  # noqa: E402
from splitexit.results import ClientError  # noqa: E402
from splitexit.shared.preprocess import decode_image  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402
from splitexit.testbed import LOOPBACK, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "models.md"
SECTION = "## Package your own model"
TUTORIAL_DIR = ".cache/tutorial"
DOC_ADDRESS = "127.0.0.1:50051"
PACKAGE_LIMIT_S = 60.0
START_TIMEOUT_S = 90.0


def code_blocks(language: str) -> list[str]:
    """The page's tutorial section's fenced blocks in ``language``."""
    text = PAGE.read_text()
    section = text[text.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def command(containing: str, tmp: Path) -> list[str]:
    """The page's one shell command containing ``containing``, writing into ``tmp``, run by this interpreter."""
    (line,) = [line for block in code_blocks("sh") for line in block.splitlines() if containing in line]
    argv = shlex.split(line.replace(TUTORIAL_DIR, str(tmp)))
    assert argv[0].endswith("splitexit"), argv
    return [sys.executable, "-m", "splitexit", *argv[1:]]


def three_free_ports() -> int:
    """A port P with P, P+1 and P+2 free on loopback (the testbed's device, edge and cloud)."""
    while True:
        port = free_port()
        if port + 2 < 65536 and all(_free(port + i) for i in (1, 2)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The page's package command run, then its testbed serving the result: the device's address, the folder."""
    tmp = tmp_path_factory.mktemp("tutorial")
    started = time.perf_counter()
    packaged = subprocess.run(command(" package ", tmp), cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    print(f"packaging the tutorial's network (training included) took {seconds:.1f} s: {packaged.stdout.strip()}")
    assert packaged.returncode == 0, packaged.stderr[-3000:]
    assert seconds < PACKAGE_LIMIT_S, f"packaging took {seconds:.1f} s, the target is under {PACKAGE_LIMIT_S:.0f} s"
    port = three_free_ports()
    argv = [*command(" testbed ", tmp), "--port", str(port), "--log-dir", str(tmp / "logs")]
    with (tmp / "testbed.out").open("w") as out:
        testbed = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    address = f"{LOOPBACK}:{port}"
    try:
        wait_listed(testbed, address, tmp / "testbed.out")
        yield address, tmp
    finally:
        testbed.send_signal(signal.SIGTERM)
        try:
            testbed.wait(timeout=30)
        except subprocess.TimeoutExpired:
            testbed.kill()
            testbed.wait()


def wait_listed(testbed: subprocess.Popen[bytes], address: str, output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert testbed.poll() is None, f"the testbed exited:\n{output.read_text()[-3000:]}"
        try:
            with Client(address, timeout_s=2) as client:
                if "tiny-fmnist" in [info.name for info in client.list_models().models]:
                    return
        except ClientError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the testbed did not serve tiny-fmnist within {START_TIMEOUT_S:.0f} s")


def test_the_page_s_sdk_snippet_runs_against_the_served_package(tutorial: tuple[str, Path]) -> None:
    address, _ = tutorial
    (snippet,) = [block for block in code_blocks("python") if "from splitexit import Client" in block]
    assert DOC_ADDRESS in snippet
    ran = subprocess.run(
        [sys.executable, "-c", snippet.replace(DOC_ADDRESS, address)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("tiny-fmnist 1 3 blocks")
    assert lines[1].startswith("0.0 ") and lines[1].endswith(" DEVICE 1")
    assert lines[2].startswith("1.0 ") and lines[2].endswith(" CLOUD 3")


def test_the_page_s_excerpt_is_the_tutorial_file_s_own_code() -> None:
    (excerpt,) = [block for block in code_blocks("python") if block.startswith("return EarlyExitNetwork(")]
    source = [line.strip() for line in (ROOT / "docs" / "tutorial" / "tiny_net.py").read_text().splitlines()]
    lines = [line.strip() for line in excerpt.splitlines()]
    starts = [i for i, line in enumerate(source) if line == lines[0]]
    assert any(source[i : i + len(lines)] == lines for i in starts), "docs/models.md's excerpt differs from tiny_net.py"


def tutorial_network() -> EarlyExitNetwork:
    """``docs/tutorial/tiny_net.py``'s network, trained again (seeded, one thread: the same weights)."""
    spec = importlib.util.spec_from_file_location("tiny_net", ROOT / "docs" / "tutorial" / "tiny_net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.describe()


def test_every_tier_answers_as_torch_does_at_the_same_exit(tutorial: tuple[str, Path]) -> None:
    address, _ = tutorial
    network = tutorial_network()
    images = fashion_mnist.test_images(60, seed=5)
    x = torch.from_numpy(np.concatenate([decode_image(image.png, network.preprocessing) for image in images]))
    exits = []
    with torch.no_grad():
        for block, head in zip(network.blocks, network.exits):
            x = block(x)
            exits.append(head(x).numpy())
    logits = np.stack(exits)  # [exit, sample, class]
    confidence = torch.softmax(torch.from_numpy(logits), dim=-1).amax(-1).numpy()
    seen = set()
    with Client(address, timeout_s=10) as client:
        for i, image in enumerate(images):
            thresholds = {Tier.DEVICE: 0.0, Tier.CLOUD: 1.0}
            if confidence[0, i] < confidence[1, i]:  # a threshold between them: the edge's exit answers
                thresholds[Tier.EDGE] = float(confidence[0, i] + confidence[1, i]) / 2
            for tier, threshold in thresholds.items():
                answer = client.infer(image.png, model="tiny-fmnist", threshold=threshold)
                assert answer.exit_tier is tier and not answer.degraded
                np.testing.assert_allclose(answer.logits, logits[answer.exit_block - 1, i], atol=1e-4, rtol=0)
                seen.add(tier)
    assert seen == set(Tier)
