"""The footprint REST API over a real loopback server: permissions, CSV, rosters, paging."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from signaling.db import Database
from signaling.footprint.api import setup_footprint_api
from signaling.footprint.attendance import PRESENCE_TYPES, Thresholds
from signaling.footprint.roster import MAX_ROSTER, RosterEntry, RosterStore
from signaling.identity import Verifier, mint
from signaling.lessons import ChatStore, LessonStatus, LessonStore
from signaling.openapi import OPENAPI_WITH_FOOTPRINT, RECORDINGS_PATHS
from signaling.rest import setup_rest
from tests.test_footprint_reports import (
    ROSTER,
    FakeEvent,
    at,
    course_events,
    in_time_order,
    lesson_one,
)

SECRET = "f" * 40
ISSUER, AUDIENCE = "uni-idp", "sabaq"
NOW = at(60 * 24 * 30)


def token(role: str, sub: str, *, course: str | None = None, lesson: str | None = None) -> str:
    return mint(
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        sub=sub,
        name=sub.upper(),
        role=role,
        course=course,
        lesson=lesson,
    )


ADMIN = token("admin", "root")
T1 = token("teacher", "t-1", course="MATH")  # teaches L1, L2, L3
T2 = token("teacher", "t-2", course="MATH")  # teaches nothing, but MATH is their course
T3 = token("teacher", "t-3", course="PHYS")  # teaches P1
S1 = token("student", "s-1", lesson="L1")
S2 = token("student", "s-2", course="MATH")
ASSISTANT = token("assistant", "a-1", course="MATH")


@dataclass
class FakeLedger:
    """signaling.footprint.Ledger.query over a list, recording each call."""

    events: list[FakeEvent]
    calls: list[dict[str, Any]] = field(default_factory=list)

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
    ) -> list[FakeEvent]:
        wanted = None if types is None else set(types)
        self.calls.append({"lesson": lesson, "course": course, "actor": actor, "types": wanted})
        found = [
            e
            for e in self.events
            if e.seq > after_seq
            and (lesson is None or e.lesson == lesson)
            and (course is None or e.course == course)
            and (actor is None or e.actor == actor)
            and (wanted is None or e.type in wanted)
            and (since is None or e.at >= since)
            and (until is None or e.at < until)
        ]
        return found[:limit]


@dataclass
class Verified:
    ok: bool = True
    events: int = 42
    checkpoints: int = 2
    problem: str | None = None
    position: int | None = None
    signatures_checked: bool = True


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    ledger: Any
    roster: RosterStore

    async def call(
        self, method: str, path: str, jwt: str | None = ADMIN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {jwt}"} if jwt is not None else {}
        headers.update(kwargs.pop("headers", {}))
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


async def seed(db: Database) -> LessonStore:
    lessons = LessonStore(db)
    for lesson_id, day, course, teacher in (
        ("L1", 0, "MATH", "t-1"),
        ("L2", 1, "MATH", "t-1"),
        ("L3", 2, "MATH", "t-1"),
        ("P1", 0, "PHYS", "t-3"),
    ):
        await lessons.create(
            {
                "id": lesson_id,
                "course": course,
                "title": f"Lesson {lesson_id}",
                "kind": "lecture",
                "teacher_ids": [teacher],
                "scheduled_start": at(0, day),
                "scheduled_end": at(90, day),
            }
        )
        if lesson_id != "L3":
            await lessons.set_status(lesson_id, LessonStatus.LIVE)
            await lessons.set_status(lesson_id, LessonStatus.ENDED)
    return lessons


_DEFAULT: Any = object()


async def start(db: Database, ledger: Any, verify: Any = _DEFAULT) -> Api:
    lessons = await seed(db)
    roster = RosterStore(db)
    await roster.replace("MATH", ROSTER)
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET)
    app = web.Application()
    setup_rest(app, lessons=lessons, chat=ChatStore(db), verifier=verifier)

    async def verified() -> Verified:
        return Verified()

    setup_footprint_api(
        app,
        ledger=ledger,
        lessons=lessons,
        roster=roster,
        verifier=verifier,
        thresholds=Thresholds(),
        verify=verified if verify is _DEFAULT else verify,
        clock=lambda: NOW,
    )
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return Api(client, ledger, roster)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    db = await Database.open(":memory:")
    started = await start(db, FakeLedger(course_events()))
    try:
        yield started
    finally:
        await started.client.close()
        await db.close()


# --- OpenAPI -----------------------------------------------------------------------------------


async def test_the_openapi_document_lists_exactly_the_registered_routes(api: Api) -> None:
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api")
    }
    # The recordings' paths are checked with setup_recordings in tests/test_recordings_api.py.
    documented = {
        (method, path)
        for path, item in OPENAPI_WITH_FOOTPRINT["paths"].items()
        for method in item
        if method != "parameters" and path not in RECORDINGS_PATHS
    }
    assert registered == documented
    validate(OPENAPI_WITH_FOOTPRINT)


# --- who may see what --------------------------------------------------------------------------

_ALLOWED = {
    "/api/lessons/L1/report": {ADMIN, T1, T2},
    "/api/lessons/P1/report": {ADMIN, T3},
    "/api/courses/MATH/report": {ADMIN, T1, T2},
    "/api/courses/PHYS/report": {ADMIN, T3},
    "/api/students/s-2/footprint": {ADMIN, S2, T1, T2, T3},
    "/api/students/s-1/footprint": {ADMIN, S1, T1, T2, T3},
    "/api/teachers/t-1/report": {ADMIN, T1},
    "/api/footprint/events?lesson=L1": {ADMIN, T1, T2},
    "/api/footprint/events?course=PHYS": {ADMIN, T3},
    "/api/footprint/events": {ADMIN},
    "/api/footprint/events?actor=s-2": {ADMIN},
    "/api/footprint/verify": {ADMIN},
    "/api/courses/MATH/roster": {ADMIN, T1, T2},
}
_TOKENS = {"admin": ADMIN, "t1": T1, "t2": T2, "t3": T3, "s1": S1, "s2": S2, "assistant": ASSISTANT}


@pytest.mark.parametrize("path", sorted(_ALLOWED))
async def test_permissions(api: Api, path: str) -> None:
    for name, jwt in _TOKENS.items():
        status, body = await api.call("GET", path, jwt)
        expected = 200 if jwt in _ALLOWED[path] else 403
        assert (name, status) == (name, expected), body
        if status == 403:
            assert body["error"] == "forbidden"
    status, body = await api.call("GET", path, None)
    assert status == 401 and body["error"] == "missing"


async def test_401_carries_www_authenticate(api: Api) -> None:
    async with api.client.get(
        "/api/courses/MATH/report", headers={"Authorization": "Bearer nope"}
    ) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_roster_put_permissions(api: Api) -> None:
    body = [{"user_id": "x-1", "name": "X"}]
    for jwt, expected in ((T3, 403), (S2, 403), (ASSISTANT, 403), (T1, 200), (ADMIN, 200)):
        status, _ = await api.call("PUT", "/api/courses/MATH/roster", jwt, json=body)
        assert status == expected


async def test_a_teacher_sees_a_students_footprint_in_their_course_only(api: Api) -> None:
    status, body = await api.call("GET", "/api/students/s-1/footprint", T3)
    assert status == 200
    assert {row["course"] for row in body["lessons"]} == {"PHYS"}
    assert {event["course"] for event in body["events"]} == {"PHYS"}
    status, body = await api.call("GET", "/api/students/s-1/footprint?course=MATH", T3)
    assert status == 403


async def test_unknown_lesson_is_404(api: Api) -> None:
    status, body = await api.call("GET", "/api/lessons/nope/report")
    assert status == 404 and body["error"] == "not_found"


# --- reports -----------------------------------------------------------------------------------


async def test_lesson_report_json(api: Api) -> None:
    status, body = await api.call("GET", "/api/lessons/L1/report", T1)
    assert status == 200
    assert body["duration_minutes"] == 93 and body["overrun_minutes"] == 5
    s1 = next(p for p in body["people"] if p["user_id"] == "s-1")
    assert (s1["minutes_present"], s1["camera_minutes"], s1["status"]) == (92, 28, "present")
    assert body["counts"] == {"present": 1, "late": 1, "partial": 2, "absent": 2}


async def test_lesson_report_csv_download(api: Api) -> None:
    async with api.client.get(
        "/api/lessons/L1/report?format=csv", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/csv" and response.charset == "utf-8"
        assert (
            response.headers["Content-Disposition"]
            == 'attachment; filename="lesson-L1-attendance.csv"'
        )
        raw = await response.read()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0]["name"] == "Айгерім Сәрсенова" and rows[0]["minutes_present"] == "92.0"


async def test_course_report_reads_presence_events_only(api: Api) -> None:
    status, body = await api.call("GET", "/api/courses/MATH/report")
    assert status == 200
    assert (body["lessons_held"], body["academic_hours"]) == (2, 2.86)
    assert [s["rate"] for s in body["students"]] == [1.0, 0.75, 0.25, 0.0, 0.0, 0.25]
    assert api.ledger.calls == [
        {"lesson": None, "course": "MATH", "actor": None, "types": set(PRESENCE_TYPES)}
    ]
    status, text = await api.call("GET", "/api/courses/MATH/report?format=csv")
    assert status == 200 and text.splitlines()[0].startswith("\ufeffcourse,user_id,name")


async def test_student_footprint_pages_its_events(api: Api) -> None:
    status, body = await api.call("GET", "/api/students/s-2/footprint?limit=3", S2)
    assert status == 200
    assert [row["status"] for row in body["lessons"]] == ["late", "partial"]
    seqs = [event["seq"] for event in body["events"]]
    assert len(seqs) == 3 and body["next_after"] == seqs[-1]
    while body["next_after"] is not None:
        path = f"/api/students/s-2/footprint?limit=3&after={body['next_after']}"
        status, body = await api.call("GET", path, S2)
        seqs += [event["seq"] for event in body["events"]]
    assert len(seqs) == 8 and seqs == sorted(seqs)


async def test_student_footprint_of_someone_absent(api: Api) -> None:
    status, body = await api.call("GET", "/api/students/s-4/footprint")
    assert status == 200
    # s-4 is on MATH's roster: every held MATH lesson shows, as absent.
    assert [(row["lesson_id"], row["status"]) for row in body["lessons"]] == [
        ("L1", "absent"),
        ("L2", "absent"),
    ]


async def test_teacher_report(api: Api) -> None:
    status, body = await api.call("GET", "/api/teachers/t-1/report", T1)
    assert status == 200
    assert [row["lesson_id"] for row in body["lessons"]] == ["L1", "L2", "L3"]
    assert body["summary"]["lessons_held"] == 2
    status, text = await api.call("GET", "/api/teachers/t-1/report?format=csv", T1)
    assert status == 200 and "start_delay_minutes" in text.splitlines()[0]


async def test_verify(api: Api) -> None:
    status, body = await api.call("GET", "/api/footprint/verify")
    assert status == 200
    assert body == {
        "ok": True,
        "events": 42,
        "checkpoints": 2,
        "signatures_checked": True,
        "problem": None,
        "position": None,
        "checked_at": "2026-12-24T09:00:00Z",
    }


@pytest.mark.parametrize("broken", [True, False])
async def test_verify_unavailable(broken: bool) -> None:
    async def missing() -> Any:
        raise FileNotFoundError("no footprint ledger at /nowhere")

    db = await Database.open(":memory:")
    api = await start(db, FakeLedger([]), missing if broken else None)
    try:
        status, body = await api.call("GET", "/api/footprint/verify")
        assert status == 503 and body["error"] == "unavailable"
        assert ("/nowhere" in body["message"]) is broken
    finally:
        await api.client.close()
        await db.close()


# --- events ------------------------------------------------------------------------------------


async def test_events_are_paged(api: Api) -> None:
    seen: list[int] = []
    after = 0
    while True:
        status, body = await api.call("GET", f"/api/footprint/events?limit=7&after={after}")
        assert status == 200
        seen += [event["seq"] for event in body["events"]]
        if body["next_after"] is None:
            break
        after = body["next_after"]
    assert seen == [event.seq for event in course_events()]


async def test_events_filters(api: Api) -> None:
    path = "/api/footprint/events?lesson=L1&type=participant.joined&type=participant.left"
    status, body = await api.call("GET", path)
    assert status == 200 and body["next_after"] is None
    assert {event["type"] for event in body["events"]} == {"participant.joined", "participant.left"}
    since = "2026-11-24T09:30:00Z"
    status, body = await api.call("GET", f"/api/footprint/events?actor=s-1&since={since}")
    assert status == 200 and body["events"]
    assert all(e["actor"] == "s-1" and e["at"] >= since for e in body["events"])


@pytest.mark.parametrize(
    ("query", "field_"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=-1", "after"),
        ("type=DROP TABLE", "type"),
        ("since=yesterday", "since"),
        ("until=2026-11-24T09:00:00", "until"),  # no time zone
        ("lesson=" + "x" * 200, "lesson"),
    ],
)
async def test_bad_event_queries_name_the_field(api: Api, query: str, field_: str) -> None:
    status, body = await api.call("GET", f"/api/footprint/events?{query}")
    assert status == 400 and body["field"] == field_


async def test_bad_format_and_course(api: Api) -> None:
    status, body = await api.call("GET", "/api/lessons/L1/report?format=xml")
    assert status == 400 and body["field"] == "format"
    status, body = await api.call("GET", "/api/courses/MA TH/report")
    assert status == 400 and body["field"] == "course"


async def test_reports_read_every_page(api: Api) -> None:
    """A lesson with more than 1000 events is read in pages, none lost."""
    samples = [
        FakeEvent(0, at(3 + i * 0.03), "L1", "MATH", "s-3", "quality.sample", {"rtt_ms": 10})
        for i in range(2500)
    ]
    api.ledger.events = in_time_order(lesson_one(), samples)
    status, body = await api.call("GET", "/api/lessons/L1/report")
    assert status == 200
    s3 = next(p for p in body["people"] if p["user_id"] == "s-3")
    assert s3["quality"]["samples"] == 2500
    assert len(api.ledger.calls) == 3  # 1000 + 1000 + the rest


# --- rosters -----------------------------------------------------------------------------------


async def test_roster_csv_round_trip(api: Api) -> None:
    text = '\ufeffuser_id,name\r\nk-1,Қанат\r\n\r\nk-2,"Smith, J."\r\n'
    status, body = await api.call(
        "PUT",
        "/api/courses/CHEM/roster",
        data=text.encode("utf-8"),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 200
    assert body == {
        "course": "CHEM",
        "count": 2,
        "students": [{"user_id": "k-1", "name": "Қанат"}, {"user_id": "k-2", "name": "Smith, J."}],
    }
    assert await api.roster.list("CHEM") == [
        RosterEntry("k-1", "Қанат"),
        RosterEntry("k-2", "Smith, J."),
    ]
    status, csv_text = await api.call("GET", "/api/courses/CHEM/roster?format=csv")
    assert status == 200 and csv_text == '\ufeffuser_id,name\r\nk-1,Қанат\r\nk-2,"Smith, J."\r\n'


async def test_roster_semicolons_from_a_russian_excel(api: Api) -> None:
    text = "user_id;name\nk-1;Иванов Иван\n"
    status, body = await api.call(
        "PUT", "/api/courses/CHEM/roster", data=text, headers={"Content-Type": "text/csv"}
    )
    assert status == 200 and body["students"] == [{"user_id": "k-1", "name": "Иванов Иван"}]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (b"id,name\nk-1,A\n", 1, "header"),
        (b"user_id,name\nk-1,A\nk-2\n", 3, "expected 2 columns"),
        (b"user_id,name\nk-1,A\n,B\n", 3, "user_id is empty"),
        (b"user_id,name\nk-1,A\nk-2,B\nk-1,C\n", 4, "repeats line 2"),
        (b"user_id,name\nk-1,A\nk-2,\xff\n", 3, "not UTF-8"),
        (b"", 1, "empty"),
        (b'user_id,name\nk-1,"A\n', 2, "malformed"),
    ],
)
async def test_roster_csv_errors_name_the_line(
    api: Api, text: bytes, line: int, message: str
) -> None:
    status, body = await api.call(
        "PUT", "/api/courses/CHEM/roster", data=text, headers={"Content-Type": "text/csv"}
    )
    assert status == 422, body
    assert (body["error"], body["field"], body["line"]) == ("invalid", "roster", line)
    assert message in body["message"] and body["message"].startswith(f"line {line}: ")
    assert await api.roster.list("CHEM") == []


async def test_roster_limits(api: Api) -> None:
    rows = "".join(f"k-{n},Student {n}\n" for n in range(MAX_ROSTER + 1))
    status, body = await api.call(
        "PUT",
        "/api/courses/CHEM/roster",
        data="user_id,name\n" + rows,
        headers={"Content-Type": "text/csv"},
    )
    assert status == 422 and body["line"] == MAX_ROSTER + 2
    status, body = await api.call(
        "PUT",
        "/api/courses/CHEM/roster",
        data=io.BytesIO(b"user_id,name\n" + b"k,x" * 400_000),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 413 and body["error"] == "too_large"
    status, body = await api.call(
        "PUT", "/api/courses/CHEM/roster", data="x", headers={"Content-Type": "text/plain"}
    )
    assert status == 415


@pytest.mark.parametrize(
    ("value", "item", "message"),
    [
        ([{"user_id": "k-1"}], 0, "name is required"),
        ([{"user_id": "k-1", "name": "A"}, "k-2"], 1, "must be an object"),
        ([{"user_id": "k-1", "name": "A", "email": "a@b"}], 0, "unknown field 'email'"),
        ([{"user_id": 5, "name": "A"}], 0, "user_id must be a string"),
        ([{"user_id": "k-1", "name": "A\nB"}], 0, "line break"),
    ],
)
async def test_roster_json_errors_name_the_item(
    api: Api, value: Any, item: int, message: str
) -> None:
    status, body = await api.call("PUT", "/api/courses/CHEM/roster", json=value)
    assert status == 422 and body["item"] == item and message in body["message"]


async def test_roster_json_must_be_a_list(api: Api) -> None:
    status, body = await api.call("PUT", "/api/courses/CHEM/roster", json={"students": []})
    assert status == 422 and "list" in body["message"]
    status, body = await api.call(
        "PUT", "/api/courses/CHEM/roster", data="[", headers={"Content-Type": "application/json"}
    )
    assert status == 400


# --- with the real ledger ----------------------------------------------------------------------


async def test_with_the_real_ledger_and_verification(tmp_path: Path) -> None:
    from signaling.footprint import Ledger, verify_ledger

    events = lesson_one()
    clock = [events[0].at]
    path = tmp_path / "footprint.db"
    ledger = await Ledger.open(path, signing_key=tmp_path / "key.pem", clock=lambda: clock[0])
    db = await Database.open(":memory:")

    async def verify() -> Any:
        return await asyncio.to_thread(verify_ledger, path)

    api = await start(db, ledger, verify)
    try:
        for event in events:
            clock[0] = event.at
            ledger.append(event.lesson, event.course, event.actor, event.type, event.data)
        await ledger.flush()
        fake = FakeLedger(events)
        status, body = await api.call("GET", "/api/lessons/L1/report")
        assert status == 200
        s1 = next(p for p in body["people"] if p["user_id"] == "s-1")
        assert (s1["minutes_present"], s1["talk_minutes"]) == (92, 3.5)
        status, page = await api.call("GET", "/api/footprint/events?lesson=L1&limit=1000")
        assert [e["type"] for e in page["events"]] == [e.type for e in fake.events]
        assert page["events"][0]["hash"] != "0" * 64
        status, verified = await api.call("GET", "/api/footprint/verify")
        assert status == 200 and verified["ok"] is True
        assert verified["events"] == len(events)
    finally:
        await api.client.close()
        await ledger.close()
        await db.close()
