"""Signed checkpoints of the footprint chain, the Ed25519 signing key, and their files.

A checkpoint says "at event ``seq`` the chain's hash was ``hash``", signed with
the server's Ed25519 key over the canonical JSON of ``{seq, hash, at, key_id}``
(docs/footprint.md, "Checkpoints"). The registrar keeps exported copies and the
public key outside the server; with them, :mod:`.verify` detects a rewritten
chain or an old copy of the database put back in place.

Checkpoint files are JSON lines, one canonical object per line, fsynced after
every append so a checkpoint the ledger has reported is on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_json, format_time, parse_time

__all__ = [
    "Checkpoint",
    "append_checkpoints",
    "key_id",
    "load_or_create_signing_key",
    "load_public_key",
    "public_key_pem",
    "read_checkpoints",
    "sign_checkpoint",
    "verify_checkpoint",
    "write_checkpoints",
]

_log = logging.getLogger(__name__)

_HASH: Final = re.compile(r"[0-9a-f]{64}")
_KEY_ID: Final = re.compile(r"[0-9a-f]{16}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{128}")  # Ed25519 signatures are 64 bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the chain's hash at event ``seq``."""

    seq: int
    hash: str
    at: datetime
    key_id: str
    signature: str

    def payload(self) -> bytes:
        """The bytes the signature covers: canonical JSON of ``{seq, hash, at, key_id}``."""
        return canonical_json(
            {"seq": self.seq, "hash": self.hash, "at": format_time(self.at), "key_id": self.key_id}
        )

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as a JSON object (one line of a checkpoints file)."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": format_time(self.at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        """Parses :meth:`to_json`'s shape; ValueError names the first field that is wrong."""
        if not isinstance(value, Mapping):
            raise ValueError("a checkpoint must be a JSON object")
        seq = value.get("seq")
        # bool is an int in Python; "seq": true is not an event number.
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("checkpoint seq must be an integer >= 1")
        fields: dict[str, str] = {}
        for name, shape in (("hash", _HASH), ("key_id", _KEY_ID), ("signature", _SIGNATURE)):
            text = value.get(name)
            if not isinstance(text, str) or shape.fullmatch(text) is None:
                raise ValueError(f"checkpoint {name} must be {shape.pattern}")
            fields[name] = text
        at = value.get("at")
        if not isinstance(at, str):
            raise ValueError("checkpoint at must be a string")
        return cls(seq, fields["hash"], parse_time(at), fields["key_id"], fields["signature"])


# --- keys ---------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key as a SubjectPublicKeyInfo PEM, the form the registrar keeps."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a public PEM, or from the signing key's PEM (its public half)."""
    try:
        if b"PRIVATE KEY" in pem:
            private = serialization.load_pem_private_key(pem, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return private.public_key()
        else:
            public = serialization.load_pem_public_key(pem)
            if isinstance(public, Ed25519PublicKey):
                return public
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM key: {exc}") from None
    raise ValueError("not an Ed25519 key")


def _load_signing_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # Not fatal: refusing to start would stop every lesson over a chmod.
        _log.warning("footprint signing key %s is readable by others (mode %o)", path, mode)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Loads the PEM signing key at ``path``, creating it (mode 0600) when there is none."""
    if path.exists():
        return _load_signing_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written in full to a private temporary file, then linked into place: link() fails if
    # another process created the key meanwhile (we then use theirs), and nobody ever
    # reads a half-written key.
    fd, temporary = tempfile.mkstemp(prefix=".footprint-key-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _load_signing_key(path)
        _fsync_directory(path.parent)
    finally:
        os.unlink(temporary)
    _log.info("footprint signing key %s created (key id %s)", path, key_id(key.public_key()))
    return key


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, hash: str, at: datetime) -> Checkpoint:
    """A checkpoint of the chain's ``hash`` at event ``seq``, signed with ``key``."""
    unsigned = Checkpoint(seq, hash, at, key_id(key.public_key()), "")
    return Checkpoint(seq, hash, at, unsigned.key_id, key.sign(unsigned.payload()).hex())


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether ``checkpoint`` was signed by the holder of ``public_key``."""
    # A checkpoint that names another key was not signed by this one, whatever it carries.
    if checkpoint.key_id != key_id(public_key):
        return False
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.payload())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- files ----------------------------------------------------------------------------------


def _line(checkpoint: Checkpoint) -> bytes:
    return canonical_json(checkpoint.to_json()) + b"\n"


def _fsync_directory(path: Path) -> None:
    # A new file's name is durable only once its directory is synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """The checkpoints in a JSON-lines file; ValueError names the first bad line.

    An unterminated last line is skipped: it is an append cut short by a crash (or a copy
    taken during one), and the ledger's table holds that checkpoint too.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] and not data.endswith(b"\n"):
        lines.pop()
    result: list[Checkpoint] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result.append(Checkpoint.from_json(json.loads(line)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    return result


def append_checkpoints(path: Path, checkpoints: Iterable[Checkpoint]) -> None:
    """Appends ``checkpoints`` to a JSON-lines file and fsyncs it."""
    data = b"".join(_line(checkpoint) for checkpoint in checkpoints)
    if not data:
        return
    created = not path.exists()
    with path.open("ab") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    if created:
        _fsync_directory(path.parent)


def write_checkpoints(path: Path, checkpoints: Iterable[Checkpoint]) -> None:
    """Replaces ``path`` atomically with ``checkpoints`` as JSON lines (an export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(b"".join(_line(checkpoint) for checkpoint in checkpoints))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _last_in_file(path: Path) -> int:
    """The seq of the last checkpoint in a file (0 for none); cuts a torn last line first.

    A torn line is a crash during an append; cut, the next append starts on a line of its
    own. Only the tail is read: the file grows by a line per thousand events, for years.
    ValueError if the last whole line is not a checkpoint.
    """
    try:
        file = path.open("r+b")
    except FileNotFoundError:
        return 0
    with file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - 4096)  # a line is about 300 bytes
        file.seek(start)
        tail = file.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n") + 1
            if cut == 0 and start > 0:
                raise ValueError(f"{path}: no line break in its last 4 KiB")
            _log.warning("footprint checkpoints file %s: cut a torn last line", path)
            file.truncate(start + cut)
            os.fsync(file.fileno())
            tail = tail[:cut]
    if not tail:
        return 0
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        return Checkpoint.from_json(json.loads(last)).seq
    except ValueError as exc:
        raise ValueError(f"{path}, last line: {exc}") from None


# --- the ledger's checkpoints table -------------------------------------------------------


def _table_checkpoints(connection: sqlite3.Connection, after: int = 0) -> list[Checkpoint]:
    """The rows of the ``checkpoints`` table with seq > ``after``; ValueError on a bad row."""
    rows = connection.execute(
        "SELECT seq, hash, at, key_id, signature FROM checkpoints WHERE seq > ? ORDER BY seq",
        (after,),
    )
    names = ("seq", "hash", "at", "key_id", "signature")
    return [Checkpoint.from_json(dict(zip(names, row, strict=True))) for row in rows]


def _checkpoint_at(connection: sqlite3.Connection, seq: int) -> Checkpoint | None:
    found = _table_checkpoints(connection, seq - 1)
    return found[0] if found and found[0].seq == seq else None


def _newest_checkpoint(connection: sqlite3.Connection) -> int:
    (seq,) = connection.execute("SELECT coalesce(max(seq), 0) FROM checkpoints").fetchone()
    return int(seq)


def _insert_checkpoint(connection: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    row = checkpoint.to_json()
    connection.execute(
        "INSERT INTO checkpoints (seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?)",
        (row["seq"], row["hash"], row["at"], row["key_id"], row["signature"]),
    )
