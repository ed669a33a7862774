"""Whether the text packages' ONNX slices are all present and match their manifests, without torch.

    python -m training.text_slices models      # exit 0 iff every slice matches, 3 if one is missing or stale

The image build (Dockerfile) runs this first and installs torch to rebuild the
slices (``python -m training.text_export``) only when it exits 3; any other
failure fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

from splitexit.shared.manifest import MANIFEST_FILE, Manifest, load_manifest, sha256_of

STALE_EXIT = 3  # a slice is missing or differs: rebuild with torch


def missing_or_stale(package_dir: Path, manifest: Manifest) -> list[str]:
    """The slices that are absent or do not match the manifest's checksums."""
    stale = []
    for block in manifest.blocks:
        path = package_dir / block.file
        if not path.is_file() or sha256_of(path) != block.sha256:
            stale.append(block.file)
    return stale


def text_packages(models_dir: Path) -> list[Path]:
    """Every package in ``models_dir`` whose manifest says text-classification."""
    return [
        path.parent
        for path in sorted(models_dir.glob(f"*/{MANIFEST_FILE}"))
        if load_manifest(path.parent).task == "text-classification"
    ]


def main(argv: list[str] | None = None) -> int:
    models_dir = Path((argv if argv is not None else sys.argv[1:])[0])
    stale = {p.name: missing_or_stale(p, load_manifest(p)) for p in text_packages(models_dir)}
    for name, files in stale.items():
        print(f"{name}: {'missing or stale ' + ', '.join(files) if files else 'every slice matches manifest.json'}")
    return STALE_EXIT if any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
