"""One person's footprint across lessons: a student's attendance, a teacher's lessons held.

Pure, like :mod:`signaling.footprint.reports` (whose JSON and CSV conventions
these follow): the caller passes the lessons and the events, and the report is
computed from them alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from signaling.footprint.attendance import (
    Attendance,
    EventLike,
    LessonAttendance,
    Status,
    Thresholds,
    attend,
)
from signaling.footprint.reports import (
    ACADEMIC_HOUR_MIN,
    _csv,
    _iso,
    _lesson_times,
    _minutes,
)
from signaling.footprint.roster import RosterEntry
from signaling.lessons import Lesson

__all__ = [
    "STUDENT_CSV_COLUMNS",
    "TEACHER_CSV_COLUMNS",
    "StudentReport",
    "TeacherReport",
    "student_report",
    "teacher_report",
]

STUDENT_CSV_COLUMNS: Final = (
    "user_id", "lesson_id", "course", "title", "scheduled_start", "actual_start",
    "duration_minutes", "status", "minutes_present", "share", "late_minutes", "camera_minutes",
    "microphone_minutes", "talk_minutes", "chat_messages", "hands_raised",
)  # fmt: skip
"""The columns of :meth:`StudentReport.to_csv`, in order."""

TEACHER_CSV_COLUMNS: Final = (
    "user_id", "lesson_id", "course", "title", "kind", "status", "scheduled_start",
    "scheduled_end", "held", "actual_start", "actual_end", "start_delay_minutes",
    "scheduled_minutes", "duration_minutes", "overrun_minutes", "minutes_present",
)  # fmt: skip
"""The columns of :meth:`TeacherReport.to_csv`, in order."""


def _by_schedule(lessons: Iterable[Lesson]) -> list[Lesson]:
    return sorted(lessons, key=lambda lesson: (lesson.scheduled_start, lesson.id))


def _span_minutes(spans: Iterable[tuple[float, float]]) -> float:
    return _minutes(sum(end - start for start, end in spans))


@dataclass(frozen=True, slots=True)
class StudentReport:
    """A student's attendance of every held lesson given, and their events."""

    user_id: str
    lessons: tuple[tuple[LessonAttendance, Attendance], ...]
    events: tuple[EventLike, ...]
    thresholds: Thresholds
    generated_at: datetime

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for attendance, person in self.lessons:
            lesson = attendance.lesson
            times = _lesson_times(attendance)
            rows.append(
                {
                    "user_id": self.user_id,
                    "lesson_id": lesson.id,
                    "course": lesson.course,
                    "title": lesson.title,
                    "scheduled_start": _iso(lesson.scheduled_start),
                    "actual_start": times["actual_start"],
                    "duration_minutes": times["duration_minutes"],
                    "status": person.status.value,
                    "minutes_present": _minutes(person.present_s),
                    "share": round(person.share, 4),
                    "late_minutes": _minutes(person.late_s),
                    "camera_minutes": _span_minutes(person.camera),
                    "microphone_minutes": _span_minutes(person.microphone),
                    "talk_minutes": _span_minutes(person.speaking),
                    "chat_messages": person.chat_messages,
                    "hands_raised": person.hands_raised,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        """The report as ``GET /api/students/{user_id}/footprint`` returns it."""
        counts = dict.fromkeys((status.value for status in Status), 0)
        for _, person in self.lessons:
            counts[person.status.value] += 1
        held = len(self.lessons)
        attended = counts["present"] + counts["late"] + 0.5 * counts["partial"]
        return {
            "user_id": self.user_id,
            "generated_at": _iso(self.generated_at),
            "thresholds": self.thresholds.to_json(),
            "summary": {
                "lessons_held": held,
                **counts,
                "rate": round(attended / held, 4) if held else None,
                "minutes_present": _minutes(sum(p.present_s for _, p in self.lessons)),
            },
            "lessons": self._rows(),
            "events": [event.to_json() for event in self.events],
        }

    def to_csv(self) -> str:
        """One row per held lesson, columns :data:`STUDENT_CSV_COLUMNS` (no event list)."""
        return _csv(STUDENT_CSV_COLUMNS, self._rows())


def student_report(
    user_id: str,
    lessons: Sequence[Lesson],
    events: Sequence[EventLike],
    thresholds: Thresholds,
    now: datetime,
) -> StudentReport:
    """``user_id``'s attendance of each held lesson in ``lessons``, and their own events.

    ``events`` must hold each lesson's ``lesson.started``/``ended`` and the
    student's events; other people's are skipped. A held lesson the student never
    joined is listed as absent; a lesson never held is left out. The rate is
    the course report's: (present + late + partial / 2) / lessons held.
    """
    me = RosterEntry(user_id, user_id)
    by_lesson: dict[str, list[EventLike]] = {lesson.id: [] for lesson in lessons}
    own: list[EventLike] = []
    for event in events:
        if event.actor == user_id:
            own.append(event)
        bucket = by_lesson.get(event.lesson)
        if bucket is not None and (event.actor == user_id or event.type.startswith("lesson.")):
            bucket.append(event)
    rows = []
    for lesson in _by_schedule(lessons):
        attendance = attend(lesson, by_lesson[lesson.id], [me], thresholds, now, only=user_id)
        if attendance.held:
            rows.append((attendance, attendance.people[0]))
    own.sort(key=lambda event: event.seq)
    return StudentReport(user_id, tuple(rows), tuple(own), thresholds, now)


@dataclass(frozen=True, slots=True)
class TeacherReport:
    """The lessons a teacher teaches: held or not, start delay, duration."""

    user_id: str
    lessons: tuple[tuple[LessonAttendance, float], ...]
    generated_at: datetime

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for attendance, present_s in self.lessons:
            lesson = attendance.lesson
            delay = (
                (attendance.origin - lesson.scheduled_start).total_seconds()
                if attendance.held
                else None
            )
            rows.append(
                {
                    "user_id": self.user_id,
                    "lesson_id": lesson.id,
                    "course": lesson.course,
                    "title": lesson.title,
                    "kind": lesson.kind.value,
                    "status": lesson.status.value,
                    "scheduled_start": _iso(lesson.scheduled_start),
                    "scheduled_end": _iso(lesson.scheduled_end),
                    **_lesson_times(attendance),
                    # Negative when the lesson started early.
                    "start_delay_minutes": None if delay is None else _minutes(delay),
                    "minutes_present": _minutes(present_s),
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        """The report as ``GET /api/teachers/{user_id}/report`` returns it."""
        held = [attendance for attendance, _ in self.lessons if attendance.held]
        live_s = sum(attendance.duration_s for attendance in held)
        delays = [(a.origin - a.lesson.scheduled_start).total_seconds() for a in held]
        return {
            "user_id": self.user_id,
            "generated_at": _iso(self.generated_at),
            "summary": {
                "lessons": len(self.lessons),
                "lessons_held": len(held),
                "live_minutes": _minutes(live_s),
                "academic_hours": round(live_s / 60 / ACADEMIC_HOUR_MIN, 2),
                "mean_start_delay_minutes": _minutes(sum(delays) / len(delays)) if delays else None,
            },
            "lessons": self._rows(),
        }

    def to_csv(self) -> str:
        """One row per lesson, columns :data:`TEACHER_CSV_COLUMNS`."""
        return _csv(TEACHER_CSV_COLUMNS, self._rows())


def teacher_report(
    user_id: str, lessons: Sequence[Lesson], events: Sequence[EventLike], now: datetime
) -> TeacherReport:
    """The lessons ``user_id`` teaches, from their ``lesson.*`` events and the teacher's joins.

    ``minutes_present`` is the teacher's own presence in the lesson, so a
    lesson held by a co-teacher shows as held with the teacher absent.
    """
    by_lesson: dict[str, list[EventLike]] = {lesson.id: [] for lesson in lessons}
    for event in events:
        bucket = by_lesson.get(event.lesson)
        if bucket is not None and (event.actor == user_id or event.type.startswith("lesson.")):
            bucket.append(event)
    rows = []
    for lesson in _by_schedule(lessons):
        # Thresholds do not matter: only the teacher's minutes are read.
        attendance = attend(
            lesson, by_lesson[lesson.id], [], Thresholds(), now, detail=False, only=user_id
        )
        present_s = sum(p.present_s for p in attendance.people if p.user_id == user_id)
        rows.append((attendance, present_s))
    return TeacherReport(user_id, tuple(rows), now)
