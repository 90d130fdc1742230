"""Attendance reports of a lesson and of a course, as JSON and CSV.

Built by :mod:`signaling.footprint.attendance` from footprint events; every
function here is pure (events, lessons and roster in, a report out), so the
same numbers come out of the REST API, the CLI and the tests. Student and
teacher reports are in :mod:`signaling.footprint.personal`.

Rounding, only at output: minutes to 2 decimals, shares and rates to 4,
timeline seconds to 3. CSV is RFC 4180 (``\\r\\n``), one row per person, with
fixed column names; text cells that a spreadsheet would run as a formula
(``= + - @``, tab, CR) get a leading ``'`` (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from signaling.footprint.attendance import (
    PRESENCE_TYPES,
    Attendance,
    EventLike,
    LessonAttendance,
    Status,
    Thresholds,
    attend,
)
from signaling.footprint.roster import RosterEntry
from signaling.lessons import Lesson

__all__ = [
    "ACADEMIC_HOUR_MIN",
    "COURSE_CSV_COLUMNS",
    "LESSON_CSV_COLUMNS",
    "CourseReport",
    "LessonReport",
    "Thresholds",
    "course_report",
    "lesson_report",
]

ACADEMIC_HOUR_MIN: Final = 50
"""Minutes in an academic hour (KEU regulation §8.1)."""

LESSON_CSV_COLUMNS: Final = (
    "lesson_id", "user_id", "name", "role", "in_roster", "status", "minutes_present", "share",
    "late_minutes", "first_join", "last_leave", "sessions", "camera_minutes",
    "microphone_minutes", "talk_minutes", "chat_messages", "hands_raised", "quality_samples",
    "loss_mean", "loss_worst", "rtt_mean_ms", "rtt_p95_ms",
)  # fmt: skip
"""The columns of :meth:`LessonReport.to_csv`, in order."""

COURSE_CSV_COLUMNS: Final = (
    "course", "user_id", "name", "in_roster", "lessons_held", "present", "late", "partial",
    "absent", "rate", "minutes_present",
)  # fmt: skip
"""The columns of :meth:`CourseReport.to_csv`, in order."""

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with ``Z``, as in the rest of the API."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 2)


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with a header; None is an empty cell, booleans are true/false."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None:
                value = ""
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, str) and value.startswith(_FORMULA_START):
                value = "'" + value
            cells.append(value)
        writer.writerow(cells)
    return out.getvalue()


def _spans(spans: Iterable[tuple[float, float]]) -> list[list[float]]:
    return [[round(start, 3), round(end, 3)] for start, end in spans]


def _student_counts(people: Iterable[Attendance]) -> dict[str, int]:
    """Students by status; teachers, assistants and observers are not counted."""
    counts = dict.fromkeys((status.value for status in Status), 0)
    for person in people:
        if person.role == "student":
            counts[person.status.value] += 1
    return counts


def _person_json(person: Attendance, attendance: LessonAttendance) -> dict[str, Any]:
    presence = person.presence
    q = person.quality
    return {
        "user_id": person.user_id,
        "name": person.name,
        "role": person.role,
        "in_roster": person.in_roster,
        "status": person.status.value,
        "minutes_present": _minutes(person.present_s),
        "share": round(person.share, 4),
        "late_minutes": _minutes(person.late_s),
        "first_join": _iso(attendance.moment(presence[0][0])) if presence else None,
        "last_leave": _iso(attendance.moment(presence[-1][1])) if presence else None,
        "sessions": person.sessions,
        "camera_minutes": _minutes(sum(e - s for s, e in person.camera)),
        "microphone_minutes": _minutes(sum(e - s for s, e in person.microphone)),
        "talk_minutes": _minutes(sum(e - s for s, e in person.speaking)),
        "chat_messages": person.chat_messages,
        "hands_raised": person.hands_raised,
        "quality": {
            "samples": q.samples,
            "loss_mean": None if q.loss_mean is None else round(q.loss_mean, 4),
            "loss_worst": q.loss_worst,
            "rtt_mean_ms": None if q.rtt_mean_ms is None else round(q.rtt_mean_ms, 1),
            "rtt_p95_ms": q.rtt_p95_ms,
        },
        "timeline": {
            "presence": _spans(presence),
            "camera": _spans(person.camera),
            "speaking": _spans(person.speaking),
        },
    }


def _lesson_times(attendance: LessonAttendance) -> dict[str, Any]:
    """When the lesson was held, against its schedule (shared by every report)."""
    lesson = attendance.lesson
    segments = attendance.segments
    start = attendance.moment(segments[0][0]) if segments else None
    end = attendance.moment(segments[-1][1]) if segments else None
    overrun = (end - lesson.scheduled_end).total_seconds() if end is not None else 0.0
    return {
        "held": attendance.held,
        "live": attendance.live,
        "actual_start": _iso(start),
        "actual_end": _iso(end),
        "duration_minutes": _minutes(attendance.duration_s),
        "scheduled_minutes": _minutes(
            (lesson.scheduled_end - lesson.scheduled_start).total_seconds()
        ),
        "overrun_minutes": _minutes(max(0.0, overrun)),
    }


@dataclass(frozen=True, slots=True)
class LessonReport:
    """Attendance of one lesson: its times and one entry per person."""

    attendance: LessonAttendance
    thresholds: Thresholds
    generated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The report as ``GET /api/lessons/{id}/report`` returns it."""
        lesson = self.attendance.lesson
        return {
            "lesson": {**lesson.summary(), "teacher_ids": list(lesson.teacher_ids)},
            **_lesson_times(self.attendance),
            "segments": _spans(self.attendance.segments),
            "thresholds": self.thresholds.to_json(),
            "generated_at": _iso(self.generated_at),
            "counts": _student_counts(self.attendance.people),
            "people": [_person_json(p, self.attendance) for p in self.attendance.people],
        }

    def to_csv(self) -> str:
        """One row per person, columns :data:`LESSON_CSV_COLUMNS`."""
        lesson_id = self.attendance.lesson.id
        rows = []
        for person in self.to_json()["people"]:
            quality = person.pop("quality")
            person.pop("timeline")
            rows.append({"lesson_id": lesson_id, **person, "quality_samples": quality["samples"]})
            rows[-1].update({k: v for k, v in quality.items() if k != "samples"})
        return _csv(LESSON_CSV_COLUMNS, rows)


def lesson_report(
    lesson: Lesson,
    events: Sequence[EventLike],
    roster: Sequence[RosterEntry],
    thresholds: Thresholds,
    now: datetime,
) -> LessonReport:
    """Attendance of ``lesson`` (statuses by :func:`~signaling.footprint.attendance.classify`)."""
    return LessonReport(attend(lesson, events, roster, thresholds, now), thresholds, now)


@dataclass(frozen=True, slots=True)
class _StudentTally:
    user_id: str
    name: str
    in_roster: bool
    counts: Mapping[str, int]
    present_s: float


@dataclass(frozen=True, slots=True)
class CourseReport:
    """A course: lessons held, academic hours held live, and each student's attendance rate."""

    course: str
    lessons: tuple[LessonAttendance, ...]
    students: tuple[_StudentTally, ...]
    thresholds: Thresholds
    generated_at: datetime

    @property
    def lessons_held(self) -> int:
        """Lessons that started at least once."""
        return sum(1 for lesson in self.lessons if lesson.held)

    @property
    def live_minutes(self) -> float:
        """Minutes held live, summed over the lessons."""
        return sum(lesson.duration_s for lesson in self.lessons) / 60

    def _student_json(self, tally: _StudentTally) -> dict[str, Any]:
        held = self.lessons_held
        # present and late attended; partial counts as half a lesson attended.
        attended = tally.counts["present"] + tally.counts["late"] + 0.5 * tally.counts["partial"]
        return {
            "user_id": tally.user_id,
            "name": tally.name,
            "in_roster": tally.in_roster,
            "lessons_held": held,
            **tally.counts,
            "rate": round(attended / held, 4) if held else None,
            "minutes_present": _minutes(tally.present_s),
        }

    def to_json(self) -> dict[str, Any]:
        """The report as ``GET /api/courses/{course}/report`` returns it."""
        lessons = []
        for attendance in self.lessons:
            lesson = attendance.lesson
            times = _lesson_times(attendance)
            start = attendance.moment(0.0) if attendance.held else lesson.scheduled_start
            lessons.append(
                {
                    "id": lesson.id,
                    "title": lesson.title,
                    "kind": lesson.kind.value,
                    "status": lesson.status.value,
                    "scheduled_start": _iso(lesson.scheduled_start),
                    # The UTC date; the page may show it in the university's zone.
                    "date": start.astimezone(UTC).date().isoformat(),
                    **times,
                    **_student_counts(attendance.people),
                }
            )
        return {
            "course": self.course,
            "generated_at": _iso(self.generated_at),
            "thresholds": self.thresholds.to_json(),
            "lessons_total": len(self.lessons),
            "lessons_held": self.lessons_held,
            "live_minutes": round(self.live_minutes, 2),
            "academic_hours": round(self.live_minutes / ACADEMIC_HOUR_MIN, 2),
            "lessons": lessons,
            "students": [self._student_json(tally) for tally in self.students],
        }

    def to_csv(self) -> str:
        """One row per student, columns :data:`COURSE_CSV_COLUMNS`."""
        rows = ({"course": self.course, **self._student_json(t)} for t in self.students)
        return _csv(COURSE_CSV_COLUMNS, rows)


def course_report(
    course: str,
    lessons: Sequence[Lesson],
    events: Iterable[EventLike],
    roster: Sequence[RosterEntry],
    thresholds: Thresholds,
    now: datetime,
) -> CourseReport:
    """The course's attendance from presence events (other event types are skipped).

    Students are the roster, in its order, then anyone else who joined a lesson
    as a student. A student's rate is (present + late + partial / 2) divided
    by the lessons held; a lesson not held counts for nobody.
    """
    ordered = sorted(lessons, key=lambda lesson: (lesson.scheduled_start, lesson.id))
    by_lesson: dict[str, list[EventLike]] = {lesson.id: [] for lesson in ordered}
    for event in events:
        # One pass over what may be a million events: two cheap checks, nothing else.
        if event.type in PRESENCE_TYPES:
            bucket = by_lesson.get(event.lesson)
            if bucket is not None:
                bucket.append(event)
    results = tuple(
        attend(lesson, by_lesson[lesson.id], roster, thresholds, now, detail=False)
        for lesson in ordered
    )
    names = {entry.user_id: entry.name for entry in roster}
    counts: dict[str, dict[str, int]] = {}
    present: dict[str, float] = defaultdict(float)
    for entry in roster:
        counts[entry.user_id] = dict.fromkeys((s.value for s in Status), 0)
    for attendance in results:
        for person in attendance.people:
            if person.role == "student" and person.user_id not in counts:
                counts[person.user_id] = dict.fromkeys((s.value for s in Status), 0)
                names[person.user_id] = person.name
    for attendance in results:
        if not attendance.held:
            continue
        seen = {person.user_id: person for person in attendance.people}
        for user_id, tally in counts.items():
            found = seen.get(user_id)
            tally[(found.status if found is not None else Status.ABSENT).value] += 1
            present[user_id] += found.present_s if found is not None else 0.0
    listed = {entry.user_id for entry in roster}
    students = tuple(
        _StudentTally(user_id, names[user_id], user_id in listed, tally, present[user_id])
        for user_id, tally in counts.items()
    )
    return CourseReport(course, results, students, thresholds, now)
