"""The footprint ledger: an append-only, hash-chained SQLite file with one writer thread.

The event loop forwards media and must never wait on disk, yet an event counts
as recorded only once its transaction has committed with ``synchronous=FULL``
(an fsync of the WAL). So :class:`Ledger` owns one thread that alone holds the
connection: :meth:`Ledger.append` stamps and validates on the loop, queues the
event and returns a future; the thread takes everything queued, writes it in
one ``BEGIN IMMEDIATE … COMMIT`` (one fsync for the batch), and only then
resolves the futures on the loop. Hashes are chained in the thread, in seq
order, so the chain's order is the order of the ``append`` calls.

Queries go through the same FIFO queue: a query sees every event appended
before it (read-your-writes), at the price of waiting behind a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .canonical import (
    ZERO_HASH,
    Event,
    _hash_text,
    canonical_json,
    format_time,
    parse_time,
    utcnow,
)
from .checkpoints import (
    Checkpoint,
    _checkpoint_at,
    _insert_checkpoint,
    _last_in_file,
    _newest_checkpoint,
    _table_checkpoints,
    append_checkpoints,
    key_id,
    load_or_create_signing_key,
    public_key_pem,
    sign_checkpoint,
)

__all__ = ["MAX_DATA_BYTES", "MAX_FIELD_LENGTH", "MAX_QUERY_LIMIT", "Ledger", "LedgerClosed"]

_log = logging.getLogger(__name__)

MAX_FIELD_LENGTH: Final = 200
"""Longest lesson, course, actor or type, in characters."""
MAX_DATA_BYTES: Final = 16 * 1024
"""Largest ``data`` as canonical JSON: a chat message of a few thousand characters fits."""
MAX_QUERY_LIMIT: Final = 10_000
"""Most events one :meth:`Ledger.query` returns; page with ``after_seq`` for more."""

# Rows per transaction: one fsync covers them all, yet a burst of 100k appends still
# commits (and acknowledges) in steps of a few tens of milliseconds.
_MAX_BATCH: Final = 4096
# Appends waiting for the disk. Past this the disk has stalled for minutes at classroom
# rates (a few hundred events/s); refusing (and logging, in the trail) beats running out
# of memory and losing everything.
_MAX_QUEUED: Final = 200_000


class LedgerClosed(RuntimeError):
    """The ledger was used after :meth:`Ledger.close`."""


class _Work(NamedTuple):
    """One item of the writer's queue: what to do, its arguments, where the answer goes."""

    kind: str  # append, checkpoint, close_sessions, flush, query, stop
    future: asyncio.Future[Any]
    at: datetime | None = None
    args: tuple[Any, ...] = ()


_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


# --- the SQLite file ---------------------------------------------------------------------

# Append only: a released ledger has run the earlier scripts already.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE events (
        seq    INTEGER PRIMARY KEY,
        at     TEXT NOT NULL,
        lesson TEXT NOT NULL,
        course TEXT NOT NULL,
        actor  TEXT NOT NULL,
        type   TEXT NOT NULL,
        data   TEXT NOT NULL,  -- canonical JSON
        prev   TEXT NOT NULL,
        hash   TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_by_lesson ON events (lesson, seq);
    CREATE INDEX events_by_course_type ON events (course, type, seq);
    CREATE INDEX events_by_actor ON events (actor, seq);
    CREATE INDEX events_by_type ON events (type, seq);
    CREATE TABLE checkpoints (
        seq       INTEGER PRIMARY KEY,
        hash      TEXT NOT NULL,
        at        TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        signature TEXT NOT NULL
    ) STRICT;
    -- Not a defence (whoever holds the file drops these; the chain and the signatures are
    -- the defence) but it stops a maintenance script or a slip at the sqlite3 prompt.
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'footprint events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'footprint events are append-only'); END;
    CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'footprint checkpoints are append-only'); END;
    CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'footprint checkpoints are append-only'); END;
    """,
)

_EVENT_COLUMNS: Final = "seq, at, lesson, course, actor, type, data, prev, hash"


def _connect(path: Path) -> sqlite3.Connection:
    """Opens and migrates the ledger file; runs in the writer thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Attendance is personal data: the file (and its -wal/-shm, which SQLite gives the
    # same mode) is the server user's alone.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    # isolation_level=None: no implicit transactions; _commit() issues BEGIN/COMMIT itself.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA busy_timeout = 5000")  # a backup may hold the lock briefly
        # WAL: the verifier and backups read while the server writes. FULL: an acknowledged
        # event survives a power cut, not only a process crash (NORMAL in WAL mode may lose
        # the last transactions).
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        # The file is evidence others may have touched: its schema must not run functions.
        connection.execute("PRAGMA trusted_schema = OFF")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > len(_MIGRATIONS):
            raise RuntimeError(f"{path}: ledger schema {version} is newer than this Sabaq")
        for number in range(version + 1, len(_MIGRATIONS) + 1):
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{_MIGRATIONS[number - 1]}\n"
                f"PRAGMA user_version = {number};\nCOMMIT;"
            )
    except BaseException:
        connection.close()
        raise
    return connection


def _open_sessions(connection: sqlite3.Connection) -> list[tuple[str, str, str, Any]]:
    """(lesson, course, actor, session) of every join whose session has no leave, oldest first."""
    # One pass over the joins and leaves (the (type, seq) index finds them), grouped by
    # session in SQLite rather than in Python: a year of lessons is a million rows.
    return connection.execute(
        """
        SELECT j.lesson, j.course, j.actor, s.session FROM (
            SELECT json_extract(data, '$.session') AS session,
                   min(CASE WHEN type = 'participant.joined' THEN seq END) AS joined,
                   sum(type = 'participant.left') AS leaves
            FROM events WHERE type IN ('participant.joined', 'participant.left')
            GROUP BY session
        ) AS s JOIN events AS j ON j.seq = s.joined
        WHERE s.session IS NOT NULL AND s.leaves = 0
        ORDER BY s.joined
        """
    ).fetchall()


def _open_lessons(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    """(lesson, course) of every lesson whose last start has no end after it."""
    return connection.execute(
        """
        SELECT l.lesson, e.course FROM (
            SELECT lesson,
                   max(CASE WHEN type = 'lesson.started' THEN seq END) AS started,
                   max(CASE WHEN type = 'lesson.ended' THEN seq END) AS ended
            FROM events WHERE type IN ('lesson.started', 'lesson.ended')
            GROUP BY lesson
        ) AS l JOIN events AS e ON e.seq = l.started
        WHERE l.ended IS NULL OR l.ended < l.started
        ORDER BY l.started
        """
    ).fetchall()


class Ledger:
    """The append-only, hash-chained footprint ledger (docs/footprint.md)."""

    def __init__(
        self,
        path: Path,
        key: Ed25519PrivateKey,
        checkpoints_file: Path,
        checkpoint_every: int,
        clock: Callable[[], datetime],
    ) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.checkpoints_file = checkpoints_file
        self.appended = 0
        """Events committed since open."""
        self.last_commit_seconds = 0.0
        """Duration of the last transaction, fsync included."""
        self.on_append_latency: Callable[[float], None] | None = None
        """Called with the seconds from each :meth:`append` to its answer (metrics)."""
        self._key = key
        self._every = checkpoint_every
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._queued = 0
        self._last_at = datetime.min.replace(tzinfo=UTC)
        self._closing = False
        self._stopped = False
        self._close_task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        # Owned by the writer thread once it runs.
        self._connection: sqlite3.Connection | None = None
        self._head_seq = 0
        self._head_hash = ZERO_HASH
        self._last_checkpoint = 0

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        signing_key: Path,
        checkpoints_file: Path | None = None,
        checkpoint_every: int = 1000,
        clock: Callable[[], datetime] = utcnow,
    ) -> Ledger:
        """Opens (creating it, its folder and the signing key if needed) the ledger at ``path``.

        ``checkpoints_file`` defaults to ``<stem>-checkpoints.jsonl`` next to the database.
        """
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        path = Path(path)
        if checkpoints_file is None:
            checkpoints_file = path.with_name(f"{path.stem}-checkpoints.jsonl")
        # The key file and the database are read off the loop, like everything on disk.
        key = await asyncio.to_thread(load_or_create_signing_key, Path(signing_key))
        self = cls(path, key, checkpoints_file, checkpoint_every, clock)
        ready: asyncio.Future[datetime | None] = self._loop.create_future()
        self._thread = threading.Thread(
            # daemon: a process that exits without close() must not hang on this thread;
            # what it had not committed was never acknowledged, and SQLite survives the cut.
            target=self._run,
            args=(ready,),
            name="sabaq-footprint",
            daemon=True,
        )
        self._thread.start()
        try:
            last_at = await ready
        except BaseException:
            self._stopped = True
            self._queue.put(_Work("stop", self._loop.create_future()))
            raise
        if last_at is not None:
            self._last_at = last_at
        return self

    # --- the loop side ------------------------------------------------------------------

    @property
    def public_key_pem(self) -> bytes:
        """The public half of the signing key, PEM (what the registrar keeps)."""
        return public_key_pem(self._key.public_key())

    @property
    def key_id(self) -> str:
        """First 16 hex digits of the SHA-256 of the raw public key."""
        return key_id(self._key.public_key())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closing

    def _stamp(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the ledger's clock must return timezone-aware times")
        # A clock stepped back (NTP) must not make time run backwards along the chain.
        now = max(now.astimezone(UTC), self._last_at)
        self._last_at = now
        return now

    def _submit(self, kind: str, at: datetime | None = None, *args: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queued += 1
        self._queue.put(_Work(kind, future, at, args))
        return future

    def append(
        self, lesson: str, course: str, actor: str, type: str, data: Mapping[str, Any]
    ) -> asyncio.Future[Event]:
        """Stamps and queues one event; the future resolves once its transaction committed."""
        if self._closing:
            raise LedgerClosed("the footprint ledger is closed")
        for name, value in (("lesson", lesson), ("course", course), ("actor", actor)):
            _check_field(name, value)
        _check_field("type", type)
        if not type:
            raise ValueError("type must not be empty")
        if not isinstance(data, Mapping):
            raise ValueError("data must be a JSON object")
        text = canonical_json(data)
        if len(text) > MAX_DATA_BYTES:
            raise ValueError(f"data is {len(text)} bytes as JSON; at most {MAX_DATA_BYTES}")
        if self._queued >= _MAX_QUEUED:
            raise RuntimeError(f"the footprint ledger has {self._queued} events queued")
        # Stamped last: a refused event must not move the clamp forward.
        at = self._stamp()
        future = self._submit("append", at, lesson, course, actor, type, text.decode("utf-8"))
        observe = self.on_append_latency
        if observe is not None:
            started = time.perf_counter()

            def answered(done: asyncio.Future[Event]) -> None:
                # Committed or failed, the caller waited this long; a cancelled wait says nothing.
                if not done.cancelled():
                    observe(time.perf_counter() - started)

            future.add_done_callback(answered)
        return future

    async def checkpoint(self) -> Checkpoint | None:
        """Signs the current head now; None when the ledger is empty."""
        if self._stopped:
            raise LedgerClosed("the footprint ledger is closed")
        result: Checkpoint | None = await self._submit("checkpoint", self._stamp())
        return result

    async def flush(self) -> None:
        """Waits until everything appended so far is committed."""
        if not self._stopped:
            await self._submit("flush")

    async def close_open_sessions(self, reason: str = "server_restart") -> int:
        """Closes every join without a leave, then every started lesson without an end.

        Meant for startup, after a crash: the events are stamped now and written in one
        transaction. Returns how many events were appended.
        """
        if self._closing:
            raise LedgerClosed("the footprint ledger is closed")
        _check_field("reason", reason)
        count: int = await self._submit("close_sessions", self._stamp(), reason)
        return count

    async def query(
        self,
        *,
        lesson: str | None = None,
        course: str | None = None,
        actor: str | None = None,
        types: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[Event]:
        """Events matching every filter given, in seq order; ``since`` ≤ at < ``until``.

        Page with ``after_seq`` = the last seq of the previous page.
        """
        if self._stopped:
            raise LedgerClosed("the footprint ledger is closed")
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        where, params = ["seq > ?"], list[Any]([after_seq])
        for column, value in (("lesson", lesson), ("course", course), ("actor", actor)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if types is not None:
            listed = list(types)
            # "IN ()" is valid SQLite and matches nothing, as an empty list of types should.
            where.append(f"type IN ({', '.join('?' * len(listed))})")
            params.extend(listed)
        # Fixed-width UTC stamps: text order is time order.
        for condition, moment in (("at >= ?", since), ("at < ?", until)):
            if moment is not None:
                where.append(condition)
                params.append(format_time(moment))
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        )
        events: list[Event] = await self._submit("query", None, sql, [*params, limit])
        return events

    async def close(self) -> None:
        """Flushes, signs a final checkpoint if there are new events, closes; idempotent."""
        if self._close_task is None:
            self._closing = True
            self._close_task = self._loop.create_task(self._close())
        # Shielded: a caller cancelled while waiting must not leave the file half closed.
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        try:
            if not self._stopped:
                await self._submit("checkpoint", self._stamp())
        finally:
            if not self._stopped:
                self._stopped = True
                await self._submit("stop")
            if self._thread is not None:
                # The thread resolved "stop" as its last act; this join does not wait.
                self._thread.join()

    def _settle(
        self, outcomes: list[_Outcome], appended: int, seconds: float, dequeued: int
    ) -> None:
        """Runs on the loop: hands the writer's answers to the waiting futures."""
        self._queued -= dequeued
        self.appended += appended
        if seconds:
            self.last_commit_seconds = seconds
        for future, value, error in outcomes:
            if future.done():  # the awaiting task was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    # --- the writer thread --------------------------------------------------------------

    def _post(
        self, outcomes: list[_Outcome], appended: int = 0, seconds: float = 0.0, dequeued: int = -1
    ) -> None:
        """Resolves futures on the loop thread (asyncio futures are not thread-safe)."""
        dequeued = len(outcomes) if dequeued < 0 else dequeued
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle, outcomes, appended, seconds, dequeued)

    def _run(self, ready: asyncio.Future[datetime | None]) -> None:
        last_at = None
        try:
            connection = self._connection = _connect(self.path)
            sql = "SELECT seq, hash, at FROM events ORDER BY seq DESC LIMIT 1"
            head = connection.execute(sql).fetchone()
            if head is not None:
                self._head_seq, self._head_hash, last_at = head[0], head[1], parse_time(head[2])
            self._last_checkpoint = _newest_checkpoint(connection)
            self._sync_checkpoints_file(connection)
        except Exception as exc:
            if self._connection is not None:
                self._connection.close()
            self._post([(ready, None, exc)], dequeued=0)
            return
        self._post([(ready, last_at, None)], dequeued=0)
        while True:
            batch = [self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if not self._process(batch):
                    return
            except Exception as exc:
                # A bug, not a disk error (_commit answers those): the batch's callers get
                # the error (answered futures are skipped) and later work is still served.
                _log.exception("footprint writer failed on a batch")
                self._post([(work.future, None, exc) for work in batch])

    def _process(self, batch: list[_Work]) -> bool:
        """Runs one batch: writes in one transaction, reads and the stop in queue order."""
        writes: list[_Work] = []
        for work in batch:
            if work.kind in ("query", "stop"):
                # Reads and the stop see every write queued before them.
                self._commit(writes)
                writes = []
                if not self._read_or_stop(work):
                    return False
            else:
                writes.append(work)
        self._commit(writes)
        return True

    def _read_or_stop(self, work: _Work) -> bool:
        assert self._connection is not None
        try:
            if work.kind == "stop":
                self._connection.close()
                self._post([(work.future, None, None)])
                return False
            events = [
                Event(seq, parse_time(at), lesson, course, actor, type_, json.loads(data), *rest)
                for seq, at, lesson, course, actor, type_, data, *rest in self._connection.execute(
                    *work.args
                )
            ]
            self._post([(work.future, events, None)])
        except Exception as exc:
            self._post([(work.future, None, exc)])
            return work.kind != "stop"
        return True

    def _commit(self, writes: list[_Work]) -> None:
        """Writes ``writes`` in one transaction, then answers their futures."""
        if not writes:
            return
        connection = self._connection
        assert connection is not None
        saved = (self._head_seq, self._head_hash, self._last_checkpoint)
        signed: list[Checkpoint] = []
        outcomes: list[_Outcome] = []
        appended = 0
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            for work in writes:
                value: Any = None
                if work.kind == "append":
                    assert work.at is not None
                    value = self._insert(work.at, *work.args, signed=signed)
                    appended += 1
                elif work.kind == "checkpoint":
                    assert work.at is not None
                    value = self._checkpoint(work.at, signed)
                elif work.kind == "close_sessions":
                    assert work.at is not None
                    value = self._close_sessions(work.at, work.args[0], signed)
                    appended += value
                outcomes.append((work.future, value, None))
            connection.execute("COMMIT")
        except Exception as exc:
            _log.error("footprint transaction of %d items failed: %s", len(writes), exc)
            # A failed COMMIT may have ended the transaction already, and a ROLLBACK on a
            # broken disk fails too: its error must not hide the one that matters.
            with contextlib.suppress(sqlite3.Error):
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            self._head_seq, self._head_hash, self._last_checkpoint = saved
            self._post([(work.future, None, exc) for work in writes])
            return
        seconds = time.perf_counter() - started
        if signed:
            try:
                append_checkpoints(self.checkpoints_file, signed)
            except OSError as exc:  # the table holds them; open() appends what is missing
                _log.error("footprint checkpoints file %s: %s", self.checkpoints_file, exc)
        self._post(outcomes, appended, seconds)

    def _insert(
        self,
        at: datetime,
        lesson: str,
        course: str,
        actor: str,
        type: str,
        data: str,
        *,
        signed: list[Checkpoint],
    ) -> Event:
        assert self._connection is not None
        seq, prev, stamp = self._head_seq + 1, self._head_hash, format_time(at)
        digest = _hash_text(seq, stamp, lesson, course, actor, type, data, prev)
        self._connection.execute(
            "INSERT INTO events (seq, at, lesson, course, actor, type, data, prev, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, stamp, lesson, course, actor, type, data, prev, digest),
        )
        self._head_seq, self._head_hash = seq, digest
        # Every N events, and at every lesson end (docs/footprint.md, "Checkpoints").
        if seq % self._every == 0 or type == "lesson.ended":
            self._sign(at, signed)
        return Event(seq, at, lesson, course, actor, type, json.loads(data), prev, digest)

    def _sign(self, at: datetime, signed: list[Checkpoint]) -> Checkpoint:
        assert self._connection is not None
        checkpoint = sign_checkpoint(self._key, self._head_seq, self._head_hash, at)
        _insert_checkpoint(self._connection, checkpoint)
        self._last_checkpoint = checkpoint.seq
        signed.append(checkpoint)
        return checkpoint

    def _checkpoint(self, at: datetime, signed: list[Checkpoint]) -> Checkpoint | None:
        assert self._connection is not None
        if self._head_seq == 0:
            return None
        if self._last_checkpoint == self._head_seq:  # the head is signed already
            return _checkpoint_at(self._connection, self._head_seq)
        return self._sign(at, signed)

    def _close_sessions(self, at: datetime, reason: str, signed: list[Checkpoint]) -> int:
        assert self._connection is not None
        count = 0
        for lesson, course, actor, session in _open_sessions(self._connection):
            data = canonical_json({"session": session, "reason": reason}).decode("utf-8")
            self._insert(at, lesson, course, actor, "participant.left", data, signed=signed)
            count += 1
        for lesson, course in _open_lessons(self._connection):
            data = canonical_json({"reason": reason}).decode("utf-8")
            self._insert(at, lesson, course, "", "lesson.ended", data, signed=signed)
            count += 1
        return count

    def _sync_checkpoints_file(self, connection: sqlite3.Connection) -> None:
        """Appends to the file the checkpoints a crash kept out of it (they are in the table)."""
        path = self.checkpoints_file
        try:
            newest = _last_in_file(path)
        except (OSError, ValueError) as exc:
            # The table holds every checkpoint; the file is the copy, so the ledger opens.
            _log.error("footprint checkpoints file left alone: %s", exc)
            return
        if newest > self._head_seq:
            _log.error(
                "footprint checkpoints file %s has a checkpoint at event %d but the ledger "
                "ends at %d: an old copy of the ledger may have been restored",
                path,
                newest,
                self._head_seq,
            )
        missing = _table_checkpoints(connection, newest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            append_checkpoints(path, missing)
        except OSError as exc:
            _log.error("footprint checkpoints file %s: %s", path, exc)


def _check_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if len(value) > MAX_FIELD_LENGTH:
        raise ValueError(f"{name} is longer than {MAX_FIELD_LENGTH} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate would fail the whole batch in the writer
        raise ValueError(f"{name} is not valid Unicode") from None
