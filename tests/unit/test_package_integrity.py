"""Model package integrity: the shipped packages verify; tampered ones refuse to start, naming the file.

Every test copies a real package to ``tmp_path`` and loads it the way a tier does at
start (``ModelRegistry.load``, ``TierNode.from_settings``, or ``splitexit serve`` as a
process), after changing one thing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitexit.cloud.settings import CloudSettings
from splitexit.package_signing import generate_keypair, load_private_key, main, sign_package
from splitexit.shared.integrity import (
    INTEGRITY_FILE,
    SIGNATURE_FILE,
    SignatureError,
    package_files,
    read_integrity,
    verify_package,
    write_integrity,
)
from splitexit.shared.manifest import MANIFEST_FILE, ChecksumError, ManifestError, load_manifest, sha256_of
from splitexit.shared.node import TierNode
from splitexit.shared.runtime import ModelRegistry
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tiers import Tier

IMAGE = "fmnist-cnn"
TEXT = "minilm-sentiment"


def copy_package(name: str, tmp_path: Path) -> Path:
    """``tmp_path/models/<name>``, a byte-for-byte copy of a shipped package."""
    target = tmp_path / "models" / name
    shutil.copytree(DEFAULT_MODELS_DIR / name, target, ignore=shutil.ignore_patterns(".*"))
    return target


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def load_as_cloud(package: Path, public_key: Path | None = None) -> ModelRegistry:
    return ModelRegistry.load(package.parent, Tier.CLOUD, {}, public_key=public_key)


def keypair(tmp_path: Path, name: str = "package") -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / f"{name}.key", tmp_path / "keys" / f"{name}.pub"
    generate_keypair(private, public)
    return private, public


@pytest.mark.parametrize("name", sorted(p.parent.name for p in DEFAULT_MODELS_DIR.glob(f"*/{MANIFEST_FILE}")))
def test_every_shipped_package_verifies_and_lists_all_its_files(name: str) -> None:
    package = DEFAULT_MODELS_DIR / name
    assert verify_package(package) == load_manifest(package)
    assert sorted(read_integrity(package).files) == package_files(package)


@pytest.mark.parametrize(
    ("name", "file"), [(IMAGE, "block3.onnx"), (TEXT, "heads.safetensors"), (TEXT, "tokenizer.json")]
)
def test_a_tampered_file_refuses_to_start_naming_it(tmp_path: Path, name: str, file: str) -> None:
    package = copy_package(name, tmp_path)
    assert [m.name for m in load_as_cloud(package)] == [name]
    flip_a_byte(package / file)
    with pytest.raises(ChecksumError, match=rf"{package / file} does not match {INTEGRITY_FILE}"):
        load_as_cloud(package)


def test_a_segment_swapped_with_a_rehashed_manifest_is_caught_by_the_digest(tmp_path: Path) -> None:
    package = copy_package(IMAGE, tmp_path)
    flip_a_byte(package / "block5.onnx")
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["blocks"][4]["sha256"] = sha256_of(package / "block5.onnx")
    (package / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ChecksumError, match=rf"{package / 'block5.onnx'} does not match"):
        load_as_cloud(package)


def test_with_a_key_a_recomputed_digest_is_refused(tmp_path: Path) -> None:
    """The issue's attack: segment replaced, manifest and integrity.json recomputed; only the signature stops it."""
    package = copy_package(IMAGE, tmp_path)
    private, public = keypair(tmp_path)
    sign_package(package, load_private_key(private))
    settings = CloudSettings(models_dir=package.parent, package_public_key=public, metrics_port=0)
    assert [m.name for m in load_as_cloud(package, public)] == [IMAGE]

    flip_a_byte(package / "block6.onnx")
    manifest = load_manifest(package)
    manifest.blocks[5].sha256 = sha256_of(package / "block6.onnx")
    (package / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    signature = (package / SIGNATURE_FILE).read_text()
    write_integrity(package)  # drops the signature: put the old one back, as an attacker would
    (package / SIGNATURE_FILE).write_text(signature)
    assert verify_package(package).name == IMAGE  # without a key the recomputed digest passes
    with pytest.raises(SignatureError, match=rf"package {package}: {SIGNATURE_FILE} does not sign"):
        TierNode.from_settings(settings)


def test_with_a_key_an_unsigned_or_foreign_signed_package_is_refused(tmp_path: Path) -> None:
    package = copy_package(IMAGE, tmp_path)
    _, public = keypair(tmp_path)
    with pytest.raises(SignatureError, match=rf"package {package} is not signed"):
        load_as_cloud(package, public)
    other_private, _ = keypair(tmp_path, "other")
    sign_package(package, load_private_key(other_private))
    with pytest.raises(SignatureError, match="does not sign"):
        load_as_cloud(package, public)
    (tmp_path / "not-a-key.pub").write_text("hello")
    with pytest.raises(SignatureError, match="cannot read an ed25519 public key"):
        load_as_cloud(package, tmp_path / "not-a-key.pub")


def test_a_misspelled_manifest_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    package = copy_package(TEXT, tmp_path)
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["blocks"][0]["input"]["vocab_rize"] = manifest["blocks"][0]["input"].pop("vocab_size")
    (package / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    message = rf"{package / MANIFEST_FILE}: unknown key 'blocks.0.input.vocab_rize'"
    with pytest.raises(ManifestError, match=message):
        load_manifest(package)
    write_integrity(package)  # a consistent digest: the strict parse is what refuses it
    with pytest.raises(ManifestError, match=message):
        load_as_cloud(package)


def test_missing_or_unlisted_files_are_refused(tmp_path: Path) -> None:
    package = copy_package(IMAGE, tmp_path)
    (package / "state_dict.pt").unlink()  # a file no tier reads may be left out (the image does)
    assert [m.name for m in load_as_cloud(package)] == [IMAGE]
    (package / "block2.onnx").unlink()
    with pytest.raises(ChecksumError, match=rf"{package / 'block2.onnx'} is missing"):
        load_as_cloud(package)
    (package / INTEGRITY_FILE).unlink()
    with pytest.raises(ChecksumError, match=rf"{package / INTEGRITY_FILE} is missing"):
        load_as_cloud(package)


def test_an_edited_listing_fails_its_own_digest(tmp_path: Path) -> None:
    package = copy_package(IMAGE, tmp_path)
    record = json.loads((package / INTEGRITY_FILE).read_text())
    record["files"]["block1.onnx"] = "0" * 64
    (package / INTEGRITY_FILE).write_text(json.dumps(record))
    with pytest.raises(ChecksumError, match="its digest does not match its own file list"):
        load_as_cloud(package)


def test_the_signing_command_signs_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = copy_package(IMAGE, tmp_path)
    private, public = tmp_path / "k.key", tmp_path / "k.pub"
    main(["keygen", "--private", str(private), "--public", str(public)])
    assert private.stat().st_mode & 0o077 == 0
    main(["sign", "--key", str(private), str(package)])
    main(["verify", "--public-key", str(public), str(package)])
    assert f"{package}: verified and signed" in capsys.readouterr().out
    flip_a_byte(package / "block1.onnx")
    with pytest.raises(SystemExit, match="block1.onnx does not match"):
        main(["sign", "--key", str(private), str(package)])


def test_splitexit_serve_exits_with_one_line_naming_the_file(tmp_path: Path) -> None:
    package = copy_package(IMAGE, tmp_path)
    flip_a_byte(package / "block4.onnx")
    env = {**os.environ, "SPLITEXIT_EDGE_MODELS_DIR": str(package.parent), "SPLITEXIT_EDGE_METRICS_PORT": "0"}
    env.pop("SPLITEXIT_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "splitexit", "serve", "edge"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("splitexit serve edge: refusing to start: ")
    assert f"{package / 'block4.onnx'} does not match {INTEGRITY_FILE}" in lines[0]
