"""HTTPS: the self-signed certificate (made, kept, renewed), the SSL context and a real server."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signaling.tls import (
    CERT_FILE,
    KEY_FILE,
    RENEW_BEFORE,
    VALIDITY,
    TlsError,
    certificate_fingerprint,
    self_signed_certificate,
    server_ssl_context,
)


def _load(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def _sans(cert: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate."""
    names = _load(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(names.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in names.get_values_for_type(x509.IPAddress)},
    )


def test_generates_a_p256_certificate_for_localhost_and_every_name(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(
        tmp_path / "tls", ["sabaq.lan", "10.0.0.5", "[fd00::5]", "Университет.kz"]
    )
    assert (cert, key) == (tmp_path / "tls" / CERT_FILE, tmp_path / "tls" / KEY_FILE)
    dns, ips = _sans(cert)
    assert dns == {"localhost", "sabaq.lan", "xn--b1agajc0ayikbb.kz"}
    assert ips == {"127.0.0.1", "::1", "10.0.0.5", "fd00::5"}
    certificate = _load(cert)
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == VALIDITY + (
        timedelta(hours=1)
    )
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert private.public_key() == public
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == [CERT_FILE, KEY_FILE]


def test_an_existing_pair_is_kept_while_it_covers_every_name(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, ["sabaq.lan", "10.0.0.5"])
    before = (cert.read_bytes(), key.read_bytes())
    key.chmod(0o644)
    for names in (["sabaq.lan", "10.0.0.5"], ["10.0.0.5"], [], ["SABAQ.lan", "localhost"]):
        assert self_signed_certificate(tmp_path, names) == (cert, key)
        assert (cert.read_bytes(), key.read_bytes()) == before
    assert key.stat().st_mode & 0o777 == 0o600  # tightened again on reuse


def test_a_new_name_makes_a_new_certificate(tmp_path: Path) -> None:
    cert, _ = self_signed_certificate(tmp_path, ["sabaq.lan"])
    first = certificate_fingerprint(cert)
    self_signed_certificate(tmp_path, ["sabaq.lan", "192.168.1.20"])
    assert certificate_fingerprint(cert) != first
    assert _sans(cert)[1] >= {"192.168.1.20"}
    assert "sabaq.lan" in _sans(cert)[0]


@pytest.mark.parametrize(
    ("age", "renewed"),
    [
        (timedelta(0), False),
        (VALIDITY - RENEW_BEFORE - timedelta(days=1), False),  # 8 days left
        (VALIDITY - RENEW_BEFORE + timedelta(hours=1), True),  # a little under 7 days left
        (VALIDITY - timedelta(days=5), True),  # 5 days left
        (VALIDITY + timedelta(days=1), True),  # expired
        (-timedelta(days=2), True),  # made "in the future": the clock was wrong
    ],
)
def test_a_certificate_near_expiry_is_renewed(
    tmp_path: Path, age: timedelta, renewed: bool
) -> None:
    made_at = datetime.now(UTC) - age
    cert, _ = self_signed_certificate(tmp_path, ["sabaq.lan"], now=made_at)
    old = certificate_fingerprint(cert)
    self_signed_certificate(tmp_path, ["sabaq.lan"])
    assert (certificate_fingerprint(cert) != old) is renewed
    assert _load(cert).not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE


@pytest.mark.parametrize(
    "damage",
    [
        lambda cert, key: cert.write_text("not a certificate"),
        lambda cert, key: key.write_text("not a key"),
        lambda cert, key: key.unlink(),
        # A key that is valid but belongs to another certificate.
        lambda cert, key: key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
    ],
)
def test_damaged_files_are_replaced(tmp_path: Path, damage: Callable[[Path, Path], object]) -> None:
    cert, key = self_signed_certificate(tmp_path, [])
    damage(cert, key)
    self_signed_certificate(tmp_path, [])
    server_ssl_context(cert, key)  # a matching pair again


@pytest.mark.parametrize("name", ["bad name", "under_score.lan", "", "-x.lan"])
def test_a_name_that_is_neither_host_nor_address_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(TlsError, match="is neither an IP address nor a host name"):
        self_signed_certificate(tmp_path, [name])
    assert not (tmp_path / CERT_FILE).exists()


def test_fingerprint_is_the_sha256_of_the_der_certificate(tmp_path: Path) -> None:
    cert, _ = self_signed_certificate(tmp_path, [])
    fingerprint = certificate_fingerprint(cert)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint)
    der = _load(cert).public_bytes(serialization.Encoding.DER)
    assert fingerprint.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    with pytest.raises(
        TlsError, match=f"^the TLS certificate file {re.escape(str(tmp_path))}/x does not exist$"
    ):
        certificate_fingerprint(tmp_path / "x")


def _other_key(path: Path, encryption: serialization.KeySerializationEncryption) -> Path:
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d, c, k: (d / "none.crt", k),
            "the TLS certificate file {d}/none.crt does not exist",
        ),
        (lambda d, c, k: (c, d / "none.key"), "the TLS key file {d}/none.key does not exist"),
        (lambda d, c, k: (k, k), "{d}/self-signed.key is not a PEM certificate"),
        (lambda d, c, k: (c, c), "{d}/self-signed.crt is not a PEM private key"),
        (
            lambda d, c, k: (c, _other_key(d / "other.key", serialization.NoEncryption())),
            "the key {d}/other.key does not belong to the certificate {d}/self-signed.crt",
        ),
        (
            lambda d, c, k: (
                c,
                _other_key(d / "locked.key", serialization.BestAvailableEncryption(b"pw")),
            ),
            "the key {d}/locked.key is encrypted; give an unencrypted key file readable only"
            " by Sabaq",
        ),
    ],
)
def test_ssl_context_errors_name_the_file(
    tmp_path: Path, make: Callable[[Path, Path, Path], tuple[Path, Path]], message: str
) -> None:
    cert, key = self_signed_certificate(tmp_path, [])
    with pytest.raises(TlsError) as caught:
        server_ssl_context(*make(tmp_path, cert, key))
    assert str(caught.value) == message.format(d=tmp_path)


def test_ssl_context_is_a_tls12_server_context(tmp_path: Path) -> None:
    context = server_ssl_context(*self_signed_certificate(tmp_path, []))
    assert context.protocol is ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


async def test_an_https_server_on_loopback_is_trusted_through_its_certificate(
    tmp_path: Path,
) -> None:
    cert, key = self_signed_certificate(tmp_path / "tls", ["sabaq.test"])

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="сәлем")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(cert, key))
        await site.start()
        (address,) = runner.addresses
        host, port = address[0], address[1]
        assert ipaddress.ip_address(host).is_loopback
        trusting = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as session:
            for url in (f"https://localhost:{port}/", f"https://127.0.0.1:{port}/"):
                async with session.get(url, ssl=trusting) as response:
                    assert response.status == 200
                    assert await response.text() == "сәлем"
                    assert response.url.scheme == "https"
            # Without the certificate as a trust anchor, verification fails as in a browser.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(
                    f"https://localhost:{port}/", ssl=ssl.create_default_context()
                ):
                    pass
            # The name the client asks for must be in the certificate.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(
                    f"https://127.0.0.1:{port}/", ssl=trusting, server_hostname="other.test"
                ):
                    pass
    finally:
        await runner.cleanup()
