"""Lessons and their chat, kept in SQLite (see :mod:`signaling.db`).

A lesson's id is its join link (``/l/{id}``), so a generated id is unguessable:
``secrets.token_urlsafe(12)`` gives 96 random bits.

:func:`validate_lesson_fields` parses JSON input or raises :class:`InvalidLesson`
naming the field; it accepts its own output again, so the stores validate
whatever they are given and callers may validate first to check permissions.
"""

from __future__ import annotations

import builtins
import re
import secrets
import sqlite3
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

from signaling.db import Database

__all__ = [
    "MAX_CHAT_TEXT",
    "MAX_LESSON_DURATION",
    "ChatMessage",
    "ChatStore",
    "InvalidLesson",
    "Lesson",
    "LessonConflict",
    "LessonError",
    "LessonKind",
    "LessonNotFound",
    "LessonStatus",
    "LessonStore",
    "RecordingPolicy",
    "validate_lesson_fields",
]

MAX_LESSON_DURATION: Final = timedelta(hours=12)
"""Longest lesson; a longer one is a typo in a date, not a lesson."""

MAX_CHAT_TEXT: Final = 2000
"""Longest chat message in characters (docs/protocol.md, Limits)."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COURSE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_TITLE: Final = 200
_MAX_TEACHERS: Final = 20
_MAX_TEACHER_ID: Final = 128
_E = TypeVar("_E", bound=StrEnum)

# Longer than any ISO 8601 timestamp; caps what fromisoformat() is given.
_MAX_TIME_TEXT: Final = 64


class LessonKind(StrEnum):
    """What sort of lesson it is."""

    LECTURE = "lecture"
    SEMINAR = "seminar"
    CONSULTATION = "consultation"
    DEFENCE = "defence"
    EXAM = "exam"


class RecordingPolicy(StrEnum):
    """Whether and how the lesson is recorded."""

    OFF = "off"
    MANUAL = "manual"
    AUTOMATIC = "automatic"


class LessonStatus(StrEnum):
    """Where the lesson is in its life."""

    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


# Exams and defences are recorded unless the teacher says otherwise: appeals need them.
_AUTOMATIC_RECORDING: Final = frozenset({LessonKind.EXAM, LessonKind.DEFENCE})

# set_status(): which status may follow which. The server may reset a lesson to
# scheduled (the demo lesson, a rescheduled one), and an ended lesson may go live
# again (a teacher rejoins, docs/protocol.md "Ending"). Two things never happen:
# an ended lesson is cancelled (it took place), and a cancelled lesson goes live
# or ends (a classroom racing a cancel) without being rescheduled first.
_TRANSITIONS: Final[Mapping[LessonStatus, frozenset[LessonStatus]]] = {
    LessonStatus.SCHEDULED: frozenset(LessonStatus),
    LessonStatus.LIVE: frozenset(LessonStatus),
    LessonStatus.ENDED: frozenset(LessonStatus) - {LessonStatus.CANCELLED},
    LessonStatus.CANCELLED: frozenset({LessonStatus.CANCELLED, LessonStatus.SCHEDULED}),
}


class LessonError(Exception):
    """A lesson operation was refused; ``code`` is a stable string for APIs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LessonNotFound(LessonError):
    """No lesson has this id."""

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class InvalidLesson(LessonError):
    """A field of the input is missing or invalid; ``field`` names it."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__("invalid", message)
        self.field = field


class LessonConflict(LessonError):
    """The lesson's state does not allow this (duplicate id, cancelled, ended)."""

    def __init__(self, message: str) -> None:
        super().__init__("conflict", message)


def _json_time(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z``; microseconds only when there are any."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _db_time(moment: datetime) -> str:
    """Fixed width, so that SQLite's text order is time order."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _from_db_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Lesson:
    """A scheduled lesson, as stored."""

    id: str
    course: str
    title: str
    kind: LessonKind
    teacher_ids: tuple[str, ...]
    scheduled_start: datetime
    scheduled_end: datetime
    lobby: bool
    recording_policy: RecordingPolicy
    status: LessonStatus
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The lesson as the REST API shows it."""
        return {
            **self.summary(),
            "teacher_ids": list(self.teacher_ids),
            "created_at": _json_time(self.created_at),
            "updated_at": _json_time(self.updated_at),
            "join_path": f"/l/{self.id}",
        }

    def summary(self) -> dict[str, Any]:
        """The "lesson summary" of docs/protocol.md, sent to everyone in the lesson."""
        return {
            "id": self.id,
            "title": self.title,
            "course": self.course,
            "kind": self.kind.value,
            "status": self.status.value,
            "scheduled_start": _json_time(self.scheduled_start),
            "scheduled_end": _json_time(self.scheduled_end),
            "lobby": self.lobby,
            "recording_policy": self.recording_policy.value,
        }

    def is_teacher(self, user_id: str) -> bool:
        """Whether ``user_id`` is one of the lesson's teachers."""
        return user_id in self.teacher_ids


# --- validation --------------------------------------------------------------------------------

_INPUT_FIELDS: Final = (
    "id",
    "course",
    "title",
    "kind",
    "teacher_ids",
    "scheduled_start",
    "scheduled_end",
    "lobby",
    "recording_policy",
)
_REQUIRED: Final = ("course", "title", "kind", "teacher_ids", "scheduled_start", "scheduled_end")
_READ_ONLY: Final[Mapping[str, str]] = {
    "status": "status cannot be set here; it changes with /cancel and in the classroom",
    "created_at": "created_at is set by the server",
    "updated_at": "updated_at is set by the server",
    "join_path": "join_path is derived from the id",
}


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidLesson(field, f"{field} must be a string")
    return value


def _pattern(field: str, value: object, pattern: re.Pattern[str], allowed: str) -> str:
    text = _text(field, value)
    if pattern.fullmatch(text) is None:
        raise InvalidLesson(field, f"{field} must be 1 to 64 characters from {allowed}")
    return text


def _title(value: object) -> str:
    title = _text("title", value).strip()
    if not 1 <= len(title) <= _MAX_TITLE:
        raise InvalidLesson("title", f"title must be 1 to {_MAX_TITLE} characters after trimming")
    # A title is one line shown in lists and headers; control characters break both.
    if any(unicodedata.category(c) == "Cc" for c in title):
        raise InvalidLesson("title", "title must not contain control characters or line breaks")
    return title


def _enum(field: str, value: object, kind: type[_E]) -> _E:
    text = _text(field, value)
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidLesson(field, f"{field} must be one of: {choices}") from None


def _teachers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidLesson("teacher_ids", "teacher_ids must be a list of strings")
    if not 1 <= len(value) <= _MAX_TEACHERS:
        raise InvalidLesson("teacher_ids", f"teacher_ids must list 1 to {_MAX_TEACHERS} teachers")
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, str) or not 1 <= len(item) <= _MAX_TEACHER_ID:
            raise InvalidLesson(
                "teacher_ids",
                f"teacher_ids[{index}] must be a string of 1 to {_MAX_TEACHER_ID} characters",
            )
        if item in seen:
            raise InvalidLesson("teacher_ids", f"teacher_ids[{index}] repeats an earlier id")
        seen.add(item)
    return tuple(value)


def _time(field: str, value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(field, value)
        if len(text) > _MAX_TIME_TEXT:
            raise InvalidLesson(field, f"{field} is not an ISO 8601 date and time")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidLesson(field, f"{field} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidLesson(field, f"{field} needs a time zone, e.g. 'Z' or '+05:00'")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidLesson(field, f"{field} is out of range") from None


def _check_times(start: datetime, end: datetime) -> None:
    """Raises InvalidLesson unless the lesson ends after it starts, within 12 hours."""
    if end <= start:
        raise InvalidLesson("scheduled_end", "scheduled_end must be after scheduled_start")
    if end - start > MAX_LESSON_DURATION:
        raise InvalidLesson(
            "scheduled_end", "scheduled_end must be at most 12 hours after scheduled_start"
        )


def validate_lesson_fields(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Parsed lesson fields from JSON input (all of them, or the given ones if ``partial``).

    Raises InvalidLesson, naming the field, for anything else. On creation a
    missing id is generated and lobby and recording_policy get their defaults.
    """
    if not isinstance(data, Mapping):
        raise InvalidLesson(None, "the lesson must be a JSON object")
    for key in sorted(data, key=str):
        if key in _READ_ONLY:
            raise InvalidLesson(key, _READ_ONLY[key])
        if key not in _INPUT_FIELDS:
            raise InvalidLesson(str(key), f"unknown field {str(key)[:64]!r}")
    if partial and "id" in data:
        raise InvalidLesson("id", "id cannot be changed")
    if not partial:
        for key in _REQUIRED:
            if key not in data:
                raise InvalidLesson(key, f"{key} is required")
    fields: dict[str, Any] = {}
    if "id" in data:
        fields["id"] = _pattern("id", data["id"], _ID, "A-Z a-z 0-9 _ -")
    elif not partial:
        fields["id"] = secrets.token_urlsafe(12)
    if "course" in data:
        fields["course"] = _pattern("course", data["course"], _COURSE, "A-Z a-z 0-9 . _ -")
    if "title" in data:
        fields["title"] = _title(data["title"])
    if "kind" in data:
        fields["kind"] = _enum("kind", data["kind"], LessonKind)
    if "teacher_ids" in data:
        fields["teacher_ids"] = _teachers(data["teacher_ids"])
    for key in ("scheduled_start", "scheduled_end"):
        if key in data:
            fields[key] = _time(key, data[key])
    if "scheduled_start" in fields and "scheduled_end" in fields:
        _check_times(fields["scheduled_start"], fields["scheduled_end"])
    if "lobby" in data:
        if not isinstance(data["lobby"], bool):
            raise InvalidLesson("lobby", "lobby must be true or false")
        fields["lobby"] = data["lobby"]
    elif not partial:
        fields["lobby"] = False
    if "recording_policy" in data:
        fields["recording_policy"] = _enum(
            "recording_policy", data["recording_policy"], RecordingPolicy
        )
    elif not partial:
        automatic = fields["kind"] in _AUTOMATIC_RECORDING
        fields["recording_policy"] = (
            RecordingPolicy.AUTOMATIC if automatic else RecordingPolicy.MANUAL
        )
    return fields


# --- storage -----------------------------------------------------------------------------------

_COLUMNS: Final = (
    "id, course, title, kind, scheduled_start, scheduled_end, lobby, recording_policy, "
    "status, created_at, updated_at"
)


def _lesson_of(row: sqlite3.Row, teachers: tuple[str, ...]) -> Lesson:
    return Lesson(
        id=row["id"],
        course=row["course"],
        title=row["title"],
        kind=LessonKind(row["kind"]),
        teacher_ids=teachers,
        scheduled_start=_from_db_time(row["scheduled_start"]),
        scheduled_end=_from_db_time(row["scheduled_end"]),
        lobby=bool(row["lobby"]),
        recording_policy=RecordingPolicy(row["recording_policy"]),
        status=LessonStatus(row["status"]),
        created_at=_from_db_time(row["created_at"]),
        updated_at=_from_db_time(row["updated_at"]),
    )


def _load(connection: sqlite3.Connection, lesson_id: str) -> Lesson:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
    ).fetchone()
    if row is None:
        raise LessonNotFound(f"no lesson has the id {lesson_id[:64]!r}")
    teachers = connection.execute(
        "SELECT teacher_id FROM lesson_teachers WHERE lesson_id = ? ORDER BY position",
        (lesson_id,),
    ).fetchall()
    return _lesson_of(row, tuple(t[0] for t in teachers))


def _lesson_row(lesson: Lesson) -> tuple[object, ...]:
    """The values of :data:`_COLUMNS` for ``lesson``, in that order."""
    return (
        lesson.id,
        lesson.course,
        lesson.title,
        lesson.kind.value,
        _db_time(lesson.scheduled_start),
        _db_time(lesson.scheduled_end),
        int(lesson.lobby),
        lesson.recording_policy.value,
        lesson.status.value,
        _db_time(lesson.created_at),
        _db_time(lesson.updated_at),
    )


def _insert(connection: sqlite3.Connection, lesson: Lesson) -> None:
    connection.execute(
        f"INSERT INTO lessons ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _lesson_row(lesson),
    )
    _insert_teachers(connection, lesson)


def _insert_teachers(connection: sqlite3.Connection, lesson: Lesson) -> None:
    connection.executemany(
        "INSERT INTO lesson_teachers (lesson_id, position, teacher_id) VALUES (?, ?, ?)",
        [(lesson.id, position, tid) for position, tid in enumerate(lesson.teacher_ids)],
    )


def _overwrite(connection: sqlite3.Connection, lesson: Lesson, *, teachers: bool) -> None:
    """Writes every column of an existing lesson (and its teachers if ``teachers``)."""
    # UPDATE, never INSERT OR REPLACE: REPLACE deletes the row first, and the
    # ON DELETE CASCADE would take the lesson's chat with it.
    assignments = ", ".join(f"{column} = ?" for column in _COLUMNS.split(", ")[1:])
    values = _lesson_row(lesson)
    connection.execute(f"UPDATE lessons SET {assignments} WHERE id = ?", (*values[1:], lesson.id))
    if teachers:
        connection.execute("DELETE FROM lesson_teachers WHERE lesson_id = ?", (lesson.id,))
        _insert_teachers(connection, lesson)


class LessonStore:
    """Lessons in the database: create, read, list, change, cancel."""

    __slots__ = ("_clock", "_db")

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._clock = clock

    async def create(self, fields: Mapping[str, Any]) -> Lesson:
        """Stores a new scheduled lesson; LessonConflict if its id is taken."""
        parsed = validate_lesson_fields(fields, partial=False)
        now = self._clock()
        lesson = Lesson(**parsed, status=LessonStatus.SCHEDULED, created_at=now, updated_at=now)

        def create(connection: sqlite3.Connection) -> Lesson:
            taken = connection.execute("SELECT 1 FROM lessons WHERE id = ?", (lesson.id,))
            if taken.fetchone() is not None:
                raise LessonConflict(f"a lesson with the id {lesson.id!r} exists already")
            _insert(connection, lesson)
            return lesson

        return await self._db.run(create)

    async def get(self, lesson_id: str) -> Lesson:
        """The lesson with this id; LessonNotFound if there is none."""
        return await self._db.run(lambda connection: _load(connection, lesson_id))

    async def list(
        self,
        *,
        course: str | None = None,
        teacher: str | None = None,
        status: LessonStatus | None = None,
        starts_after: datetime | None = None,
        starts_before: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Lesson]:
        """Lessons matching every filter given, by scheduled start.

        ``starts_after`` is inclusive and ``starts_before`` exclusive, so adjacent
        windows never show a lesson twice.
        """
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where: builtins.list[str] = []
        values: builtins.list[object] = []
        if course is not None:
            where.append("course = ?")
            values.append(course)
        if teacher is not None:
            where.append("id IN (SELECT lesson_id FROM lesson_teachers WHERE teacher_id = ?)")
            values.append(teacher)
        if status is not None:
            where.append("status = ?")
            values.append(LessonStatus(status).value)
        if starts_after is not None:
            where.append("scheduled_start >= ?")
            values.append(_db_time(starts_after))
        if starts_before is not None:
            where.append("scheduled_start < ?")
            values.append(_db_time(starts_before))
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        query = (
            f"SELECT {_COLUMNS} FROM lessons {condition} "
            "ORDER BY scheduled_start, id LIMIT ? OFFSET ?"
        )

        def select(connection: sqlite3.Connection) -> builtins.list[Lesson]:
            rows = connection.execute(query, (*values, limit, offset)).fetchall()
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            marks = ", ".join("?" * len(ids))
            teachers: dict[str, builtins.list[str]] = {lesson_id: [] for lesson_id in ids}
            for lesson_id, teacher_id in connection.execute(
                f"SELECT lesson_id, teacher_id FROM lesson_teachers "
                f"WHERE lesson_id IN ({marks}) ORDER BY lesson_id, position",
                ids,
            ):
                teachers[lesson_id].append(teacher_id)
            return [_lesson_of(row, tuple(teachers[row["id"]])) for row in rows]

        return await self._db.run(select)

    async def update(self, lesson_id: str, changes: Mapping[str, Any]) -> Lesson:
        """Applies ``changes`` (any input field but id) to a lesson that is not cancelled."""
        parsed = validate_lesson_fields(changes, partial=True)
        now = self._clock()

        def update(connection: sqlite3.Connection) -> Lesson:
            lesson = _load(connection, lesson_id)
            if lesson.status is LessonStatus.CANCELLED:
                raise LessonConflict("the lesson is cancelled; it cannot be changed")
            changed = replace(lesson, **parsed)
            # Only one end may have changed: check the pair as it will be stored.
            _check_times(changed.scheduled_start, changed.scheduled_end)
            if changed == lesson:
                return lesson
            changed = replace(changed, updated_at=now)
            _overwrite(connection, changed, teachers=changed.teacher_ids != lesson.teacher_ids)
            return changed

        return await self._db.run(update)

    async def cancel(self, lesson_id: str) -> Lesson:
        """Cancels the lesson (again: no change); LessonConflict if it has ended."""
        return await self._move(lesson_id, LessonStatus.CANCELLED)

    async def set_status(self, lesson_id: str, status: LessonStatus) -> Lesson:
        """Moves the lesson to ``status`` (live, ended, or back to scheduled).

        LessonConflict for what is barred: cancelling an ended lesson, and a
        cancelled lesson going live or ending (set it to scheduled first).
        """
        return await self._move(lesson_id, LessonStatus(status))

    async def _move(self, lesson_id: str, status: LessonStatus) -> Lesson:
        now = self._clock()

        def move(connection: sqlite3.Connection) -> Lesson:
            lesson = _load(connection, lesson_id)
            if lesson.status is status:
                return lesson
            if status not in _TRANSITIONS[lesson.status]:
                raise LessonConflict(
                    f"the lesson is {lesson.status.value}; it cannot become {status.value}"
                )
            moved = replace(lesson, status=status, updated_at=now)
            _overwrite(connection, moved, teachers=False)
            return moved

        return await self._db.run(move)


# --- chat --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message of a lesson, as stored."""

    id: int
    lesson_id: str
    at: datetime
    user_id: str
    name: str
    role: str
    text: str

    def to_json(self) -> dict[str, Any]:
        """The ``message`` of docs/protocol.md's server ``chat`` message."""
        return {
            "id": self.id,
            "at": _json_time(self.at),
            "from": self.user_id,
            "name": self.name,
            "role": self.role,
            "text": self.text,
        }


_CHAT_COLUMNS: Final = "id, lesson_id, at, user_id, name, role, text"


def _message_of(row: sqlite3.Row) -> ChatMessage:
    return ChatMessage(
        id=row["id"],
        lesson_id=row["lesson_id"],
        at=_from_db_time(row["at"]),
        user_id=row["user_id"],
        name=row["name"],
        role=row["role"],
        text=row["text"],
    )


class ChatStore:
    """The chat of every lesson, kept so that late joiners and the archive see it."""

    __slots__ = ("_clock", "_db")

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._clock = clock

    async def append(
        self, lesson_id: str, user_id: str, name: str, role: str, text: str
    ) -> ChatMessage:
        """Stores a message with the server's time; LessonNotFound if the lesson is unknown."""
        # The classroom validates chat (docs/protocol.md); this only keeps the file bounded.
        if not 1 <= len(text) <= MAX_CHAT_TEXT:
            raise ValueError(f"a chat message has 1 to {MAX_CHAT_TEXT} characters")
        at = self._clock()

        def append(connection: sqlite3.Connection) -> ChatMessage:
            try:
                cursor = connection.execute(
                    "INSERT INTO chat_messages (lesson_id, at, user_id, name, role, text) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (lesson_id, _db_time(at), user_id, name, str(role), text),
                )
            except sqlite3.IntegrityError:
                # The only constraint a valid insert can break is the lesson's foreign key.
                raise LessonNotFound(f"no lesson has the id {lesson_id[:64]!r}") from None
            assert cursor.lastrowid is not None
            return ChatMessage(cursor.lastrowid, lesson_id, at, user_id, name, str(role), text)

        return await self._db.run(append)

    async def recent(self, lesson_id: str, limit: int = 100) -> list[ChatMessage]:
        """The last ``limit`` messages of the lesson, oldest first (for ``welcome``)."""

        def recent(connection: sqlite3.Connection) -> list[ChatMessage]:
            rows = connection.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chat_messages WHERE lesson_id = ? "
                "ORDER BY id DESC LIMIT ?",
                (lesson_id, max(limit, 0)),
            ).fetchall()
            return [_message_of(row) for row in reversed(rows)]

        return await self._db.run(recent)

    async def page(self, lesson_id: str, after_id: int = 0, limit: int = 500) -> list[ChatMessage]:
        """Up to ``limit`` messages with an id above ``after_id``, oldest first."""

        def page(connection: sqlite3.Connection) -> list[ChatMessage]:
            rows = connection.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chat_messages WHERE lesson_id = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (lesson_id, after_id, max(limit, 0)),
            ).fetchall()
            return [_message_of(row) for row in rows]

        return await self._db.run(page)
