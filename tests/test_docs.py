"""The README and docs/ name only paths that exist in the repository, and none outside it.

Paths under the folders setup creates (``.venv/``, ``.cache/``) are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target)
CODE = re.compile(r"`([^`\s]+)`")
FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)
CREATED_BY_SETUP = (".venv/", ".cache/")
PATH_LIKE = re.compile(r"[\w.-]+(?:/[\w.*<>-]+)+/?|[\w-]+\.(?:py|md|png|yml|yaml|json|toml|proto|txt|npz|onnx)")


def named_paths(document: Path) -> set[str]:
    """Relative link targets, and code spans that look like paths inside the repository."""
    text = document.read_text()
    links = {target for target in LINK.findall(text) if "://" not in target}
    top_level = {path.name for path in ROOT.iterdir()}
    words = [*CODE.findall(text), *(word for block in FENCED.findall(text) for word in block.split())]
    spans = {
        word.strip("/")
        for word in words
        if PATH_LIKE.fullmatch(word) and word.split("/", 1)[0] in top_level and not word.startswith(CREATED_BY_SETUP)
    }
    return links | spans


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_named_path_exists(document: Path) -> None:
    missing = []
    for name in sorted(named_paths(document)):
        base = document.parent if not name.split("/", 1)[0] in {p.name for p in ROOT.iterdir()} else ROOT
        pattern = re.sub(r"<[^>]+>", "*", name)
        if not list(base.glob(pattern)) and not (base / name).exists():
            missing.append(name)
    assert not missing, f"{document.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_nothing_points_outside_the_repository(document: Path) -> None:
    text = document.read_text()
    assert "../" not in text, f"{document.name} refers to a path outside the repository"
    assert "ARCHITECTURE.md" not in text
