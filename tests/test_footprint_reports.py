"""Attendance reports from hand-built footprint events, where every number is known."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signaling.footprint.attendance import Status, Thresholds, classify
from signaling.footprint.personal import (
    STUDENT_CSV_COLUMNS,
    TEACHER_CSV_COLUMNS,
    student_report,
    teacher_report,
)
from signaling.footprint.reports import (
    COURSE_CSV_COLUMNS,
    LESSON_CSV_COLUMNS,
    course_report,
    lesson_report,
)
from signaling.footprint.roster import RosterEntry
from signaling.lessons import Lesson, LessonKind, LessonStatus, RecordingPolicy

NINE = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
"""Every lesson here is scheduled 09:00-10:30 on its day."""


def at(minutes: float, day: int = 0) -> datetime:
    return NINE + timedelta(days=day, minutes=minutes)


@dataclass(frozen=True, slots=True)
class FakeEvent:
    """The fields of signaling.footprint.Event, without a ledger."""

    seq: int
    at: datetime
    lesson: str
    course: str
    actor: str
    type: str
    data: Mapping[str, Any]
    prev: str = "0" * 64
    hash: str = "0" * 64

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "lesson": self.lesson,
            "course": self.course,
            "actor": self.actor,
            "type": self.type,
            "data": dict(self.data),
            "prev": self.prev,
            "hash": self.hash,
        }


@dataclass
class Script:
    """Builds one lesson's events in seq order; times are minutes after 09:00 of ``day``."""

    lesson: str
    course: str = "MATH"
    day: int = 0
    events: list[FakeEvent] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, minute: float, actor: str, type_: str, **data: Any) -> Script:
        seq = next(self.counter)
        moment = at(minute, self.day)
        self.events.append(FakeEvent(seq, moment, self.lesson, self.course, actor, type_, data))
        return self

    def start(self, minute: float, teacher: str = "t-1") -> Script:
        return self.add(minute, teacher, "lesson.started", title="T", teachers=[teacher])

    def end(self, minute: float, actor: str = "t-1") -> Script:
        return self.add(minute, actor, "lesson.ended", reason="teacher")

    def stay(
        self, user: str, session: str, join: float, leave: float | None, role: str = "student"
    ) -> Script:
        self.add(join, user, "participant.joined", session=session, role=role, name=user.upper())
        if leave is not None:
            self.add(leave, user, "participant.left", session=session, reason="left")
        return self


def in_time_order(*scripts: list[FakeEvent]) -> list[FakeEvent]:
    """The events as a ledger holds them: seq follows time (ties keep the script's order)."""
    merged = sorted((e for events in scripts for e in events), key=lambda e: e.at)
    return [replace(event, seq=seq) for seq, event in enumerate(merged, 1)]


def make_lesson(
    lesson_id: str = "L1",
    day: int = 0,
    status: LessonStatus = LessonStatus.ENDED,
    course: str = "MATH",
    teachers: tuple[str, ...] = ("t-1",),
) -> Lesson:
    return Lesson(
        id=lesson_id,
        course=course,
        title=f"Lesson {lesson_id}",
        kind=LessonKind.LECTURE,
        teacher_ids=teachers,
        scheduled_start=at(0, day),
        scheduled_end=at(90, day),
        lobby=False,
        recording_policy=RecordingPolicy.MANUAL,
        status=status,
        created_at=at(-1000),
        updated_at=at(-1000),
    )


ROSTER = [
    RosterEntry("s-1", "Айгерім Сәрсенова"),
    RosterEntry("s-2", "Bolat"),
    RosterEntry("s-3", "Dana"),
    RosterEntry("s-4", "=HYPERLINK(evil)"),
    RosterEntry("s-5", "Erlan"),
]


def lesson_one() -> list[FakeEvent]:
    """L1: scheduled 09:00-10:30, held 09:02-10:35 (93 minutes, a 5 minute overrun).

    s-1 present (reconnect, camera toggled, microphone, speaking, chat, quality),
    s-2 late by 18 minutes, s-3 partial (30 of 93 minutes), s-4 never came,
    s-5 five minutes only (absent), g-1 a student not on the roster, t-1 the teacher.
    """
    s = Script("L1")
    s.stay("t-1", "t1", -5, 95, role="teacher")
    s.add(1, "s-1", "participant.joined", session="a1", role="student", name="Айгерім")
    s.add(1, "s-1", "media.published", session="a1", source="camera")
    s.start(2)
    s.add(10, "s-1", "media.muted", session="a1", source="camera")
    s.stay("s-3", "c1", 10, 40)
    s.add(11, "s-1", "chat.sent", session="a1", message=1, text="Сәлем")
    s.add(12, "s-1", "quality.sample", session="a1", loss_up=0.01, loss_down=0.03, rtt_ms=40)
    s.stay("s-2", "b1", 20, None)
    s.add(20, "s-1", "media.unmuted", session="a1", source="camera")
    s.add(21, "s-2", "hand.raised", session="b1")
    s.add(22, "s-2", "hand.lowered", session="b1", by="t-1")
    s.add(23, "s-2", "hand.raised", session="b1")
    s.add(24, "s-2", "chat.sent", session="b1", message=2, text="=1+1")
    s.add(25, "g-1", "participant.joined", session="g1", role="student", name="Guest")
    s.add(30, "s-1", "media.unpublished", session="a1", source="camera", reason="left")
    s.add(30, "s-1", "participant.left", session="a1", reason="network")
    s.add(31, "s-1", "participant.joined", session="a2", role="student", name="Айгерім")
    s.add(31, "s-1", "media.published", session="a2", source="camera")
    s.add(31, "s-1", "media.published", session="a2", source="microphone")
    s.add(32, "s-1", "speaking.started", session="a2")
    s.add(34, "s-1", "speaking.stopped", session="a2")
    s.add(40, "s-1", "speaking.started", session="a2")
    s.add(41, "s-1", "media.unpublished", session="a2", source="camera", reason="unpublished")
    s.add(41.5, "s-1", "speaking.stopped", session="a2")
    s.add(42, "s-1", "quality.sample", session="a2", loss_up=0.0, loss_down=0.02, rtt_ms=60)
    s.add(43, "s-1", "quality.sample", session="a2", loss_up=None, loss_down=None, rtt_ms=None)
    s.add(44, "s-1", "quality.sample", session="a2", loss_up=0.1, loss_down=None, rtt_ms=100)
    s.add(45, "s-1", "chat.sent", session="a2", message=3, text="?")
    s.stay("s-5", "e1", 50, 55)
    s.add(80, "g-1", "participant.left", session="g1", reason="left")
    s.end(95)
    s.add(95, "s-1", "participant.left", session="a2", reason="ended")
    s.add(95, "s-2", "participant.left", session="b1", reason="ended")
    return in_time_order(s.events)


def people(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {person["user_id"]: person for person in report["people"]}


NOW = at(24 * 60 * 30)
T = Thresholds()


# --- the lesson report -------------------------------------------------------------------------


def test_lesson_times_overrun_and_counts() -> None:
    report = lesson_report(make_lesson(), lesson_one(), ROSTER, T, NOW).to_json()
    assert report["held"] is True and report["live"] is False
    assert report["actual_start"] == "2026-11-24T09:02:00Z"
    assert report["actual_end"] == "2026-11-24T10:35:00Z"
    assert report["duration_minutes"] == 93.0
    assert report["scheduled_minutes"] == 90.0
    assert report["overrun_minutes"] == 5.0
    assert report["segments"] == [[0.0, 5580.0]]
    assert report["counts"] == {"present": 1, "late": 1, "partial": 2, "absent": 2}
    assert report["thresholds"] == T.to_json()
    order = [p["user_id"] for p in report["people"]]
    assert order == ["s-1", "s-2", "s-3", "s-4", "s-5", "t-1", "g-1"]


def test_a_reconnecting_student_with_camera_microphone_speech_chat_and_quality() -> None:
    s1 = people(lesson_report(make_lesson(), lesson_one(), ROSTER, T, NOW).to_json())["s-1"]
    # 09:02-09:30 and 09:31-10:35: the minute offline is not counted.
    assert s1["minutes_present"] == 28 + 64 == 92
    assert s1["share"] == round(92 / 93, 4)
    assert s1["status"] == "present" and s1["late_minutes"] == 0
    assert s1["sessions"] == 2
    assert s1["first_join"] == "2026-11-24T09:02:00Z"  # joined at 09:01, clipped to the start
    assert s1["last_leave"] == "2026-11-24T10:35:00Z"
    assert s1["timeline"]["presence"] == [[0.0, 1680.0], [1740.0, 5580.0]]
    # Camera: 09:02-09:10 (then muted), 09:20-09:30, and 09:31-09:41 in the second session.
    assert s1["camera_minutes"] == 8 + 10 + 10
    assert s1["timeline"]["camera"] == [[0.0, 480.0], [1080.0, 1680.0], [1740.0, 2340.0]]
    # Microphone published at 09:31 and never unpublished: until the leave at 10:35.
    assert s1["microphone_minutes"] == 64
    assert s1["talk_minutes"] == 2 + 1.5
    assert s1["timeline"]["speaking"] == [[1800.0, 1920.0], [2280.0, 2370.0]]
    assert s1["chat_messages"] == 2 and s1["hands_raised"] == 0
    assert s1["quality"] == {
        "samples": 4,
        "loss_mean": 0.05,  # worse direction per sample: 0.03, 0.02, 0.1
        "loss_worst": 0.1,
        "rtt_mean_ms": 66.7,
        "rtt_p95_ms": 100.0,
    }
    assert s1["name"] == "Айгерім Сәрсенова" and s1["in_roster"] is True


def test_late_partial_absent_guest_and_teacher() -> None:
    found = people(lesson_report(make_lesson(), lesson_one(), ROSTER, T, NOW).to_json())
    s2 = found["s-2"]  # joined at 09:20: 18 minutes after the actual start, never left
    assert (s2["status"], s2["late_minutes"], s2["minutes_present"]) == ("late", 18, 75)
    assert s2["hands_raised"] == 2 and s2["chat_messages"] == 1
    s3 = found["s-3"]
    assert (s3["status"], s3["minutes_present"], s3["late_minutes"]) == ("partial", 30, 8)
    s4 = found["s-4"]
    assert (s4["status"], s4["minutes_present"], s4["first_join"]) == ("absent", 0, None)
    assert s4["timeline"] == {"presence": [], "camera": [], "speaking": []}
    assert s4["sessions"] == 0 and s4["quality"]["samples"] == 0
    assert s4["quality"]["loss_mean"] is None
    s5 = found["s-5"]  # 5 of 93 minutes is under partial_min_share
    assert (s5["status"], s5["minutes_present"]) == ("absent", 5)
    g1 = found["g-1"]
    assert (g1["in_roster"], g1["role"], g1["name"]) == (False, "student", "Guest")
    # 09:25-10:20 is 55 of 93 minutes (0.59): partial, though also 23 minutes late.
    assert (g1["minutes_present"], g1["late_minutes"], g1["status"]) == (55, 23, "partial")
    t1 = found["t-1"]
    assert (t1["role"], t1["minutes_present"], t1["status"]) == ("teacher", 93, "present")


def test_the_absent_rule_is_configurable() -> None:
    lenient = Thresholds(partial_min_share=0.0)
    found = people(lesson_report(make_lesson(), lesson_one(), ROSTER, lenient, NOW).to_json())
    assert found["s-5"]["status"] == "partial"  # any presence counts as partial
    assert found["s-4"]["status"] == "absent"  # no presence is absent whatever the thresholds


@pytest.mark.parametrize(
    ("present_min", "share", "late_min", "expected"),
    [
        (90, 1.0, 0, Status.PRESENT),
        (90, 1.0, 10, Status.PRESENT),  # exactly late_after_min is on time
        (90, 1.0, 10.01, Status.LATE),
        (90, 0.75, 0, Status.PRESENT),  # exactly present_min_share
        (90, 0.7499, 0, Status.PARTIAL),
        (90, 0.7499, 30, Status.PARTIAL),  # late and short: partial
        (90, 0.25, 0, Status.PARTIAL),  # exactly partial_min_share
        (90, 0.2499, 0, Status.ABSENT),
        (0, 0.0, 0, Status.ABSENT),
    ],
)
def test_classify_boundaries(
    present_min: float, share: float, late_min: float, expected: Status
) -> None:
    assert classify(present_min * 60, share, late_min * 60, T) == expected


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="partial_min_share"):
        Thresholds(present_min_share=0.2, partial_min_share=0.5)
    with pytest.raises(ValueError, match="late_after_min"):
        Thresholds(late_after_min=-1)


def test_a_live_lesson_ends_now() -> None:
    events = Script("L1").start(0).stay("s-1", "a", -3, None).stay("s-2", "b", 12, None).events
    lesson = make_lesson(status=LessonStatus.LIVE)
    report = lesson_report(lesson, events, ROSTER[:2], T, at(40)).to_json()
    assert report["live"] is True and report["actual_end"] == "2026-11-24T09:40:00Z"
    assert report["duration_minutes"] == 40
    found = people(report)
    assert (found["s-1"]["minutes_present"], found["s-1"]["status"]) == (40, "present")
    assert (found["s-2"]["minutes_present"], found["s-2"]["status"]) == (28, "partial")
    # Scheduled start 09:00, started 09:00: joined at 09:12 is 12 minutes late.
    assert found["s-2"]["late_minutes"] == 12


def test_lateness_counts_from_the_later_of_schedule_and_start() -> None:
    events = Script("L1").start(-10).stay("s-1", "a", 5, 80).end(80).events
    s1 = people(lesson_report(make_lesson(), events, ROSTER[:1], T, NOW).to_json())["s-1"]
    # Started 10 minutes early; joined at 09:05: 5 minutes late against 09:00.
    assert s1["late_minutes"] == 5 and s1["minutes_present"] == 75


def test_a_restarted_lesson_counts_only_the_held_time() -> None:
    events = Script("L1").start(0).stay("s-1", "a", 0, 60).end(30).start(40).end(60).events
    report = lesson_report(make_lesson(), events, ROSTER[:1], T, NOW).to_json()
    assert report["segments"] == [[0.0, 1800.0], [2400.0, 3600.0]]
    assert report["duration_minutes"] == 50
    s1 = people(report)["s-1"]
    assert (s1["minutes_present"], s1["share"], s1["status"]) == (50, 1.0, "present")


def test_an_unended_lesson_that_is_not_live_ends_at_its_last_event() -> None:
    events = Script("L1").start(0).stay("s-1", "a", 0, 45).events
    report = lesson_report(make_lesson(), events, ROSTER[:1], T, NOW).to_json()
    assert report["live"] is False and report["duration_minutes"] == 45


def test_a_lesson_never_held() -> None:
    report = lesson_report(make_lesson(status=LessonStatus.SCHEDULED), [], ROSTER, T, NOW)
    data = report.to_json()
    assert data["held"] is False and data["actual_start"] is None
    assert data["duration_minutes"] == 0 and data["counts"]["absent"] == 5


def test_other_lessons_events_are_ignored() -> None:
    other = Script("L9").start(0).stay("s-1", "x", 0, 90).end(90).events
    report = lesson_report(make_lesson(), lesson_one() + other, ROSTER, T, NOW).to_json()
    assert people(report)["s-1"]["minutes_present"] == 92


def test_events_exactly_at_the_boundaries() -> None:
    events = (
        Script("L1")
        .start(0)
        .stay("s-1", "a", -10, 0)  # left exactly as the lesson started
        .stay("s-2", "b", 90, 95)  # joined exactly as it ended
        .stay("s-3", "c", 0, 90)  # exactly the lesson
        .end(90)
        .events
    )
    found = people(
        lesson_report(make_lesson(), in_time_order(events), ROSTER[:3], T, NOW).to_json()
    )
    assert (found["s-1"]["minutes_present"], found["s-1"]["status"]) == (0, "absent")
    assert (found["s-2"]["minutes_present"], found["s-2"]["status"]) == (0, "absent")
    assert found["s-1"]["sessions"] == 1 and found["s-1"]["first_join"] is None
    assert (found["s-3"]["share"], found["s-3"]["late_minutes"]) == (1.0, 0)


def test_two_tabs_at_once_are_not_counted_twice() -> None:
    events = Script("L1").start(0).stay("s-1", "a", 0, 50).stay("s-1", "b", 10, 60).end(90).events
    s1 = people(lesson_report(make_lesson(), events, ROSTER[:1], T, NOW).to_json())["s-1"]
    assert s1["minutes_present"] == 60 and s1["sessions"] == 2


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_lesson_csv_has_stable_columns_and_is_safe_for_spreadsheets() -> None:
    text = lesson_report(make_lesson(), lesson_one(), ROSTER, T, NOW).to_csv()
    assert text.splitlines()[0] == ",".join(LESSON_CSV_COLUMNS)
    assert "\r\n" in text
    rows = read_csv(text)
    assert [row["user_id"] for row in rows] == ["s-1", "s-2", "s-3", "s-4", "s-5", "t-1", "g-1"]
    s1 = rows[0]
    assert s1["name"] == "Айгерім Сәрсенова" and s1["lesson_id"] == "L1"
    assert (s1["minutes_present"], s1["status"], s1["in_roster"]) == ("92.0", "present", "true")
    assert (s1["quality_samples"], s1["loss_worst"], s1["rtt_p95_ms"]) == ("4", "0.1", "100.0")
    assert rows[3]["name"] == "'=HYPERLINK(evil)"  # would run as a formula otherwise
    assert rows[3]["first_join"] == "" and rows[3]["loss_mean"] == ""


# --- the course report -------------------------------------------------------------------------


def lesson_two() -> list[FakeEvent]:
    """L2, the next day: held 08:59-09:49 (50 minutes); s-1 all of it, s-2 20 minutes."""
    s = Script("L2", day=1)
    s.start(-1).stay("s-1", "a", -1, 49).stay("s-2", "b", 0, 20).end(49)
    return in_time_order(s.events)


def course_events() -> list[FakeEvent]:
    other_course = Script("P1", course="PHYS").start(0).stay("s-1", "p", 0, 90).end(90)
    return in_time_order(lesson_one(), lesson_two(), other_course.events)


def course_lessons() -> list[Lesson]:
    return [
        make_lesson("L2", day=1),
        make_lesson("L1"),
        make_lesson("L3", day=2, status=LessonStatus.SCHEDULED),
    ]


def test_course_report_hours_and_rates() -> None:
    report = course_report("MATH", course_lessons(), course_events(), ROSTER, T, NOW).to_json()
    assert report["lessons_total"] == 3 and report["lessons_held"] == 2
    assert report["live_minutes"] == 93 + 50
    assert report["academic_hours"] == round(143 / 50, 2) == 2.86
    summary = {lesson["id"]: lesson for lesson in report["lessons"]}
    assert [lesson["id"] for lesson in report["lessons"]] == ["L1", "L2", "L3"]
    assert summary["L1"]["date"] == "2026-11-24" and summary["L1"]["title"] == "Lesson L1"
    assert (summary["L1"]["duration_minutes"], summary["L1"]["present"]) == (93, 1)
    assert (summary["L2"]["duration_minutes"], summary["L2"]["present"]) == (50, 1)
    assert summary["L3"]["held"] is False and summary["L3"]["date"] == "2026-11-26"
    students = {s["user_id"]: s for s in report["students"]}
    assert list(students) == ["s-1", "s-2", "s-3", "s-4", "s-5", "g-1"]  # no teacher
    assert students["s-1"]["rate"] == 1.0 and students["s-1"]["present"] == 2
    # s-2: late in L1 (attended), partial in L2 (half): 1.5 of 2.
    assert students["s-2"]["rate"] == 0.75
    assert (students["s-2"]["late"], students["s-2"]["partial"]) == (1, 1)
    assert students["s-3"]["rate"] == 0.25  # partial, then absent
    assert students["s-4"]["rate"] == 0.0 and students["s-4"]["absent"] == 2
    assert students["g-1"]["in_roster"] is False and students["g-1"]["rate"] == 0.25
    assert students["s-1"]["minutes_present"] == 92 + 50


def test_course_report_with_nothing_held() -> None:
    report = course_report("MATH", [make_lesson(status=LessonStatus.SCHEDULED)], [], ROSTER, T, NOW)
    data = report.to_json()
    assert data["lessons_held"] == 0 and data["academic_hours"] == 0
    assert all(student["rate"] is None for student in data["students"])


def test_course_csv() -> None:
    text = course_report("MATH", course_lessons(), course_events(), ROSTER, T, NOW).to_csv()
    assert text.splitlines()[0] == ",".join(COURSE_CSV_COLUMNS)
    rows = read_csv(text)
    assert rows[1]["user_id"] == "s-2" and rows[1]["rate"] == "0.75"
    assert rows[1]["course"] == "MATH" and rows[1]["lessons_held"] == "2"


# --- student and teacher -----------------------------------------------------------------------


def test_student_footprint_across_lessons() -> None:
    report = student_report("s-2", course_lessons(), course_events(), T, NOW)
    data = report.to_json()
    assert [row["lesson_id"] for row in data["lessons"]] == ["L1", "L2"]  # L3 was not held
    assert [row["status"] for row in data["lessons"]] == ["late", "partial"]
    assert [row["minutes_present"] for row in data["lessons"]] == [75, 20]
    assert data["summary"] == {
        "lessons_held": 2,
        "present": 0,
        "late": 1,
        "partial": 1,
        "absent": 0,
        "rate": 0.75,
        "minutes_present": 95,
    }
    assert {event["actor"] for event in data["events"]} == {"s-2"}
    assert len(data["events"]) == 8  # 2 joins, 2 leaves, 3 hand events, 1 chat
    assert data["events"] == sorted(data["events"], key=lambda event: event["seq"])
    rows = read_csv(report.to_csv())
    assert list(rows[0]) == list(STUDENT_CSV_COLUMNS) and rows[0]["hands_raised"] == "2"


def test_student_footprint_lists_absences() -> None:
    data = student_report("s-4", course_lessons(), course_events(), T, NOW).to_json()
    assert [row["status"] for row in data["lessons"]] == ["absent", "absent"]
    assert data["events"] == [] and data["summary"]["rate"] == 0


def test_teacher_report() -> None:
    report = teacher_report("t-1", course_lessons(), course_events(), NOW)
    data = report.to_json()
    rows = {row["lesson_id"]: row for row in data["lessons"]}
    assert rows["L1"]["start_delay_minutes"] == 2 and rows["L1"]["overrun_minutes"] == 5
    assert rows["L2"]["start_delay_minutes"] == -1 and rows["L2"]["duration_minutes"] == 50
    assert rows["L3"]["held"] is False and rows["L3"]["start_delay_minutes"] is None
    assert rows["L1"]["minutes_present"] == 93 and rows["L2"]["minutes_present"] == 0
    assert data["summary"] == {
        "lessons": 3,
        "lessons_held": 2,
        "live_minutes": 143,
        "academic_hours": 2.86,
        "mean_start_delay_minutes": 0.5,
    }
    assert read_csv(report.to_csv())[0].keys() == set(TEACHER_CSV_COLUMNS)


# --- the real ledger ---------------------------------------------------------------------------


async def test_reports_from_a_real_ledger(tmp_path: Path) -> None:
    from signaling.footprint import Ledger

    events = lesson_one()
    clock = [events[0].at]
    ledger = await Ledger.open(
        tmp_path / "footprint.db", signing_key=tmp_path / "key.pem", clock=lambda: clock[0]
    )
    try:
        for event in events:
            clock[0] = event.at
            ledger.append(event.lesson, event.course, event.actor, event.type, event.data)
        await ledger.flush()
        stored = await ledger.query(lesson="L1")
        assert len(stored) == len(events)
        from_ledger = lesson_report(make_lesson(), stored, ROSTER, T, NOW).to_json()
        by_hand = lesson_report(make_lesson(), events, ROSTER, T, NOW).to_json()
        assert from_ledger == by_hand
    finally:
        await ledger.close()
