"""Recording a live lesson end to end: the teacher's `record`, the badge, the files, the MP4.

Real aiohttp server, real aiortc teacher and students on loopback; the
recorder subscribes in process like a student. The files are checked with
PyAV: every track decodes end to end, durations match the time recorded, and
the single MP4 made by the background job decodes too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from sfu import Source
from signaling.app import LEDGER_KEY
from tests.conftest import ClassroomServer
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(180)


def decode_all(path: Path) -> dict[str, Any]:
    """Decode every frame of every stream; duration from the last frame's time."""
    result: dict[str, Any] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            entry = result[stream.type] = {"frames": 0, "first": None, "last": 0.0}
            for frame in container.decode(stream):
                entry["frames"] += 1
                t = float(frame.time or 0.0)
                entry["first"] = t if entry["first"] is None else min(entry["first"], t)
                entry["last"] = max(entry["last"], t)
            container.seek(0)
    return result


async def api(classroom: ClassroomServer, token: str, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"{classroom.url}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200, (path, response.status, await response.text())
        return await response.json()


async def test_a_teacher_records_a_lesson_and_it_can_be_watched(
    classroom: ClassroomServer,
) -> None:
    await classroom.lesson(recording_policy="manual")
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    # A keyframe every 0.5 s: a pre-encoded clip cannot answer the recorder's PLI
    # as a browser does, and the recording starts at a keyframe.
    reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE, keyframe_interval_s=0.5)
    assert reply["type"] == "answer"
    student = await classroom.client("s1")
    welcome = await student.wait_message("welcome")
    assert welcome["recording"] is False
    # a student cannot start it
    refused = await student.request({"type": "record", "active": True})
    assert refused["type"] == "error" and refused["code"] == "forbidden"

    started = time.monotonic()
    assert (await teacher.request({"type": "record", "active": True}))["type"] == "ok"
    badge = await student.wait_message("recording")
    assert badge["active"] is True
    await asyncio.sleep(6.0)
    assert (await teacher.request({"type": "record", "active": False}))["type"] == "ok"
    recorded_s = time.monotonic() - started
    assert (await student.wait_message("recording", active=False))["active"] is False

    teacher_token = classroom.token("t1", "teacher")
    listed = await api(classroom, teacher_token, "/api/lessons/L1/recordings")
    (recording,) = listed["recordings"]
    assert recording["status"] == "ready"
    sources = sorted(p["source"] for p in recording["parts"])
    assert sources == ["camera", "microphone"]

    media_root = classroom.settings.server.data_dir / "recordings" / recording["id"]
    for part in recording["parts"]:
        files = sorted(media_root.glob("*.webm")) + sorted(media_root.glob("*.mkv"))
        assert files, list(media_root.iterdir())
        assert abs(part["duration_s"] - recorded_s) < 1.0, (part, recorded_s)
    decoded = [await asyncio.to_thread(decode_all, f) for f in sorted(media_root.glob("*.webm"))]
    kinds = {k for d in decoded for k in d}
    assert kinds == {"video", "audio"}
    for d in decoded:
        for entry in d.values():
            assert entry["frames"] > 10
            assert entry["last"] - (entry["first"] or 0.0) > recorded_s - 1.5

    # The footprint says who recorded and when.
    ledger = classroom.app[LEDGER_KEY]
    await ledger.flush()
    kinds_in_ledger = [e.type for e in await ledger.query(lesson="L1", limit=1000)]
    assert "recording.started" in kinds_in_ledger and "recording.stopped" in kinds_in_ledger

    # The single MP4, made in the background at low priority.
    async def composite() -> dict[str, Any]:
        detail = await api(classroom, teacher_token, f"/api/recordings/{recording['id']}")
        return dict(detail["composite"])

    deadline = time.monotonic() + 120
    state = await composite()
    while state["status"] not in ("ready", "failed") and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        state = await composite()
    assert state["status"] == "ready", state
    mp4 = media_root / "lesson.mp4"
    decoded_mp4 = await asyncio.to_thread(decode_all, mp4)
    assert decoded_mp4["video"]["frames"] > 10 and decoded_mp4["audio"]["frames"] > 10

    # A signed link serves byte ranges; a tampered one is refused.
    detail = await api(classroom, teacher_token, f"/api/recordings/{recording['id']}")
    url = detail["parts"][0]["url"]
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{classroom.url}{url}", headers={"Range": "bytes=0-99"})
        assert response.status == 206 and len(await response.read()) == 100
        response = await http.get(f"{classroom.url}{url[:-2]}00")
        assert response.status == 403


async def test_exams_record_every_student_from_the_start(classroom: ClassroomServer) -> None:
    await classroom.lesson(kind="exam")  # exams default to automatic recording
    teacher = await classroom.client("t1", "teacher")
    welcome = await teacher.wait_message("welcome")
    await wait_until(lambda: bool(teacher.of_type("recording")) or welcome["recording"])
    student = await classroom.client("s1")
    welcome = await student.wait_message("welcome")
    assert welcome["recording"] is True
    # every student may (and is expected to) publish in an exam, and is recorded
    assert welcome["you"]["floor"] == ["camera", "microphone", "screen"]
    reply = await student.publish(Source.CAMERA, keyframe_interval_s=0.5)
    assert reply["type"] == "answer"
    await wait_until(
        lambda: (teacher.participant("s1") or {}).get("media", {}).get("camera") == "on"
    )
    await asyncio.sleep(2.0)
    await teacher.send({"type": "end"})
    await teacher.wait_closed()
    teacher_token = classroom.token("t1", "teacher")
    listed = await api(classroom, teacher_token, "/api/lessons/L1/recordings")
    assert [r["status"] for r in listed["recordings"]] == ["ready"]
    recorded = {(p["participant_id"], p["source"]) for p in listed["recordings"][0]["parts"]}
    assert ("s1", "camera") in recorded


async def test_recording_off_for_a_lesson_is_refused(classroom: ClassroomServer) -> None:
    await classroom.lesson(recording_policy="off")
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    reply = await teacher.request({"type": "record", "active": True})
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    assert "off" in reply["message"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The server's recordings directory on a 1.6 MiB tmpfs (needs root, else skipped).

    The recorder keeps 1 MiB of it in reserve to close its files on a full disk.
    """
    mount = tmp_path / "recordings"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("filling a small disk needs root to mount a tmpfs")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_stops_the_recording_and_the_lesson_goes_on(
    small_disk: Path, classroom: ClassroomServer
) -> None:
    await classroom.lesson(recording_policy="manual")
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    await teacher.publish(Source.CAMERA, Source.MICROPHONE, keyframe_interval_s=0.5)
    student = await classroom.client("s1")
    await student.wait_message("welcome")
    assert (await teacher.request({"type": "record", "active": True}))["type"] == "ok"
    await student.wait_message("recording", active=True)
    # ~1 Mbit/s of video fills the 600 KiB left in a few seconds: the badge goes off by itself.
    off = await student.wait_message("recording", active=False, timeout=30)
    assert off["active"] is False
    listed = await api(classroom, classroom.token("t1", "teacher"), "/api/lessons/L1/recordings")
    (recording,) = listed["recordings"]
    assert recording["status"] == "failed" and "disk_full" in (recording["reason"] or "")
    # the lesson carries on: the student still receives the teacher's camera
    before = len(student.packets_from("t1", Source.CAMERA))
    await wait_until(lambda: len(student.packets_from("t1", Source.CAMERA)) > before + 30)
    assert small_disk.is_mount()  # noqa: ASYNC240 - a stat, in a test
