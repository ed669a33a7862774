"""The engine set-up that only a new machine runs, run on every machine: Compose v2 installed from nothing.

``tests/docker_engine.py`` installs Debian trixie's ``docker-compose`` as a CLI plugin where ``docker compose``
is missing. Here it installs into a plugin folder of the test's own and the real ``docker`` CLI runs it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.docker_engine import EngineUnavailable, install_compose_plugin, install_engine_packages, run


def test_compose_v2_installs_as_a_cli_plugin_from_nothing(tmp_path: Path) -> None:
    try:
        install_engine_packages()
    except EngineUnavailable as exc:
        pytest.skip(f"NO DOCKER CLI, the Compose install is NOT tested: {exc}")
    plugin = install_compose_plugin(tmp_path / "cli-plugins")
    assert plugin == tmp_path / "cli-plugins" / "docker-compose" and os.access(plugin, os.X_OK)
    alone = run([str(plugin), "version"], 30).stdout
    # DOCKER_CONFIG names where the CLI looks for plugins first; ours is the only Compose there
    through_docker = run(["docker", "compose", "version"], 30, env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    for printed in (alone, through_docker.stdout):
        assert re.match(r"Docker Compose version v?2\.\d+", printed), printed
