"""``pip install splitexit`` is the client alone: a fresh venv gets the SDK and the CLI without the serving stack.

The package is built as a wheel and installed, with its declared dependencies,
into a fresh virtual environment from a local folder of wheels only
(``--no-index``): the pinned client set of ``requirements/client.txt``, which
``make client-wheels`` downloads once into ``.cache/wheels``. If the package
declared onnxruntime, numpy, fastapi or torch, pip would fail to resolve it.
The installed SDK and CLI then classify a real image through the testbed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitexit.client import Client
from splitexit.testbed import Testbed
from tests.deploy_files import ROOT

WHEELHOUSE = ROOT / ".cache" / "wheels"
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "splitexit", "shared", "device", "edge", "cloud")
SERVING_ONLY = ("onnxruntime", "numpy", "fastapi", "torch", "PIL", "pydantic", "tokenizers", "uvicorn")


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``splitexit`` installed from a wheel, offline, with only the client's dependencies."""
    if not any(WHEELHOUSE.glob("grpcio-*.whl")):
        fetched = run(sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", WHEELHOUSE, "-r",
                      ROOT / "requirements" / "client.txt")  # fmt: skip
        assert fetched.returncode == 0, f"`make client-wheels` could not fetch the client's wheels:\n{fetched.stderr}"
    scratch = tmp_path_factory.mktemp("client-install")
    source = scratch / "source"  # what the Dockerfile copies (a build in the checkout leaves build/ behind)
    source.mkdir()
    for name in PACKAGE_SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", scratch / "dist", source)
    assert built.returncode == 0, built.stderr
    venv = scratch / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--find-links", WHEELHOUSE,
                    "--find-links", scratch / "dist", "splitexit")  # fmt: skip
    assert installed.returncode == 0, f"the client does not install from its own dependencies alone:\n{installed.stderr}"
    return venv


def test_the_client_install_pulls_no_serving_stack(client_venv: Path) -> None:
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    present = run(client_venv / "bin" / "python", "-c", probe, *SERVING_ONLY)
    assert present.returncode == 0 and present.stdout.split() == [], f"installed with the client: {present.stdout}"


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
    cli = run(client_venv / "bin" / "splitexit", "infer", shirt, "--json", "--threshold", "1", "--address",
              testbed.device_address, env=env, cwd="/")  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    with Client(testbed.device_address) as client:
        expected = client.infer(shirt.read_bytes(), threshold=1.0)
    for answer in (json.loads(sdk.stdout), json.loads(cli.stdout)):
        assert (answer["label_name"], answer["exit_tier"], answer["exit_block"]) == (expected.label_name, "CLOUD", 6)
        assert answer["logits"] == pytest.approx(list(expected.logits), abs=1e-5)
