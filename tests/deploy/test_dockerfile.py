"""The Dockerfile and .dockerignore against the repository, statically (no Docker engine).

The image must build from files that exist and reach the build context, run
as a non-root user, and never install torch.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy_files import (
    ROOT,
    copy_sources,
    dockerfile_env,
    dockerignore_excludes,
    dockerignore_patterns,
    model_stages,
    serving_instructions,
    stages,
)

# -- Dockerfile and build context ----------------------------------------------------------------


def test_dockerfile_copies_only_files_that_exist_and_reach_the_context(dockerfile: list[tuple[str, str]]) -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources(dockerfile)
    assert sources, "the Dockerfile copies nothing from the repository"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source}: .dockerignore leaves it out"
    for source in copy_sources(serving_instructions(dockerfile)):
        assert not any(source.strip("/").startswith(p) for p in ("training", "lab", "tests", "bench", ".cache")), source


def test_dockerfile_is_multi_stage_on_python_311_slim(dockerfile: list[tuple[str, str]]) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in dockerfile if k == "ARG" and "=" in a}
    bases = [
        re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), a.split()[0]) for k, a in dockerfile if k == "FROM"
    ]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    stage_names = {name for name, _ in stages(dockerfile)}
    for base in (base for base in bases if base not in stage_names):
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


def test_text_slices_come_from_the_context_and_torch_only_as_a_fallback(dockerfile: list[tuple[str, str]]) -> None:
    """The text models' ONNX slices are not in git: a stage takes them from models/ when their checksums
    match (no torch), installs torch to rebuild them only when the check says one is missing or stale,
    and the image takes only models/ from it."""
    from training.text_slices import STALE_EXIT

    builders = {
        name
        for name, body in stages(dockerfile)
        if any(k == "RUN" and "training.text_export" in args for k, args in body)
    }
    assert len(builders) == 1, f"one stage rebuilds the slices, not {builders}"
    assert builders <= model_stages(dockerfile), f"the image must take only models/ from {builders}"
    body = dict(stages(dockerfile))[builders.pop()]
    [run] = [args for keyword, args in body if keyword == "RUN" and "training.text_export" in args]
    check, _, fallback = run.partition("||")
    assert check.split() == ["python", "-m", "training.text_slices", "models"], check
    assert fallback.split()[:5] == ["{", "[", "$?", "-eq", str(STALE_EXIT)], "torch only when a slice is stale"
    assert "-r requirements/dev.txt" in fallback and "--no-deps -r requirements/text.txt" in fallback
    for module in ("text_slices", "text_export", "text_model", "encoders", "backbones", "export", "cnn", "data"):
        assert not dockerignore_excludes(f"training/{module}.py", dockerignore_patterns()), module


def test_dockerfile_pulls_nothing_but_its_base() -> None:
    """A ``# syntax=`` directive makes BuildKit pull a frontend image; every FROM is the base or a stage."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert not re.search(r"^#\s*syntax\s*=", (ROOT / "deploy" / "prometheus" / "Dockerfile").read_text(), re.I | re.M)


def test_every_stage_installs_into_a_venv(dockerfile: list[tuple[str, str]]) -> None:
    """pip never installs into the base's python (a Debian base refuses that: EXTERNALLY-MANAGED),
    and nothing assumes a ``python`` command before the venv exists."""
    names = [name for name, _ in stages(dockerfile)]
    in_venv: set[str] = set()
    for name, body in stages(dockerfile):
        parent = next(a.split()[0] for k, a in dockerfile if k == "FROM" and a.split()[-1] == name)
        venv = parent in in_venv
        for keyword, args in body:
            venv |= keyword == "RUN" and "python3 -m venv /opt/venv" in args
            venv |= keyword == "COPY" and args.split()[-1] == "/opt/venv" and "--from=" in args
            if keyword == "RUN" and re.search(r"\b(pip|python)\b", args.replace("python3 -m venv", "")):
                assert venv, f"stage {name} runs {args!r} before it has /opt/venv"
        if venv:
            in_venv.add(name)
    assert in_venv == set(names), f"stages without the venv: {set(names) - in_venv}"
    assert "/opt/venv/bin" in dockerfile_env(dockerfile)["PATH"].split(":")[0]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".cache/fashion-mnist/x.gz",
        "tests/deploy/test_compose.py",
        "training/train.py",
        "bench/serving.py",
        ".git/HEAD",
        "models/fmnist-cnn/weights.pt",
        "shared/__pycache__/x.pyc",
    ],
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
