"""A course's roster: the students expected at its lessons, so that absentees show up.

The registrar uploads it as CSV (``user_id,name``; UTF-8, with or without the BOM
Excel writes) or as JSON; :func:`parse_roster_csv` and :func:`parse_roster_json`
are pure and raise :class:`InvalidRoster` naming the line or item to fix. The
roster lives in the main database (migration 2 of :mod:`signaling.db`) and is
replaced as a whole: an upload is the registrar's current list, not a diff.
"""

from __future__ import annotations

import builtins
import csv
import io
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from signaling.db import Database

__all__ = [
    "MAX_NAME",
    "MAX_ROSTER",
    "MAX_USER_ID",
    "InvalidRoster",
    "RosterEntry",
    "RosterStore",
    "parse_roster_csv",
    "parse_roster_json",
]

MAX_ROSTER: Final = 5000
"""Most students in one course's roster; the largest lecture streams are under 1000."""

MAX_USER_ID: Final = 128
"""Longest user id, as for a lesson's teacher ids (signaling/lessons.py)."""

MAX_NAME: Final = 200
"""Longest display name, in characters."""

_COURSE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEADER: Final = ("user_id", "name")


class InvalidRoster(ValueError):
    """A roster upload is refused; ``line`` (CSV, 1-based) or ``item`` (JSON) says where."""

    def __init__(self, message: str, *, line: int | None = None, item: int | None = None) -> None:
        where = (
            f"line {line}: " if line is not None else f"item {item}: " if item is not None else ""
        )
        super().__init__(where + message)
        self.message = where + message
        self.line = line
        self.item = item


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One student on a course's roster."""

    user_id: str
    name: str

    def to_json(self) -> dict[str, str]:
        """The entry as the REST API shows it."""
        return {"user_id": self.user_id, "name": self.name}


def _clean(value: object, field: str, longest: int) -> str:
    """A trimmed one-line string of 1 to ``longest`` characters, or InvalidRoster."""
    if not isinstance(value, str):
        raise InvalidRoster(f"{field} must be a string")
    text = value.strip()
    if not text:
        raise InvalidRoster(f"{field} is empty")
    if len(text) > longest:
        raise InvalidRoster(f"{field} is longer than {longest} characters")
    # Names end up in CSV files and page headers; a control character breaks both.
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise InvalidRoster(f"{field} contains a control character or a line break")
    return text


def _entries(rows: Iterable[tuple[int, object, object]], *, csv_lines: bool) -> list[RosterEntry]:
    """Validated entries from ``(position, user_id, name)``; positions name the culprit."""
    entries: list[RosterEntry] = []
    first_seen: dict[str, int] = {}
    for position, raw_id, raw_name in rows:
        where = {"line": position} if csv_lines else {"item": position}
        if len(entries) >= MAX_ROSTER:
            raise InvalidRoster(f"a roster has at most {MAX_ROSTER} students", **where)
        try:
            user_id = _clean(raw_id, "user_id", MAX_USER_ID)
            name = _clean(raw_name, "name", MAX_NAME)
        except InvalidRoster as error:
            raise InvalidRoster(error.message, **where) from None
        if user_id in first_seen:
            earlier = "line" if csv_lines else "item"
            raise InvalidRoster(
                f"user_id {user_id[:64]!r} repeats {earlier} {first_seen[user_id]}", **where
            )
        first_seen[user_id] = position
        entries.append(RosterEntry(user_id, name))
    return entries


def parse_roster_csv(text: str | bytes) -> list[RosterEntry]:
    """Entries from CSV with the header ``user_id,name``; InvalidRoster names the line.

    Bytes must be UTF-8; a leading BOM is dropped. Blank lines are skipped. A
    header of ``user_id;name`` selects ``;`` as the separator: that is what Excel
    writes in the Russian and Kazakh locales the universities use.
    """
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise InvalidRoster("the file is not UTF-8 text", line=line) from None
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0].strip()
    delimiter = ";" if first.replace(" ", "").lower() == "user_id;name" else ","
    # newline="": the csv module handles \r\n itself, also inside quoted fields.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def rows() -> Iterable[tuple[int, object, object]]:
        header_seen = False
        try:
            for record in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                if not header_seen:
                    if tuple(cell.strip().lower() for cell in record) != _HEADER:
                        raise InvalidRoster("the header must be user_id,name", line=line)
                    header_seen = True
                    continue
                if len(record) != len(_HEADER):
                    raise InvalidRoster(
                        f"expected 2 columns (user_id,name), found {len(record)}", line=line
                    )
                yield line, record[0], record[1]
        except csv.Error as error:
            raise InvalidRoster(f"malformed CSV: {error}", line=reader.line_num) from None
        if not header_seen:
            raise InvalidRoster("the file is empty; the header must be user_id,name", line=1)

    return _entries(rows(), csv_lines=True)


def parse_roster_json(value: Any) -> list[RosterEntry]:
    """Entries from a JSON list of ``{"user_id", "name"}`` objects; InvalidRoster names the item."""
    if not isinstance(value, list):
        raise InvalidRoster("the roster must be a JSON list of {user_id, name} objects")

    def rows() -> Iterable[tuple[int, object, object]]:
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise InvalidRoster("must be an object {user_id, name}", item=index)
            unknown = sorted(str(key)[:64] for key in item if key not in _HEADER)
            if unknown:
                raise InvalidRoster(f"unknown field {unknown[0]!r}", item=index)
            for key in _HEADER:
                if key not in item:
                    raise InvalidRoster(f"{key} is required", item=index)
            yield index, item["user_id"], item["name"]

    return _entries(rows(), csv_lines=False)


def _check_course(course: str) -> None:
    if not isinstance(course, str) or _COURSE.fullmatch(course) is None:
        raise InvalidRoster("course must be 1 to 64 characters from A-Z a-z 0-9 . _ -")


class RosterStore:
    """Course rosters in the main database; an upload replaces the course's list."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def replace(self, course: str, entries: Sequence[RosterEntry]) -> None:
        """Makes ``entries`` the course's roster, in one transaction (empty clears it)."""
        _check_course(course)
        # Validated again here, so that no caller can store what an upload would refuse.
        checked = _entries(((i, e.user_id, e.name) for i, e in enumerate(entries)), csv_lines=False)

        def replace(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM course_roster WHERE course = ?", (course,))
            connection.executemany(
                "INSERT INTO course_roster (course, position, user_id, name) VALUES (?, ?, ?, ?)",
                [(course, i, e.user_id, e.name) for i, e in enumerate(checked)],
            )

        await self._db.run(replace)

    async def list(self, course: str) -> builtins.list[RosterEntry]:
        """The course's roster in upload order (empty if none was uploaded)."""

        def select(connection: sqlite3.Connection) -> builtins.list[RosterEntry]:
            rows = connection.execute(
                "SELECT user_id, name FROM course_roster WHERE course = ? ORDER BY position",
                (course,),
            ).fetchall()
            return [RosterEntry(row["user_id"], row["name"]) for row in rows]

        return await self._db.run(select)

    async def courses_of(self, user_id: str) -> builtins.list[str]:
        """The courses whose roster lists ``user_id``, sorted."""

        def select(connection: sqlite3.Connection) -> builtins.list[str]:
            rows = connection.execute(
                "SELECT course FROM course_roster WHERE user_id = ? ORDER BY course", (user_id,)
            ).fetchall()
            return [row["course"] for row in rows]

        return await self._db.run(select)
