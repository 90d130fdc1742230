"""The classroom's footprint: what a lesson with real aiortc clients writes to the ledger."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from sfu import Source
from signaling.app import LEDGER_KEY
from signaling.footprint.verify import verify_ledger
from tests.conftest import ClassroomServer
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(90)


async def events_of(classroom: ClassroomServer, lesson: str = "L1") -> list[Any]:
    ledger = classroom.app[LEDGER_KEY]
    await ledger.flush()
    return await ledger.query(lesson=lesson, limit=1000)


def pairs(events: list[Any]) -> dict[str, list[str]]:
    """session → the sequence of joined/left types, in order."""
    result: dict[str, list[str]] = {}
    for event in events:
        if event.type in ("participant.joined", "participant.left"):
            result.setdefault(event.data["session"], []).append(event.type.split(".")[1])
    return result


async def test_a_lesson_leaves_a_complete_verifiable_trail(classroom: ClassroomServer) -> None:
    await classroom.lesson()
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    assert (await teacher.publish(Source.CAMERA, Source.MICROPHONE))["type"] == "answer"
    s1 = await classroom.client("s1")
    s2 = await classroom.client("s2")
    for student in (s1, s2):
        await wait_until(lambda s=student: len(s.packets_from("t1", Source.CAMERA)) > 5, 15)
    # s1 raises a hand, gets the floor, speaks with the microphone, is muted
    assert (await s1.request({"type": "hand", "raised": True}))["type"] == "ok"
    await teacher.request({"type": "floor", "participant": "s1", "sources": ["microphone"]})
    assert (await s1.publish(Source.MICROPHONE))["type"] == "answer"
    await wait_until(
        lambda: (teacher.participant("s1") or {}).get("media", {}).get("microphone") == "on"
    )
    await teacher.request({"type": "mute", "participant": "s1"})
    await wait_until(
        lambda: (teacher.participant("s1") or {}).get("media", {}).get("microphone") == "muted"
    )
    assert (await s2.request({"type": "chat", "text": "Сұрақ бар"}))["type"] == "ok"
    await teacher.request({"type": "floor", "participant": "s1", "sources": []})
    # s2 drops and comes back (a replaced session), then leaves on purpose
    s2b = await classroom.client("s2")
    await s2b.wait_message("welcome")
    await wait_until(lambda: len(s2b.packets_from("t1", Source.CAMERA)) > 5, 15)
    await s2b.send({"type": "leave"})
    await s2b.wait_closed()
    await teacher.send({"type": "end"})
    await teacher.wait_closed()
    await s1.wait_closed()

    events = await events_of(classroom)
    types = [e.type for e in events]
    assert types[0] == "lesson.started" and events[0].actor == "t1"
    assert types.count("lesson.ended") == 1
    # every session joined once and left once, in that order, and every leave
    # has the reason it really had
    sessions = pairs(events)
    assert all(seq == ["joined", "left"] for seq in sessions.values()), sessions
    reasons = Counter((e.actor, e.data["reason"]) for e in events if e.type == "participant.left")
    assert reasons == Counter(
        {("t1", "ended"): 1, ("s1", "ended"): 1, ("s2", "replaced"): 1, ("s2", "left"): 1}
    )
    # the lesson ends after the leaves of those still there
    ended_at = types.index("lesson.ended")
    assert all(i < ended_at for i, e in enumerate(events) if e.type == "participant.left")
    by_type = Counter((e.type, e.actor) for e in events)
    assert by_type[("hand.raised", "s1")] == 1
    assert by_type[("hand.lowered", "s1")] == 1  # lowered by the floor
    assert by_type[("floor.given", "s1")] == 1 and by_type[("floor.taken", "s1")] == 1
    assert by_type[("media.published", "t1")] == 2
    assert by_type[("media.published", "s1")] == 1
    assert by_type[("media.muted", "s1")] == 1
    assert by_type[("media.unpublished", "s1")] == 1
    chat = next(e for e in events if e.type == "chat.sent")
    assert chat.actor == "s2" and chat.data["text"] == "Сұрақ бар"
    unpublished = next(e for e in events if e.type == "media.unpublished" and e.actor == "s1")
    assert unpublished.data["reason"] == "revoked"
    # a join is recorded only once media is connected: after the teacher's publish
    first_student_join = next(
        e for e in events if e.type == "participant.joined" and e.actor == "s1"
    )
    assert first_student_join.seq > next(e.seq for e in events if e.type == "media.published")

    ledger = classroom.app[LEDGER_KEY]
    await ledger.flush()
    result = verify_ledger(
        classroom.settings.server.data_dir / "footprint.db",
        public_key_pem=ledger.public_key_pem,
    )
    assert result.ok, result.problem
    assert result.checkpoints >= 1  # one at the lesson's end


async def test_students_waiting_for_a_teacher_are_present_from_admission(
    classroom: ClassroomServer,
) -> None:
    await classroom.lesson(lobby=True)
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    student = await classroom.client("s1")
    await student.wait_message("lobby")
    denied = await classroom.client("s2")
    await denied.wait_message("lobby")
    await teacher.request({"type": "admit", "participant": "s1"})
    await teacher.request({"type": "deny", "participant": "s2"})
    await student.wait_message("welcome")
    await wait_until(lambda: denied.closed)
    events = await events_of(classroom)
    kinds = [(e.type, e.actor) for e in events]
    assert ("lobby.admitted", "s1") in kinds and ("lobby.denied", "s2") in kinds
    # nothing published: present at once; the denied student never joined
    assert ("participant.joined", "s1") in kinds
    assert not [k for k in kinds if k[1] == "s2" and k[0].startswith("participant.")]


async def test_the_lesson_report_matches_what_happened(classroom: ClassroomServer) -> None:
    """Joins, a reconnect, a camera toggled by the floor, chat and a hand, then the report."""
    await classroom.lesson()
    teacher_token = classroom.token("t1", "teacher")
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {classroom.token('a1', 'admin', lesson=None)}"}
    ) as http:
        response = await http.put(
            f"{classroom.url}/api/courses/CS101/roster",
            json=[
                {"user_id": "s1", "name": "Айгерім"},
                {"user_id": "s2", "name": "Данияр"},
                {"user_id": "s3", "name": "Ерлан"},
            ],
        )
        assert response.status == 200, await response.text()

    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    await teacher.publish(Source.CAMERA, Source.MICROPHONE)
    start = time.monotonic()

    async def joined(client: Any) -> float:
        # A join counts from the moment the media connection is up (docs/footprint.md).
        await wait_until(lambda: client.subscriber.connectionState == "connected", 15, 0.01)
        return time.monotonic()

    s1 = await classroom.client("s1")
    s1_in = await joined(s1)
    s2 = await classroom.client("s2")
    s2_in = await joined(s2)
    await teacher.request({"type": "floor", "participant": "s1", "sources": ["camera"]})
    await s1.wait_message("floor")
    await s1.publish(Source.CAMERA)
    await wait_until(
        lambda: (teacher.participant("s1") or {}).get("media", {}).get("camera") == "on"
    )
    camera_on = time.monotonic()
    await s1.request({"type": "hand", "raised": True})
    for text in ("Сұрақ бар", "Рахмет"):
        assert (await s1.request({"type": "chat", "text": text}))["type"] == "ok"
    await asyncio.sleep(2.0)
    await s2.send({"type": "leave"})
    await s2.wait_closed()
    s2_out = time.monotonic()
    await asyncio.sleep(2.0)
    await teacher.request({"type": "floor", "participant": "s1", "sources": []})
    camera_off = time.monotonic()
    s2b = await classroom.client("s2")
    s2_back = await joined(s2b)
    await asyncio.sleep(2.0)
    await teacher.send({"type": "end"})
    await teacher.wait_closed()
    end = time.monotonic()

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {teacher_token}"}) as http:
        response = await http.get(f"{classroom.url}/api/lessons/L1/report")
        assert response.status == 200, await response.text()
        report = await response.json()
        csv_response = await http.get(f"{classroom.url}/api/lessons/L1/report?format=csv")
        assert csv_response.status == 200
        csv_text = await csv_response.text()

    people = {p["user_id"]: p for p in report["people"]}
    tolerance_min = 1.5 / 60  # media connection set-up, the scheduler, rounding
    lesson_min = (end - start) / 60
    assert report["duration_minutes"] == pytest.approx(lesson_min, abs=tolerance_min)
    s1r, s2r, s3r = people["s1"], people["s2"], people["s3"]
    assert s1r["minutes_present"] == pytest.approx((end - s1_in) / 60, abs=tolerance_min)
    assert s1r["camera_minutes"] == pytest.approx((camera_off - camera_on) / 60, abs=tolerance_min)
    assert s1r["chat_messages"] == 2 and s1r["hands_raised"] == 1
    assert s1r["status"] == "present" and s1r["sessions"] == 1
    expected_s2 = (s2_out - s2_in) + (end - s2_back)
    assert s2r["minutes_present"] == pytest.approx(expected_s2 / 60, abs=2 * tolerance_min)
    assert s2r["sessions"] == 2
    assert s3r["status"] == "absent" and s3r["minutes_present"] == 0 and s3r["in_roster"]
    assert people["t1"]["role"] == "teacher"
    assert report["counts"]["absent"] == 1
    assert "Айгерім" in csv_text and csv_text.count("\n") >= 5
