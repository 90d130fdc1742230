"""SIGKILL of `sabaq serve` while a lesson is being recorded: recovered, never deleted.

The teacher records; the server process is killed at a random moment; at the
next start the recording is finalized from its flushed clusters, catalogued
as ready, decodes with PyAV and has lost at most the last 2 s.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from sfu import Source
from signaling.identity import mint
from tests.classroom_client import ClassroomClient
from tests.test_recording_classroom import decode_all
from tests.test_serve import read_until, start

pytestmark = pytest.mark.timeout(180)


def token(secret: str, sub: str, role: str) -> str:
    return mint(
        secret=secret, issuer="sabaq-dev", audience="sabaq", sub=sub, name=sub, role=role,
        lesson="demo",
    )  # fmt: skip


@pytest.mark.parametrize("trial", range(2))
async def test_a_recording_survives_sigkill(tmp_path: Path, trial: int) -> None:
    process, port = await start(tmp_path)
    url = f"http://127.0.0.1:{port}"
    teacher: ClassroomClient | None = None
    try:
        await read_until(process, "Running on")
        secret = (tmp_path / "data" / "dev-jwt-secret").read_text().strip()
        teacher = ClassroomClient(url, "demo", token(secret, "demo-teacher", "teacher"))
        await teacher.connect()
        await teacher.wait_message("welcome")
        reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE, keyframe_interval_s=0.5)
        assert reply["type"] == "answer"
        assert (await teacher.request({"type": "record", "active": True}))["type"] == "ok"
        started = time.monotonic()
        await asyncio.sleep(4.0 + random.random() * 3.0)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        recorded_s = time.monotonic() - started
    finally:
        if teacher is not None:
            await teacher.close()

    process, port = await start(tmp_path)
    try:
        await read_until(process, "Running on")
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token(secret, 'demo-teacher', 'teacher')}"}
        ) as http:
            response = await http.get(f"http://127.0.0.1:{port}/api/lessons/demo/recordings")
            assert response.status == 200
            (recording,) = (await response.json())["recordings"]
    finally:
        process.send_signal(signal.SIGINT)
        await process.wait()

    assert recording["status"] == "ready", recording
    assert sorted(p["source"] for p in recording["parts"]) == ["camera", "microphone"]
    assert all(p["status"] == "recovered" for p in recording["parts"])
    directory = tmp_path / "data" / "recordings" / recording["id"]
    for part in recording["parts"]:
        # at most the last 2 s lost (the parts start at the first keyframe, ≤ 0.5 s late)
        assert part["duration_s"] > recorded_s - 2.5, (part, recorded_s)
    recovered = [f for f in directory.iterdir() if f.suffix in (".webm", ".mkv")]
    assert recovered
    for file in recovered:
        decoded = await asyncio.to_thread(decode_all, file)
        assert all(entry["frames"] > 10 for entry in decoded.values()), (file, decoded)
