"""The classroom over its real protocol: aiohttp server, aiortc clients, loopback.

Every test drives `signaling.app` exactly as browsers do (docs/protocol.md):
WebSocket `join`, SDP on two peer connections, chat, hands and the teacher's
actions, and asserts on what each participant received, messages and RTP.
"""

from __future__ import annotations

import pytest

from sfu import Source
from signaling.lessons import LessonStatus
from tests.conftest import ClassroomServer
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(60)


async def teacher_and_students(classroom: ClassroomServer, n: int = 2, **lesson: object) -> tuple:
    await classroom.lesson(**lesson)
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    students = []
    for i in range(n):
        student = await classroom.client(f"s{i + 1}")
        await student.wait_message("welcome")
        students.append(student)
    return teacher, students


async def test_join_shows_everyone_to_everyone_and_opens_the_lesson(
    classroom: ClassroomServer,
) -> None:
    teacher, (_, s2) = await teacher_and_students(classroom)
    welcome = s2.of_type("welcome")[0]
    assert welcome["you"]["id"] == "s2" and welcome["you"]["role"] == "student"
    assert {p["id"] for p in welcome["participants"]} == {"t1", "s1", "s2"}
    assert welcome["ice_servers"] == []  # no public STUN by default
    assert welcome["lesson"]["id"] == "L1" and welcome["lesson"]["status"] == "live"
    await teacher.wait_message("joined")
    await wait_until(lambda: len(teacher.of_type("joined")) == 2)
    assert (await classroom.lessons.get("L1")).status is LessonStatus.LIVE
    # quality is shown to moderators only
    assert all(p["quality"] is None for p in welcome["participants"])


async def test_teacher_media_reaches_every_student(classroom: ClassroomServer) -> None:
    teacher, students = await teacher_and_students(classroom)
    reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE)
    assert reply["type"] == "answer", reply
    for student in students:
        await wait_until(
            lambda s=student: (
                len(s.packets_from("t1", Source.CAMERA)) > 30
                and len(s.packets_from("t1", Source.MICROPHONE)) > 30
            ),
            timeout=15,
        )
    view = students[0].participant("t1")
    assert view is not None and view["media"]["camera"] == "on"
    assert view["media"]["microphone"] == "on"
