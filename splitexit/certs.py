"""A development certificate authority and one certificate per tier, for mutual TLS on a testbed.

    python -m splitexit.certs certs/            # ca.pem, device.pem, edge.pem, cloud.pem, client.pem + keys

Every certificate is signed by the CA, valid for serving and for calling
(extended key usage serverAuth and clientAuth), and names its holder twice: the
subject's common name ``splitexit-<name>`` and a SAN URI ``spiffe://splitexit/<name>``,
which :func:`identity_of` reads, so a tier can authorise a peer by tier. Its DNS
names are ``localhost`` and the name itself (the compose service names are
``device``, ``edge`` and ``cloud``), its IP addresses 127.0.0.1 and ::1.

Keys are ECDSA P-256 in unencrypted PKCS#8 PEM, readable by their owner only.
These are development credentials: a deployment brings certificates from its own CA.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IDENTITIES = ("device", "edge", "cloud", "client")
SPIFFE_PREFIX = "spiffe://splitexit/"
COMMON_NAME_PREFIX = "splitexit-"
CA_COMMON_NAME = "splitexit development CA"
DEFAULT_DAYS = 365
CA_DAYS = 3650
CLOCK_SKEW = timedelta(minutes=5)  # certificates start a little in the past, for clocks slightly behind


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class DevPki:
    """What :func:`write_dev_pki` wrote: the CA and one credential per identity."""

    ca: Credential
    identities: dict[str, Credential]


def write_dev_pki(out_dir: Path, days: int = DEFAULT_DAYS, names: tuple[str, ...] = IDENTITIES) -> DevPki:
    """A new CA (``ca.pem``, ``ca-key.pem``) and, signed by it, ``<name>.pem`` and ``<name>-key.pem`` per name.

    The identities are valid for ``days`` from now; files already there are replaced.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=max(CA_DAYS, days)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(out_dir, "ca", ca_cert, ca_key)
    pki = DevPki(ca=ca, identities={})
    for name in names:
        pki.identities[name] = issue(pki.ca, name, out_dir, valid_from=now - CLOCK_SKEW, days=days)
    return pki


def issue(ca: Credential, name: str, out_dir: Path, valid_from: datetime, days: int, stem: str = "") -> Credential:
    """A certificate for ``name`` signed by ``ca``, valid ``days`` from ``valid_from``, as ``<stem or name>.pem``.

    A window in the past gives an expired certificate, for tests that expect it refused.
    """
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key}: not the EC key write_dev_pki makes")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"{SPIFFE_PREFIX}{name}"),
        x509.DNSName("localhost"),
        x509.DNSName(name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{COMMON_NAME_PREFIX}{name}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_from + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _write(out_dir, stem or name, cert, key)


def identity_of(cert_pem: bytes) -> str | None:
    """The holder a certificate names in its ``spiffe://splitexit/<name>`` SAN (``edge``...), or None."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(SPIFFE_PREFIX):
            return uri.removeprefix(SPIFFE_PREFIX)
    return None


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def credential_in(folder: Path, stem: str) -> Credential:
    """Where ``stem``'s certificate and key lie in a folder this module wrote (``ca`` for the CA's)."""
    return Credential(cert=folder / f"{stem}.pem", key=folder / f"{stem}-key.pem")


def _write(out_dir: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Credential:
    """``<stem>.pem`` (world-readable) and ``<stem>-key.pem`` (owner only)."""
    credential = credential_in(out_dir, stem)
    credential.cert.write_bytes(cert.public_bytes(Encoding.PEM))
    write_owner_only(credential.key, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return credential


def write_owner_only(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, created mode 0600 so no one else ever reads it (private keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m splitexit.certs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="folder for the PEM files (created; files there are replaced)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="how long the tier certificates are valid")
    args = parser.parse_args(argv)
    pki = write_dev_pki(args.out_dir, args.days)
    print(f"CA: {pki.ca.cert} (key {pki.ca.key})")
    for name, credential in pki.identities.items():
        print(f"{name}: {credential.cert} (key {credential.key}), valid {args.days} days")


if __name__ == "__main__":
    main()
