"""One SQLite file, used from one worker thread so the event loop never waits on disk.

The event loop of a Sabaq process forwards media; a ``fsync`` on it would stall
every student's video. So :class:`Database` owns a single connection that lives
in a single worker thread (a ``ThreadPoolExecutor`` with one worker): every
access is a function submitted to that thread and run inside one transaction.
With one writer there is no lock contention inside the process, and the FIFO
queue of the executor orders the transactions as they were submitted.

The schema is versioned with ``PRAGMA user_version``: :data:`_MIGRATIONS` holds
one script per version, applied in order and never edited once released.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

__all__ = ["SCHEMA_VERSION", "Database", "DatabaseClosed"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Append only: a released database has run the earlier scripts already.
_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: lessons, their teachers, and the chat of each lesson.
    """
    CREATE TABLE lessons (
        id               TEXT PRIMARY KEY,
        course           TEXT NOT NULL,
        title            TEXT NOT NULL,
        kind             TEXT NOT NULL,
        -- UTC, fixed-width ISO 8601 with microseconds and 'Z', so text order is time order.
        scheduled_start  TEXT NOT NULL,
        scheduled_end    TEXT NOT NULL,
        lobby            INTEGER NOT NULL CHECK (lobby IN (0, 1)),
        recording_policy TEXT NOT NULL,
        status           TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX lessons_by_start ON lessons (scheduled_start, id);
    CREATE INDEX lessons_by_course ON lessons (course, scheduled_start);

    -- A table rather than a JSON column: "my lessons" is an indexed look-up.
    CREATE TABLE lesson_teachers (
        lesson_id  TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        teacher_id TEXT NOT NULL,
        PRIMARY KEY (lesson_id, teacher_id)
    ) STRICT;
    CREATE INDEX lesson_teachers_by_teacher ON lesson_teachers (teacher_id);

    -- AUTOINCREMENT: a message id is never reused, so clients may page with ?after=.
    CREATE TABLE chat_messages (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        lesson_id TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
        at        TEXT NOT NULL,
        user_id   TEXT NOT NULL,
        name      TEXT NOT NULL,
        role      TEXT NOT NULL,
        text      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX chat_messages_by_lesson ON chat_messages (lesson_id, id);
    """,
    # 2: course rosters (signaling/footprint/roster.py), replaced as a whole on upload.
    """
    CREATE TABLE course_roster (
        course   TEXT NOT NULL,
        -- The upload's order, kept so that reports list students as the registrar does.
        position INTEGER NOT NULL,
        user_id  TEXT NOT NULL,
        name     TEXT NOT NULL,
        PRIMARY KEY (course, user_id)
    ) STRICT;
    CREATE INDEX course_roster_by_user ON course_roster (user_id);
    """,
    # 3: the recordings library (signaling/recordings/catalogue.py): one row per
    # recording of a lesson, one per track file ("part"), and the composite MP4's state.
    """
    CREATE TABLE recordings (
        -- secrets.token_urlsafe(16): the id is in page and media URLs, so it is unguessable.
        id                 TEXT PRIMARY KEY,
        -- No cascade: lessons are cancelled, never deleted, and rows go with their files.
        lesson_id          TEXT NOT NULL REFERENCES lessons (id),
        course             TEXT NOT NULL,
        started_at         TEXT NOT NULL,
        ended_at           TEXT,
        status             TEXT NOT NULL
            CHECK (status IN ('recording', 'finalizing', 'ready', 'failed')),
        reason             TEXT,
        composite_status   TEXT NOT NULL
            CHECK (composite_status IN ('pending', 'running', 'ready', 'failed')),
        composite_progress REAL NOT NULL CHECK (composite_progress BETWEEN 0 AND 1),
        composite_path     TEXT,
        composite_reason   TEXT
    ) STRICT;
    CREATE INDEX recordings_by_lesson ON recordings (lesson_id, started_at);
    CREATE INDEX recordings_by_start ON recordings (started_at);

    CREATE TABLE recording_parts (
        id               TEXT PRIMARY KEY,
        recording_id     TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        position         INTEGER NOT NULL,
        participant_id   TEXT NOT NULL,
        participant_name TEXT NOT NULL,
        source           TEXT NOT NULL CHECK (source IN ('camera', 'microphone', 'screen')),
        kind             TEXT NOT NULL CHECK (kind IN ('audio', 'video')),
        codec            TEXT NOT NULL,
        -- Relative to the operator's recordings folder, so the folder can move.
        path             TEXT NOT NULL,
        start_offset_s   REAL NOT NULL CHECK (start_offset_s >= 0),
        duration_s       REAL,
        size_bytes       INTEGER,
        status           TEXT NOT NULL
            CHECK (status IN ('recording', 'complete', 'recovered', 'broken'))
    ) STRICT;
    CREATE INDEX recording_parts_by_recording ON recording_parts (recording_id, position);
    """,
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The ``user_version`` of a database this code has migrated."""

# A second process (a backup, the CLI) may hold the write lock for a moment.
_BUSY_TIMEOUT_MS: Final = 5000


class DatabaseClosed(RuntimeError):
    """The database was used after :meth:`Database.close`."""


def _connect(path: str) -> sqlite3.Connection:
    """Opens and migrates the database; runs in the worker thread."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module opens no transaction behind our back; run()
    # issues BEGIN/COMMIT itself, so a transaction is exactly one run() call.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # WAL: readers (a backup, `sqlite3` in a shell) never block the writer.
        # An in-memory database answers 'memory', which is fine.
        connection.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across a process crash in WAL mode; FULL would fsync
        # on every commit, i.e. on every chat message.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    """Applies the migrations this database has not seen, each in its own transaction."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {version}; this Sabaq knows up to "
            f"{SCHEMA_VERSION} (downgrades are not supported)"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        script = _MIGRATIONS[number - 1]
        try:
            # executescript() runs the BEGIN ... COMMIT as written; the version
            # moves with the schema in the same transaction.
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        _log.info("database schema migrated to version %d", number)


class Database:
    """A SQLite database reached through one dedicated worker thread."""

    __slots__ = ("_closed", "_connection", "_executor", "_path")

    def __init__(
        self, connection: sqlite3.Connection, executor: ThreadPoolExecutor, path: str
    ) -> None:
        """Use :meth:`open`; this wraps an already opened connection and its thread."""
        self._connection = connection
        self._executor = executor
        self._path = path
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Opens (creating it and its folder if needed) and migrates the database at ``path``."""
        name = str(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sabaq-db")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, name)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(connection, executor, name)

    @property
    def path(self) -> str:
        """The file this database lives in, or ``":memory:"``."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn`` in the worker thread inside one transaction and returns its result.

        The transaction commits when ``fn`` returns and rolls back when it raises.
        If the awaiting task is cancelled, ``fn`` still runs to its end (a thread
        cannot be interrupted), and its transaction commits or rolls back as usual.
        """
        if self._closed:
            raise DatabaseClosed("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        # IMMEDIATE takes the write lock at once: a deferred transaction that reads
        # and then writes can fail with SQLITE_BUSY when another process wrote between.
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = fn(connection)
            connection.execute("COMMIT")
        except BaseException:
            # Some errors (SQLITE_FULL, a failed COMMIT) end the transaction already;
            # a ROLLBACK then would raise and hide the error that matters.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    async def close(self) -> None:
        """Waits for the queued transactions, then closes the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            # Queued behind every run() already submitted: the worker is FIFO.
            await loop.run_in_executor(self._executor, self._connection.close)
        finally:
            # The worker is idle now; it exits on its own, so nothing here blocks.
            self._executor.shutdown(wait=False)
