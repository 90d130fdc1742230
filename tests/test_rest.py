"""The REST API over a real loopback server: permissions, errors, persistence, OpenAPI."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from signaling.db import Database
from signaling.identity import Verifier, mint
from signaling.lessons import ChatStore, LessonStatus, LessonStore
from signaling.openapi import OPENAPI
from signaling.rest import MAX_BODY, setup_rest

SECRET = "s" * 40
ISSUER = "uni-idp"
AUDIENCE = "sabaq"
GREETING = "Сәлеметсіз бе!"


def token(
    role: str,
    sub: str = "u-1",
    *,
    course: str | None = None,
    lesson: str | None = None,
    **kwargs: Any,
) -> str:
    return mint(
        secret=kwargs.pop("secret", SECRET),
        issuer=ISSUER,
        audience=kwargs.pop("audience", AUDIENCE),
        sub=sub,
        name=sub.title(),
        role=role,
        course=course,
        lesson=lesson,
        **kwargs,
    )


ADMIN = token("admin", "root")
TEACHER = token("teacher", "t-1", course="MATH")
OTHER_TEACHER = token("teacher", "t-2", course="MATH")
PHYS_TEACHER = token("teacher", "t-3", course="PHYS")


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def lesson_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "algebra-1",
        "course": "MATH",
        "title": "Linear algebra",
        "kind": "lecture",
        "scheduled_start": "2030-09-01T09:00:00+05:00",
        "scheduled_end": "2030-09-01T10:30:00+05:00",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    lessons: LessonStore
    chat: ChatStore

    async def call(
        self, method: str, path: str, jwt: str | None = ADMIN, body: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = auth(jwt) if jwt is not None else {}
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            return response.status, await response.json()


async def start(db: Database) -> Api:
    lessons, chat = LessonStore(db), ChatStore(db)
    app = web.Application()
    setup_rest(
        app,
        lessons=lessons,
        chat=chat,
        verifier=Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET),
    )
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return Api(client, lessons, chat)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    db = await Database.open(":memory:")
    started = await start(db)
    try:
        yield started
    finally:
        await started.client.close()
        await db.close()


@pytest.fixture
async def seeded(api: Api) -> Api:
    """Lessons: algebra-1 (MATH, t-1), geometry (MATH, t-2), optics (PHYS, t-3), with chat."""
    await api.lessons.create({**lesson_body(), "teacher_ids": ["t-1"]})
    await api.lessons.create(
        {**lesson_body(id="geometry", scheduled_start="2030-09-02T09:00:00Z",
                       scheduled_end="2030-09-02T10:00:00Z"), "teacher_ids": ["t-2"]}
    )  # fmt: skip
    await api.lessons.create({**lesson_body(id="optics", course="PHYS"), "teacher_ids": ["t-3"]})
    for n in range(3):
        await api.chat.append("algebra-1", f"s-{n}", f"Student {n}", "student", f"message {n}")
    return api


# --- OpenAPI -----------------------------------------------------------------------------------


async def test_openapi_is_served_without_auth_and_validates(api: Api) -> None:
    status, document = await api.call("GET", "/api/openapi.json", jwt=None)
    assert status == 200 and document == json.loads(json.dumps(OPENAPI))
    validate(document)


async def test_openapi_lists_exactly_the_registered_routes(api: Api) -> None:
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api")
    }
    documented = {
        (method, path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert registered == documented


# --- 401 ---------------------------------------------------------------------------------------


def _none_token() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "admin", "exp": now + 60}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


REFUSED = [
    ("no header", None, "missing"),
    ("basic scheme", "Basic dXNlcjpwYXNz", "missing"),
    ("empty bearer", "Bearer ", "missing"),
    ("garbage", "Bearer not-a-token", "malformed"),
    ("expired", f"Bearer {token('admin', now=datetime.now(UTC) - timedelta(hours=2))}", "expired"),
    ("forged", f"Bearer {token('admin', secret='f' * 40)}", "bad_signature"),
    ("alg none", f"Bearer {_none_token()}", "algorithm_not_allowed"),
    ("wrong audience", f"Bearer {token('admin', audience='lms')}", "wrong_audience"),
]

ENDPOINTS = [
    ("GET", "/api/lessons"),
    ("POST", "/api/lessons"),
    ("GET", "/api/lessons/algebra-1"),
    ("PATCH", "/api/lessons/algebra-1"),
    ("POST", "/api/lessons/algebra-1/cancel"),
    ("GET", "/api/lessons/algebra-1/chat"),
]


@pytest.mark.parametrize(
    ("header", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_refused_tokens_get_401_with_the_reason(
    seeded: Api, header: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": header} if header is not None else {}
    for method, path in ENDPOINTS:
        async with seeded.client.request(method, path, headers=headers, json={}) as response:
            assert response.status == 401, (method, path)
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
            body = await response.json()
            assert body["error"] == reason and body["message"]
            if header is not None:
                assert header.split()[-1] not in json.dumps(body)
    if header is not None and len(header.split()) > 1:
        assert header.split()[-1] not in caplog.text
    # Nothing was changed by the refused requests.
    assert (await seeded.lessons.get("algebra-1")).status is LessonStatus.SCHEDULED
    assert len(await seeded.lessons.list()) == 3


# --- permissions -------------------------------------------------------------------------------


async def test_admin_may_do_everything(seeded: Api) -> None:
    status, created = await seeded.call(
        "POST",
        "/api/lessons",
        body=lesson_body(
            id=None,
            course="CHEM",
            teacher_ids=["t-7"],
            scheduled_start="2030-09-03T09:00:00Z",
            scheduled_end="2030-09-03T10:00:00Z",
        ),
    )
    assert status == 201 and created["status"] == "scheduled"
    assert created["join_path"] == f"/l/{created['id']}"
    for method, path, code in [
        ("GET", "/api/lessons", 200),
        ("GET", "/api/lessons/optics", 200),
        ("PATCH", "/api/lessons/optics", 200),
        ("GET", "/api/lessons/optics/chat", 200),
        ("POST", "/api/lessons/optics/cancel", 200),
    ]:
        assert (await seeded.call(method, path, body={} if method == "PATCH" else None))[0] == code
    status, listed = await seeded.call("GET", "/api/lessons")
    assert [lesson["id"] for lesson in listed["lessons"]] == [
        "algebra-1", "optics", "geometry", created["id"]
    ]  # fmt: skip


async def test_create_answers_201_with_location(api: Api) -> None:
    async with api.client.post("/api/lessons", headers=auth(TEACHER), json=lesson_body()) as r:
        assert r.status == 201
        assert r.headers["Location"] == "/api/lessons/algebra-1"
        body = await r.json()
    assert body["teacher_ids"] == ["t-1"]  # a teacher's lesson defaults to themselves
    assert body["recording_policy"] == "manual" and body["lobby"] is False
    status, fetched = await api.call("GET", "/api/lessons/algebra-1", jwt=TEACHER)
    assert status == 200 and fetched == body


@pytest.mark.parametrize(
    ("jwt", "body", "status"),
    [
        (TEACHER, lesson_body(teacher_ids=["t-1", "t-9"]), 201),
        (TEACHER, lesson_body(course="PHYS"), 403),  # not the token's course
        (TEACHER, lesson_body(teacher_ids=["t-9"]), 403),  # not among the teachers
        (token("teacher", "t-1", lesson="L1"), lesson_body(), 403),  # token names no course
        (token("assistant", "a-1", course="MATH"), lesson_body(teacher_ids=["t-1"]), 403),
        (token("student", "s-1", course="MATH"), lesson_body(teacher_ids=["t-1"]), 403),
        (token("observer", "o-1", course="MATH"), lesson_body(teacher_ids=["t-1"]), 403),
        (ADMIN, lesson_body(), 422),  # an admin must name the teachers
    ],
    ids=["own course", "other course", "not a teacher of it", "no course", "assistant",
         "student", "observer", "admin without teachers"],
)  # fmt: skip
async def test_who_may_create(api: Api, jwt: str, body: dict[str, Any], status: int) -> None:
    code, answer = await api.call("POST", "/api/lessons", jwt=jwt, body=body)
    assert code == status, answer
    if status == 403:
        assert answer["error"] == "forbidden" and answer["message"]
        assert await api.lessons.list() == []


async def test_a_teacher_lists_only_their_lessons(seeded: Api) -> None:
    for query in ("", "?teacher=t-2", "?course=PHYS"):
        status, listed = await seeded.call("GET", f"/api/lessons{query}", jwt=TEACHER)
        assert status == 200
        expected = [] if query == "?course=PHYS" else ["algebra-1"]
        assert [lesson["id"] for lesson in listed["lessons"]] == expected
    status, listed = await seeded.call("GET", "/api/lessons", jwt=OTHER_TEACHER)
    assert [lesson["id"] for lesson in listed["lessons"]] == ["geometry"]


@pytest.mark.parametrize(
    ("jwt", "lesson", "may_read", "may_change"),
    [
        (TEACHER, "algebra-1", True, True),  # their own lesson
        (TEACHER, "geometry", True, False),  # a colleague's, same course: read only
        (TEACHER, "optics", False, False),  # another course
        (PHYS_TEACHER, "optics", True, True),
        (token("teacher", "t-1", course="PHYS"), "algebra-1", True, True),  # teaches it anyway
        (token("student", "s-1", lesson="algebra-1"), "algebra-1", True, False),
        (token("student", "s-1", course="MATH"), "geometry", True, False),
        (token("student", "s-1", lesson="algebra-1"), "geometry", False, False),
        (token("student", "s-1", course="PHYS"), "algebra-1", False, False),
        (token("observer", "o-1", lesson="optics"), "optics", True, False),
        (token("observer", "o-1", lesson="optics"), "algebra-1", False, False),
        (token("assistant", "a-1", course="MATH"), "algebra-1", True, False),
        (ADMIN, "optics", True, True),
    ],
)
async def test_who_may_read_and_change_a_lesson(
    seeded: Api, jwt: str, lesson: str, may_read: bool, may_change: bool
) -> None:
    read = 200 if may_read else 403
    change = 200 if may_change else 403
    assert (await seeded.call("GET", f"/api/lessons/{lesson}", jwt=jwt))[0] == read
    status, chat = await seeded.call("GET", f"/api/lessons/{lesson}/chat", jwt=jwt)
    assert status == read
    if may_read:
        assert "messages" in chat
    patch = {"title": "Changed"}
    status, answer = await seeded.call("PATCH", f"/api/lessons/{lesson}", jwt=jwt, body=patch)
    assert status == change, answer
    status, answer = await seeded.call("POST", f"/api/lessons/{lesson}/cancel", jwt=jwt)
    assert status == change, answer
    expected = LessonStatus.CANCELLED if may_change else LessonStatus.SCHEDULED
    assert (await seeded.lessons.get(lesson)).status is expected
    if not may_change:
        assert answer == {"error": "forbidden", "message": answer["message"]}


@pytest.mark.parametrize("role", ["student", "observer", "assistant"])
async def test_only_admins_and_teachers_list(seeded: Api, role: str) -> None:
    status, answer = await seeded.call("GET", "/api/lessons", jwt=token(role, course="MATH"))
    assert status == 403 and answer["error"] == "forbidden"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"course": "PHYS"}, 403),  # out of the token's course
        ({"course": "MATH"}, 200),
        ({"teacher_ids": ["t-2"]}, 403),  # removing oneself
        ({"teacher_ids": ["t-2", "t-1"]}, 200),
    ],
)
async def test_a_teacher_keeps_within_limits_when_changing(
    seeded: Api, change: dict[str, Any], status: int
) -> None:
    code, answer = await seeded.call("PATCH", "/api/lessons/algebra-1", jwt=TEACHER, body=change)
    assert code == status, answer


# --- errors ------------------------------------------------------------------------------------


async def test_malformed_bodies_get_400(seeded: Api) -> None:
    for data in (b"{nope", b"", b"[1, 2]", b'"text"', b'{"lobby": NaN}', b"\xff\xfe{", b"[" * 5000):
        for method, path in (("POST", "/api/lessons"), ("PATCH", "/api/lessons/algebra-1")):
            async with seeded.client.request(method, path, headers=auth(ADMIN), data=data) as r:
                assert r.status == 400, (data[:10], method)
                body = await r.json()
                assert body["error"] == "bad_request" and body["message"]


async def test_bodies_over_64_kib_get_413(seeded: Api) -> None:
    big = json.dumps(lesson_body(title="x" * MAX_BODY)).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    for data in (big, chunked()):
        async with seeded.client.post("/api/lessons", headers=auth(ADMIN), data=data) as r:
            assert r.status == 413
            assert (await r.json())["error"] == "too_large"
    # Exactly 64 KiB is still read (and then judged on its content).
    exact = json.dumps({"title": "x" * (MAX_BODY - 13)}).encode()
    assert len(exact) == MAX_BODY
    status, answer = await seeded.call("PATCH", "/api/lessons/algebra-1", data=exact)
    assert status == 422 and answer["field"] == "title"


async def test_unknown_lessons_get_404(seeded: Api) -> None:
    for method, path in ENDPOINTS[2:]:
        status, answer = await seeded.call(method, path.replace("algebra-1", "nope"), body={})
        assert status == 404 and answer["error"] == "not_found", (method, path)


async def test_invalid_fields_get_422_naming_the_field(seeded: Api) -> None:
    lesson = "/api/lessons/algebra-1"
    cases = [
        ("POST", "/api/lessons", lesson_body(teacher_ids=["t"], kind="party"), "kind"),
        ("POST", "/api/lessons", lesson_body(teacher_ids=["t"], extra=1), "extra"),
        (
            "POST",
            "/api/lessons",
            lesson_body(teacher_ids=["t"], scheduled_end=None),
            "scheduled_end",
        ),
        ("PATCH", lesson, {"scheduled_start": "2030-09-01T09:00:00"}, "scheduled_start"),
        ("PATCH", lesson, {"scheduled_end": "2030-09-01T00:00:00Z"}, "scheduled_end"),
        ("PATCH", lesson, {"id": "new"}, "id"),
        ("PATCH", lesson, {"status": "ended"}, "status"),
    ]
    for method, path, body, field in cases:
        status, answer = await seeded.call(method, path, body=body)
        assert status == 422, (body, answer)
        assert answer["error"] == "invalid" and answer["field"] == field
        assert field in answer["message"]


async def test_conflicts_get_409(seeded: Api) -> None:
    body = lesson_body(teacher_ids=["t-1"])
    status, answer = await seeded.call("POST", "/api/lessons", body=body)
    assert status == 409 and answer["error"] == "conflict"
    assert (await seeded.call("POST", "/api/lessons/algebra-1/cancel"))[0] == 200
    status, answer = await seeded.call("PATCH", "/api/lessons/algebra-1", body={"title": "x"})
    assert status == 409 and "cancelled" in answer["message"]


async def test_cancel_is_idempotent(seeded: Api) -> None:
    status, first = await seeded.call("POST", "/api/lessons/algebra-1/cancel", jwt=TEACHER)
    assert status == 200 and first["status"] == "cancelled"
    status, second = await seeded.call("POST", "/api/lessons/algebra-1/cancel", jwt=TEACHER)
    assert status == 200 and second == first


async def test_an_ended_lesson_cannot_be_cancelled(seeded: Api) -> None:
    await seeded.lessons.set_status("algebra-1", LessonStatus.LIVE)
    await seeded.lessons.set_status("algebra-1", LessonStatus.ENDED)
    status, answer = await seeded.call("POST", "/api/lessons/algebra-1/cancel", jwt=TEACHER)
    assert status == 409 and answer["error"] == "conflict" and "ended" in answer["message"]
    assert (await seeded.lessons.get("algebra-1")).status is LessonStatus.ENDED


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a full-width digit one
        ("offset=-5", "offset"),
        ("status=paused", "status"),
        ("from=2030-09-01T00:00:00", "from"),
        ("to=yesterday", "to"),
    ],
)
async def test_bad_list_queries_get_400_naming_the_parameter(
    seeded: Api, query: str, field: str
) -> None:
    status, answer = await seeded.call("GET", f"/api/lessons?{query}")
    assert status == 400 and answer["error"] == "bad_request" and answer["field"] == field


async def test_bad_chat_queries_get_400(seeded: Api) -> None:
    for query, field in (("after=-1", "after"), ("limit=501", "limit"), ("after=x", "after")):
        status, answer = await seeded.call("GET", f"/api/lessons/algebra-1/chat?{query}")
        assert status == 400 and answer["field"] == field


# --- listing and chat --------------------------------------------------------------------------


async def test_list_filters_and_pages(seeded: Api) -> None:
    await seeded.lessons.set_status("geometry", LessonStatus.LIVE)

    async def ids(query: str) -> list[str]:
        status, listed = await seeded.call("GET", f"/api/lessons?{query}")
        assert status == 200
        return [lesson["id"] for lesson in listed["lessons"]]

    assert await ids("course=MATH") == ["algebra-1", "geometry"]
    assert await ids("teacher=t-3") == ["optics"]
    assert await ids("status=live") == ["geometry"]
    assert await ids("from=2030-09-02T00:00:00%2B00:00") == ["geometry"]
    assert await ids("to=2030-09-02T00:00:00Z") == ["algebra-1", "optics"]
    assert await ids("limit=1&offset=1") == ["optics"]
    _, listed = await seeded.call("GET", "/api/lessons?limit=2&offset=1")
    assert (listed["limit"], listed["offset"], len(listed["lessons"])) == (2, 1, 2)
    _, listed = await seeded.call("GET", "/api/lessons")
    assert (listed["limit"], listed["offset"]) == (100, 0)


async def test_chat_pages_oldest_first(seeded: Api) -> None:
    status, page = await seeded.call("GET", "/api/lessons/algebra-1/chat", jwt=TEACHER)
    messages = page["messages"]
    assert status == 200 and [m["text"] for m in messages] == [f"message {n}" for n in range(3)]
    assert set(messages[0]) == {"id", "at", "from", "name", "role", "text"}
    assert messages[0]["from"] == "s-0" and messages[0]["at"].endswith("Z")
    after = messages[0]["id"]
    status, page = await seeded.call("GET", f"/api/lessons/algebra-1/chat?after={after}&limit=1")
    assert [m["text"] for m in page["messages"]] == ["message 1"]
    status, page = await seeded.call("GET", "/api/lessons/optics/chat")
    assert page == {"messages": []}


# --- persistence -------------------------------------------------------------------------------


async def test_lessons_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sabaq.db"
    db = await Database.open(path)
    api = await start(db)
    try:
        status, _ = await api.call("POST", "/api/lessons", jwt=TEACHER, body=lesson_body())
        assert status == 201
        await api.chat.append("algebra-1", "s-1", "Amina", "student", GREETING)
        status, patched = await api.call("PATCH", "/api/lessons/algebra-1", body={"lobby": True})
        assert status == 200
    finally:
        await api.client.close()
        await db.close()
    db = await Database.open(path)
    api = await start(db)
    try:
        status, fetched = await api.call("GET", "/api/lessons/algebra-1", jwt=TEACHER)
        assert status == 200 and fetched == patched and fetched["lobby"] is True
        status, page = await api.call("GET", "/api/lessons/algebra-1/chat", jwt=TEACHER)
        assert [m["text"] for m in page["messages"]] == [GREETING]
    finally:
        await api.client.close()
        await db.close()
