"""The administrators' pages (web/admin.html) in real Chromium.

Two set-ups:

- a real lesson: the classroom server (`classroom` fixture: `signaling.app`,
  which serves `/admin` and the footprint REST API) runs a lesson with aiortc
  clients (a teacher and two students join, one leaves, the teacher ends it),
  and the page reads its footprint through the API with an admin's token;
- a 93-minute lesson with every status (the reports' test data, over a fake
  ledger, served by the same handlers: `setup_footprint_api` and the page
  behind the server's Content-Security-Policy), whose screenshots show what a
  registrar sees on an ordinary day, on screen and on paper, and a failed
  verification.

The page must show what the API says: one row and one timeline bar per
person, the same statuses and counts, a CSV that downloads with the token,
sorting by keyboard alone, and the verification's answer. Screenshots go to
`artifacts/`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from sfu import Source
from signaling.app import CONTENT_SECURITY_POLICY, LEDGER_KEY
from signaling.db import Database
from signaling.footprint.api import setup_footprint_api
from signaling.footprint.attendance import Thresholds
from signaling.footprint.roster import RosterStore
from signaling.identity import Verifier, mint
from tests.chromium import ARTIFACTS, NEEDS_CHROMIUM, by_id, until
from tests.conftest import ClassroomServer
from tests.peers import wait_until
from tests.test_footprint_api import AUDIENCE, ISSUER, NOW, SECRET, FakeLedger, seed
from tests.test_footprint_reports import ROSTER, course_events

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    NEEDS_CHROMIUM,
]

WEB = Path(__file__).resolve().parent.parent / "web"
STRINGS = {
    lang: json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    for lang in ("kk", "ru", "en")
}


@dataclass
class Site:
    """Where the admin page and the footprint API answer."""

    url: str


def serves_admin(app: web.Application) -> bool:
    paths = {resource.canonical for resource in app.router.resources()}
    return "/admin" in paths and "/api/lessons/{id}/report" in paths


@web.middleware
async def _policy(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def admin_app(
    ledger: Any,
    lessons: Any,
    roster: RosterStore,
    verifier: Verifier,
    verify: Callable[[], Awaitable[Any]],
    **options: Any,
) -> web.Application:
    """/admin, /static/ and the footprint API, as the server serves them."""

    async def page(_: web.Request) -> web.StreamResponse:
        response = web.FileResponse(WEB / "admin.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    app = web.Application(middlewares=[_policy])
    app.router.add_get("/admin", page)
    app.router.add_static("/static/", WEB, follow_symlinks=False)
    setup_footprint_api(
        app,
        ledger=ledger,
        lessons=lessons,
        roster=roster,
        verifier=verifier,
        thresholds=Thresholds(),
        verify=verify,
        **options,
    )
    return app


@pytest.fixture
def site(classroom: ClassroomServer) -> Site:
    # The server itself serves the page (GET /admin) and the footprint API.
    assert serves_admin(classroom.app), "signaling.app serves neither /admin nor the reports"
    return Site(classroom.url)


async def call(site: Site, token: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, site.url + path, headers=headers, **kwargs) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def run_a_lesson(classroom: ClassroomServer) -> None:
    """A teacher and two students; s2 leaves early, s1 raises a hand, the teacher ends it."""
    await classroom.lesson(title="Алгоритмдер және деректер құрылымдары")

    def token(sub: str, role: str, name: str) -> str:
        return classroom.token(sub, role, name=name)

    teacher = await classroom.client(
        "t1", "teacher", token=token("t1", "teacher", "Асқар Нұрланұлы")
    )
    await teacher.wait_message("welcome")
    assert (await teacher.publish(Source.CAMERA, Source.MICROPHONE))["type"] == "answer"
    started = time.monotonic()
    s1 = await classroom.client("s1", token=token("s1", "student", "Айгерім Сейітқызы"))
    s2 = await classroom.client("s2", token=token("s2", "student", "Дәурен Әбенов"))

    def watching(student: Any) -> Callable[[], bool]:
        return lambda: len(student.packets_from("t1", Source.CAMERA)) > 5

    for student in (s1, s2):
        await wait_until(watching(student), 15)
    assert (await s1.request({"type": "hand", "raised": True}))["type"] == "ok"
    assert (await s2.request({"type": "chat", "text": "Сұрағым бар"}))["type"] == "ok"
    await asyncio.sleep(max(0.0, 4 - (time.monotonic() - started)))
    await s2.send({"type": "leave"})
    await s2.wait_closed()
    # Long enough that the picture has a shape: s2 leaves at about a third.
    await asyncio.sleep(max(0.0, 11 - (time.monotonic() - started)))
    await teacher.send({"type": "end"})
    await teacher.wait_closed()
    await s1.wait_closed()
    await classroom.app[LEDGER_KEY].flush()


async def open_admin(
    browser: Browser, url: str, token: str, errors: list[str], size: tuple[int, int] = (1360, 900)
) -> Page:
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]},
        accept_downloads=True,
        timezone_id="Asia/Almaty",
        locale="ru-RU",
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    await page.goto(f"{url}#token={token}")
    return page


async def rows_of(page: Page, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await page.evaluate(
        """(table) => [...document.querySelectorAll(`[data-testid="${table}"] tbody tr`)]
            .map(tr => ({id: tr.dataset.testid, status: tr.dataset.status || null,
                         text: tr.innerText}))""",
        table,
    )
    return rows


async def tab_to(page: Page, test_id: str, limit: int = 120) -> None:
    """Press Tab until the element with this data-testid has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(
            "(id) => document.activeElement && document.activeElement.dataset.testid === id",
            test_id,
        ):
            return
    raise AssertionError(f"{test_id} cannot be reached with the Tab key")


async def test_reports_of_a_real_lesson(
    browser: Browser, classroom: ClassroomServer, site: Site
) -> None:
    await run_a_lesson(classroom)
    admin = classroom.token("a1", "admin", lesson=None, name="Гүлнар Тіркеуші")
    await call(
        site,
        admin,
        "PUT",
        "/api/courses/CS101/roster",
        json=[
            {"user_id": "s1", "name": "Айгерім Сейітқызы"},
            {"user_id": "s2", "name": "Дәурен Әбенов"},
            {"user_id": "s3", "name": "Мадина Омарова"},
        ],
    )
    report = await call(site, admin, "GET", "/api/lessons/L1/report")
    course = await call(site, admin, "GET", "/api/courses/CS101/report")
    people = {person["user_id"]: person for person in report["people"]}
    assert set(people) == {"t1", "s1", "s2", "s3"}, people
    assert people["s3"]["status"] == "absent" and people["s3"]["minutes_present"] == 0
    ru = STRINGS["ru"]

    errors: list[str] = []
    page = await open_admin(browser, f"{site.url}/admin?lesson=L1&lang=ru", admin, errors)
    await until(page, "location.hash === ''", "the token is removed from the address bar")
    await until(page, f"document.querySelector('{by_id('admin-lesson-table')}')", "the table")

    # One row per person, with the API's status in words (and a colour)
    rows = await rows_of(page, "admin-lesson-table")
    assert {row["id"] for row in rows} == {f"admin-person-{uid}" for uid in people}
    for row in rows:
        person = people[row["id"].removeprefix("admin-person-")]
        assert row["status"] == person["status"], row
        assert ru[f"admin.status.{person['status']}"] in row["text"], row
        assert person["name"] in row["text"]
    for status, count in report["counts"].items():
        shown = await page.inner_text(by_id(f"admin-count-{status}"))
        assert shown.split()[0] == str(count), (status, shown)
    title = await page.inner_text("#report-heading")
    assert title == "Алгоритмдер және деректер құрылымдары"
    assert await page.title() == f"{title} · Sabaq"

    # The timeline: one bar per person, each described in words
    bars = await page.evaluate(
        """[...document.querySelectorAll('[data-testid="admin-timeline"] g.tl-row')]
            .map(g => ({id: g.dataset.person, role: g.getAttribute('role'),
                        label: g.getAttribute('aria-label'),
                        title: g.querySelector('title').textContent,
                        presence: g.querySelectorAll('.tl-presence').length}))"""
    )
    assert sorted(bar["id"] for bar in bars) == sorted(people)
    for bar in bars:
        assert bar["role"] == "img" and bar["label"] == bar["title"]
        assert people[bar["id"]]["name"] in bar["label"]
        assert bar["presence"] == len(people[bar["id"]]["timeline"]["presence"])
    assert await page.locator(f"{by_id('admin-timeline')} .tl-tick").count() >= 3

    # CSV: fetched with the token, saved from a Blob URL
    async with page.expect_download() as download_info:
        await page.click(by_id("admin-csv"))
    download = await download_info.value
    assert download.suggested_filename == "lesson-L1-attendance.csv"
    assert download.url.startswith("blob:")
    saved = await download.path()
    csv_text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
    assert csv_text.startswith("lesson_id,user_id,name,role")
    assert "Айгерім Сейітқызы" in csv_text

    # Sorting with the keyboard alone: Tab to the header, Enter, Enter
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await tab_to(page, "admin-lesson-table-sort-minutes_present")
    await page.keyboard.press("Enter")
    header = page.locator('th[data-key="minutes_present"]')
    assert await header.get_attribute("aria-sort") == "ascending"
    await page.keyboard.press("Enter")
    assert await header.get_attribute("aria-sort") == "descending"
    order = [
        row["id"].removeprefix("admin-person-") for row in await rows_of(page, "admin-lesson-table")
    ]
    minutes = [people[uid]["minutes_present"] for uid in order]
    assert minutes == sorted(minutes, reverse=True), order
    assert await page.locator("th[aria-sort]").count() == 1
    await until(
        page,
        "document.getElementById('announcer').textContent.includes('по убыванию')",
        "the new order is announced",
    )

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "admin-lesson.png"), full_page=True)

    # The course, through the link in the lesson's header (no reload: the token stays)
    await page.click(by_id("admin-course-link"))
    await until(page, f"document.querySelector('{by_id('admin-course-table')}')", "the course")
    assert "course=CS101" in page.url and "token" not in page.url
    lessons = await rows_of(page, "admin-course-table")
    assert [row["id"] for row in lessons] == ["admin-lesson-L1"]
    students = await rows_of(page, "admin-students-table")
    assert [row["id"] for row in students] == [
        f"admin-student-{s['user_id']}" for s in course["students"]
    ]
    for row, student in zip(students, course["students"], strict=True):
        assert student["name"] in row["text"]
    assert course["students"][2]["rate"] == 0
    assert "0 %" in students[2]["text"].replace("\xa0", " ")
    facts = await page.inner_text(".facts")
    assert "1 из 1" in facts, facts
    await page.screenshot(path=str(ARTIFACTS / "admin-course.png"), full_page=True)

    # Back to the lesson with the browser's back button, then the verification
    await page.go_back()
    await until(page, f"document.querySelector('{by_id('admin-lesson-table')}')", "back")
    await page.click(by_id("admin-verify-link"))
    await page.click(by_id("admin-verify-button"))
    result = page.locator(by_id("admin-verify-result"))
    await until(
        page,
        f"document.querySelector('{by_id('admin-verify-result')}').dataset.state === 'ok'",
        "the verification's answer",
    )
    text = await result.inner_text()
    assert ru["admin.verify.ok_title"] in text
    assert ru["admin.verify.signatures_checked"] in text
    assert await result.get_attribute("role") == "status"

    # Another language: the same page in Kazakh, without a reload
    await page.select_option(by_id("language"), "kk")
    await until(
        page,
        f"document.querySelector('{by_id('admin-verify-result')}').innerText"
        f".includes({json.dumps(STRINGS['kk']['admin.verify.ok_title'])})",
        "the result in Kazakh",
    )
    assert not errors, errors


async def test_who_may_open_what(browser: Browser, classroom: ClassroomServer, site: Site) -> None:
    await classroom.lesson()
    errors: list[str] = []
    # no token at all
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{site.url}/admin?lesson=L1&lang=en")
    await until(page, f"!document.querySelector('{by_id('admin-no-token')}').hidden", "no key")
    await context.close()
    # a student's token: the report is refused, and the page says so
    student = classroom.token("s1", "student")
    page = await open_admin(browser, f"{site.url}/admin?lesson=L1&lang=en", student, errors)
    error = await until(
        page,
        f"document.querySelector('{by_id('admin-error')}')?.dataset.status",
        "the refusal",
    )
    assert error == "403"
    assert STRINGS["en"]["admin.error.forbidden_title"] in await page.inner_text("#report-heading")
    # an unknown lesson, opened from the form by keyboard
    admin = classroom.token("a1", "admin", lesson=None)
    await page.evaluate("sessionStorage.clear()")
    await page.goto(f"{site.url}/admin?lang=en#token={admin}")
    await page.fill(by_id("admin-find-lesson"), "NOPE")
    await page.press(by_id("admin-find-lesson"), "Enter")
    await until(page, "new URLSearchParams(location.search).get('lesson') === 'NOPE'", "the route")
    error = await until(
        page, f"document.querySelector('{by_id('admin-error')}')?.dataset.status", "not found"
    )
    assert error == "404"
    # a 404 is the answer, not a page error; console errors for 403/404 fetches are expected
    assert not [e for e in errors if e.startswith("page error")], errors


# --- a full lesson with every status (the reports' test data) -----------------------------------


@dataclass
class Failed:
    ok: bool = False
    events: int = 41
    checkpoints: int = 1
    problem: str | None = "event 42: altered (hash does not match its content)"
    position: int | None = 42
    signatures_checked: bool = True


@pytest.fixture
async def full_site(tmp_path: Path) -> AsyncIterator[tuple[Site, Callable[[str], str]]]:
    db = await Database.open(tmp_path / "full.db")
    lessons = await seed(db)
    roster = RosterStore(db)
    await roster.replace("MATH", ROSTER)

    async def verify() -> Failed:
        return Failed()

    app = await admin_app(
        FakeLedger(course_events()),
        lessons,
        roster,
        Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET),
        verify,
        clock=lambda: NOW,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()

    def token(role: str) -> str:
        return mint(
            secret=SECRET,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub="registrar",
            name="Registrar",
            role=role,
        )

    try:
        yield Site(f"http://127.0.0.1:{server.port}"), token
    finally:
        await server.close()
        await db.close()


async def test_a_full_lesson_and_a_failed_verification(
    browser: Browser, full_site: tuple[Site, Callable[[str], str]]
) -> None:
    site, token = full_site
    admin = token("admin")
    report = await call(site, admin, "GET", "/api/lessons/L1/report")
    statuses = {p["user_id"]: p["status"] for p in report["people"]}
    assert set(statuses.values()) == {"present", "late", "partial", "absent"}
    errors: list[str] = []
    page = await open_admin(browser, f"{site.url}/admin?lesson=L1&lang=kk", admin, errors)
    await until(page, f"document.querySelector('{by_id('admin-timeline')}')", "the timeline")
    rows = await rows_of(page, "admin-lesson-table")
    assert {row["id"].removeprefix("admin-person-"): row["status"] for row in rows} == statuses
    # a name that a spreadsheet would run is shown as text, not run or parsed
    assert "=HYPERLINK(evil)" in await page.inner_text(by_id("admin-person-s-4"))
    # the scheduled end is marked (the lesson ran five minutes over), and so is the guest
    assert await page.locator(".tl-scheduled-end").count() == 2  # the line and its legend
    assert await page.locator(f"{by_id('admin-person-g-1')} .not-roster").count() == 1
    label = await page.get_attribute('g.tl-row[data-person="s-1"]', "aria-label")
    assert label and label.startswith("Айгерім")
    await page.screenshot(path=str(ARTIFACTS / "admin-lesson-full.png"), full_page=True)
    await page.emulate_media(media="print")
    await page.screenshot(path=str(ARTIFACTS / "admin-lesson-print.png"), full_page=True)
    await page.emulate_media(media="screen")

    course = await call(site, admin, "GET", "/api/courses/MATH/report")
    await page.goto(f"{site.url}/admin?course=MATH&lang=kk")
    await until(page, f"document.querySelector('{by_id('admin-students-table')}')", "course")
    students = await rows_of(page, "admin-students-table")
    assert len(students) == len(course["students"]) == 6  # the roster and the guest
    await page.screenshot(path=str(ARTIFACTS / "admin-course-full.png"), full_page=True)

    await page.goto(f"{site.url}/admin?verify=1&lang=en")
    await page.click(by_id("admin-verify-button"))
    await until(
        page,
        f"document.querySelector('{by_id('admin-verify-result')}').dataset.state === 'problem'",
        "the failed verification",
    )
    text = await page.inner_text(by_id("admin-verify-result"))
    assert "event 42: altered" in text and "event 42" in text
    assert STRINGS["en"]["admin.verify.problem_title"] in text
    await page.screenshot(path=str(ARTIFACTS / "admin-verify-problem.png"), full_page=True)

    footprint = await call(site, admin, "GET", "/api/students/s-1/footprint")
    await page.goto(f"{site.url}/admin?student=s-1&lang=en")
    await until(page, f"document.querySelector('{by_id('admin-student-lessons')}')", "student")
    lessons = await rows_of(page, "admin-student-lessons")
    assert [row["id"] for row in lessons] == [
        f"admin-lesson-{row['lesson_id']}" for row in footprint["lessons"]
    ]
    assert [row["status"] for row in lessons] == [row["status"] for row in footprint["lessons"]]
    assert not errors, errors
