"""Tampering with a footprint ledger is detected, at the right event, with the right words.

One ledger of 300 events (checkpoints every 50 events and at both lesson ends:
50, 100, 150, 200, 250, 300) is built once; each test tampers with a copy using
raw sqlite3, as someone holding the file would, and runs the verifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signaling.cli import main
from signaling.footprint import (
    Ledger,
    canonical_json,
    event_hash,
    format_time,
    read_checkpoints,
    sign_checkpoint,
    verify_ledger,
)

T0 = datetime(2030, 9, 1, 4, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=250)
        return self.now


def _plan(seq: int) -> tuple[str, str, str, str, dict[str, Any]]:
    """The event at ``seq``: two lessons, 1-150 and 151-300, each started and ended."""
    lesson, course, first = ("L1", "MATH.101", 1) if seq <= 150 else ("L2", "PHYS.201", 151)
    if seq == first:
        return lesson, course, "t-1", "lesson.started", {"title": "Lecture", "kind": "lecture"}
    if seq in (150, 300):
        return lesson, course, "t-1", "lesson.ended", {"reason": "teacher"}
    student = f"s-{seq % 7}"
    session = f"w-{seq % 7}"
    kind = seq % 4
    if kind == 0:
        return (
            lesson,
            course,
            student,
            "chat.sent",
            {"session": session, "message": seq, "text": "Сәлем"},
        )
    if kind == 1:
        return lesson, course, student, "hand.raised", {"session": session}
    if kind == 2:
        return lesson, course, student, "hand.lowered", {"session": session, "by": "t-1"}
    sample = {
        "session": session,
        "loss_up": 0.0125,
        "loss_down": None,
        "rtt_ms": 41.5,
        "bitrate_bps": 900000,
    }
    return lesson, course, student, "quality.sample", sample  # fmt: skip


async def _append(ledger: Ledger, seqs: range) -> None:
    futures = [ledger.append(*_plan(seq)) for seq in seqs]
    assert [e.seq for e in await asyncio.gather(*futures)] == list(seqs)


@dataclass(frozen=True)
class Built:
    db: Path
    old_copy: Path  # the database after event 200
    key: Path
    public_pem: bytes
    server_file: Path  # the ledger's own footprint-checkpoints.jsonl
    registrar_file: Path  # exported with `sabaq footprint export-checkpoints`


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    directory = tmp_path_factory.mktemp("ledger")
    db, key = directory / "footprint.db", directory / "footprint-signing-key.pem"

    async def build() -> bytes:
        clock = Clock(T0)
        ledger = await Ledger.open(db, signing_key=key, checkpoint_every=50, clock=clock)
        await _append(ledger, range(1, 201))
        await ledger.close()
        shutil.copy(db, directory / "old-copy.db")
        ledger = await Ledger.open(db, signing_key=key, checkpoint_every=50, clock=clock)
        await _append(ledger, range(201, 301))
        await ledger.close()
        return ledger.public_key_pem

    public_pem = asyncio.run(build())
    registrar = directory / "registrar.jsonl"
    assert (
        main(["footprint", "export-checkpoints", "--db", str(db), "--output", str(registrar)]) == 0
    )
    (directory / "public.pem").write_bytes(public_pem)
    return Built(
        db, directory / "old-copy.db", key, public_pem,
        directory / "footprint-checkpoints.jsonl", registrar,
    )  # fmt: skip


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    """A copy of the finished ledger this test may tamper with."""
    target = tmp_path / "footprint.db"
    shutil.copy(built.db, target)
    return target


# --- the attacker's tools: raw SQL on the file, and the published hash algorithm ------------


def _connect(db: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(db, isolation_level=None)
    for name in ("events_no_update", "events_no_delete", "checkpoints_no_update",
                 "checkpoints_no_delete"):  # fmt: skip
        connection.execute(f"DROP TRIGGER IF EXISTS {name}")
    return connection


def _rows(connection: sqlite3.Connection) -> list[dict[str, Any]]:
    cursor = connection.execute(
        "SELECT seq, at, lesson, course, actor, type, data, prev, hash FROM events ORDER BY seq"
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _own_hash(row: dict[str, Any]) -> str:
    fields = ("seq", "at", "lesson", "course", "actor", "type")
    return event_hash(*(row[f] for f in fields), json.loads(row["data"]), row["prev"])


def _rewrite(connection: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    connection.execute("DELETE FROM events")
    for row in rows:
        connection.execute(
            "INSERT INTO events VALUES (:seq, :at, :lesson, :course, :actor, :type, :data,"
            " :prev, :hash)",
            row,
        )


def _verify(db: Path, built: Built, *, key: bool = True, files: tuple[Path, ...] = ()) -> Any:
    pem = built.public_pem if key else None
    return verify_ledger(db, public_key_pem=pem, checkpoint_files=files)


def _assert_problem(result: Any, position: int, problem: str) -> None:
    assert (result.ok, result.position, result.problem) == (False, position, problem)


def _altered(seq: int) -> str:
    return f"event {seq}: altered (hash does not match its content)"


def _does_not_follow(seq: int) -> str:
    return (
        f"event {seq}: does not follow event {seq - 1} (prev hash differs): "
        "an event was inserted, deleted or reordered before it"
    )


def _beyond(seq: int, last: int) -> str:
    return (
        f"checkpoint at event {seq} is beyond the last event ({last}): "
        "events were truncated or an old copy was restored"
    )


# --- the untouched ledger ------------------------------------------------------------------


def test_the_untouched_ledger_verifies(built: Built) -> None:
    result = _verify(built.db, built, files=(built.registrar_file, built.server_file))
    assert result.ok and result.problem is None and result.position is None
    # The table and both files hold the same six: identical copies count once.
    assert (result.events, result.checkpoints, result.signatures_checked) == (300, 6, True)
    assert [c.seq for c in read_checkpoints(built.registrar_file)] == [50, 100, 150, 200, 250, 300]
    assert built.registrar_file.read_bytes() == built.server_file.read_bytes()
    unsigned = _verify(built.db, built, key=False)
    assert unsigned.ok and not unsigned.signatures_checked


def test_the_tables_refuse_updates_and_deletes_until_their_triggers_are_dropped(
    copy: Path,
) -> None:
    connection = sqlite3.connect(copy, isolation_level=None)
    try:
        for statement in (
            "UPDATE events SET actor = 'x' WHERE seq = 1",
            "DELETE FROM events WHERE seq = 300",
            "UPDATE checkpoints SET hash = 'x'",
            "DELETE FROM checkpoints",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                connection.execute(statement)
    finally:
        connection.close()


# --- edits -----------------------------------------------------------------------------------


def test_an_edited_data_field_is_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        (data,) = connection.execute("SELECT data FROM events WHERE seq = 120").fetchone()
        edited = {**json.loads(data), "session": "w-forged"}
        connection.execute(
            "UPDATE events SET data = ? WHERE seq = 120", (canonical_json(edited).decode(),)
        )
    connection.close()
    result = _verify(copy, built)
    _assert_problem(result, 120, _altered(120))
    assert result.events == 119


def test_an_edited_time_is_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        connection.execute(
            "UPDATE events SET at = ? WHERE seq = 77", (format_time(T0 + timedelta(hours=1)),)
        )
    connection.close()
    _assert_problem(_verify(copy, built), 77, _altered(77))


def test_text_that_is_not_utf8_or_not_json_is_an_alteration(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        connection.execute("UPDATE events SET actor = CAST(x'ff' AS TEXT) WHERE seq = 10")
    connection.close()
    _assert_problem(_verify(copy, built), 10, _altered(10))
    with _connect(copy) as connection:
        connection.execute("UPDATE events SET data = '{\"session\": ' WHERE seq = 5")
    connection.close()
    _assert_problem(_verify(copy, built), 5, _altered(5))


def test_an_edit_with_the_whole_chain_recomputed_is_caught_by_a_checkpoint(
    copy: Path, built: Built
) -> None:
    with _connect(copy) as connection:
        rows = _rows(connection)
        rows[119]["data"] = canonical_json({"session": "w-forged"}).decode()
        for index in range(119, len(rows)):
            rows[index]["prev"] = rows[index - 1]["hash"]
            rows[index]["hash"] = _own_hash(rows[index])
        _rewrite(connection, rows)
    connection.close()
    _assert_problem(
        _verify(copy, built), 150, "checkpoint at event 150: the chain has a different hash there"
    )


# --- deletions, insertions, reordering --------------------------------------------------------


def test_a_deleted_event_is_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        connection.execute("DELETE FROM events WHERE seq = 150")
    connection.close()
    result = _verify(copy, built)
    _assert_problem(result, 150, "event 150: missing (sequence jumps from 149 to 151)")


def test_a_deleted_event_with_the_rest_renumbered_is_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        rows = _rows(connection)
        del rows[149]
        for index in range(149, len(rows)):
            rows[index]["seq"] = index + 1
            rows[index]["hash"] = _own_hash(rows[index])  # each event consistent with itself
        _rewrite(connection, rows)
        connection.execute("DELETE FROM checkpoints WHERE seq >= 150")
    connection.close()
    _assert_problem(_verify(copy, built), 150, _does_not_follow(150))


def test_a_forged_event_inserted_in_the_middle_is_detected(copy: Path, built: Built) -> None:
    joined = {"session": "w-x", "role": "student", "name": "Absent"}
    with _connect(copy) as connection:
        rows = _rows(connection)
        forged = {
            "seq": 110, "at": rows[108]["at"], "lesson": "L1", "course": "MATH.101",
            "actor": "s-absent", "type": "participant.joined",
            "data": canonical_json(joined).decode(), "prev": rows[108]["hash"],
        }  # fmt: skip
        forged["hash"] = _own_hash(forged)
        rows.insert(109, forged)
        for index in range(110, len(rows)):
            rows[index]["seq"] = index + 1
            rows[index]["hash"] = _own_hash(rows[index])
        _rewrite(connection, rows)
    connection.close()
    result = _verify(copy, built)
    _assert_problem(result, 111, _does_not_follow(111))
    assert result.events == 110  # the forged event itself is consistent; its successor is not


def test_two_swapped_events_are_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        rows = _rows(connection)
        rows[199], rows[200] = rows[200], rows[199]
        rows[199]["seq"], rows[200]["seq"] = 200, 201
        for index in (199, 200):
            rows[index]["hash"] = _own_hash(rows[index])
        _rewrite(connection, rows)
    connection.close()
    _assert_problem(_verify(copy, built), 200, _does_not_follow(200))


def test_two_swapped_events_without_rehashing_are_alterations(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        connection.execute("UPDATE events SET seq = -1 WHERE seq = 200")
        connection.execute("UPDATE events SET seq = 200 WHERE seq = 201")
        connection.execute("UPDATE events SET seq = 201 WHERE seq = -1")
    connection.close()
    _assert_problem(_verify(copy, built), 200, _altered(200))


# --- truncation and rollback ----------------------------------------------------------------


def test_a_truncated_tail_is_detected_by_the_remaining_checkpoints(
    copy: Path, built: Built
) -> None:
    with _connect(copy) as connection:
        connection.execute("DELETE FROM events WHERE seq > 260")
    connection.close()
    _assert_problem(_verify(copy, built), 300, _beyond(300, 260))


def test_a_truncated_tail_with_its_checkpoints_is_detected_by_the_registrar_copy(
    copy: Path, built: Built
) -> None:
    with _connect(copy) as connection:
        connection.execute("DELETE FROM events WHERE seq > 230")
        connection.execute("DELETE FROM checkpoints WHERE seq > 230")
    connection.close()
    assert _verify(copy, built).ok  # nothing inside the file shows it
    result = _verify(copy, built, files=(built.registrar_file,))
    _assert_problem(result, 250, _beyond(250, 230))
    assert (result.events, result.checkpoints) == (230, 4)


def test_an_old_copy_put_back_is_detected_by_the_registrar_copy(
    built: Built, tmp_path: Path
) -> None:
    restored = tmp_path / "footprint.db"
    shutil.copy(built.old_copy, restored)
    assert _verify(restored, built).ok  # an old copy is consistent in itself
    result = _verify(restored, built, files=(built.registrar_file,))
    _assert_problem(result, 250, _beyond(250, 200))


async def test_an_old_copy_put_back_and_written_on_is_detected(
    built: Built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    restored = tmp_path / "footprint.db"
    shutil.copy(built.old_copy, restored)
    server_file = tmp_path / "footprint-checkpoints.jsonl"
    shutil.copy(built.server_file, server_file)  # the server's own file survived the restore
    with caplog.at_level(logging.ERROR, logger="signaling.footprint.ledger"):
        ledger = await Ledger.open(
            restored,
            signing_key=built.key,
            checkpoint_every=50,
            clock=Clock(T0 + timedelta(days=1)),
        )
    assert "an old copy" in caplog.text  # the server says so at start
    try:
        await _append(ledger, range(201, 321))
    finally:
        await ledger.close()
    assert _verify(restored, built).ok  # the new events are signed with the real key
    result = _verify(restored, built, files=(built.registrar_file,))
    _assert_problem(result, 250, "checkpoint at event 250: the chain has a different hash there")
    # The server's file, appended to after the restore, holds the evidence as well.
    _assert_problem(_verify(restored, built, files=(server_file,)), 250, result.problem or "")


# --- forged checkpoints ----------------------------------------------------------------------


def _insert_checkpoint(connection: sqlite3.Connection, checkpoint: Any) -> None:
    row = checkpoint.to_json()
    connection.execute(
        "INSERT OR REPLACE INTO checkpoints VALUES (:seq, :hash, :at, :key_id, :signature)", row
    )


def test_a_checkpoint_signed_with_another_key_is_detected(copy: Path, built: Built) -> None:
    with _connect(copy) as connection:
        (chain,) = connection.execute("SELECT hash FROM events WHERE seq = 75").fetchone()
        forged = sign_checkpoint(Ed25519PrivateKey.generate(), 75, chain, T0)
        _insert_checkpoint(connection, forged)
    connection.close()
    _assert_problem(_verify(copy, built), 75, "checkpoint at event 75: signature does not verify")
    # Without the registrar's key only its hash can be checked, and that is right.
    unsigned = _verify(copy, built, key=False)
    assert unsigned.ok and not unsigned.signatures_checked and unsigned.checkpoints == 7


def test_a_checkpoint_with_our_key_id_and_a_wrong_signature_is_detected(
    copy: Path, built: Built
) -> None:
    genuine = read_checkpoints(built.server_file)[1]  # event 100
    with _connect(copy) as connection:
        row = {**genuine.to_json(), "signature": "ab" * 64}
        connection.execute("UPDATE checkpoints SET signature = :signature WHERE seq = :seq", row)
        connection.execute("UPDATE checkpoints SET key_id = 'nothex' WHERE seq = 200")
    connection.close()
    _assert_problem(_verify(copy, built), 100, "checkpoint at event 100: signature does not verify")


def test_a_rewritten_chain_re_signed_with_another_key_is_detected(copy: Path, built: Built) -> None:
    attacker = Ed25519PrivateKey.generate()
    with _connect(copy) as connection:
        rows = _rows(connection)
        rows[119]["data"] = canonical_json({"session": "w-forged"}).decode()
        for index in range(119, len(rows)):
            rows[index]["prev"] = rows[index - 1]["hash"]
            rows[index]["hash"] = _own_hash(rows[index])
        _rewrite(connection, rows)
        for seq in (150, 200, 250, 300):
            _insert_checkpoint(
                connection, sign_checkpoint(attacker, seq, rows[seq - 1]["hash"], T0)
            )
    connection.close()
    signature = "checkpoint at event 150: signature does not verify"
    _assert_problem(_verify(copy, built), 150, signature)
    # Without the key, the registrar's copy of the checkpoints still shows it.
    result = _verify(copy, built, key=False, files=(built.registrar_file,))
    _assert_problem(result, 150, "checkpoint at event 150: the chain has a different hash there")
    assert not result.signatures_checked


# --- what is not a ledger -------------------------------------------------------------------


def test_missing_and_foreign_files_raise(built: Built, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verify_ledger(tmp_path / "absent.db")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all " * 64)
    with pytest.raises(ValueError, match="not a footprint ledger"):
        verify_ledger(tmp_path / "junk.db")
    sqlite3.connect(tmp_path / "other.db").close()
    with pytest.raises(ValueError, match="no events table"):
        verify_ledger(tmp_path / "other.db")
    (tmp_path / "bad.jsonl").write_text('{"seq": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        verify_ledger(built.db, checkpoint_files=[tmp_path / "bad.jsonl"])
    with pytest.raises(ValueError, match="not a PEM key"):
        verify_ledger(built.db, public_key_pem=b"-----BEGIN PUBLIC KEY-----\nAAAA\n")


# --- the command line -----------------------------------------------------------------------


def test_cli_verify_exit_codes(
    built: Built, copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = str(built.db.parent / "public.pem")
    ok = ["footprint", "verify", "--db", str(built.db), "--public-key", public]
    assert main([*ok, "--checkpoints", str(built.registrar_file), str(built.server_file)]) == 0
    out = capsys.readouterr()
    assert out.out == "OK: 300 events, 6 checkpoints verified\n" and out.err == ""
    # The signing key file itself also gives the public key.
    assert main(["footprint", "verify", "--db", str(built.db), "--public-key", str(built.key)]) == 0
    capsys.readouterr()

    assert main(["footprint", "verify", "--db", str(built.db)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("OK: 300 events") and "not checked" in out.err

    with _connect(copy) as connection:
        connection.execute("DELETE FROM events WHERE seq = 42")
    connection.close()
    assert main(["footprint", "verify", "--db", str(copy), "--public-key", public]) == 1
    assert capsys.readouterr().out == "event 42: missing (sequence jumps from 41 to 43)\n"

    (tmp_path / "bad.pem").write_text("not a key")
    (tmp_path / "bad.jsonl").write_text("{}\n")
    for argv in (
        ["--db", str(tmp_path / "absent.db")],
        ["--db", str(built.db), "--public-key", str(tmp_path / "absent.pem")],
        ["--db", str(built.db), "--public-key", str(tmp_path / "bad.pem")],
        ["--db", str(built.db), "--checkpoints", str(tmp_path / "absent.jsonl")],
        ["--db", str(built.db), "--checkpoints", str(tmp_path / "bad.jsonl")],
    ):
        assert main(["footprint", "verify", *argv]) == 2, argv
        assert capsys.readouterr().err.startswith("sabaq footprint verify: ")
    assert main(["footprint"]) == 2
    assert "usage: sabaq footprint" in capsys.readouterr().out


def test_cli_public_key_and_export(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["footprint", "public-key", "--key", str(built.key)]) == 0
    out = capsys.readouterr()
    assert out.out.encode() == built.public_pem and out.err.startswith("key id: ")
    assert main(["footprint", "public-key", "--key", str(tmp_path / "absent.pem")]) == 2
    assert "the server creates it" in capsys.readouterr().err

    assert main(["footprint", "export-checkpoints", "--db", str(built.db)]) == 0
    assert capsys.readouterr().out.encode() == built.registrar_file.read_bytes()
    output = tmp_path / "out" / "checkpoints.jsonl"
    argv = ["footprint", "export-checkpoints", "--db", str(built.db), "--output", str(output)]
    assert main(argv) == 0
    assert output.read_bytes() == built.registrar_file.read_bytes()
    assert "6 checkpoints written" in capsys.readouterr().err
    missing = ["footprint", "export-checkpoints", "--db", str(tmp_path / "absent.db")]
    assert main(missing) == 2
