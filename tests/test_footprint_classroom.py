"""The classroom's footprint: what a lesson with real aiortc clients writes to the ledger."""

from __future__ import annotations

from collections import Counter
from typing import Any

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
