"""The recordings API over a real loopback server, with real media files and a real ledger.

Who may watch (the access table), signed media URLs with range requests, the
``/viewed`` reports becoming footprint events, retention at startup, and the
OpenAPI document against the router.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from loadtests.media import make_opus_clip, make_video_clip
from signaling.db import Database
from signaling.footprint.api import setup_footprint_api
from signaling.footprint.attendance import Thresholds
from signaling.footprint.ledger import Ledger
from signaling.footprint.roster import RosterEntry, RosterStore
from signaling.identity import Verifier, mint
from signaling.lessons import ChatStore, LessonStore
from signaling.openapi import OPENAPI_WITH_FOOTPRINT, RECORDINGS_PATHS
from signaling.recordings import Catalogue, MediaSigner, setup_recordings
from signaling.rest import setup_rest

SECRET = "r" * 40
ISSUER, AUDIENCE = "uni-idp", "sabaq"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def token(role: str, sub: str, **claims: Any) -> str:
    return mint(
        secret=SECRET, issuer=ISSUER, audience=AUDIENCE, sub=sub, name=sub, role=role, **claims
    )


ADMIN = token("admin", "root")
TEACHER = token("teacher", "t-1", course="MATH")  # teaches L1
OTHER_TEACHER = token("teacher", "t-2", course="MATH")  # MATH, but not L1's teacher
STUDENT = token("student", "s-1", course="MATH")  # on MATH's roster
STUDENT_LESSON_TOKEN = token("student", "s-1", lesson="L2")  # enrolled; token of another lesson
NOT_ENROLLED = token("student", "s-5", course="MATH")  # token says MATH; roster does not
OTHER_COURSE = token("student", "s-9", course="PHYS")  # on PHYS's roster only
OBSERVER = token("observer", "s-1", course="MATH")
ASSISTANT = token("assistant", "a-1", course="MATH")
EXPIRED = token("student", "s-1", course="MATH", ttl=60, now=datetime.now(UTC) - timedelta(hours=2))
WATCHERS = {"admin": ADMIN, "teacher": TEACHER, "student": STUDENT, "s1-l2": STUDENT_LESSON_TOKEN}
REFUSED = {
    "other_teacher": OTHER_TEACHER,
    "not_enrolled": NOT_ENROLLED,
    "other_course": OTHER_COURSE,
    "observer": OBSERVER,
    "assistant": ASSISTANT,
}


@dataclass
class Server:
    client: TestClient[web.Request, web.Application]
    catalogue: Catalogue
    ledger: Ledger
    secret_file: Path
    recording_id: str
    parts: dict[str, str]  # source -> part id
    files: dict[str, Path]  # source -> file

    async def call(
        self, method: str, path: str, jwt: str | None = ADMIN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {jwt}"} if jwt is not None else {}
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def detail(self, jwt: str = ADMIN) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/recordings/{self.recording_id}", jwt)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def viewed_events(self) -> list[Any]:
        await self.ledger.flush()
        return await self.ledger.query(types=["recording.viewed"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "camera": make_video_clip(folder / "camera.webm", seconds=2, width=320, height=180),
        "screen": make_video_clip(folder / "screen.webm", seconds=2, width=640, height=360),
        "microphone": make_opus_clip(folder / "microphone.ogg", seconds=2),
    }


async def seed(db: Database) -> LessonStore:
    lessons = LessonStore(db)
    for lesson_id, course, teacher in (("L1", "MATH", "t-1"), ("P1", "PHYS", "t-3")):
        await lessons.create(
            {
                "id": lesson_id,
                "course": course,
                "title": f"Lesson {lesson_id}",
                "kind": "lecture",
                "teacher_ids": [teacher],
                "scheduled_start": T0,
                "scheduled_end": T0 + timedelta(minutes=90),
            }
        )
    roster = RosterStore(db)
    await roster.replace("MATH", [RosterEntry("s-1", "Айгерім"), RosterEntry("s-2", "Бекзат")])
    await roster.replace("PHYS", [RosterEntry("s-9", "Данияр")])
    return lessons


async def build(
    tmp_path: Path, db: Database, ledger: Ledger, *, retention_days: int | None = None
) -> web.Application:
    lessons = LessonStore(db)
    roster = RosterStore(db)
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET)
    app = web.Application()
    setup_rest(
        app, lessons=lessons, chat=ChatStore(db), verifier=verifier, openapi=OPENAPI_WITH_FOOTPRINT
    )
    setup_footprint_api(
        app,
        ledger=ledger,
        lessons=lessons,
        roster=roster,
        verifier=verifier,
        thresholds=Thresholds(),
    )
    setup_recordings(
        app,
        catalogue=Catalogue(db),
        lessons=lessons,
        roster=roster,
        ledger=ledger,
        verifier=verifier,
        media_root=tmp_path / "recordings",
        url_secret_file=tmp_path / "keys" / "media-url-secret",
        retention_days=retention_days,
        chat=ChatStore(db),
    )
    return app


@pytest.fixture
async def server(tmp_path: Path, clips: dict[str, Path]) -> AsyncIterator[Server]:
    db = await Database.open(tmp_path / "sabaq.db")
    ledger = await Ledger.open(tmp_path / "footprint.db", signing_key=tmp_path / "key.pem")
    await seed(db)
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", T0)
    folder = tmp_path / "recordings" / recording.id
    folder.mkdir(parents=True)
    parts: dict[str, str] = {}
    files: dict[str, Path] = {}
    for source, offset, status in (
        ("camera", 0.0, "complete"),
        ("microphone", 0.0, "recovered"),
        ("screen", 0.5, "recording"),  # still being written: not served
    ):
        file = folder / clips[source].name
        shutil.copy(clips[source], file)
        part = await catalogue.add_part(
            recording.id,
            participant_id="t-1",
            participant_name="Асқар Нұрланұлы",
            source=source,
            kind="audio" if source == "microphone" else "video",
            codec="opus" if source == "microphone" else "vp8",
            path=f"{recording.id}/{file.name}",
            start_offset_s=offset,
        )
        await catalogue.update_part(
            part.id, duration_s=2.0, size_bytes=file.stat().st_size, status=status
        )
        parts[source], files[source] = part.id, file
    await catalogue.set_status(recording.id, "finalizing")
    app = await build(tmp_path, db, ledger)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Server(
            client,
            catalogue,
            ledger,
            tmp_path / "keys" / "media-url-secret",
            recording.id,
            parts,
            files,
        )
    finally:
        await client.close()
        await ledger.close()
        await db.close()


# --- who may watch -----------------------------------------------------------------------------


async def test_the_access_table(server: Server) -> None:
    rid = server.recording_id
    paths = [
        ("GET", "/api/lessons/L1/recordings"),
        ("GET", f"/api/recordings/{rid}"),
        ("GET", f"/api/recordings/{rid}/chat"),
    ]
    for method, path in paths:
        for name, jwt in WATCHERS.items():
            status, body = await server.call(method, path, jwt)
            assert (name, path, status) == (name, path, 200), body
        for name, jwt in REFUSED.items():
            status, body = await server.call(method, path, jwt)
            assert (name, path, status, body["error"]) == (name, path, 403, "forbidden")
        status, body = await server.call(method, path, None)
        assert (status, body["error"]) == (401, "missing")
        status, body = await server.call(method, path, EXPIRED)
        assert (status, body["error"]) == (401, "expired")
        status, body = await server.call(method, path, "not.a.jwt")
        assert status == 401
    for name, jwt in REFUSED.items():
        status, _ = await server.call("POST", f"/api/recordings/{rid}/viewed", jwt, json={})
        assert (name, status) == (name, 403)
    status, _ = await server.call("POST", f"/api/recordings/{rid}/viewed", None, json={})
    assert status == 401
    assert await server.viewed_events() == []


async def test_the_chat_beside_a_recording_follows_the_recording_s_access(
    server: Server,
) -> None:
    chat = ChatStore(server.catalogue._db)
    await chat.append("L1", "t-1", "Асқар Нұрланұлы", "teacher", "Бастаймыз")
    # an enrolled student whose token is for another lesson of the course: the
    # lesson's own chat route would refuse them, the recording's does not
    rid = server.recording_id
    status, body = await server.call("GET", f"/api/recordings/{rid}/chat", STUDENT_LESSON_TOKEN)
    assert status == 200
    assert [m["text"] for m in body["messages"]] == ["Бастаймыз"]
    status, body = await server.call("GET", f"/api/recordings/{rid}/chat?limit=0", STUDENT)
    assert (status, body["field"]) == (400, "limit")


async def test_unknown_ids_tell_nothing(server: Server) -> None:
    for jwt in (ADMIN, STUDENT, OTHER_COURSE):
        status, body = await server.call("GET", "/api/recordings/Zm9vYmFyYmF6cXV4cXV1eA", jwt)
        assert (status, body) == (404, {"error": "not_found", "message": "no such recording"})
    status, _ = await server.call("POST", "/api/recordings/guess/viewed", STUDENT, json={})
    assert status == 404
    status, body = await server.call("GET", "/api/lessons/NOPE/recordings", ADMIN)
    assert status == 404


async def test_the_list_and_the_detail(server: Server) -> None:
    status, listed = await server.call("GET", "/api/lessons/L1/recordings", STUDENT)
    assert status == 200 and [r["id"] for r in listed["recordings"]] == [server.recording_id]
    assert "url" not in listed["recordings"][0]["parts"][0]
    status, other = await server.call("GET", "/api/lessons/P1/recordings", OTHER_COURSE)
    assert (status, other) == (200, {"recordings": []})

    detail = await server.detail(STUDENT)
    assert detail["status"] == "finalizing" and detail["duration_s"] == 2.5
    assert detail["lesson"]["title"] == "Lesson L1" and "teacher_ids" not in detail["lesson"]
    by_source = {p["source"]: p for p in detail["parts"]}
    assert by_source["camera"]["url"].startswith(f"/media/recordings/{server.recording_id}/")
    assert by_source["microphone"]["url"] is not None
    assert by_source["screen"]["url"] is None  # still recording
    assert all(p["teacher"] for p in detail["parts"])
    assert detail["composite"] == {
        "status": "pending",
        "progress": 0.0,
        "reason": None,
        "url": None,
    }
    expires = datetime.fromisoformat(detail["urls_expire_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    # The answer matches its schema in the OpenAPI document.
    schema = {"$ref": "#/components/schemas/RecordingDetail", **OPENAPI_WITH_FOOTPRINT}
    jsonschema.validate(detail, schema, cls=jsonschema.Draft202012Validator)
    list_schema = {"$ref": "#/components/schemas/RecordingList", **OPENAPI_WITH_FOOTPRINT}
    jsonschema.validate(listed, list_schema, cls=jsonschema.Draft202012Validator)


# --- media -------------------------------------------------------------------------------------


async def fetch(server: Server, url: str, **headers: str) -> tuple[int, bytes, Any]:
    async with server.client.get(url, headers=headers) as response:
        return response.status, await response.read(), response.headers


async def test_media_is_served_with_range_requests(server: Server) -> None:
    detail = await server.detail(STUDENT)
    urls = {p["source"]: p["url"] for p in detail["parts"]}
    camera = server.files["camera"].read_bytes()
    status, body, headers = await fetch(server, urls["camera"])
    assert (status, body) == (200, camera)
    assert headers["Content-Type"] == "video/webm"
    assert headers["Cache-Control"] == "private, max-age=600"
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await fetch(server, urls["camera"], Range="bytes=100-1123")
    assert (status, body) == (206, camera[100:1124])
    assert headers["Content-Range"] == f"bytes 100-1123/{len(camera)}"
    status, body, _ = await fetch(server, urls["camera"], Range=f"bytes=-{500}")
    assert (status, body) == (206, camera[-500:])
    status, body, headers = await fetch(server, urls["microphone"], Range="bytes=0-")
    assert status == 206 and body == server.files["microphone"].read_bytes()
    assert headers["Content-Type"] == "audio/ogg"
    # No Authorization header was sent above: the signed URL is the credential.


async def test_bad_media_links_are_refused(server: Server) -> None:
    rid, camera = server.recording_id, server.parts["camera"]
    url = (await server.detail())["parts"][0]["url"]
    path, query = url.split("?")
    fields = dict(item.split("=") for item in query.split("&"))
    flipped = ("a" if fields["sig"][0] != "a" else "b") + fields["sig"][1:]
    for bad in (
        path,
        f"{path}?exp={fields['exp']}",
        f"{path}?exp={fields['exp']}&sig={flipped}",
        f"{path}?exp={int(fields['exp']) + 1}&sig={fields['sig']}",
        f"/media/recordings/{rid}/{server.parts['microphone']}?{query}",  # another file
    ):
        status, body, _ = await fetch(server, bad)
        assert status == 403, bad
        assert json.loads(body)["error"] == "forbidden"
    # Expired: signed with the server's secret an hour ago.
    old = MediaSigner.from_file(server.secret_file, clock=lambda: time.time() - 3600)
    status, _, _ = await fetch(server, old.sign(rid, camera)[0])
    assert status == 403
    # Correctly signed, but nothing there: 404.
    fresh = MediaSigner.from_file(server.secret_file)
    for file in ("nope", "composite", server.parts["screen"]):
        status, _, _ = await fetch(server, fresh.sign(rid, file)[0])
        assert status == 404, file
    status, _, _ = await fetch(server, fresh.sign("Zm9vYmFy", camera)[0])
    assert status == 404
    # A file deleted behind the catalogue's back: 404, not a 500.
    server.files["camera"].unlink()
    status, _, _ = await fetch(server, fresh.sign(rid, camera)[0])
    assert status == 404


async def test_the_composite_when_ready(server: Server) -> None:
    rid = server.recording_id
    await server.catalogue.set_composite(rid, status="running", progress=0.25)
    detail = await server.detail(TEACHER)
    assert detail["composite"] == {
        "status": "running",
        "progress": 0.25,
        "reason": None,
        "url": None,
    }
    mp4 = server.files["camera"].with_name("lesson.mp4")
    shutil.copy(server.files["camera"], mp4)
    await server.catalogue.set_composite(rid, status="ready", path=f"{rid}/lesson.mp4")
    detail = await server.detail(TEACHER)
    assert detail["composite"]["progress"] == 1.0
    status, body, headers = await fetch(server, detail["composite"]["url"], Range="bytes=0-99")
    assert (status, body) == (206, mp4.read_bytes()[:100])
    assert headers["Content-Type"] == "video/mp4"


# --- viewing reports ---------------------------------------------------------------------------


async def test_viewed_writes_a_footprint_event(server: Server) -> None:
    rid = server.recording_id
    intervals = [[0, 1.25], [1.2, 2.0001], [2.4, 2.5]]
    status, body = await server.call(
        "POST", f"/api/recordings/{rid}/viewed", STUDENT, json={"intervals": intervals}
    )
    assert status == 204, body
    (event,) = await server.viewed_events()
    assert (event.lesson, event.course, event.actor) == ("L1", "MATH", "s-1")
    assert event.data == {"recording": rid, "intervals": [[0.0, 2.0], [2.4, 2.5]]}
    # An empty report writes nothing; a teacher's viewing counts too.
    status, _ = await server.call(
        "POST", f"/api/recordings/{rid}/viewed", TEACHER, json={"intervals": []}
    )
    assert status == 204 and len(await server.viewed_events()) == 1
    status, _ = await server.call(
        "POST", f"/api/recordings/{rid}/viewed", TEACHER, json={"intervals": [[0.5, 1]]}
    )
    assert status == 204
    assert [e.actor for e in await server.viewed_events()] == ["s-1", "t-1"]


async def test_viewed_reports_are_rate_limited(server: Server) -> None:
    path = f"/api/recordings/{server.recording_id}/viewed"
    statuses = [
        (await server.call("POST", path, STUDENT, json={"intervals": [[0, 1]]}))[0]
        for _ in range(11)
    ]
    assert statuses == [204] * 10 + [429]
    assert len(await server.viewed_events()) == 10
    # Another viewer has a bucket of their own.
    status, _ = await server.call("POST", path, TEACHER, json={"intervals": [[0, 1]]})
    assert status == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "intervals"),
        ({"intervals": [[0, 1]], "user": "s-2"}, "user"),
        ({"intervals": [[1, 0.5]]}, "intervals"),
        ({"intervals": [[0, 7.6]]}, "intervals"),  # the recording is 2.5 s long; 5 s of slack
        ({"intervals": [[0, 1]] * 501}, "intervals"),
        ({"intervals": [[0, "1"]]}, "intervals"),
        ({"intervals": [[0, 1, 2]]}, "intervals"),
    ],
)
async def test_viewed_validation(server: Server, body: dict[str, Any], field: str) -> None:
    path = f"/api/recordings/{server.recording_id}/viewed"
    status, answer = await server.call("POST", path, STUDENT, json=body)
    assert (status, answer["error"], answer["field"]) == (422, "invalid", field)
    assert await server.viewed_events() == []


async def test_viewed_bodies_that_are_not_json(server: Server) -> None:
    path = f"/api/recordings/{server.recording_id}/viewed"
    status, answer = await server.call("POST", path, STUDENT, data=b"[1, 2")
    assert (status, answer["error"]) == (400, "bad_request")
    status, answer = await server.call("POST", path, STUDENT, json=[[0, 1]])
    assert status == 400
    status, answer = await server.call("POST", path, STUDENT, data=b" " * (65 * 1024))
    assert status == 413


# --- the OpenAPI document and retention ------------------------------------------------------


async def test_the_openapi_document_lists_exactly_the_registered_routes(server: Server) -> None:
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in server.client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api")
    }
    documented = {
        (method, path)
        for path, item in OPENAPI_WITH_FOOTPRINT["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert registered == documented
    assert {path for _, path in registered} >= set(RECORDINGS_PATHS)
    validate(OPENAPI_WITH_FOOTPRINT)
    status, served = await server.call("GET", "/api/openapi.json", None)
    assert status == 200 and set(RECORDINGS_PATHS) <= set(served["paths"])


async def test_retention_runs_when_the_server_starts(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    db = await Database.open(tmp_path / "sabaq.db")
    ledger = await Ledger.open(tmp_path / "footprint.db", signing_key=tmp_path / "key.pem")
    await seed(db)
    long_ago = [T0 - timedelta(days=100)]
    catalogue = Catalogue(db, clock=lambda: long_ago[0])
    old = await catalogue.create("L1", "MATH", long_ago[0])
    file = tmp_path / "recordings" / old.id / "camera.webm"
    file.parent.mkdir(parents=True)
    shutil.copy(clips["camera"], file)
    await catalogue.add_part(
        old.id,
        participant_id="t-1",
        participant_name="A",
        source="camera",
        kind="video",
        codec="vp8",
        path=f"{old.id}/camera.webm",
        start_offset_s=0,
    )
    await catalogue.set_status(old.id, "failed", "the recorder crashed")
    recent = await Catalogue(db).create("L1", "MATH", T0)
    app = await build(tmp_path, db, ledger, retention_days=30)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        for _ in range(100):
            if not file.exists():
                break
            await asyncio.sleep(0.01)
        assert not file.exists()
        assert [r.id for r in await catalogue.for_lesson("L1")] == [recent.id]
    finally:
        await client.close()
        await ledger.close()
        await db.close()
