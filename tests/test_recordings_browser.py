"""The playback page in real Chromium: a recorded lesson played back in sync.

A hand-built server (the recordings routes, the REST API for the chat, the
pages of `web/` under the production Content-Security-Policy) holds one
recording made of generated files: the teacher's camera (VP8 WebM) and
microphone (Opus) from the start, and a screen share (VP8 WebM) that starts
2 s later. A student on the course's roster opens `/r/{id}#token=...`; the
test plays, checks that both videos decode and advance, that the screen
appears when the timeline reaches it, that the chat follows the timeline,
that the speed changes, and that leaving the page leaves a `recording.viewed`
event in the footprint ledger. A screenshot goes to
artifacts/recording-player.png.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from loadtests.media import make_opus_clip, make_video_clip
from signaling.app import CONTENT_SECURITY_POLICY
from signaling.db import Database
from signaling.footprint.ledger import Ledger
from signaling.footprint.roster import RosterEntry, RosterStore
from signaling.identity import Verifier, mint
from signaling.lessons import ChatStore, LessonStore
from signaling.recordings import Catalogue, setup_recordings
from signaling.rest import setup_rest
from tests.chromium import ARTIFACTS, NEEDS_CHROMIUM, by_id
from tests.chromium import until as _until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    NEEDS_CHROMIUM,
]

WEB = Path(__file__).resolve().parent.parent / "web"
SECRET = "recordings-browser-secret-0123456789abcdef"
ISSUER, AUDIENCE = "uni-idp", "sabaq"
SECONDS = 8.0
SCREEN_OFFSET = 2.0


def token(sub: str, role: str = "student", course: str = "MATH") -> str:
    return mint(
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        sub=sub,
        name=sub,
        role=role,
        course=course,
    )


@dataclass
class Site:
    url: str
    recording_id: str
    ledger: Ledger


@web.middleware
async def production_csp(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


async def make_recording(db: Database, root: Path, clips: Path, started: datetime) -> str:
    catalogue = Catalogue(db)
    recording = await catalogue.create("L1", "MATH", started)
    folder = root / recording.id
    folder.mkdir(parents=True)
    for source, name, kind, codec, offset, seconds in (
        ("camera", "camera.webm", "video", "vp8", 0.0, SECONDS),
        ("microphone", "microphone.ogg", "audio", "opus", 0.0, SECONDS),
        ("screen", "screen.webm", "video", "vp8", SCREEN_OFFSET, SECONDS - SCREEN_OFFSET),
    ):
        shutil.copy(clips / name, folder / name)
        part = await catalogue.add_part(
            recording.id,
            participant_id="t-1",
            participant_name="Асқар Нұрланұлы",
            source=source,
            kind=kind,
            codec=codec,
            path=f"{recording.id}/{name}",
            start_offset_s=offset,
        )
        size = (folder / name).stat().st_size
        await catalogue.update_part(part.id, duration_s=seconds, size_bytes=size, status="complete")
    await catalogue.set_status(recording.id, "finalizing")
    await catalogue.set_status(recording.id, "ready")
    await catalogue.set_composite(recording.id, status="running", progress=0.4)
    return recording.id


@asynccontextmanager
async def running_site(tmp_path: Path, url_lifetime_s: int = 600) -> AsyncIterator[Site]:
    """The hand-built server with one recording of lesson L1, and its ledger."""
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video_clip(clips / "camera.webm", seconds=SECONDS, width=640, height=360)
    make_video_clip(clips / "screen.webm", seconds=SECONDS - SCREEN_OFFSET, width=1280, height=720)
    make_opus_clip(clips / "microphone.ogg", seconds=SECONDS)
    db = await Database.open(tmp_path / "sabaq.db")
    ledger = await Ledger.open(tmp_path / "footprint.db", signing_key=tmp_path / "key.pem")
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    lessons = LessonStore(db)
    await lessons.create(
        {
            "id": "L1",
            "course": "MATH",
            "title": "Алгоритмдер және деректер құрылымдары",
            "kind": "lecture",
            "teacher_ids": ["t-1"],
            "scheduled_start": started,
            "scheduled_end": started + timedelta(minutes=90),
        }
    )
    roster = RosterStore(db)
    await roster.replace("MATH", [RosterEntry("s-1", "Айгерім Сейітқызы")])
    moments = iter([1.0, 3.0, 30.0])
    chat = ChatStore(db, clock=lambda: started + timedelta(seconds=next(moments)))
    await chat.append("L1", "t-1", "Асқар Нұрланұлы", "teacher", "Сәлеметсіздер ме! Бастаймыз.")
    await chat.append("L1", "s-1", "Айгерім Сейітқызы", "student", "Слайдтар көрінеді ме?")
    await chat.append("L1", "t-1", "Асқар Нұрланұлы", "teacher", "Үй тапсырмасы: 3-тарау.")
    rid = await make_recording(db, tmp_path / "recordings", clips, started)

    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, hs256_secret=SECRET)
    app = web.Application(middlewares=[production_csp])
    setup_rest(app, lessons=lessons, chat=ChatStore(db), verifier=verifier)
    setup_recordings(
        app,
        catalogue=Catalogue(db),
        lessons=lessons,
        roster=roster,
        ledger=ledger,
        verifier=verifier,
        media_root=tmp_path / "recordings",
        url_secret_file=tmp_path / "media-url-secret",
        retention_days=None,
        url_lifetime_s=url_lifetime_s,
        chat=ChatStore(db),
    )

    async def player_page(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB / "recording.html", headers={"Cache-Control": "no-cache"})

    async def list_page(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB / "recordings.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/r/{recording_id}", player_page)
    app.router.add_get("/l/{lesson_id}/recordings", list_page)
    app.router.add_static("/static/", WEB, follow_symlinks=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Site(str(server.make_url("")).rstrip("/"), rid, ledger)
    finally:
        await server.close()
        await ledger.close()
        await db.close()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with running_site(tmp_path) as started:
        yield started


def media_playing(test_id: str, video: bool = True) -> str:
    """JS: the element has data (a picture, for video) and its time advances."""
    size = "el.videoWidth > 0 &&" if video else ""
    return f"""(async () => {{
        const el = document.querySelector('{by_id(test_id)}');
        if (!el || el.hidden || !({size} el.readyState >= 2)) return false;
        const t = el.currentTime;
        await new Promise(r => setTimeout(r, 300));
        return el.currentTime > t;
    }})()"""


# What a failed wait prints here: the player's position and every media element.
PLAYER_STATE = (
    "JSON.stringify({position: window.sabaq?.state?.player?.position,"
    " playing: window.sabaq?.state?.player?.playing,"
    " media: [...document.querySelectorAll('video,audio')].map(e => ({id: e.id,"
    " src: (e.currentSrc || '').slice(0, 60), t: e.currentTime, ready: e.readyState,"
    " paused: e.paused, error: e.error && e.error.code, hidden: e.hidden}))})"
)


async def until(page: Page, expression: str, what: str, timeout: float = 20) -> Any:
    """Wait on the player page; a failure shows the player's state."""
    return await _until(page, expression, what, timeout, diagnose=PLAYER_STATE)


POSITION = "window.sabaq.state.player.position"


async def test_a_recorded_lesson_plays_in_chromium(browser: Browser, site: Site) -> None:
    errors: list[str] = []
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{site.url}/r/{site.recording_id}?lang=kk#token={token('s-1')}")
    await until(page, "location.hash === ''", "the token is removed from the address bar")
    await until(page, f"!document.querySelector('{by_id('rec-play')}').closest('[hidden]')", "ui")
    title = await page.text_content(by_id("rec-title"))
    assert title == "Алгоритмдер және деректер құрылымдары"
    # Before playing: the camera is there, the screen not yet (it starts at 2 s).
    assert await page.is_hidden(by_id("rec-screen"))
    composite = await page.text_content(by_id("rec-download-composite"))
    assert "40%" in (composite or "")
    parts = await page.locator(f"{by_id('rec-parts')} a").count()
    assert parts == 3

    await page.click(by_id("rec-play"))
    await until(page, media_playing("rec-camera"), "the camera video plays")
    await until(page, media_playing("rec-audio", video=False), "the teacher's sound plays")
    await until(page, f"{POSITION} > {SCREEN_OFFSET + 0.5}", "the timeline passes 2.5 s")
    await until(page, media_playing("rec-screen"), "the screen share appears and plays")
    in_sync = await page.evaluate(
        """() => {
            const cam = document.querySelector('[data-testid="rec-camera"]').currentTime;
            const screen = document.querySelector('[data-testid="rec-screen"]').currentTime;
            return Math.abs(cam - (screen + 2)) }"""
    )
    assert in_sync < 0.5, f"camera and screen are {in_sync:.2f} s apart on the timeline"
    layout = await page.get_attribute("#rec-stage", "data-layout")
    assert layout == "screen"
    # The chat follows the timeline: the messages of 1 s and 3 s are shown, not the one of 30 s.
    await until(page, f"document.querySelectorAll('{by_id('rec-chat')} li').length === 2", "chat")
    chat = await page.text_content(by_id("rec-chat"))
    assert "Слайдтар" in (chat or "") and "3-тарау" not in (chat or "")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "recording-player.png"))
    await page.screenshot(path=str(ARTIFACTS / "recording-player-full.png"), full_page=True)

    # The camera can take the big picture; the screen then goes to the corner.
    await page.click(by_id("rec-swap"))
    assert await page.get_attribute("#rec-stage", "data-layout") == "camera-big"
    assert await page.get_attribute(by_id("rec-swap"), "aria-pressed") == "true"
    # Keyboard: Space pauses and plays again (focus on the page, not on a control).
    await page.evaluate("document.activeElement.blur()")
    await page.keyboard.press(" ")
    await until(page, "window.sabaq.state.player.playing === false", "Space pauses")
    assert await page.evaluate("document.querySelector('[data-testid=rec-camera]').paused")
    await page.keyboard.press(" ")
    await until(page, "window.sabaq.state.player.playing === true", "Space plays again")

    # Speed: 1.5× moves the timeline 1.5 s per second, and the elements follow.
    await page.select_option(by_id("rec-speed"), "1.5")
    await page.click(by_id("rec-back"))  # room to measure before the end
    await asyncio.sleep(0.5)
    start = await page.evaluate(f"[{POSITION}, performance.now()]")
    await asyncio.sleep(1.5)
    end = await page.evaluate(f"[{POSITION}, performance.now()]")
    rate = (end[0] - start[0]) / ((end[1] - start[1]) / 1000)
    assert 1.2 < rate < 1.8, f"the timeline moved at {rate:.2f}× after choosing 1.5×"
    rates = await page.evaluate(
        "[...document.querySelectorAll('video,audio')].filter(e => e.src).map(e => e.playbackRate)"
    )
    assert rates and all(r == 1.5 for r in rates), rates

    # Leaving the page reports what was watched (fetch keepalive on pagehide).
    reported_before = await page.evaluate("window.sabaq.state.reported.length")
    await page.goto("about:blank")
    deadline = time.monotonic() + 10
    events: list[Any] = []
    while time.monotonic() < deadline and not events:
        await site.ledger.flush()
        events = await site.ledger.query(types=["recording.viewed"])
        await asyncio.sleep(0.2)
    assert events, "no recording.viewed event reached the ledger"
    event = events[-1]
    assert (event.actor, event.lesson, event.course) == ("s-1", "L1", "MATH")
    assert event.data["recording"] == site.recording_id
    watched = sum(b - a for a, b in event.data["intervals"])
    assert watched > 1.0, event.data
    assert reported_before == 0  # the 30-second report had not come yet: pagehide sent it
    assert errors == [], errors
    await context.close()


async def test_a_student_of_another_course_sees_why(browser: Browser, site: Site) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{site.url}/r/{site.recording_id}?lang=en#token={token('s-9', course='PHYS')}")
    await until(page, f"!document.querySelector('{by_id('rec-error')}').hidden", "error view")
    assert "not available to you" in (await page.text_content("#error-title") or "")
    await context.close()
    # A fresh tab without the token in the link (nor in its storage).
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{site.url}/r/{site.recording_id}?lang=en")
    await until(page, f"!document.querySelector('{by_id('rec-no-token')}').hidden", "no token")
    await context.close()


async def test_expired_media_links_are_renewed(browser: Browser, tmp_path: Path) -> None:
    # Links that live 3 s: by the time the timeline reaches the screen share (2 s after
    # a play started 4 s after loading), its link has expired; the element's error
    # makes the page fetch fresh links and carry on where it was.
    async with running_site(tmp_path, url_lifetime_s=3) as short:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{short.url}/r/{short.recording_id}?lang=ru#token={token('s-1')}")
        await until(page, "window.sabaq.state.player !== null", "the player is set up")
        await asyncio.sleep(4)
        await page.click(by_id("rec-play"))
        await until(page, media_playing("rec-screen"), "the screen plays on a renewed link")
        assert await page.evaluate("window.sabaq.state.refreshes") >= 2
        assert await page.is_hidden(by_id("rec-notice"))  # nothing was given up
        await context.close()


async def test_the_lessons_recordings_list_leads_to_the_player(
    browser: Browser, site: Site
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{site.url}/l/L1/recordings?lang=en#token={token('s-1')}")
    await until(page, f"document.querySelectorAll('{by_id('rec-list')} a').length === 1", "list")
    text = await page.text_content(by_id("rec-list"))
    assert "Recording of" in (text or "") and "Ready" in (text or "")
    await page.click(f"{by_id('rec-list')} a")
    await until(page, f"location.pathname === '/r/{site.recording_id}'", "the player opens")
    await until(page, "window.sabaq.state.player !== null", "the player is set up")
    assert await page.evaluate("location.hash") == ""
    await context.close()
