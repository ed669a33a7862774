"""``pip install splitexit`` is the client alone; ``pip install 'splitexit[serve]'`` a tier that finds its models.

The package is built as a wheel and installed, with its declared dependencies,
into fresh virtual environments from a local folder of wheels only
(``--no-index``): the client set of ``requirements/client.txt`` and the serving
set of ``requirements/serve.txt``, which ``make client-wheels`` downloads once
into ``.cache/wheels``. If the client declared onnxruntime, numpy, fastapi or
torch, pip would fail to resolve it. The installed SDK and CLI then classify a
real image through the testbed, and an installed device, run outside the
checkout, serves the models folder the documented search order names.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splitexit.client import Client, is_serving
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port
from tests.deploy_files import ROOT

WHEELHOUSE = ROOT / ".cache" / "wheels"
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "splitexit", "shared", "device", "edge", "cloud")
SERVING_ONLY = ("onnxruntime", "numpy", "fastapi", "torch", "PIL", "pydantic", "tokenizers", "uvicorn")
REQUIREMENTS = {"grpcio-*.whl": "client.txt", "onnxruntime-*.whl": "serve.txt"}  # a wheel each set has, and the set


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the project's wheel, built from what the Dockerfile copies, and the wheelhouse filled."""
    for wheel, requirements in REQUIREMENTS.items():
        if not any(WHEELHOUSE.glob(wheel)):
            fetched = run(
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "-d",
                WHEELHOUSE,
                "-r",
                ROOT / "requirements" / requirements,
            )
            assert fetched.returncode == 0, f"`make client-wheels` could not fetch {requirements}:\n{fetched.stderr}"
    scratch = tmp_path_factory.mktemp("package")
    source = scratch / "source"  # what the Dockerfile copies (a build in the checkout leaves build/ behind)
    source.mkdir()
    for name in PACKAGE_SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", scratch / "dist", source
    )
    assert built.returncode == 0, built.stderr
    return scratch / "dist"


def fresh_venv(venv: Path, dist: Path, requirement: str) -> Path:
    """``venv`` created anew with ``requirement`` installed offline from the wheelhouse and ``dist``."""
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        WHEELHOUSE,
        "--find-links",
        dist,
        requirement,
    )
    assert installed.returncode == 0, (
        f"{requirement} does not install from its own dependencies alone:\n{installed.stderr}"
    )
    return venv


@pytest.fixture(scope="module")
def client_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``splitexit`` installed from a wheel, offline, with only the client's dependencies."""
    return fresh_venv(tmp_path_factory.mktemp("client-install") / "venv", dist, "splitexit")


def test_the_client_install_pulls_no_serving_stack(client_venv: Path) -> None:
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    present = run(client_venv / "bin" / "python", "-c", probe, *SERVING_ONLY)
    assert present.returncode == 0 and present.stdout.split() == [], f"installed with the client: {present.stdout}"
    typed = run(
        client_venv / "bin" / "python",
        "-c",
        "import importlib.resources as r; print(r.files('splitexit') / 'py.typed')",
    )
    assert typed.returncode == 0 and Path(typed.stdout.strip()).is_file(), "the SDK ships py.typed (PEP 561)"


def test_the_installed_sdk_and_cli_answer_as_the_dev_install_does(client_venv: Path, testbed: Testbed) -> None:
    shirt = ROOT / "samples" / "shirt.png"
    snippet = (
        "import sys, json, splitexit\n"
        "with splitexit.Client(sys.argv[1]) as client:\n"
        "    answer = client.infer(open(sys.argv[2], 'rb').read(), threshold=1.0)\n"
        "print(json.dumps(answer.to_dict()))\n"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    sdk = run(client_venv / "bin" / "python", "-c", snippet, testbed.device_address, shirt, env=env, cwd="/")
    assert sdk.returncode == 0, sdk.stderr
    cli = run(
        client_venv / "bin" / "splitexit",
        "infer",
        shirt,
        "--json",
        "--threshold",
        "1",
        "--address",
        testbed.device_address,
        env=env,
        cwd="/",
    )
    assert cli.returncode == 0, cli.stderr
    with Client(testbed.device_address) as client:
        expected = client.infer(shirt.read_bytes(), threshold=1.0)
    for answer in (json.loads(sdk.stdout), json.loads(cli.stdout)):
        assert (answer["label_name"], answer["exit_tier"], answer["exit_block"]) == (expected.label_name, "CLOUD", 6)
        assert answer["logits"] == pytest.approx(list(expected.logits), abs=1e-5)


@pytest.fixture(scope="module")
def installed_device(dist: Path, testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A device from ``pip install 'splitexit[serve]'``, run in a folder whose ``models/`` holds one package.

    Nothing names the folder: no ``SPLITEXIT_*MODELS_DIR``, no config file, no checkout on the path.
    """
    work = tmp_path_factory.mktemp("serve-install")
    venv = fresh_venv(work / "venv", dist, "splitexit[serve]")
    shutil.copytree(ROOT / "models" / "fmnist-cnn", work / "site" / "models" / "fmnist-cnn")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPLITEXIT_")}
    env.update(
        {
            "PYTHONPATH": "",
            "SPLITEXIT_DEVICE_PORT": str(port),
            "SPLITEXIT_DEVICE_HTTP_PORT": "0",
            "SPLITEXIT_DEVICE_METRICS_PORT": "0",
            "SPLITEXIT_DEVICE_PLAINTEXT": "true",
            "SPLITEXIT_DEVICE_DRAIN_GRACE_S": "0",
            "SPLITEXIT_DEVICE_NEXT_TIER": testbed.processes[Tier.EDGE].address,
        }
    )
    log = (work / "device.log").open("wb")
    device = subprocess.Popen(
        [venv / "bin" / "splitexit", "serve", "device"],
        cwd=work / "site",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not asyncio.run(is_serving(address)):
            assert device.poll() is None, f"the installed device exited:\n{(work / 'device.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the installed device did not report SERVING within 60 s"
            time.sleep(0.2)
        yield address
    finally:
        device.terminate()
        device.wait(timeout=30)
        log.close()


def test_an_installed_device_serves_the_models_folder_of_its_working_directory(
    installed_device: str, testbed: Testbed
) -> None:
    shirt = (ROOT / "samples" / "shirt.png").read_bytes()
    with Client(installed_device) as client:
        listing = client.list_models()
        answer = client.infer(shirt, threshold=1.0)
    assert [m.name for m in listing.models] == ["fmnist-cnn"], "not the repository's models/"
    with Client(testbed.device_address) as client:
        expected = client.infer(shirt, threshold=1.0)
    assert (answer.label_name, answer.exit_tier, answer.exit_block) == (expected.label_name, expected.exit_tier, 6)
    assert list(answer.logits) == pytest.approx(list(expected.logits), abs=1e-5)
