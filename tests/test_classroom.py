"""The classroom over its real protocol: aiohttp server, aiortc clients, loopback.

Every test drives `signaling.app` exactly as browsers do (docs/protocol.md):
WebSocket `join`, SDP on two peer connections, chat, hands and the teacher's
actions, and asserts on what each participant received, messages and RTP.
"""

from __future__ import annotations

import aiohttp
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


async def test_student_without_the_floor_cannot_publish_and_leaves_no_connection(
    classroom: ClassroomServer,
) -> None:
    _, (s1, _) = await teacher_and_students(classroom)
    reply = await s1.publish(Source.MICROPHONE)
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    assert "microphone" in reply["message"]
    participant = classroom.sfu.rooms["L1"].participants["s1"]
    assert participant.publisher_pc is None and not participant.tracks


async def test_student_cannot_act_as_a_teacher(classroom: ClassroomServer) -> None:
    _, (s1, _) = await teacher_and_students(classroom)
    for message in (
        {"type": "floor", "participant": "s2", "sources": ["microphone"]},
        {"type": "floor", "participant": "s1", "sources": ["camera"]},
        {"type": "admit", "participant": "s2"},
        {"type": "deny", "participant": "s2"},
        {"type": "mute", "participant": "t1"},
        {"type": "remove", "participant": "s2"},
        {"type": "lower_hand", "participant": "s2"},
        {"type": "end"},
    ):
        reply = await s1.request(message)
        assert reply["type"] == "error" and reply["code"] == "forbidden", (message, reply)
    assert set(classroom.sfu.rooms["L1"].participants) == {"t1", "s1", "s2"}


async def test_floor_given_then_taken_stops_the_students_media_at_every_student(
    classroom: ClassroomServer,
) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    await s1.request({"type": "hand", "raised": True})
    await wait_until(lambda: (teacher.participant("s1") or {}).get("hand") is True)
    reply = await teacher.request(
        {"type": "floor", "participant": "s1", "sources": ["microphone", "camera"]}
    )
    assert reply["type"] == "ok"
    floor = await s1.wait_message("floor")
    assert floor["sources"] == ["camera", "microphone"]
    # giving the floor lowers the hand
    await wait_until(lambda: (teacher.participant("s1") or {}).get("hand") is False)
    assert (await s1.publish(Source.CAMERA, Source.MICROPHONE))["type"] == "answer"
    await wait_until(lambda: len(s2.packets_from("s1", Source.CAMERA)) > 20, timeout=15)
    await wait_until(lambda: len(teacher.packets_from("s1", Source.MICROPHONE)) > 20)

    tracks = classroom.sfu.rooms["L1"].participants["s1"].tracks
    inbound = list(tracks.values())
    assert len(inbound) == 2
    assert (await teacher.request({"type": "floor", "participant": "s1", "sources": []}))[
        "type"
    ] == "ok"
    # Synchronous revocation: by the time the teacher has its reply, the tracks
    # are closed and no student is attached to them any more.
    assert all(t.closed and not t.downtracks for t in inbound)
    assert not classroom.sfu.rooms["L1"].participants["s1"].tracks
    await wait_until(lambda: any(m["sources"] == [] for m in s1.of_type("floor")))
    await wait_until(lambda: (s2.participant("s1") or {}).get("media", {}).get("camera") == "off")
    # and s1 cannot publish again
    again = await s1.request({"type": "media", "source": "camera", "muted": False})
    assert again["type"] == "error" and again["code"] == "forbidden"


async def test_lobby_admit_and_deny(classroom: ClassroomServer) -> None:
    await classroom.lesson(lobby=True)
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    s1 = await classroom.client("s1")
    s2 = await classroom.client("s2")
    lobby = await s1.wait_message("lobby")
    assert lobby["you"]["id"] == "s1"
    await s2.wait_message("lobby")
    await wait_until(lambda: any(len(m["lobby"]) == 2 for m in teacher.of_type("lobby_changed")))
    # waiting students cannot do anything yet
    assert (await s1.request({"type": "chat", "text": "hello?"}))["code"] == "in_lobby"
    room = classroom.sfu.rooms.get("L1")
    assert room is None or "s1" not in room.participants
    assert (await teacher.request({"type": "admit", "participant": "s1"}))["type"] == "ok"
    welcome = await s1.wait_message("welcome")
    assert {p["id"] for p in welcome["participants"]} == {"t1", "s1"}
    assert (await teacher.request({"type": "deny", "participant": "s2"}))["type"] == "ok"
    assert await s2.wait_closed() == 4403
    assert (await teacher.request({"type": "admit", "participant": "s2"}))["code"] == "not_found"
    # an admitted student who reconnects does not queue again
    await s1.close()
    again = await classroom.client("s1")
    await again.wait_message("welcome")


async def test_chat_is_delivered_and_kept_with_the_lesson(classroom: ClassroomServer) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    assert (await s1.request({"type": "chat", "text": "  Сәлеметсіз бе!  "}))["type"] == "ok"
    for client in (teacher, s1, s2):
        message = (await client.wait_message("chat"))["message"]
        assert message["text"] == "Сәлеметсіз бе!" and message["from"] == "s1"
        assert message["role"] == "student" and message["name"] == "User s1"
    await teacher.request({"type": "chat", "text": "Welcome"})
    for client in (s1, s2):
        await client.close()
    late = await classroom.client("s3")
    welcome = await late.wait_message("welcome")
    assert [m["text"] for m in welcome["chat"]] == ["Сәлеметсіз бе!", "Welcome"]
    # and through the REST API, for the lesson's teacher
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"{classroom.url}/api/lessons/L1/chat",
            headers={"Authorization": f"Bearer {classroom.token('t1', 'teacher')}"},
        )
        assert response.status == 200
        body = await response.json()
    assert [(m["from"], m["text"]) for m in body["messages"]] == [
        ("s1", "Сәлеметсіз бе!"),
        ("t1", "Welcome"),
    ]


async def test_same_identity_twice_replaces_the_old_session(classroom: ClassroomServer) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    await teacher.request({"type": "floor", "participant": "s1", "sources": ["microphone"]})
    second = await classroom.client("s1")
    welcome = await second.wait_message("welcome")
    assert await s1.wait_closed() == 4409
    assert [p["id"] for p in welcome["participants"]].count("s1") == 1
    assert welcome["you"]["floor"] == ["microphone"]  # the floor survives the reconnect
    await wait_until(lambda: len(classroom.sfu.rooms["L1"].participants) == 3)
    # nobody saw s1 leave or join twice
    assert not [m for m in s2.of_type("left") if m["participant"] == "s1"]
    assert len([m for m in s2.of_type("joined") if m["participant"]["id"] == "s1"]) == 0
    assert s2.participant("s1") is not None


async def test_hands_mute_and_remove(classroom: ClassroomServer) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    await s2.request({"type": "hand", "raised": True})
    await wait_until(lambda: (teacher.participant("s2") or {}).get("hand") is True)
    assert (await teacher.request({"type": "hand", "raised": True}))["code"] == "forbidden"
    await teacher.request({"type": "lower_hand", "participant": "s2"})
    await wait_until(lambda: (s1.participant("s2") or {}).get("hand") is False)

    await teacher.request({"type": "floor", "participant": "s1", "sources": ["microphone"]})
    await s1.wait_message("floor")
    assert (await s1.publish(Source.MICROPHONE))["type"] == "answer"
    await wait_until(
        lambda: (teacher.participant("s1") or {}).get("media", {}).get("microphone") == "on"
    )
    assert (await teacher.request({"type": "mute", "participant": "s1"}))["type"] == "ok"
    muted = await s1.wait_message("muted")
    assert muted["source"] == "microphone" and muted["by"] == "User t1"
    await wait_until(
        lambda: (s2.participant("s1") or {}).get("media", {}).get("microphone") == "muted"
    )
    # the student may unmute themselves while they hold the floor
    assert (await s1.request({"type": "media", "source": "microphone", "muted": False}))[
        "type"
    ] == "ok"
    await wait_until(
        lambda: (s2.participant("s1") or {}).get("media", {}).get("microphone") == "on"
    )

    assert (await teacher.request({"type": "remove", "participant": "s2"}))["type"] == "ok"
    assert await s2.wait_closed() == 4410
    left = await teacher.wait_message("left", participant="s2")
    assert left["reason"] == "removed"
    # back again: they wait in the lobby even though this lesson has none
    back = await classroom.client("s2")
    await back.wait_message("lobby")


async def test_teacher_ends_the_lesson_for_everyone(classroom: ClassroomServer) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    await teacher.publish(Source.CAMERA)
    assert (await s1.request({"type": "end"}))["code"] == "forbidden"
    await teacher.send({"type": "end"})
    for client in (teacher, s1, s2):
        assert await client.wait_closed() == 4000
    assert (await classroom.lessons.get("L1")).status is LessonStatus.ENDED
    await wait_until(lambda: "L1" not in classroom.sfu.rooms)
    late = await classroom.client("s3")
    assert await late.wait_closed() == 4000
    # the teacher may reopen it
    again = await classroom.client("t1", "teacher")
    await again.wait_message("welcome")
    assert (await classroom.lessons.get("L1")).status is LessonStatus.LIVE


async def test_leaving_is_seen_by_everyone_and_frees_the_media(classroom: ClassroomServer) -> None:
    teacher, (s1, s2) = await teacher_and_students(classroom)
    await teacher.publish(Source.CAMERA, Source.MICROPHONE)
    await wait_until(lambda: len(s1.packets_from("t1", Source.CAMERA)) > 5, timeout=15)
    await s1.send({"type": "leave"})
    assert await s1.wait_closed() == 1000
    left = await teacher.wait_message("left", participant="s1")
    assert left["reason"] == "left"
    await s2.close()  # closing the socket is leaving too
    left = await teacher.wait_message("left", participant="s2")
    assert left["reason"] == "left"
    await teacher.close()
    await wait_until(lambda: not classroom.sfu.rooms)
