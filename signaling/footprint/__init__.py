"""The digital footprint: an append-only, hash-chained ledger of lesson events.

Order 137 §2.12 asks for a *verified* record of attendance and participation
(docs/footprint.md). :class:`Ledger` stores events in their own SQLite file,
chains them by SHA-256 and signs checkpoints with Ed25519;
:func:`verify_ledger` proves, from outside the server, that nobody edited,
inserted, deleted, reordered or rolled back the record.
"""

from __future__ import annotations

from .canonical import ZERO_HASH, Event, canonical_json, event_hash, format_time, parse_time, utcnow
from .checkpoints import (
    Checkpoint,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    public_key_pem,
    read_checkpoints,
    sign_checkpoint,
    verify_checkpoint,
    write_checkpoints,
)
from .ledger import MAX_DATA_BYTES, MAX_FIELD_LENGTH, MAX_QUERY_LIMIT, Ledger, LedgerClosed
from .verify import VerifyResult, verify_ledger

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_FIELD_LENGTH",
    "MAX_QUERY_LIMIT",
    "ZERO_HASH",
    "Checkpoint",
    "Event",
    "Ledger",
    "LedgerClosed",
    "VerifyResult",
    "canonical_json",
    "event_hash",
    "format_time",
    "key_id",
    "load_or_create_signing_key",
    "load_public_key",
    "parse_time",
    "public_key_pem",
    "read_checkpoints",
    "sign_checkpoint",
    "utcnow",
    "verify_checkpoint",
    "verify_ledger",
    "write_checkpoints",
]
