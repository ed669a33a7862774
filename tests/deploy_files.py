"""The deployment files, parsed for the static tests: docker-compose.yml, the Dockerfile, .dockerignore.

The helpers that read the files as Docker and Compose would; the fixtures
``compose``, ``services``, ``dockerfile_path`` and ``dockerfile`` are in conftest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from splitexit.cloud.settings import CloudSettings
from splitexit.device.settings import DeviceSettings
from splitexit.edge.settings import EdgeSettings
from splitexit.shared.settings import CONFIG_ENV

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

TIERS: dict[str, type[BaseSettings]] = {"device": DeviceSettings, "edge": EdgeSettings, "cloud": CloudSettings}
NEXT = {"device": "edge", "edge": "cloud"}  # who each tier offloads to and depends on


# -- parsing helpers -----------------------------------------------------------------------------


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def container_ports(service: dict) -> set[int]:
    """Container ports the service publishes, from short ("[ip:]host:container[/proto]") or long syntax."""
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            assert isinstance(entry, str), f"quote port mappings ({entry!r}): YAML 1.1 reads 1:2 as base 60"
            ports.add(int(entry.split("/")[0].rsplit(":", 1)[-1]))
    return ports


def tier_settings(tier: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    """The tier's settings as the container would see them: only ``env`` (image ENV + service env)."""
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("SPLITEXIT_")]:
            patch.delenv(key)
        patch.delenv(CONFIG_ENV, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        return TIERS[tier]()


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and parser directives dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # comment lines inside a continuation are ignored
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(name, instructions) of every build stage in order; a stage without ``AS name`` is named by its index."""
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            words = args.split()
            name = words[words.index("AS") + 1] if "AS" in words else str(len(found))
            found.append((name, []))
        elif found:
            found[-1][1].append((keyword, args))
    return found


def copies_from(instructions: list[tuple[str, str]], stage: str) -> list[str]:
    """Sources of the ``COPY --from=stage`` instructions among ``instructions``."""
    sources = []
    for keyword, args in instructions:
        words = args.split()
        if keyword == "COPY" and f"--from={stage}" in words:
            sources += [w for w in words if not w.startswith("--")][:-1]
    return sources


def model_stages(instructions: list[tuple[str, str]]) -> set[str]:
    """Stages the final image takes nothing but model packages from: they may use torch to build them."""
    final = stages(instructions)[-1][1]
    names = {name for name, _ in stages(instructions)[:-1]}
    return {
        name
        for name in names
        if (sources := copies_from(final, name)) and all(s.rstrip("/").endswith("/models") for s in sources)
    }


def serving_instructions(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of every stage whose files can reach the image beyond model packages."""
    skipped = model_stages(instructions)
    return [i for name, body in stages(instructions) if name not in skipped for i in body]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ENV of the final stage, in KEY=value form (the only form this Dockerfile uses)."""
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "FROM":
            env = {}
        elif keyword == "ENV":
            for pair in args.split():
                assert "=" in pair, f"use ENV KEY=value, not {args!r}"
                key, value = pair.split("=", 1)
                env[key] = value
    return env


def copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    """Sources of every COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for keyword, args in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"{keyword} {args}: needs sources and a destination"
        sources += paths[:-1]
    return sources


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching pattern wins,
    and a pattern that matches a parent folder matches everything below it."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
