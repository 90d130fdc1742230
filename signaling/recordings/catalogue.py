"""The recordings catalogue: which recordings a lesson has, their track files and states.

One row per recording (a lesson may be recorded more than once: stopped and
started again), one per *part*: a track file of one participant's camera,
microphone or screen, placed on the recording's timeline at ``start_offset_s``.
The composite (the single MP4 a background job makes) has its own state. The
records and their rules are in :mod:`.model`.

Everything goes through the single-writer :class:`~signaling.db.Database`
(migration 3). Ids come from ``secrets.token_urlsafe(16)`` (128 random bits):
they appear in page and media URLs, and guessing one must be hopeless.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from signaling.db import Database
from signaling.footprint.canonical import format_time, parse_time
from signaling.lessons import LessonNotFound

from .model import (
    _KINDS,
    _SOURCES,
    _TRANSITIONS,
    COMPOSITE_STATUSES,
    PART_STATUSES,
    RECORDING_STATUSES,
    CatalogueError,
    Part,
    Recording,
    RecordingNotFound,
    _json_time,
    _one_of,
    _reason,
    _relative_path,
    _seconds,
    _text,
)

__all__ = ["Catalogue"]

_RECORDING_COLUMNS: Final = (
    "id, lesson_id, course, started_at, ended_at, status, reason, "
    "composite_status, composite_progress, composite_path, composite_reason"
)
_PART_COLUMNS: Final = (
    "id, recording_id, participant_id, participant_name, source, kind, codec, path, "
    "start_offset_s, duration_s, size_bytes, status"
)


def _part_of(row: sqlite3.Row) -> Part:
    # _PART_COLUMNS lists Part's fields in their order.
    return Part(*row)


def _recordings_of(connection: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Recording]:
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    marks = ", ".join("?" * len(ids))
    parts: dict[str, list[Part]] = {recording_id: [] for recording_id in ids}
    for row in connection.execute(
        f"SELECT {_PART_COLUMNS} FROM recording_parts WHERE recording_id IN ({marks}) "
        "ORDER BY recording_id, position",
        ids,
    ):
        parts[row["recording_id"]].append(_part_of(row))
    return [
        Recording(
            id=row["id"],
            lesson_id=row["lesson_id"],
            course=row["course"],
            started_at=parse_time(row["started_at"]),
            ended_at=None if row["ended_at"] is None else parse_time(row["ended_at"]),
            status=row["status"],
            reason=row["reason"],
            composite_status=row["composite_status"],
            composite_progress=row["composite_progress"],
            composite_path=row["composite_path"],
            composite_reason=row["composite_reason"],
            parts=tuple(parts[row["id"]]),
        )
        for row in rows
    ]


def _load(connection: sqlite3.Connection, recording_id: str) -> Recording:
    rows = connection.execute(
        f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE id = ?", (recording_id,)
    ).fetchall()
    if not rows:
        # The id is not echoed: a caller may pass on this message, and the id may be a guess.
        raise RecordingNotFound("no such recording")
    return _recordings_of(connection, rows)[0]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Catalogue:
    """The recordings of every lesson, in the main database."""

    __slots__ = ("_clock", "_db")

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._clock = clock

    async def create(self, lesson_id: str, course: str, started_at: datetime) -> Recording:
        """A new recording of the lesson, in status ``recording``; LessonNotFound if unknown."""
        _text("lesson_id", lesson_id)
        _text("course", course)
        if started_at.utcoffset() is None:
            raise CatalogueError("started_at must carry a time zone")
        recording = Recording(
            id=secrets.token_urlsafe(16),
            lesson_id=lesson_id,
            course=course,
            started_at=started_at.astimezone(UTC),
            ended_at=None,
            status="recording",
            reason=None,
            composite_status="pending",
            composite_progress=0.0,
            composite_path=None,
            composite_reason=None,
            parts=(),
        )

        def create(connection: sqlite3.Connection) -> Recording:
            try:
                connection.execute(
                    f"INSERT INTO recordings ({_RECORDING_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, NULL, 'recording', NULL, 'pending', 0, NULL, NULL)",
                    (recording.id, lesson_id, course, format_time(recording.started_at)),
                )
            except sqlite3.IntegrityError:
                raise LessonNotFound(f"no lesson has the id {lesson_id[:64]!r}") from None
            return recording

        return await self._db.run(create)

    async def add_part(
        self,
        recording_id: str,
        *,
        participant_id: str,
        participant_name: str,
        source: str,
        kind: str,
        codec: str,
        path: str,
        start_offset_s: float,
    ) -> Part:
        """Registers a track file (status ``recording``) of a recording."""
        part = Part(
            id=secrets.token_urlsafe(16),
            recording_id=recording_id,
            participant_id=_text("participant_id", participant_id),
            participant_name=_text("participant_name", participant_name),
            source=_one_of("source", source, _SOURCES),
            kind=_one_of("kind", kind, _KINDS),
            codec=_text("codec", codec),
            path=_relative_path("path", path),
            start_offset_s=_seconds("start_offset_s", start_offset_s),
            duration_s=None,
            size_bytes=None,
            status="recording",
        )

        def add(connection: sqlite3.Connection) -> Part:
            _load(connection, recording_id)
            (position,) = connection.execute(
                "SELECT count(*) FROM recording_parts WHERE recording_id = ?", (recording_id,)
            ).fetchone()
            connection.execute(
                f"INSERT INTO recording_parts ({_PART_COLUMNS}, position) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 'recording', ?)",
                (
                    part.id,
                    recording_id,
                    part.participant_id,
                    part.participant_name,
                    part.source,
                    part.kind,
                    part.codec,
                    part.path,
                    part.start_offset_s,
                    position,
                ),
            )
            return part

        return await self._db.run(add)

    async def update_part(
        self,
        part_id: str,
        *,
        duration_s: float | None = None,
        size_bytes: int | None = None,
        status: str | None = None,
    ) -> Part:
        """Sets what is given of a part's duration, size and status; returns the part."""
        changes: dict[str, object] = {}
        if duration_s is not None:
            changes["duration_s"] = _seconds("duration_s", duration_s)
        if size_bytes is not None:
            if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
                raise CatalogueError("size_bytes must be a non-negative integer")
            changes["size_bytes"] = size_bytes
        if status is not None:
            changes["status"] = _one_of("status", status, PART_STATUSES)

        def update(connection: sqlite3.Connection) -> Part:
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                connection.execute(
                    f"UPDATE recording_parts SET {assignments} WHERE id = ?",
                    (*changes.values(), part_id),
                )
            row = connection.execute(
                f"SELECT {_PART_COLUMNS} FROM recording_parts WHERE id = ?", (part_id,)
            ).fetchone()
            if row is None:
                raise RecordingNotFound("no such part")
            return _part_of(row)

        return await self._db.run(update)

    async def set_status(
        self, recording_id: str, status: str, reason: str | None = None
    ) -> Recording:
        """Moves the recording on (the same status again: no change); ``failed`` needs a reason.

        Leaving ``recording`` stamps ``ended_at`` with the catalogue's clock.
        """
        _one_of("status", status, RECORDING_STATUSES)
        reason = _reason(status, reason)
        now = self._clock()

        def move(connection: sqlite3.Connection) -> Recording:
            recording = _load(connection, recording_id)
            if recording.status == status and recording.reason == reason:
                return recording
            if status not in _TRANSITIONS[recording.status]:
                raise CatalogueError(
                    f"a recording in status {recording.status!r} cannot become {status!r}"
                )
            ended = recording.ended_at or (now if recording.status == "recording" else None)
            connection.execute(
                "UPDATE recordings SET status = ?, reason = ?, ended_at = ? WHERE id = ?",
                (status, reason, _json_time(ended), recording_id),
            )
            return _load(connection, recording_id)

        return await self._db.run(move)

    async def set_composite(
        self,
        recording_id: str,
        *,
        status: str,
        progress: float | None = None,
        path: str | None = None,
        reason: str | None = None,
    ) -> Recording:
        """Records the composite job's state: ``ready`` needs the file's path, ``failed`` a reason.

        ``progress`` (0 to 1) defaults to 0 for ``pending``, 1 for ``ready`` and to the
        stored value otherwise.
        """
        _one_of("status", status, COMPOSITE_STATUSES)
        reason = _reason(status, reason)
        if progress is not None:
            progress = _seconds("progress", progress)
            if progress > 1:
                raise CatalogueError("progress must be from 0 to 1")
        if status == "ready":
            path = _relative_path("path", path)
        elif path is not None:
            raise CatalogueError("a composite path goes only with the status 'ready'")

        def update(connection: sqlite3.Connection) -> Recording:
            recording = _load(connection, recording_id)
            defaults = {"pending": 0.0, "ready": 1.0}
            value = progress if progress is not None else defaults.get(status)
            if value is None:
                value = recording.composite_progress
            connection.execute(
                "UPDATE recordings SET composite_status = ?, composite_progress = ?, "
                "composite_path = ?, composite_reason = ? WHERE id = ?",
                (status, value, path, reason, recording_id),
            )
            return _load(connection, recording_id)

        return await self._db.run(update)

    async def get(self, recording_id: str) -> Recording:
        """The recording with its parts; RecordingNotFound if there is none."""
        return await self._db.run(lambda connection: _load(connection, recording_id))

    async def for_lesson(self, lesson_id: str) -> list[Recording]:
        """The lesson's recordings, oldest first."""

        def select(connection: sqlite3.Connection) -> list[Recording]:
            rows = connection.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE lesson_id = ? "
                "ORDER BY started_at, id",
                (lesson_id,),
            ).fetchall()
            return _recordings_of(connection, rows)

        return await self._db.run(select)

    async def expired(self, before: datetime) -> list[Recording]:
        """Finished (ready or failed) recordings that ended before ``before``, oldest first."""
        limit = format_time(before)

        def select(connection: sqlite3.Connection) -> list[Recording]:
            rows = connection.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM recordings "
                "WHERE status IN ('ready', 'failed') AND coalesce(ended_at, started_at) < ? "
                "ORDER BY started_at, id",
                (limit,),
            ).fetchall()
            return _recordings_of(connection, rows)

        return await self._db.run(select)

    async def delete(self, recording_id: str) -> bool:
        """Removes the recording and its parts from the catalogue (not their files).

        Returns whether there was one to remove.
        """

        def delete(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
            return cursor.rowcount > 0

        return await self._db.run(delete)
