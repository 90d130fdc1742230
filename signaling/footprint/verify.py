"""Verification of a footprint ledger: the hash chain from event 1, and every checkpoint.

Read-only and independent of the writer: it shares only the event format
(:mod:`.canonical`) and the checkpoint format (:mod:`.checkpoints`), so a bug
in :mod:`.ledger` cannot hide itself here. The first problem by position is
reported with the messages of docs/footprint.md ("Verification"); positions
are event numbers, and an event's own problems come before a checkpoint's at
the same number.

The public key is never taken from the database: whoever could edit the
events could replace a key stored beside them. Without a key from outside,
the chain and the checkpoints' hashes are still checked, but the result says
``signatures_checked=False``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import ZERO_HASH, _hash_text, canonical_json
from .checkpoints import Checkpoint, load_public_key, read_checkpoints, verify_checkpoint

__all__ = ["VerifyResult", "verify_ledger"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What :func:`verify_ledger` found: ``ok``, or the first problem and its event number."""

    ok: bool
    events: int
    """Events verified (all of them when ``ok``; those before the problem otherwise)."""
    checkpoints: int
    """Distinct checkpoints verified (from the database and the files together)."""
    problem: str | None
    position: int | None
    signatures_checked: bool = False
    """False when no public key was given: the checkpoints' hashes were checked, not who signed."""


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the ledger at ``path`` (FileNotFoundError if there is none)."""
    if not path.is_file():
        raise FileNotFoundError(f"no footprint ledger at {path}")
    # mode=ro: verifying must never change the evidence (not even by creating a table).
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        # The file may have been tampered with: its schema must not run functions on our behalf.
        connection.execute("PRAGMA trusted_schema = OFF")
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise ValueError(f"{path} is not a footprint ledger: {exc}") from None
    if "events" not in tables:
        connection.close()
        raise ValueError(f"{path} is not a footprint ledger: it has no events table")
    return connection


def _table_rows(connection: sqlite3.Connection) -> list[tuple[int, Checkpoint | None]]:
    """The checkpoints table as (seq, checkpoint); None for a row that is not a checkpoint."""
    if (
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
        ).fetchone()
        is None
    ):
        return []
    names = ("seq", "hash", "at", "key_id", "signature")
    rows: list[tuple[int, Checkpoint | None]] = []
    for row in connection.execute(f"SELECT {', '.join(names)} FROM checkpoints ORDER BY seq"):
        try:
            rows.append((row[0], Checkpoint.from_json(dict(zip(names, row, strict=True)))))
        except ValueError:
            # A malformed row cannot carry a valid signature; it is reported as one that fails.
            rows.append((row[0], None))
    return rows


def verify_ledger(
    path: Path | str,
    *,
    public_key_pem: bytes | None = None,
    checkpoint_files: Sequence[Path] = (),
) -> VerifyResult:
    """Recomputes the chain from event 1 and checks every checkpoint; read-only, synchronous.

    Raises FileNotFoundError for a missing ledger or checkpoints file and ValueError for a
    file that is not a ledger, an unreadable checkpoints file or a key that is not Ed25519.
    """
    public_key = None if public_key_pem is None else load_public_key(public_key_pem)
    # The files first: the ledger writes a checkpoint to its file only after the event it
    # signs has committed, so every checkpoint read now is in the snapshot opened below,
    # and a ledger verified while it runs is not reported as truncated.
    from_files = [c for file in checkpoint_files for c in read_checkpoints(Path(file))]
    connection = _open_read_only(Path(path))
    try:
        connection.execute("BEGIN")  # one snapshot for both tables
        return _verify(connection, public_key, from_files)
    finally:
        connection.close()


def _verify(
    connection: sqlite3.Connection,
    public_key: Ed25519PublicKey | None,
    from_files: list[Checkpoint],
) -> VerifyResult:
    checked = public_key is not None
    # Identical copies (the table and the registrar's file) count once.
    pending: dict[int, list[Checkpoint | None]] = {}
    seen: set[Checkpoint] = set()
    for seq, checkpoint in [*_table_rows(connection), *((c.seq, c) for c in from_files)]:
        if checkpoint is not None:
            if checkpoint in seen:
                continue
            seen.add(checkpoint)
        pending.setdefault(seq, []).append(checkpoint)
    verified = 0
    expected, prev = 1, ZERO_HASH

    def failed(problem: str, position: int) -> VerifyResult:
        return VerifyResult(False, expected - 1, verified, problem, position, checked)

    # Bytes, decoded here: a text column made invalid UTF-8 is an altered event, whereas
    # the sqlite3 module would raise in the middle of the walk.
    connection.text_factory = bytes
    rows = connection.execute(
        "SELECT seq, at, lesson, course, actor, type, data, prev, hash FROM events ORDER BY seq"
    )
    for raw in rows:
        seq = raw[0]
        if seq != expected:
            if isinstance(seq, int) and seq > expected:
                return failed(
                    f"event {expected}: missing (sequence jumps from {expected - 1} to {seq})",
                    expected,
                )
            return failed(f"event {seq}: altered (hash does not match its content)", expected)
        decoded = _decode(raw)
        # The hash covers prev too, so "altered" is judged with the stored prev: an event
        # whose content and hash agree but whose prev is not its predecessor's hash was
        # moved, or something was put in or taken out before it.
        if decoded is None or _recompute(seq, *decoded[1][:7]) != decoded[1][7]:
            return failed(f"event {seq}: altered (hash does not match its content)", seq)
        stored_prev, stored_hash = decoded[1][6], decoded[1][7]
        if stored_prev != prev:
            return failed(
                f"event {seq}: does not follow event {seq - 1} (prev hash differs): "
                "an event was inserted, deleted or reordered before it",
                seq,
            )
        prev = stored_hash
        expected += 1
        for checkpoint in pending.pop(seq, ()):
            problem = _check(checkpoint, seq, prev, public_key)
            if problem is not None:
                return failed(problem, seq)
            verified += 1
    if pending:
        first, last = min(pending), expected - 1
        return failed(
            f"checkpoint at event {first} is beyond the last event ({last}): "
            "events were truncated or an old copy was restored",
            first,
        )
    return VerifyResult(True, expected - 1, verified, None, None, checked)


def _decode(row: tuple[object, ...]) -> tuple[int, list[str]] | None:
    """(seq, the text columns) of a row read as bytes; None where one is not UTF-8 text."""
    seq, *rest = row
    texts: list[str] = []
    for value in rest:
        if not isinstance(value, bytes):
            return None  # a column of the wrong type: the ledger never wrote this row
        try:
            texts.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    return (seq, texts) if isinstance(seq, int) else None


def _recompute(
    seq: int, at: str, lesson: str, course: str, actor: str, type_: str, data: str, prev: str
) -> str | None:
    """The hash an event with these stored columns must have; None if its data is not JSON."""
    try:
        # Re-canonicalised: the hash covers the data's value, not how its text is spelled.
        data = canonical_json(json.loads(data)).decode()
    except (ValueError, RecursionError):
        return None
    return _hash_text(seq, at, lesson, course, actor, type_, data, prev)


def _check(
    checkpoint: Checkpoint | None, seq: int, chain: str, public_key: Ed25519PublicKey | None
) -> str | None:
    """The problem with one checkpoint at event ``seq`` whose chain hash is ``chain``."""
    if checkpoint is None or (
        public_key is not None and not verify_checkpoint(checkpoint, public_key)
    ):
        return f"checkpoint at event {seq}: signature does not verify"
    if checkpoint.hash != chain:
        return f"checkpoint at event {seq}: the chain has a different hash there"
    return None
