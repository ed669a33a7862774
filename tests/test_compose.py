"""docker-compose.yml, Dockerfile and .dockerignore against the code, statically (no Docker engine).

Each tier service must run a real CLI command, set only settings its tier has
(and valid values), reach the next tier by a service name and the port that
service listens on, publish the ports it serves, check its own health, and
start after the tier it offloads to is healthy. The image must build from
files that exist and reach the build context, run as a non-root user, and
never install torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from cloud.settings import CloudSettings
from device.settings import DeviceSettings
from edge.settings import EdgeSettings
from shared.settings import CONFIG_ENV

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

TIERS: dict[str, type[BaseSettings]] = {"device": DeviceSettings, "edge": EdgeSettings, "cloud": CloudSettings}
NEXT = {"device": "edge", "edge": "cloud"}  # who each tier offloads to and depends on


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    services = compose["services"]
    assert set(TIERS) <= set(services), f"docker-compose.yml lacks tier services {set(TIERS) - set(services)}"
    return services


@pytest.fixture(scope="module")
def dockerfile_path(services: dict[str, dict]) -> Path:
    builds = {(s["build"]["context"], s["build"].get("dockerfile", "Dockerfile")) for s in map(services.get, TIERS)}
    assert len(builds) == 1, f"the tiers must share one build: {builds}"
    context, dockerfile = builds.pop()
    assert context == ".", "the build context is the repository root"
    path = ROOT / context / dockerfile
    assert path.is_file(), f"{path} does not exist"
    return path


@pytest.fixture(scope="module")
def dockerfile(dockerfile_path: Path) -> list[tuple[str, str]]:
    return dockerfile_instructions(dockerfile_path.read_text())


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
        name for name in names
        if (sources := copies_from(final, name)) and all(s.rstrip("/").endswith("/models") for s in sources)
    }  # fmt: skip


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


# -- compose: commands, settings, wiring ---------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_command_is_a_valid_serve_command(tier: str, services: dict[str, dict]) -> None:
    command = services[tier]["command"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts, f"{command[0]!r} is not a console script of the project"
    assert command[1:] == ["serve", tier], f"the {tier} service must serve the {tier} tier, not {command}"
    check = subprocess.run(
        [sys.executable, "-m", "splitexit", *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, f"splitexit refuses {command}: {check.stderr}"


def test_every_tier_runs_the_same_image(services: dict[str, dict]) -> None:
    images = {services[tier].get("image") for tier in TIERS}
    assert len(images) == 1 and None not in images, f"one image name for all tiers, not {images}"
    assert all(services[tier].get("restart") == "unless-stopped" for tier in TIERS)


@pytest.mark.parametrize("tier", TIERS)
def test_env_names_settings_of_the_tier_and_validates(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_cls = TIERS[tier]
    prefix = f"SPLITEXIT_{tier.upper()}_"
    image_env = {k: v for k, v in dockerfile_env(dockerfile).items() if k.startswith("SPLITEXIT_")}
    service_env = {k: v for k, v in environment(services[tier]).items() if k.startswith("SPLITEXIT_")}
    for key in service_env:
        assert key.startswith(prefix), f"{tier} service sets {key}, which its tier does not read"
    for key in [*image_env, *service_env]:
        if key.startswith(prefix):
            field = key.removeprefix(prefix).lower()
            assert field in settings_cls.model_fields, f"{key}: {settings_cls.__name__} has no field {field!r}"
    settings = tier_settings(tier, {**image_env, **service_env}, monkeypatch)  # raises if a value is invalid
    assert settings.host == "0.0.0.0", f"the {tier} tier must listen on all interfaces in its container"


def test_image_points_every_tier_at_the_shipped_models(
    dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed into site-packages, the default models_dir (next to the sources) is not in the image."""
    copied = {}
    exporters = model_stages(dockerfile)
    for keyword, args in stages(dockerfile)[-1][1]:
        words = [w for w in args.split() if not w.startswith("--")]
        origin = next((w.removeprefix("--from=") for w in args.split() if w.startswith("--from=")), None)
        if keyword == "COPY" and (origin is None or origin in exporters):
            for source in words[:-1]:
                copied[Path(source.strip("/")).name] = words[-1].rstrip("/")
    assert "models" in copied, "the image must ship models/"
    image_env = dockerfile_env(dockerfile)
    for tier in TIERS:
        settings = tier_settings(tier, image_env, monkeypatch)
        assert str(settings.models_dir) == copied["models"], f"{tier}: models_dir {settings.models_dir}"


@pytest.mark.parametrize("tier", NEXT)
def test_next_tier_names_a_service_and_its_port(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    image_env = dockerfile_env(dockerfile)
    settings = tier_settings(tier, {**image_env, **environment(services[tier])}, monkeypatch)
    host, _, port = settings.next_tier.rpartition(":")
    assert host == NEXT[tier], f"{tier} must offload to the {NEXT[tier]} service, not {host!r}"
    assert host in services
    target = tier_settings(host, {**image_env, **environment(services[host])}, monkeypatch)
    assert int(port) == target.port, f"{tier} offloads to {host}:{port} but {host} listens on {target.port}"


def test_cloud_has_no_next_tier(services: dict[str, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    assert tier_settings("cloud", environment(services["cloud"]), monkeypatch).next_tier is None


@pytest.mark.parametrize("tier", TIERS)
def test_published_ports_are_the_ports_the_tier_serves(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tier_settings(tier, {**dockerfile_env(dockerfile), **environment(services[tier])}, monkeypatch)
    served = {value for name, value in settings.model_dump().items() if name.endswith("port") and value}
    assert container_ports(services[tier]) == served, f"{tier} serves {served}"
    exposed = {int(p.split("/")[0]) for k, args in dockerfile if k == "EXPOSE" for p in args.split()}
    assert served <= exposed, f"the Dockerfile does not EXPOSE {served - exposed}"


@pytest.mark.parametrize("tier", TIERS)
def test_healthcheck_asks_the_tier_itself(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    check = services[tier].get("healthcheck")
    assert check and not check.get("disable"), f"{tier} has no healthcheck"
    settings = tier_settings(tier, {**dockerfile_env(dockerfile), **environment(services[tier])}, monkeypatch)
    assert check["test"] == ["CMD", "splitexit", "health", f"127.0.0.1:{settings.port}"]
    parsed = subprocess.run(
        [sys.executable, "-m", "splitexit", *check["test"][2:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr


@pytest.mark.parametrize("tier", NEXT)
def test_tiers_start_after_the_tier_they_offload_to_is_healthy(tier: str, services: dict[str, dict]) -> None:
    depends_on = services[tier].get("depends_on")
    assert isinstance(depends_on, dict), f"{tier}: depends_on needs the long form, with a condition"
    assert depends_on == {NEXT[tier]: {"condition": "service_healthy"}}


def test_cloud_depends_on_nothing(services: dict[str, dict]) -> None:
    assert not services["cloud"].get("depends_on")


# -- Dockerfile and build context ----------------------------------------------------------------


def test_dockerfile_copies_only_files_that_exist_and_reach_the_context(dockerfile: list[tuple[str, str]]) -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources(dockerfile)
    assert sources, "the Dockerfile copies nothing from the repository"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source}: .dockerignore leaves it out"
    for source in copy_sources(serving_instructions(dockerfile)):
        assert not any(source.strip("/").startswith(p) for p in ("training", "tests", "bench", ".cache")), source


def test_dockerfile_is_multi_stage_on_python_311_slim(dockerfile: list[tuple[str, str]]) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in dockerfile if k == "ARG" and "=" in a}
    bases = [re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), a.split()[0]) for k, a in dockerfile if k == "FROM"]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", base), f"base {base!r}: python:3.11 slim, by tag"
    assert any(k == "COPY" and "--from=" in a for k, a in dockerfile), "the runtime stage copies the builder's venv"
    assert dockerfile_env(dockerfile).get("PYTHONUNBUFFERED") == "1"


def test_image_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args.split(":")[0] for keyword, args in dockerfile if keyword == "USER"]
    assert users, "the Dockerfile sets no USER"
    assert users[-1] not in ("root", "0"), f"the image runs as {users[-1]}"


def test_image_installs_serving_requirements_only(dockerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(args for keyword, args in serving_instructions(dockerfile) if keyword == "RUN")
    assert "-r requirements/serve.txt" in runs
    installs = runs.replace('python -c "import torch"', "")  # the builder checks that torch is absent
    assert "dev.txt" not in installs and "torch" not in installs
    assert "--no-deps ." in runs, "the project is installed without pulling unpinned dependencies"
    serve = (ROOT / "requirements" / "serve.txt").read_text().splitlines()
    requirements = [line.split("#")[0].strip() for line in serve if line.split("#")[0].strip()]
    assert not [r for r in requirements if r.startswith("-")], "serve.txt must not include other files"
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    assert not names & {"torch", "torchvision", "onnx", "grpcio-tools", "pytest"}, names


def test_text_slices_are_built_in_a_stage_that_hands_over_only_models(dockerfile: list[tuple[str, str]]) -> None:
    """The text models' ONNX slices are not in git: a stage with torch builds them, checksum-verified,
    and the image takes only models/ from it."""
    builders = {
        name for name, body in stages(dockerfile)
        if any(k == "RUN" and "training.text_export" in args for k, args in body)
    }  # fmt: skip
    assert builders, "no stage runs `python -m training.text_export`"
    assert builders <= model_stages(dockerfile), f"the image must take only models/ from {builders}"
    body = dict(stages(dockerfile))[builders.pop()]
    runs = " ".join(args for keyword, args in body if keyword == "RUN")
    assert "-r requirements/dev.txt" in runs and "--no-deps -r requirements/text.txt" in runs
    for module in ("text_export", "text_model", "export", "cnn", "data"):
        assert not dockerignore_excludes(f"training/{module}.py", dockerignore_patterns()), module


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".cache/fashion-mnist/x.gz", "tests/test_compose.py", "training/train.py",
     "bench/serving.py", ".git/HEAD", "models/fmnist-cnn/weights.pt", "shared/__pycache__/x.pyc"],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(path, dockerignore_patterns()), f"{path} would reach the build context"


def test_dockerignore_names_the_big_folders() -> None:
    patterns = set(dockerignore_patterns())
    assert {".venv", ".cache", "tests", "training"} <= patterns


def test_dockerignore_matcher() -> None:
    """The helper above follows Docker's rules on the cases this file relies on."""
    patterns = ["*", "!shared/", "**/__pycache__", "!README.md", "**/*.pt"]
    assert dockerignore_excludes("tests/x.py", patterns)
    assert not dockerignore_excludes("shared/proto/x.py", patterns)
    assert dockerignore_excludes("shared/proto/__pycache__/x.pyc", patterns)
    assert dockerignore_excludes("__pycache__/x.pyc", patterns)
    assert not dockerignore_excludes("README.md", patterns)
    assert dockerignore_excludes("shared/w.pt", patterns)


# -- observability, traffic and link emulation ---------------------------------------------------

PROMETHEUS_CONFIG_IN_CONTAINER = "/etc/prometheus/prometheus.yml"
GRAFANA_PROVISIONING_IN_CONTAINER = "/etc/grafana/provisioning"
NETEM_SCRIPT = ROOT / "deploy" / "netem" / "netem.sh"


def bind_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (short syntax, ``./host:/container[:ro]``)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = ROOT / source
    return mounts


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with NAME unset: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def tier_env(tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    return {**dockerfile_env(dockerfile), **environment(services[tier])}


def test_every_bind_mount_exists(services: dict[str, dict]) -> None:
    mounted = {name: bind_mounts(service) for name, service in services.items()}
    assert mounted["prometheus"] and mounted["grafana"]
    for name, mounts in mounted.items():
        for target, source in mounts.items():
            assert source.exists(), f"{name} mounts {source} (at {target}), which is not in the repository"


def test_prometheus_scrapes_every_tier_on_its_metrics_port(
    services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = bind_mounts(services["prometheus"])[PROMETHEUS_CONFIG_IN_CONTAINER]
    assert f"--config.file={PROMETHEUS_CONFIG_IN_CONTAINER}" in services["prometheus"]["command"]
    config = yaml.safe_load(config_file.read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    expected = set()
    for tier in TIERS:
        settings = tier_settings(tier, tier_env(tier, services, dockerfile), monkeypatch)
        assert settings.metrics_port, f"the {tier} serves no metrics in compose"
        assert settings.metrics_port in container_ports(services[tier])
        expected.add(f"{tier}:{settings.metrics_port}")
    assert targets == expected


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards(services: dict[str, dict]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts[GRAFANA_PROVISIONING_IN_CONTAINER]
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    prometheus_port = container_ports(services["prometheus"]).pop()
    assert [(s["type"], s["url"]) for s in datasources] == [("prometheus", f"http://prometheus:{prometheus_port}")]
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers, "no dashboard provider"
    for provider in providers:
        folder = mounts.get(provider["options"]["path"])
        assert folder is not None, f"grafana mounts nothing at the provider's path {provider['options']['path']}"
        dashboards = sorted(folder.glob("*.json"))
        assert dashboards, f"{folder} holds no dashboard"
        for path in dashboards:
            uids = {p["datasource"]["uid"] for p in json.loads(path.read_text())["panels"] if "datasource" in p}
            assert uids == {datasources[0]["uid"]}, f"{path.name} refers to data sources {uids}"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, name = home.rpartition("/")
    assert (mounts[folder] / name).is_file(), home


def test_third_party_images_are_pinned(services: dict[str, dict]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image} to a version"


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_observability_services_have_healthchecks_and_restart(name: str, services: dict[str, dict]) -> None:
    service = services[name]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service.get("restart") == "unless-stopped"


def test_loadgen_sends_to_the_device_once_it_is_healthy(
    services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loadgen = services["loadgen"]
    assert loadgen["profiles"] == ["loadgen"], "the load generator starts only when asked for"
    assert loadgen["image"] == services["device"]["image"]
    command = loadgen["command"]
    assert command[:2] == ["splitexit", "loadgen"]
    parsed = subprocess.run(
        [sys.executable, "-m", "splitexit", *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    device = tier_settings("device", tier_env("device", services, dockerfile), monkeypatch)
    assert command[command.index("--address") + 1] == f"device:{device.port}"
    assert loadgen["depends_on"] == {"device": {"condition": "service_healthy"}}


def test_loadgen_samples_reach_the_image() -> None:
    """The serving image has no dataset: the loadgen's image pack must be in the context and the package."""
    from splitexit.loadgen import SAMPLE_PACK

    relative = SAMPLE_PACK.relative_to(ROOT).as_posix()
    assert SAMPLE_PACK.is_file() and not dockerignore_excludes(relative, dockerignore_patterns())
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path(relative).match(f"splitexit/{pattern}") for pattern in package_data["splitexit"])


@pytest.mark.parametrize("tier", TIERS)
def test_netem_sidecar_shapes_the_links_of_its_tier(tier: str, services: dict[str, dict]) -> None:
    sidecar = services[f"netem-{tier}"]
    assert sidecar["profiles"] == ["netem"] and sidecar["cap_add"] == ["NET_ADMIN"]
    assert sidecar["network_mode"] == f"service:{tier}"
    assert (ROOT / sidecar["build"]["context"] / "Dockerfile").is_file()
    peers = {link.split("=")[0] for link in map(interpolate, sidecar["command"])}
    neighbours = {t for t, n in NEXT.items() if n == tier} | ({NEXT[tier]} if tier in NEXT else set())
    assert peers == neighbours, f"{tier} talks to {neighbours}, its sidecar shapes {peers}"


def test_netem_script_applies_each_profile_to_its_peer(tmp_path: Path) -> None:
    """netem.sh with stand-ins for tc and getent: the qdiscs and filters it would install."""
    calls = tmp_path / "tc.calls"
    (tmp_path / "tc").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (tmp_path / "getent").write_text('#!/bin/sh\n[ "$2" = device ] && echo "10.0.0.3 device" || echo "10.0.0.5 cloud"\n')
    for tool in ("tc", "getent"):
        (tmp_path / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(["sh", str(NETEM_SCRIPT), "device=4g", "cloud=wan"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    assert "qdisc add dev eth0 parent 1:4 handle 40: netem delay 25ms 8ms rate 20mbit" in lines
    assert "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.3/32 flowid 1:4" in lines
    assert "qdisc add dev eth0 parent 1:5 handle 50: netem delay 10ms 1ms rate 1gbit" in lines
    bad = subprocess.run(["sh", str(NETEM_SCRIPT), "device=dialup"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown profile" in bad.stderr
