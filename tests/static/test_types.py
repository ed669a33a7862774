"""The SDK's types say what it takes and returns: ``mypy --strict`` passes on the client, its results and the policies.

The repository's tier folders are installed as subpackages of ``splitexit``
(pyproject.toml maps ``shared/`` to ``splitexit.shared``, ...), which mypy cannot
follow through the editable install's import hook, so the check runs on a tree of
links laid out as the installed package is. The links' ``Protocol`` is checked
too: a ``TierLink`` and a ``LinkPool`` are both a ``Link``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_files import ROOT

SUBPACKAGES = {"shared": "shared", "device": "device", "edge": "edge", "cloud": "cloud"}  # folder -> splitexit.<name>
STRICT = ("client.py", "channel.py", "messages.py", "results.py", "policies")  # under splitexit/
CONFORMS = """
from splitexit.shared.link import Link, TierLink
from splitexit.shared.link_pool import LinkPool


def as_links(one: TierLink, pool: LinkPool) -> tuple[Link, Link]:
    return one, pool
"""


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``splitexit/`` as it is installed, made of links to the checkout's files."""
    root = tmp_path_factory.mktemp("layout")
    package = root / "splitexit"
    package.mkdir()
    for entry in (ROOT / "splitexit").iterdir():
        (package / entry.name).symlink_to(entry)
    for folder, name in SUBPACKAGES.items():
        (package / name).symlink_to(ROOT / folder)
    return root


def mypy(layout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mypy with the project's settings (pyproject.toml), on ``args``, in ``layout``."""
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--no-incremental",
        "--cache-dir",
        str(layout / ".mypy_cache"),
        *args,
    ]
    return subprocess.run(command, cwd=layout, capture_output=True, text=True, timeout=300)


def test_mypy_strict_passes_on_the_sdk_and_the_policies(installed_layout: Path) -> None:
    checked = mypy(installed_layout, "--strict", "--follow-imports=silent", *(f"splitexit/{path}" for path in STRICT))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_tier_link_and_a_pool_are_links(installed_layout: Path) -> None:
    (installed_layout / "conforms.py").write_text(CONFORMS)
    checked = mypy(installed_layout, "--strict", "--follow-imports=silent", "conforms.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr
