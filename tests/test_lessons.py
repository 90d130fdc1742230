"""Lessons and chat in SQLite: the database wrapper, validation, both stores."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.db import SCHEMA_VERSION, Database, DatabaseClosed
from signaling.lessons import (
    ChatMessage,
    ChatStore,
    InvalidLesson,
    Lesson,
    LessonConflict,
    LessonKind,
    LessonNotFound,
    LessonStatus,
    LessonStore,
    RecordingPolicy,
    validate_lesson_fields,
)

T0 = datetime(2030, 9, 1, 4, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2030, 8, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


def lesson_input(**changes: Any) -> dict[str, Any]:
    """Valid JSON input for a lesson, with `changes` applied (None removes a field)."""
    data: dict[str, Any] = {
        "id": "algebra-1",
        "course": "MATH.101",
        "title": "  Linear algebra  ",
        "kind": "lecture",
        "teacher_ids": ["t-1"],
        "scheduled_start": "2030-09-01T09:00:00+05:00",
        "scheduled_end": "2030-09-01T10:30:00+05:00",
    }
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.fixture(params=["file", "memory"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "data" / "sabaq.db" if request.param == "file" else ":memory:"
    database = await Database.open(path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lessons(db: Database, clock: Clock) -> LessonStore:
    return LessonStore(db, clock=clock)


@pytest.fixture
def chat(db: Database, clock: Clock) -> ChatStore:
    return ChatStore(db, clock=clock)


# --- Database ----------------------------------------------------------------------------------


async def test_open_creates_the_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "sabaq.db"
    db = await Database.open(path)
    try:
        assert path.exists() and db.path == str(path)
        pragmas = await db.run(
            lambda c: tuple(
                c.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "foreign_keys", "user_version")
            )
        )
        assert pragmas == ("wal", 1, SCHEMA_VERSION)
    finally:
        await db.close()


async def test_run_uses_one_worker_thread_off_the_loop(db: Database) -> None:
    threads = await asyncio.gather(*(db.run(lambda _: threading.get_ident()) for _ in range(5)))
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()


async def test_run_commits_on_return_and_rolls_back_on_raise(db: Database) -> None:
    await db.run(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
    await db.run(lambda c: c.execute("INSERT INTO t VALUES (1)"))

    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.run(insert_then_fail)
    assert await db.run(lambda c: [tuple(r) for r in c.execute("SELECT x FROM t")]) == [(1,)]


async def test_the_original_error_survives_a_transaction_sqlite_ended(db: Database) -> None:
    def fail_after_rollback(connection: sqlite3.Connection) -> None:
        connection.execute("ROLLBACK")  # as SQLite does itself on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        await db.run(fail_after_rollback)
    assert await db.run(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await db.run(
            lambda c: c.execute(
                "INSERT INTO lesson_teachers (lesson_id, position, teacher_id) VALUES ('x', 0, 't')"
            )
        )


async def test_close_is_idempotent_and_final(db: Database) -> None:
    pending = db.run(lambda c: c.execute("SELECT 1").fetchone()[0])
    task = asyncio.ensure_future(pending)
    await asyncio.sleep(0)
    await db.close()
    await db.close()
    assert db.closed and await task == 1  # queued work finishes before the close
    with pytest.raises(DatabaseClosed):
        await db.run(lambda c: None)


async def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "sabaq.db"
    first = await Database.open(path)
    await first.close()
    second = await Database.open(path)
    try:
        version = await second.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION
    finally:
        await second.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sabaq.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(RuntimeError, match="downgrades are not supported"):
        await Database.open(path)


# --- validation --------------------------------------------------------------------------------


def test_valid_input_is_parsed_with_defaults() -> None:
    fields = validate_lesson_fields(lesson_input(), partial=False)
    assert fields == {
        "id": "algebra-1",
        "course": "MATH.101",
        "title": "Linear algebra",
        "kind": LessonKind.LECTURE,
        "teacher_ids": ("t-1",),
        "scheduled_start": T0,
        "scheduled_end": T0 + timedelta(minutes=90),
        "lobby": False,
        "recording_policy": RecordingPolicy.MANUAL,
    }
    assert fields["scheduled_start"].tzinfo is UTC
    # The stores validate again: the output is valid input.
    assert validate_lesson_fields(fields, partial=False) == fields


@pytest.mark.parametrize(
    ("kind", "policy"),
    [
        ("lecture", "manual"),
        ("seminar", "manual"),
        ("consultation", "manual"),
        ("defence", "automatic"),
        ("exam", "automatic"),
    ],
)
def test_recording_policy_defaults_by_kind(kind: str, policy: str) -> None:
    assert (
        validate_lesson_fields(lesson_input(kind=kind), partial=False)["recording_policy"] == policy
    )
    explicit = validate_lesson_fields(
        lesson_input(kind=kind, recording_policy="off"), partial=False
    )
    assert explicit["recording_policy"] is RecordingPolicy.OFF


def test_a_generated_id_is_unguessable_and_a_valid_id() -> None:
    ids = {validate_lesson_fields(lesson_input(id=None), partial=False)["id"] for _ in range(50)}
    assert len(ids) == 50
    for lesson_id in ids:
        assert len(lesson_id) == 16  # 12 random bytes
        assert validate_lesson_fields(lesson_input(id=lesson_id), partial=False)["id"] == lesson_id


S, E, TI = "scheduled_start", "scheduled_end", "teacher_ids"

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown field", {"colour": "red"}, "colour", "unknown field"),
    ("status is read-only", {"status": "live"}, "status", "/cancel"),
    ("created_at is read-only", {"created_at": "x"}, "created_at", "server"),
    ("join_path is read-only", {"join_path": "/l/x"}, "join_path", "derived"),
    ("id with a slash", {"id": "a/b"}, "id", "1 to 64 characters"),
    ("id too long", {"id": "a" * 65}, "id", "1 to 64"),
    ("id empty", {"id": ""}, "id", "1 to 64"),
    ("id not a string", {"id": 7}, "id", "must be a string"),
    ("id with a newline", {"id": "abc\n"}, "id", "1 to 64"),
    ("course missing", {"course": None}, "course", "course is required"),
    ("course with a space", {"course": "MATH 101"}, "course", "1 to 64"),
    ("title missing", {"title": None}, "title", "title is required"),
    ("title blank", {"title": "   "}, "title", "after trimming"),
    ("title too long", {"title": "x" * 201}, "title", "1 to 200"),
    ("title with a newline", {"title": "a\nb"}, "title", "line breaks"),
    ("title a number", {"title": 5}, "title", "must be a string"),
    ("kind unknown", {"kind": "party"}, "kind", "lecture, seminar"),
    ("kind missing", {"kind": None}, "kind", "kind is required"),
    ("teachers missing", {TI: None}, TI, "is required"),
    ("teachers a string", {TI: "t-1"}, TI, "a list"),
    ("teachers empty", {TI: []}, TI, "1 to 20"),
    ("too many teachers", {TI: [f"t{i}" for i in range(21)]}, TI, "1 to 20"),
    ("teacher id empty", {TI: ["t-1", ""]}, TI, "teacher_ids[1]"),
    ("teacher id too long", {TI: ["t" * 129]}, TI, "teacher_ids[0]"),
    ("teacher id a number", {TI: [3]}, TI, "teacher_ids[0]"),
    ("teacher twice", {TI: ["a", "b", "a"]}, TI, "teacher_ids[2] repeats"),
    ("start missing", {S: None}, S, "is required"),
    ("start naive", {S: "2030-09-01T09:00:00"}, S, "time zone"),
    ("start a date", {S: "2030-09-01"}, S, "time zone"),
    ("start garbage", {S: "tomorrow"}, S, "ISO 8601"),
    ("start a number", {S: 1_900_000_000}, S, "a string"),
    ("start too long", {S: "2" * 65}, S, "ISO 8601"),
    ("start overflows", {S: "0001-01-01T00:00:00+05:00"}, S, "out of range"),
    ("end naive", {E: "2030-09-01T10:00:00"}, E, "time zone"),
    ("end before start", {E: "2030-09-01T08:00:00+05:00"}, E, "after scheduled_start"),
    ("end at start", {E: "2030-09-01T04:00:00Z"}, E, "after scheduled_start"),
    ("over 12 hours", {E: "2030-09-01T16:00:01Z"}, E, "at most 12 hours"),
    ("lobby a string", {"lobby": "yes"}, "lobby", "true or false"),
    ("lobby a number", {"lobby": 1}, "lobby", "true or false"),
    (
        "policy unknown",
        {"recording_policy": "always"},
        "recording_policy",
        "off, manual, automatic",
    ),
]


@pytest.mark.parametrize(
    ("changes", "field", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_input_names_the_field(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidLesson) as caught:
        validate_lesson_fields(lesson_input(**changes), partial=False)
    assert caught.value.field == field and caught.value.code == "invalid"
    assert message in caught.value.message and field in caught.value.message


def test_exactly_twelve_hours_is_allowed() -> None:
    fields = validate_lesson_fields(
        lesson_input(scheduled_end="2030-09-01T16:00:00Z"), partial=False
    )
    assert fields["scheduled_end"] - fields["scheduled_start"] == timedelta(hours=12)


def test_partial_input_has_no_defaults_and_no_id() -> None:
    assert validate_lesson_fields({}, partial=True) == {}
    assert validate_lesson_fields({"lobby": True}, partial=True) == {"lobby": True}
    assert validate_lesson_fields({"kind": "exam"}, partial=True) == {"kind": LessonKind.EXAM}
    with pytest.raises(InvalidLesson) as caught:
        validate_lesson_fields({"id": "other"}, partial=True)
    assert caught.value.field == "id" and "cannot be changed" in caught.value.message
    with pytest.raises(InvalidLesson) as caught:
        validate_lesson_fields(
            {"scheduled_start": "2030-01-01T10:00Z", "scheduled_end": "2030-01-01T09:00Z"},
            partial=True,
        )
    assert caught.value.field == "scheduled_end"


def test_not_a_mapping_is_invalid() -> None:
    with pytest.raises(InvalidLesson) as caught:
        validate_lesson_fields([], partial=False)  # type: ignore[arg-type]
    assert caught.value.field is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Plausible values make the property reach the checks past the type tests.
_PLAUSIBLE = {
    "id": st.from_regex(r"[A-Za-z0-9_/-]{0,70}", fullmatch=True),
    "course": st.text(max_size=70),
    "title": st.text(max_size=210),
    "kind": st.sampled_from([*LessonKind, "party"]),
    "teacher_ids": st.lists(st.text(max_size=130), max_size=22),
    "scheduled_start": st.datetimes(timezones=st.none() | st.timezones()).map(str),
    "scheduled_end": st.datetimes(timezones=st.none() | st.timezones()).map(
        lambda d: d.isoformat()
    ),
    "lobby": st.booleans() | st.integers(0, 1),
    "recording_policy": st.sampled_from([*RecordingPolicy, "always"]),
}


@given(
    st.dictionaries(st.text(max_size=20), _JSON, max_size=6)
    | st.fixed_dictionaries({}, optional={k: v | _JSON for k, v in _PLAUSIBLE.items()}),
    st.booleans(),
)
def test_arbitrary_json_raises_only_invalid_lesson(data: dict[str, Any], partial: bool) -> None:
    try:
        fields = validate_lesson_fields(data, partial=partial)
    except InvalidLesson as error:
        assert error.message and (error.field is None or isinstance(error.field, str))
    else:
        assert validate_lesson_fields(fields, partial=partial) == fields


# --- Lesson ------------------------------------------------------------------------------------


def test_lesson_json_and_summary() -> None:
    lesson = Lesson(
        id="L1",
        course="MATH.101",
        title="Algebra",
        kind=LessonKind.EXAM,
        teacher_ids=("t-1", "t-2"),
        scheduled_start=datetime(2030, 9, 1, 9, 0, tzinfo=timezone(timedelta(hours=5))),
        scheduled_end=datetime(2030, 9, 1, 5, 0, tzinfo=UTC),
        lobby=True,
        recording_policy=RecordingPolicy.AUTOMATIC,
        status=LessonStatus.LIVE,
        created_at=datetime(2030, 8, 1, 12, 0, 0, 250000, tzinfo=UTC),
        updated_at=datetime(2030, 8, 2, tzinfo=UTC),
    )
    summary = {
        "id": "L1",
        "title": "Algebra",
        "course": "MATH.101",
        "kind": "exam",
        "status": "live",
        "scheduled_start": "2030-09-01T04:00:00Z",
        "scheduled_end": "2030-09-01T05:00:00Z",
        "lobby": True,
        "recording_policy": "automatic",
    }
    assert lesson.summary() == summary
    assert lesson.to_json() == {
        **summary,
        "teacher_ids": ["t-1", "t-2"],
        "created_at": "2030-08-01T12:00:00.250000Z",
        "updated_at": "2030-08-02T00:00:00Z",
        "join_path": "/l/L1",
    }
    assert lesson.is_teacher("t-2") and not lesson.is_teacher("t-3")


# --- LessonStore -------------------------------------------------------------------------------


async def test_create_get_and_duplicate(lessons: LessonStore, clock: Clock) -> None:
    created = await lessons.create(lesson_input(teacher_ids=["t-2", "t-1"]))
    assert created.status is LessonStatus.SCHEDULED
    assert created.created_at == created.updated_at == clock.now
    assert created.teacher_ids == ("t-2", "t-1")  # the order given is kept
    assert await lessons.get("algebra-1") == created
    with pytest.raises(LessonConflict, match="exists already"):
        await lessons.create(lesson_input(title="Another"))
    with pytest.raises(LessonNotFound):
        await lessons.get("nope")
    with pytest.raises(InvalidLesson):
        await lessons.create(lesson_input(kind="party"))


async def test_list_filters_orders_and_pages(lessons: LessonStore) -> None:
    def at(hour: int) -> dict[str, str]:
        start = T0 + timedelta(hours=hour)
        return {
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(minutes=50)).isoformat(),
        }

    await lessons.create(lesson_input(id="c", teacher_ids=["t-1"], **at(3)))
    await lessons.create(lesson_input(id="a", teacher_ids=["t-1", "t-2"], **at(1)))
    await lessons.create(lesson_input(id="b", course="PHYS.1", teacher_ids=["t-2"], **at(2)))
    await lessons.create(lesson_input(id="d", teacher_ids=["t-3"], **at(1)))
    await lessons.set_status("c", LessonStatus.LIVE)

    async def ids(**filters: Any) -> list[str]:
        return [lesson.id for lesson in await lessons.list(**filters)]

    assert await ids() == ["a", "d", "b", "c"]  # by start, then id
    assert await ids(course="MATH.101") == ["a", "d", "c"]
    assert await ids(teacher="t-2") == ["a", "b"]
    assert await ids(teacher="t-2", course="PHYS.1") == ["b"]
    assert await ids(status=LessonStatus.LIVE) == ["c"]
    assert await ids(starts_after=T0 + timedelta(hours=2)) == ["b", "c"]
    assert await ids(starts_before=T0 + timedelta(hours=2)) == ["a", "d"]
    assert await ids(limit=2, offset=1) == ["d", "b"]
    assert await ids(limit=0) == []
    assert await ids(teacher="nobody") == []
    listed = await lessons.list(teacher="t-2")
    assert listed[0].teacher_ids == ("t-1", "t-2")
    with pytest.raises(ValueError):
        await lessons.list(offset=-1)


async def test_update(lessons: LessonStore, clock: Clock) -> None:
    created = await lessons.create(lesson_input())
    clock.tick()
    assert await lessons.update("algebra-1", {}) == created  # nothing changed: not touched
    updated = await lessons.update(
        "algebra-1", {"title": " Algebra II ", "teacher_ids": ["t-9"], "lobby": True}
    )
    assert (updated.title, updated.teacher_ids, updated.lobby) == ("Algebra II", ("t-9",), True)
    assert updated.updated_at == clock.now and updated.created_at == created.created_at
    assert await lessons.get("algebra-1") == updated
    assert [lesson.id for lesson in await lessons.list(teacher="t-1")] == []
    # One end alone is checked against the stored other end.
    with pytest.raises(InvalidLesson) as caught:
        await lessons.update("algebra-1", {"scheduled_end": "2030-09-01T03:00:00Z"})
    assert caught.value.field == "scheduled_end"
    with pytest.raises(InvalidLesson, match="12 hours"):
        await lessons.update("algebra-1", {"scheduled_start": "2030-08-31T04:00:00Z"})
    for forbidden in ({"id": "x"}, {"status": "live"}):
        with pytest.raises(InvalidLesson):
            await lessons.update("algebra-1", forbidden)
    with pytest.raises(LessonNotFound):
        await lessons.update("nope", {"title": "x"})
    await lessons.cancel("algebra-1")
    with pytest.raises(LessonConflict, match="cancelled"):
        await lessons.update("algebra-1", {"title": "Too late"})


async def test_cancel_is_idempotent_and_refused_once_ended(
    lessons: LessonStore, clock: Clock
) -> None:
    await lessons.create(lesson_input())
    clock.tick()
    cancelled = await lessons.cancel("algebra-1")
    assert cancelled.status is LessonStatus.CANCELLED and cancelled.updated_at == clock.now
    clock.tick()
    assert await lessons.cancel("algebra-1") == cancelled
    await lessons.create(lesson_input(id="ended"))
    await lessons.set_status("ended", LessonStatus.LIVE)
    await lessons.set_status("ended", LessonStatus.ENDED)
    with pytest.raises(LessonConflict, match="ended"):
        await lessons.cancel("ended")
    assert (await lessons.get("ended")).status is LessonStatus.ENDED
    with pytest.raises(LessonNotFound):
        await lessons.cancel("nope")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["live", "ended", "live"], True),  # a teacher reopens an ended lesson
        (["ended"], True),
        (["live", "live"], True),
        (["live", "scheduled"], True),  # the server resets a lesson (the demo lesson)
        (["live", "ended", "scheduled"], True),
        (["live", "cancelled"], True),
        (["cancelled", "live"], False),  # a classroom racing a cancel
        (["cancelled", "ended"], False),
        (["cancelled", "scheduled", "live"], True),  # rescheduled first
        (["live", "ended", "cancelled"], False),  # it took place
    ],
)
async def test_status_transitions(lessons: LessonStore, path: list[str], allowed: bool) -> None:
    await lessons.create(lesson_input())
    *before, last = path
    for status in before:
        await lessons.set_status("algebra-1", LessonStatus(status))
    if allowed:
        assert (await lessons.set_status("algebra-1", LessonStatus(last))).status == last
    else:
        with pytest.raises(LessonConflict):
            await lessons.set_status("algebra-1", LessonStatus(last))


async def test_lessons_and_chat_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sabaq.db"
    db = await Database.open(path)
    lesson = await LessonStore(db).create(lesson_input())
    message = await ChatStore(db).append("algebra-1", "s-1", "Amina", "student", "Сәлем!")
    await db.close()
    db = await Database.open(path)
    try:
        assert await LessonStore(db).get("algebra-1") == lesson
        assert await ChatStore(db).recent("algebra-1") == [message]
    finally:
        await db.close()


# --- ChatStore ---------------------------------------------------------------------------------


async def test_chat_append_recent_and_page(
    lessons: LessonStore, chat: ChatStore, clock: Clock
) -> None:
    await lessons.create(lesson_input())
    await lessons.create(lesson_input(id="other"))
    written: list[ChatMessage] = []
    for n in range(5):
        clock.tick()
        written.append(await chat.append("algebra-1", f"u{n}", f"User {n}", "student", f"hi {n}"))
        await chat.append("other", "x", "X", "teacher", "elsewhere")
    assert [m.text for m in written] == [f"hi {n}" for n in range(5)]
    assert written[0].at == clock.now - timedelta(seconds=4)
    assert all(a.id < b.id for a, b in itertools.pairwise(written))
    assert await chat.recent("algebra-1", limit=2) == written[3:]
    assert await chat.recent("algebra-1") == written
    assert await chat.page("algebra-1") == written
    assert await chat.page("algebra-1", after_id=written[1].id, limit=2) == written[2:4]
    assert await chat.page("algebra-1", after_id=written[4].id) == []
    assert await chat.recent("nope") == []
    assert written[0].to_json() == {
        "id": written[0].id,
        "at": "2030-08-01T12:00:01Z",
        "from": "u0",
        "name": "User 0",
        "role": "student",
        "text": "hi 0",
    }


async def test_chat_refuses_unknown_lessons_and_bad_sizes(
    lessons: LessonStore, chat: ChatStore
) -> None:
    with pytest.raises(LessonNotFound):
        await chat.append("nope", "u", "U", "student", "hi")
    await lessons.create(lesson_input())
    for text in ("", "x" * 2001):
        with pytest.raises(ValueError):
            await chat.append("algebra-1", "u", "U", "student", text)
    assert len((await chat.append("algebra-1", "u", "U", "student", "x" * 2000)).text) == 2000


async def test_many_concurrent_writes_keep_order(lessons: LessonStore, chat: ChatStore) -> None:
    await lessons.create(lesson_input())
    # Submitted in order to a FIFO worker: stored (and numbered) in the same order.
    await asyncio.gather(
        *(chat.append("algebra-1", "u", "U", "student", str(n)) for n in range(50))
    )
    assert [m.text for m in await chat.page("algebra-1")] == [str(n) for n in range(50)]
