"""HTTPS for `sabaq serve`: a self-signed certificate when none is given, and the SSL context.

Browsers give web pages the camera and microphone only in a secure context:
``https://`` or ``http://localhost``. A lesson reached over a LAN address
therefore needs HTTPS even without a domain name, so Sabaq can make its own
self-signed certificate (ECDSA P-256, 90 days) and prints its SHA-256
fingerprint, which people compare with what their browser's warning shows.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "RENEW_BEFORE",
    "VALIDITY",
    "TlsError",
    "certificate_fingerprint",
    "self_signed_certificate",
    "server_ssl_context",
]

CERT_FILE: Final = "self-signed.crt"
"""Name of the generated certificate (PEM) inside the directory given."""

KEY_FILE: Final = "self-signed.key"
"""Name of the generated private key (PEM, PKCS#8, mode 0600) inside the directory given."""

VALIDITY: Final = timedelta(days=90)
"""Lifetime of a generated certificate; short, as for any certificate nobody revokes."""

RENEW_BEFORE: Final = timedelta(days=7)
"""A certificate with less than this left is replaced at the next start."""

# Names every generated certificate covers, so that the same file serves a
# developer on this machine whatever they type in the address bar.
_ALWAYS: Final = ("localhost", "127.0.0.1", "::1")

# Browsers reject certificates whose notBefore lies ahead of their clock; an
# hour in the past absorbs ordinary skew between the server and the laptops.
_BACKDATE: Final = timedelta(hours=1)

_Name = x509.DNSName | x509.IPAddress

_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class TlsError(Exception):
    """A certificate or key cannot be used; the message names the file and says why."""


def _general_name(name: str) -> _Name:
    """The SubjectAltName entry for a host name or an IP address."""
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]  # "[::1]" as written in URLs
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        # SubjectAltNames hold A-labels: "университет.kz" becomes "xn--...".
        ascii_name = text.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise TlsError(f"{name!r} is neither an IP address nor a host name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise TlsError(f"{name!r} is neither an IP address nor a host name")
    return x509.DNSName(ascii_name)


def _names(hostnames: Iterable[str]) -> list[_Name]:
    names: list[_Name] = []
    for name in (*_ALWAYS, *hostnames):
        general = _general_name(name)
        if general not in names:
            names.append(general)
    return names


def _usable(cert_path: Path, key_path: Path, names: list[_Name], now: datetime) -> bool:
    """Whether an existing pair matches, covers every name and lives long enough."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False  # missing, damaged or foreign files: make a fresh pair
    if key.public_key() != cert.public_key():
        return False
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE:
        return False
    return all(name in covered for name in names)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically, so a crash never leaves half a key or a mismatched pair."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def self_signed_certificate(
    directory: Path, hostnames: Iterable[str], *, now: datetime | None = None
) -> tuple[Path, Path]:
    """The (certificate, key) in ``directory``, made anew unless the existing pair still serves.

    The certificate covers localhost, 127.0.0.1, ::1 and every name in
    ``hostnames`` (IP addresses as IPAddress, names as DNSName entries). An
    existing pair is kept while it covers every name and has more than
    :data:`RENEW_BEFORE` left, so the fingerprint people checked stays the same.
    ``now`` is for tests.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    names = _names(hostnames)
    cert_path = directory / CERT_FILE
    key_path = directory / KEY_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise TlsError(f"cannot create {directory}: {error.strerror or error}") from None
    if _usable(cert_path, key_path, names, moment):
        key_path.chmod(0o600)  # in case someone loosened it since
        return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    # The common name is informational (browsers read only the SANs): the first name given.
    given = [n.value for n in names[len(_ALWAYS) :] if isinstance(n, x509.DNSName)]
    first = given[0] if given else "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, first[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sabaq (self-signed)"),
        ]
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _BACKDATE)
        .not_valid_after(moment + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # A server certificate, not a CA: trusting it trusts this server only.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Key identifiers: OpenSSL's strict verification (Python 3.13's default) wants them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        _write(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as error:
        raise TlsError(f"cannot write the certificate in {directory}: {error}") from None
    return cert_path, key_path


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"the TLS {label} file {path} does not exist") from None
    except OSError as error:
        raise TlsError(f"cannot read the TLS {label} file {path}: {error.strerror}") from None


def _load_certificate(cert: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(cert, "certificate"))
    except ValueError:
        raise TlsError(f"{cert} is not a PEM certificate") from None


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise TlsError("the key is encrypted")


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context for ``cert`` (PEM, chain allowed) and its private ``key``."""
    # Parsed here first so that the errors name the file and the fault; OpenSSL
    # says only "PEM lib" for most of them.
    certificate = _load_certificate(cert)
    try:
        private_key = serialization.load_pem_private_key(_read(key, "key"), password=None)
    except TypeError:
        raise TlsError(
            f"the key {key} is encrypted; give an unencrypted key file readable only by Sabaq"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"{key} is not a PEM private key") from None
    if private_key.public_key() != certificate.public_key():
        raise TlsError(f"the key {key} does not belong to the certificate {cert}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996); every browser that can do WebRTC has 1.2.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_refuse_password)
    except TlsError as error:
        raise TlsError(f"{key}: {error}") from None
    except (ssl.SSLError, OSError) as error:
        raise TlsError(f"cannot load {cert} with {key}: {error}") from None
    return context


def certificate_fingerprint(cert: Path) -> str:
    """The SHA-256 fingerprint of ``cert`` as browsers show it: ``AB:CD:…`` (64 hex digits)."""
    return _load_certificate(cert).fingerprint(hashes.SHA256()).hex(":").upper()
