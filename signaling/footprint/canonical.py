"""The event format of the footprint ledger: canonical JSON, timestamps, the event hash.

Everything the hash chain depends on lives here, so that the writer
(:mod:`.ledger`) and the verifier (:mod:`.verify`) cannot drift apart: two
byte strings differ exactly when the values differ (docs/footprint.md,
"Canonical JSON"), and a stored event's ``hash`` is the SHA-256 of the
canonical JSON of ``{seq, at, lesson, course, actor, type, data, prev}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "ZERO_HASH",
    "Event",
    "canonical_json",
    "event_hash",
    "format_time",
    "parse_time",
    "utcnow",
]

ZERO_HASH: Final = "0" * 64
"""The ``prev`` of event 1: there is no previous event."""

# Fixed width (always six fraction digits): the text order of two stamps is their time order,
# so SQL can compare them as strings.
_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)

# Deeper than any event the classroom writes; json would otherwise recurse to Python's limit
# and turn a hostile value into a RecursionError far from the caller.
_MAX_DEPTH: Final = 32


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the ledger's default clock)."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """``2026-11-24T09:00:00.123456Z``: UTC with microseconds; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a footprint time must be timezone-aware")
    # isoformat pads the year to four digits where strftime("%Y") does not (year 999).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`; raises ValueError on any other shape."""
    if isinstance(text, str) and _TIME.fullmatch(text) is not None:
        # fromisoformat is ten times faster than strptime and reads "Z" since Python 3.11.
        with contextlib.suppress(ValueError):  # 2026-13-45T…: the right shape, no such day
            return datetime.fromisoformat(text)
    raise ValueError(f"not a footprint time (want 2026-11-24T09:00:00.000000Z): {text!r}")


def _check(value: object, depth: int) -> None:
    """Refuses what json.dumps would accept but not round-trip: non-str keys, NaN, objects."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinities have no JSON form")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            # json.dumps would turn 1 into "1" silently, and {1: .., "1": ..} into a duplicate key.
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, not {type(key).__name__}")
            _check(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    raise ValueError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; ValueError for what has no JSON form."""
    _check(value, 0)
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        # A lone surrogate ("\ud800") is a valid str but has no UTF-8 form.
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a string is not valid Unicode: {exc.reason}") from None


def _string(text: str) -> str:
    # The same encoder canonical_json uses for strings (ensure_ascii=False).
    return json.dumps(text, ensure_ascii=False)


def _envelope(
    seq: int, at: str, lesson: str, course: str, actor: str, type: str, data: str, prev: str
) -> bytes:
    """Canonical JSON of the hashed object, with ``data`` spliced in as canonical text.

    Equal to ``canonical_json({...})`` (a test holds it to that); building it by hand
    saves re-serialising ``data``, which the writer has as canonical text already. The
    keys are written in sorted order: actor, at, course, data, lesson, prev, seq, type.
    """
    return (
        f'{{"actor":{_string(actor)},"at":{_string(at)},"course":{_string(course)},'
        f'"data":{data},"lesson":{_string(lesson)},"prev":{_string(prev)},'
        f'"seq":{int(seq)},"type":{_string(type)}}}'
    ).encode()


def _hash_text(
    seq: int, at: str, lesson: str, course: str, actor: str, type: str, data: str, prev: str
) -> str:
    """The event hash from stored column values (``data`` already canonical JSON text)."""
    return hashlib.sha256(_envelope(seq, at, lesson, course, actor, type, data, prev)).hexdigest()


def event_hash(
    seq: int,
    at: datetime | str,
    lesson: str,
    course: str,
    actor: str,
    type: str,
    data: Mapping[str, Any],
    prev: str,
) -> str:
    """Hex SHA-256 of canonical JSON ``{seq, at, lesson, course, actor, type, data, prev}``."""
    stamp = at if isinstance(at, str) else format_time(at)
    text = canonical_json(data).decode("utf-8")
    return _hash_text(seq, stamp, lesson, course, actor, type, text, prev)


@dataclass(frozen=True, slots=True)
class Event:
    """One stored footprint event."""

    seq: int
    at: datetime
    lesson: str
    course: str
    actor: str
    type: str
    data: Mapping[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object, ``at`` in the ledger's ISO form with ``Z``."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "lesson": self.lesson,
            "course": self.course,
            "actor": self.actor,
            "type": self.type,
            "data": dict(self.data),
            "prev": self.prev,
            "hash": self.hash,
        }
