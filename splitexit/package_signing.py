"""Write, sign and verify model packages' ``integrity.json`` (the format: ``shared/integrity.py``).

    python -m splitexit.package_signing keygen --private keys/package.key --public keys/package.pub
    python -m splitexit.package_signing digest models/fmnist-cnn        # after changing a package by hand
    python -m splitexit.package_signing sign --key keys/package.key models/*/
    python -m splitexit.package_signing verify --public-key keys/package.pub models/*/

A tier checks what ``verify`` checks at start; set its ``package_public_key`` to
the public key and it refuses any package that ``sign`` did not sign with the
private one. ``sign`` signs the digest already in ``integrity.json``, after
checking every file against it, so it signs only what is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from splitexit.certs import write_owner_only
from splitexit.shared.integrity import (
    SIGNATURE_FILE,
    load_public_key,
    read_integrity,
    signed_message,
    verify_package,
    write_integrity,
)
from splitexit.shared.manifest import PackageError


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """A new ed25519 key pair as PEM files; the private one readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    write_owner_only(private_path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted ed25519 private key from a PEM file."""
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: a {type(key).__name__}, not an ed25519 private key")
    return key


def sign_package(package_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Check the package against its ``integrity.json``, then write ``integrity.sig`` over its digest."""
    verify_package(package_dir)
    digest = read_integrity(package_dir).digest
    path = package_dir / SIGNATURE_FILE
    path.write_text(key.sign(signed_message(digest)).hex() + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m splitexit.package_signing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new ed25519 key pair (PEM)")
    keygen.add_argument("--private", type=Path, required=True, help="where the private key goes (mode 0600)")
    keygen.add_argument(
        "--public", type=Path, required=True, help="where the public key goes (a tier's package_public_key)"
    )
    digest = commands.add_parser(
        "digest", help="(re)write integrity.json from the files as they are; drops integrity.sig"
    )
    digest.add_argument("packages", type=Path, nargs="+")
    sign = commands.add_parser("sign", help="write integrity.sig, after checking the files against integrity.json")
    sign.add_argument("--key", type=Path, required=True, help="ed25519 private key (PEM)")
    sign.add_argument("packages", type=Path, nargs="+")
    verify = commands.add_parser("verify", help="check packages as a tier does at start")
    verify.add_argument("--public-key", type=Path, help="also require integrity.sig made by this key's private key")
    verify.add_argument("packages", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            generate_keypair(args.private, args.public)
            print(f"wrote {args.private} (keep it secret) and {args.public}")
        elif args.command == "digest":
            for package in args.packages:
                print(f"{package}: digest {write_integrity(package).digest[:12]}… in integrity.json")
        elif args.command == "sign":
            key = load_private_key(args.key)
            for package in args.packages:
                print(f"signed {package}: {sign_package(package, key)}")
        else:
            public_key = load_public_key(args.public_key) if args.public_key else None
            for package in args.packages:
                verify_package(package, public_key)
                print(f"{package}: verified{' and signed' if public_key else ''}")
    except (PackageError, ValueError, OSError) as exc:
        sys.exit(f"{parser.prog} {args.command}: {exc}")


if __name__ == "__main__":
    main()
