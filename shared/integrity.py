"""Package integrity: one digest over every file of a model package, optionally signed with ed25519.

Next to ``manifest.json`` a package carries ``integrity.json``::

    {"format": 1,
     "files": {"block1.onnx": "<sha256>", ..., "manifest.json": "<sha256>", "tokenizer.json": "<sha256>"},
     "digest": "<sha256 of the listing>"}

``files`` names every file in the package folder (hidden files, ``integrity.json``
and ``integrity.sig`` aside) with its sha256; ``digest`` is the sha256 of the
listing in ``sha256sum`` form, one ``<sha256>  <name>\\n`` line per file sorted by
name, so ``sha256sum -c`` can check a package by hand. ``integrity.sig``, when
present, holds the hex ed25519 signature of ``SIGNED_PREFIX + digest``.

A tier verifies every package at start (:func:`verify_package`) and refuses it
with a :class:`~splitexit.shared.manifest.PackageError` naming the file: a listed
file that differs, a file the tier reads (manifest, segments, tokenizer) that is
missing or unlisted, a digest that does not match its listing. A listed file a
tier never reads (``state_dict.pt``, ``heads.safetensors``, ``evaluation.json``)
may be left out of a deployment, but if present it must match. The digest alone
catches corruption and a half-done edit; someone who may write the folder can
recompute it, which only a signature stops: with ``package_public_key`` set, a
package whose ``integrity.sig`` is missing or was not made by the matching
private key is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from splitexit.shared.manifest import (
    MANIFEST_FILE,
    ChecksumError,
    Manifest,
    PackageError,
    load_manifest,
    sha256_of,
    validation_summary,
)

INTEGRITY_FILE = "integrity.json"
SIGNATURE_FILE = "integrity.sig"
SIGNED_PREFIX = b"splitexit package digest v1\n"
SHA256_HEX = r"^[0-9a-f]{64}$"
WRITE_COMMAND = "python -m splitexit.package_signing digest"


class SignatureError(PackageError):
    """A package signature that is missing or not made by the configured key, or a key that cannot be read."""


class PackageIntegrity(BaseModel):
    """``integrity.json``: every file's sha256 and the digest over them."""

    model_config = ConfigDict(extra="forbid")

    format: int = Field(1, ge=1, le=1)
    files: dict[str, str]
    digest: str = Field(pattern=SHA256_HEX)

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name, sha256 in files.items():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or "\\" in name or str(path) != name:
                raise ValueError(f"{name!r} is not a plain relative path inside the package")
            if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
                raise ValueError(f"{name!r}: {sha256!r} is not a hex sha256")
        if MANIFEST_FILE not in files:
            raise ValueError(f"{MANIFEST_FILE} is not listed")
        return files


def listing_digest(files: dict[str, str]) -> str:
    """The sha256 of ``files`` as ``sha256sum`` lists them, sorted by name."""
    listing = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def signed_message(digest: str) -> bytes:
    """What ``integrity.sig`` signs: the digest, prefixed so the signature means nothing else."""
    return SIGNED_PREFIX + digest.encode()


def package_files(package_dir: Path) -> list[str]:
    """Every file of a package, as relative POSIX names: not hidden, not the integrity files themselves."""
    names = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            names.append(relative.as_posix())
    return [name for name in names if name not in (INTEGRITY_FILE, SIGNATURE_FILE)]


def write_integrity(package_dir: Path) -> PackageIntegrity:
    """Hash every file of ``package_dir`` into ``integrity.json``; an old signature no longer applies and goes."""
    files = {name: sha256_of(package_dir / name) for name in package_files(package_dir)}
    record = PackageIntegrity(files=files, digest=listing_digest(files))
    (package_dir / INTEGRITY_FILE).write_text(json.dumps(record.model_dump(), indent=2) + "\n")
    (package_dir / SIGNATURE_FILE).unlink(missing_ok=True)
    return record


def read_integrity(package_dir: Path) -> PackageIntegrity:
    """``integrity.json``, parsed strictly, its digest checked against its own listing."""
    path = package_dir / INTEGRITY_FILE
    if not path.is_file():
        raise ChecksumError(f"{path} is missing: write it with `{WRITE_COMMAND} {package_dir}`")
    try:
        record = PackageIntegrity.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ChecksumError(f"{path}: {validation_summary(exc)}") from None
    if listing_digest(record.files) != record.digest:
        raise ChecksumError(f"{path}: its digest does not match its own file list (edited by hand?)")
    return record


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file; :class:`SignatureError` if it is anything else."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"package_public_key {path}: cannot read an ed25519 public key in PEM ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"package_public_key {path}: a {type(key).__name__}, not an ed25519 public key")
    return key


def check_signature(package_dir: Path, digest: str, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureError` unless ``integrity.sig`` signs ``digest`` under ``public_key``."""
    path = package_dir / SIGNATURE_FILE
    if not path.is_file():
        raise SignatureError(
            f"package {package_dir} is not signed ({SIGNATURE_FILE} is missing) but a key is configured"
        )
    try:
        public_key.verify(bytes.fromhex(path.read_text().strip()), signed_message(digest))
    except (ValueError, InvalidSignature):
        raise SignatureError(
            f"package {package_dir}: {SIGNATURE_FILE} does not sign its {INTEGRITY_FILE} under the configured key "
            "(files changed after signing, or signed with another key)"
        ) from None


def verify_package(package_dir: Path, public_key: Ed25519PublicKey | None = None) -> Manifest:
    """The package's manifest, once every file checks out (see the module docstring); else :class:`PackageError`."""
    record = read_integrity(package_dir)
    if public_key is not None:
        check_signature(package_dir, record.digest, public_key)
    for name, expected in sorted(record.files.items()):
        path = package_dir / name
        if not path.is_file():
            continue  # a file the tier reads is required below, once the manifest is known
        actual = sha256_of(path)
        if actual != expected:
            raise ChecksumError(
                f"{path} does not match {INTEGRITY_FILE}: sha256 {actual[:12]}…, expected {expected[:12]}…; "
                "restore the file, or rebuild the package"
            )
    require_files(package_dir, record, [MANIFEST_FILE])
    manifest = load_manifest(package_dir)
    require_files(package_dir, record, manifest.files_read())
    return manifest


def require_files(package_dir: Path, record: PackageIntegrity, names: list[str]) -> None:
    """Raise :class:`ChecksumError` unless each of ``names`` is listed in ``record`` and present."""
    for name in names:
        if name not in record.files:
            raise ChecksumError(f"{package_dir / name} is not listed in {package_dir / INTEGRITY_FILE}")
        if not (package_dir / name).is_file():
            raise ChecksumError(f"{package_dir / name} is missing (`make models` rebuilds a text model's segments)")
