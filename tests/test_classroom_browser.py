"""The classroom end to end in real Chromium: a teacher page and two student pages.

Everything runs as in production, in one process: `signaling.app` with its
SFU on 127.0.0.1, the pages of `web/` served by it, tokens in the links'
fragment. Chromium's fake camera and microphone stand in for devices; a
canvas stream stands in for the screen (headless Chromium cannot capture
one) through the page's own `getDisplayMedia` call. Screenshots of the
teacher's and a student's view are saved under `artifacts/`.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from signaling.app import CLASSROOMS_KEY
from signaling.protocol import CloseCode
from tests.chromium import ARTIFACTS, NEEDS_CHROMIUM, by_id, until
from tests.conftest import ClassroomServer
from tests.peers import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    NEEDS_CHROMIUM,
]


# The page calls navigator.mediaDevices.getDisplayMedia when the teacher
# clicks "share screen"; headless Chromium has no screen, so a moving canvas
# is returned instead, through the same call.
CANVAS_SCREEN = """
navigator.mediaDevices.getDisplayMedia = async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 960; canvas.height = 540;
  const ctx = canvas.getContext('2d');
  let n = 0;
  setInterval(() => {
    ctx.fillStyle = '#f4f6fb'; ctx.fillRect(0, 0, 960, 540);
    ctx.fillStyle = '#1d3557'; ctx.font = '44px sans-serif';
    ctx.fillText('Алгоритмдер · Lecture 3: sorting', 40, 90);
    ctx.fillStyle = '#e63946'; ctx.fillRect(40 + (n++ * 9) % 860, 200, 60, 60);
  }, 100);
  return canvas.captureStream(10);
};
"""


def video_playing(selector: str) -> str:
    """JS: the video matched by `selector` has a size and its time advances."""
    return f"""(async () => {{
        const v = document.querySelector({selector!r});
        if (!v || v.hidden || v.videoWidth === 0) return false;
        const t = v.currentTime;
        await new Promise(r => setTimeout(r, 300));
        return v.currentTime > t;
    }})()"""


async def open_page(
    browser: Browser,
    classroom: ClassroomServer,
    sub: str,
    role: str,
    name: str,
    query: str,
    errors: list[str],
    viewport: tuple[int, int] = (1280, 800),
) -> Page:
    context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    await context.add_init_script(CANVAS_SCREEN)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{sub}: {error}"))
    token = classroom.token(sub, role, name=name)
    await page.goto(f"{classroom.url}/l/L1?{query}#token={token}")
    return page


async def test_a_lesson_in_chromium(browser: Browser, classroom: ClassroomServer) -> None:
    await classroom.lesson(title="Алгоритмдер және деректер құрылымдары")
    errors: list[str] = []
    teacher = await open_page(
        browser, classroom, "t1", "teacher", "Асқар Нұрланұлы", "autojoin=1&lang=kk", errors
    )
    await until(teacher, "location.hash === ''", "the token is removed from the address bar")
    await until(
        teacher,
        "window.sabaq.state.published?.camera === 'on'"
        " && window.sabaq.state.published?.microphone === 'on'",
        "the teacher publishes camera and microphone",
    )
    s1 = await open_page(
        browser,
        classroom,
        "s1",
        "student",
        "Айгерім Сейітқызы",
        "autojoin=1&nocam=1&lang=kk",
        errors,
        viewport=(1024, 768),
    )
    s2 = await open_page(
        browser,
        classroom,
        "s2",
        "student",
        "Данияр Ахметов",
        "autojoin=1&nocam=1&lang=ru",
        errors,
        viewport=(414, 860),
    )
    for student in (s1, s2):
        await until(student, video_playing(by_id("main-video")), "a student sees the teacher")
    assert await s1.evaluate("document.documentElement.lang") == "kk"
    assert await s2.evaluate("document.documentElement.lang") == "ru"

    # A student without the floor cannot publish: the buttons are disabled and
    # the server refuses the protocol message itself.
    assert await s1.locator(by_id("mic")).is_disabled()
    assert await s1.locator(by_id("camera")).is_disabled()
    refused = await s1.evaluate(
        """(async () => {
            const stream = await navigator.mediaDevices.getUserMedia({audio: true});
            try { await window.sabaq.client.publish({microphone: stream.getAudioTracks()[0]});
                  return 'published'; }
            catch (e) { return e.code || String(e); }
        })()"""
    )
    assert refused == "forbidden"
    assert not classroom.sfu.rooms["L1"].participants["s1"].tracks

    # Chat round trip, in Kazakh.
    await s1.locator(by_id("chat-input")).fill("Сәлеметсіз бе, ұстаз!")
    await s1.locator(by_id("chat-send")).click()
    for page in (teacher, s2):
        await until(
            page,
            f"document.querySelector('{by_id('chat-list')}').textContent"
            ".includes('Сәлеметсіз бе, ұстаз!')",
            "the chat message reaches the others",
        )

    # The teacher shares a screen; students see it beside the teacher's camera.
    await teacher.locator(by_id("share-screen")).click()
    for student in (s1, s2):
        await until(student, video_playing(by_id("screen-video")), "students see the screen")
        await until(student, video_playing(by_id("main-video")), "and the teacher's camera")

    # A hand goes up, the teacher sees it and gives the floor.
    await s1.locator(by_id("hand")).click()
    await until(
        teacher,
        f"document.querySelector('{by_id('participant-s1')}')?.dataset.hand === 'true'",
        "the raised hand shows at the teacher",
    )
    # The teacher starts the recording; everyone sees the badge.
    await teacher.locator(by_id("record")).click()
    for page in (teacher, s1, s2):
        await until(
            page,
            f"!document.querySelector('{by_id('recording-badge')}').hidden",
            "the recording badge shows",
        )
    ARTIFACTS.mkdir(exist_ok=True)
    await teacher.screenshot(path=str(ARTIFACTS / "classroom-teacher.png"))
    await s1.screenshot(path=str(ARTIFACTS / "classroom-student.png"))
    await s2.screenshot(path=str(ARTIFACTS / "classroom-student-phone.png"), full_page=True)

    await teacher.locator(by_id("floor-av-s1")).click()
    await until(s1, f"!document.querySelector('{by_id('mic')}').disabled", "s1 may speak")
    await s1.locator(by_id("mic")).click()
    await s1.locator(by_id("camera")).click()
    await until(
        s1,
        "window.sabaq.state.published?.camera === 'on'",
        "the student with the floor publishes",
    )
    await until(
        s2,
        video_playing('video[data-participant="s1"][data-source="camera"]'),
        "the other student sees the student who has the floor",
    )
    await s2.screenshot(path=str(ARTIFACTS / "classroom-floor.png"), full_page=True)

    # Taking the floor away stops that student's media at every student.
    await teacher.locator(by_id("take-floor-s1")).click()
    await until(
        s2,
        '!document.querySelector(\'video[data-participant="s1"][data-source="camera"]\')',
        "the student's video disappears at the other student",
    )
    await until(s1, f"document.querySelector('{by_id('mic')}').disabled", "s1's mic is disabled")

    # A network drop: the server loses s2's session; the page reconnects by
    # itself, and the lesson goes on without a duplicate participant.
    members = classroom.app[CLASSROOMS_KEY].rooms["L1"].members
    dropped = members["s2"]
    dropped.peer.close(CloseCode.INTERNAL_ERROR, "simulated failure")
    await wait_until(lambda: members.get("s2") not in (None, dropped), timeout=30)
    await until(
        s2,
        "document.querySelector('[data-testid=\"connection-state\"]').dataset.state"
        " === 'connected'",
        "s2 reconnects",
    )
    await until(s2, video_playing(by_id("main-video")), "s2 sees the teacher again")
    teacher_view = await teacher.evaluate(
        "[...document.querySelectorAll('[data-testid^=\"participant-\"]')]"
        ".map(e => e.dataset.testid).filter(id => id !== 'participant-list')"
    )
    assert sorted(teacher_view) == ["participant-s1", "participant-s2", "participant-t1"]

    # The teacher's own connection drops: it republishes camera and screen.
    dropped = members["t1"]
    dropped.peer.close(CloseCode.INTERNAL_ERROR, "simulated failure")
    await wait_until(lambda: members.get("t1") not in (None, dropped), timeout=30)
    await until(
        teacher,
        "window.sabaq.state.published?.camera === 'on'"
        " && window.sabaq.state.published?.screen === 'on'"
        " && document.querySelector('[data-testid=\"connection-state\"]').dataset.state"
        " === 'connected'",
        "the teacher reconnects and republishes",
        timeout=40,
    )
    for student in (s1, s2):
        await until(student, video_playing(by_id("main-video")), "students see the teacher again")
        await until(student, video_playing(by_id("screen-video")), "and the screen again")
    assert len(classroom.sfu.rooms["L1"].participants) == 3

    assert classroom.app[CLASSROOMS_KEY].rooms["L1"].recording
    assert await teacher.locator(by_id("recordings-link")).is_visible()
    attendance = await teacher.locator(by_id("attendance-link")).get_attribute("href")
    assert attendance is not None and attendance.startswith("/admin?lesson=L1#token=")
    assert not await s1.locator(by_id("attendance-link")).is_visible()
    assert not await s1.locator(by_id("record")).is_visible()

    # The end, for everyone (the recording stops and is catalogued).
    await teacher.locator(by_id("end-lesson")).click()
    await teacher.locator(by_id("confirm-ok")).click()
    for page in (s1, s2):
        await until(
            page,
            f"document.querySelector('{by_id('end-screen')}')?.dataset.code === '4000'",
            "students see that the lesson ended",
        )
    assert errors == []


async def test_pages_without_a_token_and_in_the_lobby(
    browser: Browser, classroom: ClassroomServer
) -> None:
    await classroom.lesson(lobby=True)
    errors: list[str] = []
    context = await browser.new_context()
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{classroom.url}/l/L1?lang=en")
    await until(
        page,
        f"!document.querySelector('{by_id('no-token')}').hidden",
        "a page without a token says what to do",
    )
    teacher = await open_page(
        browser, classroom, "t1", "teacher", "T", "autojoin=1&nocam=1", errors
    )
    student = await open_page(
        browser, classroom, "s1", "student", "S", "autojoin=1&nocam=1", errors
    )
    await until(
        student,
        f"!document.querySelector('{by_id('lobby-wait')}').hidden",
        "the student waits in the lobby",
    )
    await until(
        teacher, f"!!document.querySelector('{by_id('admit-s1')}')", "the teacher sees who waits"
    )
    # keyboard only: focus the admit button and press Enter
    await teacher.locator(by_id("admit-s1")).focus()
    await teacher.keyboard.press("Enter")
    await until(student, "window.sabaq.state.view === 'classroom'", "the student is admitted")
    assert errors == []
