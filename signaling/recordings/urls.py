"""Short-lived signed URLs for recording media: the URL itself is the credential.

A ``<video>`` element cannot send an ``Authorization`` header, and a token in a
URL would end up in the browser's history and in access logs for its whole
lifetime (an hour or more). So the API, having checked the viewer's token,
hands out media URLs of the form::

    /media/recordings/{recording_id}/{file}?exp=<unix seconds>&sig=<hex>

where ``file`` is a part id or ``composite``, and ``sig`` is
HMAC-SHA256(secret, path + "\\n" + exp) in hex. The newline keeps the two
fields apart (a path ending in digits could otherwise lend them to ``exp``).
A URL is good for :data:`DEFAULT_LIFETIME_S` (10 minutes); it names one file
of one recording and nothing else. The secret is 32 random bytes, kept hex
encoded in a file of mode 0600 that every server of a deployment shares.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import quote

__all__ = [
    "DEFAULT_LIFETIME_S",
    "MEDIA_PREFIX",
    "SECRET_BYTES",
    "MediaSigner",
    "load_or_create_secret",
]

_log = logging.getLogger(__name__)

DEFAULT_LIFETIME_S: Final = 600
"""How long a signed media URL is good for, in seconds."""

SECRET_BYTES: Final = 32
"""Length of the signing secret (the HMAC-SHA256 block is 64; the hash 32)."""

MEDIA_PREFIX: Final = "/media/recordings"
"""Where recording media is served."""

# A signature is 64 hex digits; an expiry a Unix time in seconds (10 digits until 2286).
_SIGNATURE_HEX: Final = 64
_MAX_EXP_DIGITS: Final = 12


def _read_secret(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: the media URL secret is not hex text") from None
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path}: the media URL secret must be at least {SECRET_BYTES} bytes")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        _log.warning("%s is readable by others (mode %o); it should be 0600", path, mode)
    return secret


def load_or_create_secret(path: Path) -> bytes:
    """The secret in ``path``, creating the file (mode 0600, 32 random bytes) if missing."""
    if path.exists():
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temporary file, then linked into place: link() fails if
    # another process created the secret meanwhile (its secret is then used), and nobody
    # ever reads half a secret.
    fd, temporary = tempfile.mkstemp(prefix=".media-secret-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(SECRET_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        else:
            _log.info("media URL secret %s created", path)
    finally:
        os.unlink(temporary)
    return _read_secret(path)


class MediaSigner:
    """Signs and checks the media URLs of recordings."""

    __slots__ = ("_clock", "_lifetime_s", "_secret")

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the secret must be at least {SECRET_BYTES} bytes")
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self._secret = secret
        self._lifetime_s = lifetime_s
        self._clock = clock

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> MediaSigner:
        """A signer with the secret of ``path`` (created if missing)."""
        return cls(load_or_create_secret(path), lifetime_s=lifetime_s, clock=clock)

    @property
    def lifetime_s(self) -> int:
        """Seconds a new URL stays good."""
        return self._lifetime_s

    @staticmethod
    def path(recording_id: str, file: str) -> str:
        """The unsigned path of a file (a part id or ``composite``) of a recording."""
        return f"{MEDIA_PREFIX}/{quote(recording_id, safe='')}/{quote(file, safe='')}"

    def _signature(self, path: str, exp: int) -> str:
        message = f"{path}\n{exp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def expiry(self) -> int:
        """When a URL signed now expires, in Unix seconds."""
        return int(self._clock()) + self._lifetime_s

    def sign(self, recording_id: str, file: str) -> tuple[str, int]:
        """A signed URL (path and query) for the file, and when it expires (Unix seconds)."""
        exp = self.expiry()
        path = self.path(recording_id, file)
        return f"{path}?exp={exp}&sig={self._signature(path, exp)}", exp

    def verify(self, recording_id: str, file: str, exp: str | None, sig: str | None) -> bool:
        """Whether ``exp`` and ``sig`` (the query's text) sign this file and have not expired."""
        if exp is None or sig is None:
            return False
        if not (exp.isascii() and exp.isdecimal() and len(exp) <= _MAX_EXP_DIGITS):
            return False
        if len(sig) != _SIGNATURE_HEX:
            return False
        expected = self._signature(self.path(recording_id, file), int(exp))
        # Constant time: the comparison must not tell an attacker how many digits were right.
        valid = hmac.compare_digest(expected, sig.lower())
        return valid and int(exp) >= self._clock()
