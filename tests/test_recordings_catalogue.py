"""The recordings catalogue on a real SQLite file: CRUD, statuses, retention, URL signing."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signaling.db import Database
from signaling.lessons import LessonNotFound, LessonStore
from signaling.recordings import (
    Catalogue,
    CatalogueError,
    MediaSigner,
    Part,
    RecordingNotFound,
    RetentionTask,
    load_or_create_secret,
    purge_expired,
)
from signaling.recordings.viewing import (
    InvalidViewing,
    ReportLimiter,
    merge_intervals,
    parse_viewed,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def make_lesson(db: Database, lesson_id: str = "L1", course: str = "MATH") -> None:
    await LessonStore(db).create(
        {
            "id": lesson_id,
            "course": course,
            "title": "Алгоритмдер",
            "kind": "lecture",
            "teacher_ids": ["t-1"],
            "scheduled_start": T0,
            "scheduled_end": T0 + timedelta(minutes=90),
        }
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "sabaq.db")
    await make_lesson(database)
    try:
        yield database
    finally:
        await database.close()


async def add_camera(
    catalogue: Catalogue, recording_id: str, path: str, offset: float = 0.0
) -> Part:
    return await catalogue.add_part(
        recording_id,
        participant_id="t-1",
        participant_name="Асқар Нұрланұлы",
        source="camera",
        kind="video",
        codec="vp8",
        path=path,
        start_offset_s=offset,
    )


async def test_create_add_parts_and_read_back(db: Database) -> None:
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", T0)
    assert len(recording.id) >= 22 and recording.status == "recording"
    assert (recording.composite_status, recording.composite_progress) == ("pending", 0.0)
    camera = await add_camera(catalogue, recording.id, f"{recording.id}/camera.webm")
    screen = await catalogue.add_part(
        recording.id,
        participant_id="t-1",
        participant_name="Асқар",
        source="screen",
        kind="video",
        codec="vp8",
        path=f"{recording.id}/screen.webm",
        start_offset_s=12.5,
    )
    assert camera.id != screen.id and len(camera.id) >= 22
    await catalogue.update_part(camera.id, duration_s=60.0, size_bytes=1000, status="complete")
    updated = await catalogue.update_part(screen.id, duration_s=30.25, size_bytes=500)
    assert (updated.status, updated.duration_s) == ("recording", 30.25)

    loaded = await catalogue.get(recording.id)
    assert [p.id for p in loaded.parts] == [camera.id, screen.id]
    assert loaded.duration_s == 60.0 and loaded.size_bytes == 1500
    assert loaded.parts[0].playable and not loaded.parts[1].playable
    body = loaded.to_json()
    assert body["player_path"] == f"/r/{recording.id}"
    assert body["started_at"] == "2026-11-24T09:00:00.000000Z"
    assert "path" not in body["parts"][0]
    assert body["parts"][1]["start_offset_s"] == 12.5

    await catalogue.update_part(screen.id, duration_s=50.0)
    assert (await catalogue.get(recording.id)).duration_s == 62.5
    assert [r.id for r in await catalogue.for_lesson("L1")] == [recording.id]
    assert await catalogue.for_lesson("L2") == []


async def test_unknown_ids(db: Database) -> None:
    catalogue = Catalogue(db)
    with pytest.raises(LessonNotFound):
        await catalogue.create("nope", "MATH", T0)
    with pytest.raises(RecordingNotFound):
        await catalogue.get("nope")
    with pytest.raises(RecordingNotFound):
        await add_camera(catalogue, "nope", "a.webm")
    with pytest.raises(RecordingNotFound):
        await catalogue.update_part("nope", status="complete")
    with pytest.raises(RecordingNotFound):
        await catalogue.set_status("nope", "finalizing")


async def test_statuses_move_forward_only(db: Database) -> None:
    now = [T0 + timedelta(minutes=95)]
    catalogue = Catalogue(db, clock=lambda: now[0])
    recording = await catalogue.create("L1", "MATH", T0)
    finalizing = await catalogue.set_status(recording.id, "finalizing")
    assert finalizing.ended_at == now[0]
    now[0] += timedelta(minutes=5)
    ready = await catalogue.set_status(recording.id, "ready")
    assert ready.status == "ready" and ready.ended_at == T0 + timedelta(minutes=95)
    assert (await catalogue.set_status(recording.id, "ready")).status == "ready"  # again: no-op
    with pytest.raises(CatalogueError, match="cannot become 'failed'"):
        await catalogue.set_status(recording.id, "failed", "too late")
    with pytest.raises(CatalogueError, match="cannot become 'recording'"):
        await catalogue.set_status(recording.id, "recording")
    # Closed at shutdown or recovered after a crash: straight to ready.
    direct = await catalogue.create("L1", "MATH", T0)
    assert (await catalogue.set_status(direct.id, "ready")).ended_at == now[0]

    broken = await catalogue.create("L1", "MATH", T0)
    with pytest.raises(CatalogueError, match="reason"):
        await catalogue.set_status(broken.id, "failed")
    with pytest.raises(CatalogueError, match="reason"):
        await catalogue.set_status(broken.id, "finalizing", "why")
    with pytest.raises(CatalogueError, match="reason"):
        await catalogue.set_status(broken.id, "failed", "  ")
    failed = await catalogue.set_status(broken.id, "failed", "disk full")
    assert (failed.status, failed.reason) == ("failed", "disk full")
    # An encoder's whole stderr as the reason is kept, cut to 500 characters.
    long = await catalogue.create("L1", "MATH", T0)
    cut = await catalogue.set_composite(long.id, status="failed", reason="x" * 5000)
    assert cut.composite_reason == "x" * 499 + "…"
    assert failed.to_json()["reason"] == "disk full"
    with pytest.raises(CatalogueError):
        await catalogue.set_status(broken.id, "bogus")


async def test_the_composite_job_state(db: Database) -> None:
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", T0)
    running = await catalogue.set_composite(recording.id, status="running", progress=0.4)
    assert (running.composite_status, running.composite_progress) == ("running", 0.4)
    kept = await catalogue.set_composite(recording.id, status="running")
    assert kept.composite_progress == 0.4
    with pytest.raises(CatalogueError):
        await catalogue.set_composite(recording.id, status="ready")  # no path
    with pytest.raises(CatalogueError):
        await catalogue.set_composite(recording.id, status="running", progress=1.5)
    with pytest.raises(CatalogueError):
        await catalogue.set_composite(recording.id, status="failed")  # no reason
    ready = await catalogue.set_composite(
        recording.id, status="ready", path=f"{recording.id}/lesson.mp4"
    )
    assert (ready.composite_progress, ready.composite_path) == (1.0, f"{recording.id}/lesson.mp4")
    assert ready.to_json()["composite"] == {"status": "ready", "progress": 1.0, "reason": None}
    failed = await catalogue.set_composite(recording.id, status="failed", reason="ffmpeg died")
    assert (failed.composite_path, failed.composite_reason) == (None, "ffmpeg died")
    assert (await catalogue.set_composite(recording.id, status="pending")).composite_progress == 0


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x.webm", "a/../../x.webm", "a//b.webm", "a\\b.webm", "", "./a"]
)
async def test_part_paths_stay_inside_the_folder(db: Database, path: str) -> None:
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", T0)
    with pytest.raises(CatalogueError, match="path must be"):
        await add_camera(catalogue, recording.id, path)


async def test_bad_part_values(db: Database) -> None:
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", T0)
    with pytest.raises(CatalogueError):
        await add_camera(catalogue, recording.id, "a.webm", offset=-1)
    with pytest.raises(CatalogueError):
        await add_camera(catalogue, recording.id, "a.webm", offset=float("nan"))
    with pytest.raises(CatalogueError, match="source"):
        await catalogue.add_part(
            recording.id,
            participant_id="t-1",
            participant_name="A",
            source="whiteboard",
            kind="video",
            codec="vp8",
            path="a.webm",
            start_offset_s=0,
        )
    part = await add_camera(catalogue, recording.id, "a.webm")
    with pytest.raises(CatalogueError):
        await catalogue.update_part(part.id, size_bytes=-1)
    with pytest.raises(CatalogueError):
        await catalogue.update_part(part.id, status="ready")
    with pytest.raises(CatalogueError, match="time zone"):
        await catalogue.create("L1", "MATH", datetime(2026, 1, 1))


async def test_the_catalogue_survives_a_restart(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "sabaq.db")
    await make_lesson(db)
    recording = await Catalogue(db).create("L1", "MATH", T0)
    await add_camera(Catalogue(db), recording.id, "a.webm")
    await db.close()
    db = await Database.open(tmp_path / "sabaq.db")
    try:
        again = await Catalogue(db).get(recording.id)
        assert again.started_at == T0 and len(again.parts) == 1
    finally:
        await db.close()


# --- retention ---------------------------------------------------------------------------------


async def finished(catalogue: Catalogue, root: Path, started: datetime) -> tuple[str, list[Path]]:
    recording = await catalogue.create("L1", "MATH", started)
    folder = root / recording.id
    folder.mkdir(parents=True)
    files = [folder / "camera.webm", folder / "lesson.mp4"]
    for file in files:
        file.write_bytes(b"x" * 10)
    # The recorder's own files, not in the catalogue: they go with the folder.
    (folder / "manifest.jsonl").write_text("{}\n")
    (folder / "composite-work").mkdir()
    (folder / "composite-work" / "progress.json").write_text("{}")
    await add_camera(catalogue, recording.id, f"{recording.id}/camera.webm")
    await catalogue.set_status(recording.id, "finalizing")
    await catalogue.set_status(recording.id, "ready")
    await catalogue.set_composite(recording.id, status="ready", path=f"{recording.id}/lesson.mp4")
    return recording.id, files


async def test_purge_deletes_old_recordings_and_their_files(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    now = [T0]
    catalogue = Catalogue(db, clock=lambda: now[0])
    old_id, old_files = await finished(catalogue, root, T0)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    sneaky = await catalogue.create("L1", "MATH", T0)
    await add_camera(catalogue, sneaky.id, "link/precious.txt")
    (root / "link").symlink_to(tmp_path)
    await catalogue.set_status(sneaky.id, "failed", "broken")
    now[0] = T0 + timedelta(days=20)
    new_id, new_files = await finished(catalogue, root, now[0])
    live = await catalogue.create("L1", "MATH", T0)  # still recording: never purged

    later = T0 + timedelta(days=31)
    assert await purge_expired(catalogue, root, None, later) == 0
    assert await purge_expired(catalogue, root, 0, later) == 0
    assert await purge_expired(catalogue, root, 30, later) == 2
    assert not any(f.exists() for f in old_files) and not (root / old_id).exists()
    assert all(f.exists() for f in new_files)
    assert outside.read_text() == "keep"  # the symlinked path was refused
    with pytest.raises(RecordingNotFound):
        await catalogue.get(old_id)
    with pytest.raises(RecordingNotFound):
        await catalogue.get(sneaky.id)
    assert {r.id for r in await catalogue.for_lesson("L1")} == {new_id, live.id}
    # Files already gone (a crash after deleting them): the rows still go.
    (root / new_id / "camera.webm").unlink()
    assert await purge_expired(catalogue, root, 1, later) == 1
    assert not (root / new_id).exists()
    with pytest.raises(ValueError):
        await purge_expired(catalogue, root, -1, later)


async def test_the_retention_task_runs_at_start_and_stops(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    catalogue = Catalogue(db)
    await finished(catalogue, root, T0)
    task = RetentionTask(catalogue, root, 7, interval_s=0.01, clock=lambda: T0 + timedelta(days=8))
    task.start()
    for _ in range(200):
        if not await catalogue.for_lesson("L1"):
            break
        await asyncio.sleep(0.01)
    assert await catalogue.for_lesson("L1") == []
    await task.stop()
    await task.stop()  # idempotent
    forever = RetentionTask(catalogue, root, None)
    forever.start()
    await forever.stop()


# --- signed URLs and viewing reports -----------------------------------------------------------


def test_the_secret_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "media-url-secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == secret
    path.write_text("zz\n")
    with pytest.raises(ValueError, match="hex"):
        load_or_create_secret(path)
    path.write_text("ab" * 8)
    with pytest.raises(ValueError, match="at least"):
        load_or_create_secret(path)


def test_signed_urls() -> None:
    now = [1_800_000_000.0]
    signer = MediaSigner(b"k" * 32, lifetime_s=600, clock=lambda: now[0])
    url, exp = signer.sign("rec", "part")
    assert exp == 1_800_000_600
    path, query = url.split("?")
    assert path == "/media/recordings/rec/part"
    fields = dict(item.split("=") for item in query.split("&"))
    assert signer.verify("rec", "part", fields["exp"], fields["sig"])
    assert not signer.verify("rec", "other", fields["exp"], fields["sig"])
    assert not signer.verify("other", "part", fields["exp"], fields["sig"])
    assert not signer.verify("rec", "part", str(exp + 1), fields["sig"])
    tampered = ("0" if fields["sig"][0] != "0" else "1") + fields["sig"][1:]
    assert not signer.verify("rec", "part", fields["exp"], tampered)
    assert not signer.verify("rec", "part", None, fields["sig"])
    assert not signer.verify("rec", "part", fields["exp"], None)
    assert not signer.verify("rec", "part", "-5", fields["sig"])
    assert not signer.verify("rec", "part", fields["exp"], fields["sig"][:-1])
    assert not MediaSigner(b"j" * 32).verify("rec", "part", fields["exp"], fields["sig"])
    now[0] += 600
    assert signer.verify("rec", "part", fields["exp"], fields["sig"])
    now[0] += 1
    assert not signer.verify("rec", "part", fields["exp"], fields["sig"])
    with pytest.raises(ValueError):
        MediaSigner(b"short")


def test_viewing_reports_are_checked_and_merged() -> None:
    intervals = [[10, 20.5], [0, 5], [4.0004, 6], [20.5, 21], [30.12345, 31]]
    assert parse_viewed({"intervals": intervals}, 60) == [
        (0.0, 6.0),
        (10.0, 21.0),
        (30.123, 31.0),
    ]
    assert parse_viewed({"intervals": []}, 60) == []
    assert parse_viewed({"intervals": [[60, 64.9]]}, 60) == [(60.0, 64.9)]
    assert merge_intervals([(1.0, 1.0001)]) == []
    for body, message in (
        ({}, "required"),
        ({"intervals": [], "extra": 1}, "unknown field 'extra'"),
        ({"intervals": "0-5"}, "list"),
        ({"intervals": [[0, 5]] * 501}, "at most 500"),
        ({"intervals": [[0]]}, r"intervals\[0\] must be a pair"),
        ({"intervals": [[0, 5], [5, 4]]}, r"intervals\[1\] must end after"),
        ({"intervals": [[-1, 5]]}, "before the recording"),
        ({"intervals": [[0, 66]]}, "after the recording"),
        ({"intervals": [[True, 5]]}, "number"),
        ({"intervals": [["0", 5]]}, "number"),
        ({"intervals": [[0, float("inf")]]}, "finite"),
    ):
        with pytest.raises(InvalidViewing, match=message):
            parse_viewed(body, 60)


def test_viewing_reports_are_rate_limited_per_viewer_and_recording() -> None:
    now = [0.0]
    limiter = ReportLimiter(burst=3, every_s=10, clock=lambda: now[0])
    assert [limiter.allow("s-1", "r") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("s-2", "r") and limiter.allow("s-1", "other")  # buckets of their own
    now[0] += 10  # one token back
    assert [limiter.allow("s-1", "r") for _ in range(2)] == [True, False]
    now[0] += 1000  # never more than the burst
    assert [limiter.allow("s-1", "r") for _ in range(4)] == [True, True, True, False]
    # The table is bounded: the least recently seen viewer is forgotten first.
    small = ReportLimiter(burst=1, every_s=10, max_keys=2, clock=lambda: now[0])
    assert small.allow("a", "r") and not small.allow("a", "r")
    assert small.allow("b", "r") and small.allow("c", "r")  # "a" is forgotten
    assert small.allow("a", "r")
