"""The footprint REST API: events, attendance reports, course rosters, verification.

Same conventions as :mod:`signaling.rest` (Bearer JWT; errors are JSON
``{"error", "message"}`` with ``"field"`` when one field is to blame, 401 with
``WWW-Authenticate``). Who may see what (anything else is 403):

- an admin: everything, and alone runs ``GET /api/footprint/verify``;
- a teacher: reports and events of the lessons they teach and of the course
  their token names; that course's roster (read and replace); their own
  teacher report; a student's footprint limited to that course;
- anyone: their own footprint (``/api/students/{their sub}/footprint``).

Reports read the ledger in pages of 1000 and are computed in a worker thread:
this process also forwards media, and a course's report is tens of
milliseconds of Python that must not stall the event loop in one piece.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from aiohttp import hdrs, web

from signaling.footprint.api_io import (
    capped_body,
    course_path,
    csv_response,
    csv_wanted,
    forbidden,
    json_errors,
    text_query,
    types_query,
)
from signaling.footprint.attendance import DETAIL_TYPES, PRESENCE_TYPES, EventLike, Thresholds
from signaling.footprint.personal import student_report, teacher_report
from signaling.footprint.reports import _csv, _iso, course_report, lesson_report
from signaling.footprint.roster import RosterStore, parse_roster_csv, parse_roster_json
from signaling.identity import AuthError, Identity, Role, Verifier
from signaling.lessons import Lesson, LessonStore
from signaling.rest import _ApiError, _int_query, _time_query

__all__ = ["MAX_ROSTER_BODY", "PAGE", "LedgerQuery", "VerifyResultLike", "setup_footprint_api"]

PAGE: Final = 1000
"""Events per ledger query and largest ``limit`` of ``GET /api/footprint/events``."""

MAX_ROSTER_BODY: Final = 1024 * 1024
"""Largest roster upload: 5000 rows of long Cyrillic names fit in well under 1 MiB."""

_LESSON_TIMES: Final = ("lesson.started", "lesson.ended")
_JOINS: Final = ("participant.joined", "participant.left")
_LESSON_PAGE: Final = 500


class LedgerQuery(Protocol):
    """The part of ``signaling.footprint.Ledger`` that the API reads."""

    async def query(
        self,
        *,
        lesson: str | None = None,
        course: str | None = None,
        actor: str | None = None,
        types: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> Sequence[EventLike]: ...


class VerifyResultLike(Protocol):
    """What ``signaling.footprint.verify_ledger`` returns."""

    @property
    def ok(self) -> bool: ...
    @property
    def events(self) -> int: ...
    @property
    def checkpoints(self) -> int: ...
    @property
    def problem(self) -> str | None: ...
    @property
    def position(self) -> int | None: ...
    @property
    def signatures_checked(self) -> bool: ...


def _is_teacher_of_course(identity: Identity, course: str) -> bool:
    return identity.role is Role.TEACHER and identity.course_id == course


def _may_see_lesson(identity: Identity, lesson: Lesson) -> None:
    if identity.role is Role.ADMIN or _is_teacher_of_course(identity, lesson.course):
        return
    if identity.role is Role.TEACHER and lesson.is_teacher(identity.user_id):
        return
    raise forbidden("only an admin or the lesson's teachers may see its footprint")


def _may_see_course(identity: Identity, course: str) -> None:
    if identity.role is not Role.ADMIN and not _is_teacher_of_course(identity, course):
        raise forbidden("only an admin or a teacher of the course may see this")


class _Api:
    """The handlers, bound to the ledger, the stores and the verifier."""

    def __init__(
        self,
        ledger: LedgerQuery,
        lessons: LessonStore,
        roster: RosterStore,
        verifier: Verifier,
        thresholds: Thresholds,
        verify: Callable[[], Awaitable[VerifyResultLike]] | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._ledger = ledger
        self._lessons = lessons
        self._roster = roster
        self._verifier = verifier
        self._thresholds = thresholds
        self._verify = verify
        self._clock = clock
        # One verification at a time: it reads the whole ledger; a second caller waits.
        self._verifying = asyncio.Lock()

    def _identity(self, request: web.Request) -> Identity:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("missing")
        return self._verifier.verify(token.strip())

    async def _query(self, **filters: Any) -> Sequence[EventLike]:
        try:
            return await self._ledger.query(**filters)
        except RuntimeError:  # LedgerClosed: the server is shutting down
            raise _ApiError(503, "unavailable", "the footprint ledger is closed") from None

    async def _events(self, **filters: Any) -> list[EventLike]:
        """Every event matching ``filters``, read in pages of :data:`PAGE`."""
        events: list[EventLike] = []
        after = 0
        while True:
            page = await self._query(**filters, after_seq=after, limit=PAGE)
            events.extend(page)
            if len(page) < PAGE:
                return events
            after = page[-1].seq

    async def _all_lessons(self, **filters: Any) -> list[Lesson]:
        lessons: list[Lesson] = []
        while True:
            page = await self._lessons.list(**filters, limit=_LESSON_PAGE, offset=len(lessons))
            lessons.extend(page)
            if len(page) < _LESSON_PAGE:
                return lessons

    async def events(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        lesson_id, course = text_query(request, "lesson"), text_query(request, "course")
        if identity.role is not Role.ADMIN:
            if lesson_id is not None:
                _may_see_lesson(identity, await self._lessons.get(lesson_id))
            elif course is not None:
                _may_see_course(identity, course)
            else:
                raise forbidden("give a lesson or course you teach, or ask an admin")
        limit = _int_query(request, "limit", PAGE, 1, PAGE)
        page = await self._query(
            lesson=lesson_id,
            course=course,
            actor=text_query(request, "actor"),
            types=types_query(request),
            since=_time_query(request, "since"),
            until=_time_query(request, "until"),
            after_seq=_int_query(request, "after", 0, 0, 2**63 - 1),
            limit=limit,
        )
        next_after = page[-1].seq if len(page) == limit else None
        return web.json_response(
            {"events": [event.to_json() for event in page], "next_after": next_after}
        )

    async def lesson_report(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        as_csv = csv_wanted(request)
        lesson = await self._lessons.get(request.match_info["id"])
        _may_see_lesson(identity, lesson)
        events = await self._events(lesson=lesson.id, types=sorted(DETAIL_TYPES))
        roster = await self._roster.list(lesson.course)
        report = await asyncio.to_thread(
            lesson_report, lesson, events, roster, self._thresholds, self._clock()
        )
        if as_csv:
            return csv_response(report.to_csv(), f"lesson-{lesson.id}-attendance.csv")
        return web.json_response(report.to_json())

    async def course_report(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        as_csv = csv_wanted(request)
        course = course_path(request)
        _may_see_course(identity, course)
        lessons = await self._all_lessons(course=course)
        events = await self._events(course=course, types=sorted(PRESENCE_TYPES))
        roster = await self._roster.list(course)
        report = await asyncio.to_thread(
            course_report, course, lessons, events, roster, self._thresholds, self._clock()
        )
        if as_csv:
            return csv_response(report.to_csv(), f"course-{course}-attendance.csv")
        return web.json_response(report.to_json())

    async def student_footprint(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        user_id = request.match_info["user_id"]
        as_csv = csv_wanted(request)
        course = text_query(request, "course")
        after = _int_query(request, "after", 0, 0, 2**63 - 1)
        limit = _int_query(request, "limit", PAGE, 1, PAGE)
        if identity.role is Role.TEACHER and identity.user_id != user_id:
            if identity.course_id is None or course not in (None, identity.course_id):
                raise forbidden("a teacher sees a student's footprint in their course only")
            course = identity.course_id
        elif identity.role is not Role.ADMIN and identity.user_id != user_id:
            raise forbidden("you may see only your own footprint")
        own = [e for e in await self._events(actor=user_id) if course is None or e.course == course]
        # Lessons: every lesson of the courses whose roster lists the student (so that
        # absences show), and any other lesson they took part in.
        enrolled = set(await self._roster.courses_of(user_id))
        joined = {e.lesson for e in own if e.lesson}
        courses = enrolled | {e.course for e in own if e.lesson}
        if course is not None:
            courses &= {course}
        lessons: list[Lesson] = []
        events: list[EventLike] = list(own)
        for name in sorted(courses):
            of_course = await self._all_lessons(course=name)
            lessons.extend(x for x in of_course if name in enrolled or x.id in joined)
            events.extend(await self._events(course=name, types=_LESSON_TIMES))
        report = await asyncio.to_thread(
            student_report, user_id, lessons, events, self._thresholds, self._clock()
        )
        if as_csv:
            return csv_response(report.to_csv(), f"student-{user_id}-footprint.csv")
        body = report.to_json()
        page = [e for e in body["events"] if e["seq"] > after][:limit]
        body["events"] = page
        body["next_after"] = page[-1]["seq"] if len(page) == limit else None
        return web.json_response(body)

    async def teacher_report(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        user_id = request.match_info["user_id"]
        as_csv = csv_wanted(request)
        if identity.role is not Role.ADMIN and not (
            identity.role is Role.TEACHER and identity.user_id == user_id
        ):
            raise forbidden("only an admin or the teacher themselves may see this")
        lessons = await self._all_lessons(teacher=user_id)
        events = await self._events(actor=user_id, types=_JOINS)
        for course in sorted({lesson.course for lesson in lessons}):
            events.extend(await self._events(course=course, types=_LESSON_TIMES))
        report = await asyncio.to_thread(teacher_report, user_id, lessons, events, self._clock())
        if as_csv:
            return csv_response(report.to_csv(), f"teacher-{user_id}-lessons.csv")
        return web.json_response(report.to_json())

    async def get_roster(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        as_csv = csv_wanted(request)
        course = course_path(request)
        _may_see_course(identity, course)
        entries = await self._roster.list(course)
        if as_csv:
            rows = (entry.to_json() for entry in entries)
            return csv_response(_csv(("user_id", "name"), rows), f"roster-{course}.csv")
        return web.json_response(
            {"course": course, "count": len(entries), "students": [e.to_json() for e in entries]}
        )

    async def put_roster(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        course = course_path(request)
        _may_see_course(identity, course)
        body = await capped_body(request, MAX_ROSTER_BODY)
        if request.content_type == "text/csv":
            entries = parse_roster_csv(body)
        elif request.content_type == "application/json":
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):
                raise _ApiError(400, "bad_request", "the body is not valid JSON") from None
            entries = parse_roster_json(value)
        else:
            raise _ApiError(
                415, "unsupported_media_type", "send the roster as application/json or text/csv"
            )
        await self._roster.replace(course, entries)
        return web.json_response(
            {"course": course, "count": len(entries), "students": [e.to_json() for e in entries]}
        )

    async def verify(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        if identity.role is not Role.ADMIN:
            raise forbidden("only an admin may verify the footprint")
        if self._verify is None:
            raise _ApiError(503, "unavailable", "verification is not configured on this server")
        async with self._verifying:
            try:
                result = await self._verify()
            except (OSError, ValueError) as error:
                # The ledger file is missing or not a ledger: verification could not run,
                # which is not the same answer as "verified, with a problem".
                raise _ApiError(
                    503, "unavailable", f"verification could not run: {error}"
                ) from None
        return web.json_response(
            {
                "ok": result.ok,
                "events": result.events,
                "checkpoints": result.checkpoints,
                "signatures_checked": result.signatures_checked,
                "problem": result.problem,
                "position": result.position,
                "checked_at": _iso(self._clock()),
            }
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def setup_footprint_api(
    app: web.Application,
    *,
    ledger: LedgerQuery,
    lessons: LessonStore,
    roster: RosterStore,
    verifier: Verifier,
    thresholds: Thresholds,
    verify: Callable[[], Awaitable[VerifyResultLike]] | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> None:
    """Adds the footprint routes (``FOOTPRINT_PATHS`` of :mod:`signaling.openapi`) to ``app``."""
    api = _Api(ledger, lessons, roster, verifier, thresholds, verify, clock)
    router = app.router
    # allow_head=False, as in signaling.rest: the OpenAPI document lists every route exactly.
    for path, handler, name in (
        ("/api/footprint/events", api.events, "api.footprint.events"),
        ("/api/footprint/verify", api.verify, "api.footprint.verify"),
        ("/api/lessons/{id}/report", api.lesson_report, "api.lesson.report"),
        ("/api/courses/{course}/report", api.course_report, "api.course.report"),
        ("/api/students/{user_id}/footprint", api.student_footprint, "api.student.footprint"),
        ("/api/teachers/{user_id}/report", api.teacher_report, "api.teacher.report"),
    ):
        router.add_get(path, json_errors(handler), name=name, allow_head=False)
    resource = router.add_resource("/api/courses/{course}/roster", name="api.course.roster")
    resource.add_route("GET", json_errors(api.get_roster))
    resource.add_route("PUT", json_errors(api.put_roster))
