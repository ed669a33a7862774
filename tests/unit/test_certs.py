"""The development PKI: every certificate verifies against its CA as server and client, and names its tier."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from splitexit.certs import IDENTITIES, DevPki, identity_of, issue, main, write_dev_pki


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def policy(pki: DevPki) -> PolicyBuilder:
    return PolicyBuilder().store(Store([load(pki.ca.cert)])).time(datetime.now(UTC))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return write_dev_pki(tmp_path_factory.mktemp("pki"), days=30)


def test_the_files_exist_and_keys_are_private(pki: DevPki) -> None:
    assert sorted(pki.identities) == sorted(IDENTITIES)
    for credential in [pki.ca, *pki.identities.values()]:
        assert credential.cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert credential.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert credential.key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("name", IDENTITIES)
def test_each_certificate_verifies_as_server_and_client(pki: DevPki, name: str) -> None:
    cert = load(pki.identities[name].cert)
    for host in ["localhost", name]:
        chain = policy(pki).build_server_verifier(x509.DNSName(host)).verify(cert, [])
        assert chain[-1] == load(pki.ca.cert)
    policy(pki).build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(cert, [])
    client = policy(pki).build_client_verifier().verify(cert, [])
    assert x509.UniformResourceIdentifier(f"spiffe://splitexit/{name}") in (client.subjects or [])


@pytest.mark.parametrize("name", IDENTITIES)
def test_each_certificate_names_its_tier(pki: DevPki, name: str) -> None:
    cert = load(pki.identities[name].cert)
    assert identity_of(pki.identities[name].cert.read_bytes()) == name
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"splitexit-{name}"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", name}
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)
    assert identity_of(pki.ca.cert.read_bytes()) is None


def test_a_certificate_for_another_name_or_from_another_ca_does_not_verify(pki: DevPki, tmp_path: Path) -> None:
    with pytest.raises(VerificationError):
        policy(pki).build_server_verifier(x509.DNSName("cloud")).verify(load(pki.identities["edge"].cert), [])
    stranger = write_dev_pki(tmp_path, names=("edge",))
    with pytest.raises(VerificationError):
        policy(pki).build_client_verifier().verify(load(stranger.identities["edge"].cert), [])


def test_an_expired_certificate_can_be_issued_and_is_refused(pki: DevPki, tmp_path: Path) -> None:
    expired = issue(pki.ca, "edge", tmp_path, valid_from=datetime.now(UTC) - timedelta(days=10), days=1, stem="old")
    assert expired.cert.name == "old.pem" and identity_of(expired.cert.read_bytes()) == "edge"
    cert = load(expired.cert)
    assert cert.not_valid_after_utc < datetime.now(UTC)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=1)
    with pytest.raises(VerificationError, match="not valid at validation time"):
        policy(pki).build_server_verifier(x509.DNSName("edge")).verify(cert, [])
    with pytest.raises(VerificationError, match="not valid at validation time"):
        policy(pki).build_client_verifier().verify(cert, [])


def test_the_command_writes_the_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path / "certs"), "--days", "7"])
    assert f"edge: {tmp_path / 'certs' / 'edge.pem'}" in capsys.readouterr().out
    cert = load(tmp_path / "certs" / "cloud.pem")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=7)


def test_a_mutual_tls_handshake_on_loopback_identifies_both_ends(pki: DevPki) -> None:
    """OpenSSL (Python's ssl), not only cryptography's verifier, accepts the certificates both ways."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca.cert)
    server_ctx.load_cert_chain(pki.identities["edge"].cert, pki.identities["edge"].key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=pki.ca.cert)
    client_ctx.load_cert_chain(pki.identities["device"].cert, pki.identities["device"].key)
    seen: dict[str, str | None] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            connection, _ = listener.accept()
            with server_ctx.wrap_socket(connection, server_side=True) as tls:
                seen["client"] = identity_of(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())

        server = threading.Thread(target=accept)
        server.start()
        with socket.create_connection(listener.getsockname()) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="edge") as tls:
                seen["server"] = identity_of(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())
        server.join(timeout=10)
    assert seen == {"server": "edge", "client": "device"}
