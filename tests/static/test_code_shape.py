"""The code stays readable and installs under one name.

Small modules (at most 400 lines) and functions (at most 60), generated stubs
aside; no unused or undefined names, imports in order and no line over 120
columns (ruff's pyflakes, isort and E501 rules, configured in pyproject.toml);
the code exactly as ``ruff format`` writes it, the formatter never switched off;
and the wheel installs nothing at the top level of site-packages but ``splitexit``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", ".git", ".cache", "node_modules", "build"}
GENERATED = ROOT / "shared" / "proto"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not SKIPPED & set(path.relative_to(ROOT).parts) and GENERATED not in path.parents
    ]


def test_modules_and_functions_are_small() -> None:
    too_long = []
    for path in python_files():
        text = path.read_text()
        name = path.relative_to(ROOT)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("ruff")
    if not binary.is_file():
        pytest.skip("ruff is not installed in this environment (requirements/dev.txt has it)")
    return subprocess.run([str(binary), *args, str(ROOT)], capture_output=True, text=True)


def test_ruff_finds_no_unused_or_undefined_names_and_no_long_lines() -> None:
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_as_ruff_format_writes_it() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, "run `.venv/bin/ruff format .`:\n" + result.stdout + result.stderr


def test_no_code_switches_the_formatter_off() -> None:
    switched_off = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.rstrip().endswith("# fmt: skip") or line.strip() in {"# fmt: off", "# fmt: on"}
    ]
    assert not switched_off, f"the formatter is switched off at {switched_off}"


def test_the_wheel_installs_only_the_splitexit_package(tmp_path: Path) -> None:
    leftover = ROOT / "build"  # setuptools builds in the tree; leave it as it was
    had_build_dir = leftover.exists()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    if not had_build_dir:
        shutil.rmtree(leftover, ignore_errors=True)
    (wheel,) = tmp_path.glob("splitexit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"splitexit"}
    for subpackage in ("device", "edge", "cloud", "shared", "shared/proto", "policies"):
        assert f"splitexit/{subpackage}/__init__.py" in names
    assert not any(part in name for name in names for part in ("fashion_mnist", "text_data", "training/"))
