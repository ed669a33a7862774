"""Fashion-MNIST (60,000 train / 10,000 test, MIT) from Debian's ``dataset-fashion-mnist``.

Nothing is downloaded from a hub. The files are looked up, in order, in
``$SPLITEXIT_FASHION_MNIST_DIR``, the installed Debian package
(``/usr/share/datasets/fashion-mnist``) and the cache folder; if none has them,
the ``.deb`` is fetched with ``apt-get download`` and unpacked with ``dpkg -x``
into the cache, which needs no root.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from splitexit.samples import SAMPLE_PACK, LabelledImage, encode_png

DEBIAN_PACKAGE = "dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetUnavailable(RuntimeError):
    """Neither an installed copy nor ``apt-get download`` could provide the data."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPLITEXIT_CACHE_DIR", Path.home() / ".cache" / "splitexit"))


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in _FILES.values() for name in pair)


def locate(cache_dir: Path | None = None, fetch: bool = True) -> Path:
    """The folder holding the four ``*-ubyte.gz`` files, fetching them if allowed."""
    cache = (cache_dir or default_cache_dir()) / "fashion-mnist"
    candidates = [Path(p) for p in [os.environ.get("SPLITEXIT_FASHION_MNIST_DIR")] if p]
    for folder in [*candidates, SYSTEM_DIR, cache]:
        if _has_files(folder):
            return folder
    if not fetch:
        raise DatasetUnavailable(f"Fashion-MNIST not found in {SYSTEM_DIR} or {cache}")
    _fetch_deb_into(cache)
    return cache


def _fetch_deb_into(target: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DatasetUnavailable(_help("apt-get/dpkg are not available on this machine"))
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", DEBIAN_PACKAGE]
        result = subprocess.run(download, cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0 and os.geteuid() == 0:
            # A fresh machine may have no package lists yet; as root we can fetch them.
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            result = subprocess.run(download, cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if result.returncode != 0 or not debs:
            raise DatasetUnavailable(_help(result.stderr.strip() or "apt-get download failed"))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
        target.mkdir(parents=True, exist_ok=True)
        for src in (unpacked / SYSTEM_DIR.relative_to("/")).glob("*.gz"):
            shutil.copy2(src, target / src.name)
    if not _has_files(target):
        raise DatasetUnavailable(_help(f"the package did not contain the expected files in {SYSTEM_DIR}"))


def _help(reason: str) -> str:
    return (
        f"Could not get Fashion-MNIST ({reason}). Either install it system-wide with "
        f"`sudo apt-get update && sudo apt-get install {DEBIAN_PACKAGE}`, or put the four "
        f"*-ubyte.gz files in a folder and set SPLITEXIT_FASHION_MNIST_DIR to it."
    )


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, dims; then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels uint8 [N])`` for ``split`` in {"train", "test"}."""
    folder = locate(cache_dir)
    images_file, labels_file = _FILES[split]
    return _read_idx(folder / images_file), _read_idx(folder / labels_file)


# The split every choice and every calibration is made on (keep it): the test set's first 5,000 images are the
# validation stream, the other 5,000 the reported test stream. The CNN trained on neither.
HALVES = {"validation": slice(0, 5_000), "test": slice(5_000, 10_000)}


def held_out_half(half: str, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``"validation"`` (test images 0..4999) or ``"test"`` half (5000..9999) of the test set, in index order."""
    if half not in HALVES:
        raise ValueError(f"no half {half!r} of the Fashion-MNIST test set; choose from {', '.join(HALVES)}")
    images, labels = load("test", cache_dir)
    return images[HALVES[half]], labels[HALVES[half]]


def test_images(count: int, seed: int = 0) -> list[LabelledImage]:
    """``count`` distinct test images in a seeded random order, as PNG bytes."""
    images, labels = load("test")
    chosen = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return [LabelledImage(int(i), int(labels[i]), encode_png(images[i])) for i in chosen]


PACK_SIZE = 200
PACK_SEED = 2024


def write_pack(path: Path = SAMPLE_PACK, count: int = PACK_SIZE, seed: int = PACK_SEED) -> None:
    """Draw ``count`` test images with ``seed`` and save them, their labels and indices, to ``path``."""
    images, labels = load("test")
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=count, replace=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images[chosen], labels=labels[chosen], indices=chosen.astype(np.int32))


SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def write_samples(folder: Path = SAMPLES_DIR) -> list[Path]:
    """The first test image of each class as ``<label>.png`` (e.g. ``ankle-boot.png``), for trying the tiers by hand."""
    images, labels = load("test")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, name in enumerate(LABELS):
        index = int(np.flatnonzero(labels == label)[0])
        path = folder / f"{name.lower().replace('/', '-').replace(' ', '-')}.png"
        path.write_bytes(encode_png(images[index]))
        written.append(path)
    return written
