"""A real Chromium publishes its fake camera and microphone through the SFU.

The browser's offer is Chrome's own (its payload types, RTX, RED, ULPFEC,
transport-cc and header extensions), so this checks what the aiortc-only
functional tests cannot: that the SFU negotiates with a browser, parses its
packets and forwards them so that a subscriber decodes real video frames.

Playwright drives Debian's Chromium (never a downloaded browser); the test is
skipped where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from sfu import (
    ConnectionStateChanged,
    NegotiationError,
    NotAllowed,
    Participant,
    QualitySample,
    Sfu,
    Source,
    SubscriberOffer,
    TrackPublished,
)
from tests.peers import Captured, EventLog, Subscriber, wait_until

CHROMIUM = "/usr/bin/chromium"
PAGE_DIR = Path(__file__).parent / "browser"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    # Without it Chromium gathers no 127.0.0.1 candidate, and the SFU's
    # IcePolicy (loopback only in tests) ignores every other one.
    "--allow-loopback-in-peer-connection",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"needs Debian's Chromium at {CHROMIUM}: `apt-get install chromium` "
        "(the CI script installs it)",
    ),
]


def _signaling_app(participant: Participant) -> web.Application:
    """The test page and the one signaling call it makes."""

    async def publish(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        sdp, sources = body.get("sdp"), body.get("sources")
        if not isinstance(sdp, str) or not isinstance(sources, dict):
            return web.json_response(
                {"error": "expected {sdp: str, sources: {mid: source}}"}, status=400
            )
        try:
            answer = await participant.publish(sdp, sources)
        except (NegotiationError, NotAllowed) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"sdp": answer})

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_static("/", PAGE_DIR)
    return app


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 at a free port; yields the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _m_line(subscriber: Subscriber, track_id: str) -> tuple[int, dict[int, str]]:
    """The SSRC and payload types (-> codec name) of the subscriber m-line carrying `track_id`.

    Read from the SFU's latest offer rather than `pc.remoteDescription`: aiortc
    assigns the mids before it stores the description, so the latter can lag
    while an offer is being applied.
    """
    offer = next(o for o in reversed(subscriber.offers) if any(t[1] == track_id for t in o.tracks))
    mid = next(m for m, tid, _, _ in offer.tracks if tid == track_id)
    section = next(s for s in offer.sdp.split("\r\nm=")[1:] if f"\r\na=mid:{mid}\r\n" in s)
    ssrc, names = 0, {}
    for line in section.split("\r\n"):
        if line.startswith("a=rtpmap:"):
            pt, encoding = line.removeprefix("a=rtpmap:").split(" ", 1)
            names[int(pt)] = encoding.split("/")[0].lower()
        elif line.startswith("a=ssrc:") and not ssrc:
            ssrc = int(line.removeprefix("a=ssrc:").split()[0])
    return ssrc, names


def _received(subscriber: Subscriber, track_id: str) -> list[Captured]:
    """The RTP packets (primary SSRC, not RTX) the subscriber got for `track_id`."""
    if not any(t[1] == track_id for o in subscriber.offers for t in o.tracks):
        return []
    ssrc, _ = _m_line(subscriber, track_id)
    return subscriber.received.get(ssrc, [])


async def _published(log: EventLog, kind: str) -> TrackPublished:
    event = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == kind, 10)
    assert isinstance(event, TrackPublished)
    return event


async def _video_frame(subscriber: Subscriber, within: float) -> Any:
    """The first decoded frame of the subscriber's remote video track."""
    await wait_until(lambda: any(t.kind == "video" for t in subscriber.remote_tracks), within)
    track = next(t for t in subscriber.remote_tracks if t.kind == "video")
    async with asyncio.timeout(within):
        while True:
            frame = await track.recv()
            if frame.width > 0:
                return frame


async def test_chromium_publishes_camera_and_microphone(sfu: Sfu, log: EventLog) -> None:
    room = sfu.room("browser-lesson")
    teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
    student = Subscriber(await room.join("student"), log)
    console: list[str] = []

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(student.close)
        base_url = await stack.enter_async_context(_serve(_signaling_app(teacher)))
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        stack.push_async_callback(browser.close)
        page = await browser.new_page(viewport={"width": 720, "height": 520})
        page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

        async def diagnostics() -> str:
            """What the page, Chrome's console and the SFU say, for a failure message."""
            state: Any = "page unavailable"
            with contextlib.suppress(Exception):
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "browser-publish.png"))
                state = await page.evaluate(
                    "async () => ({state: window.sabaqState,"
                    " connection: window.sabaqConnectionState,"
                    " error: window.sabaqError, log: window.sabaqLog,"
                    " outbound: await window.sabaqOutbound()})"
                )
            events = [
                f"SubscriberOffer({e.participant_id}, {e.tracks})"
                if isinstance(e, SubscriberOffer)
                else e
                for e in log.events
                if not isinstance(e, QualitySample)
            ]
            return (
                f"page: {state}\nconsole: {console}\nSFU events: {events}\n"
                f"counters: {sfu.counters.as_dict()}"
            )

        await page.goto(f"{base_url}/publish.html")
        try:
            await page.wait_for_function(
                "() => window.sabaqConnectionState === 'connected' || window.sabaqError !== null",
                timeout=30_000,
            )
        except Exception as exc:
            pytest.fail(f"the page never connected: {exc!r}\n{await diagnostics()}")
        error = await page.evaluate("window.sabaqError")
        assert error is None, f"the page failed: {error}\n{await diagnostics()}"

        try:
            video = await _published(log, "video")
            audio = await _published(log, "audio")
            await log.wait_for(
                lambda e: (
                    isinstance(e, ConnectionStateChanged)
                    and e.participant_id == "teacher"
                    and e.direction == "publish"
                    and e.state == "connected"
                ),
                10,
            )
            assert (video.source, video.codec.lower()) == (Source.CAMERA, "vp8")
            assert (audio.source, audio.codec.lower()) == (Source.MICROPHONE, "opus")

            # Forwarded RTP reaches the subscriber, and aiortc decodes Chrome's VP8.
            await wait_until(lambda: len(_received(student, video.track_id)) > 30, 20)
            await wait_until(lambda: len(_received(student, audio.track_id)) > 25, 20)
            frame = await _video_frame(student, 20)
        except (TimeoutError, AssertionError) as exc:
            pytest.fail(f"{type(exc).__name__}: {exc}\n{await diagnostics()}")
        assert frame.width > 0
        assert frame.height > 0
        # What arrives is labelled with the codecs the subscriber's m-lines negotiated.
        _, video_names = _m_line(student, video.track_id)
        _, audio_names = _m_line(student, audio.track_id)
        video_packets = _received(student, video.track_id)
        audio_packets = _received(student, audio.track_id)
        assert {video_names.get(p.payload_type) for p in video_packets} == {"vp8"}
        assert {audio_names.get(p.payload_type) for p in audio_packets} == {"opus"}
        assert all(p.payload for p in audio_packets)
        assert sfu.counters.malformed_rtp == 0, await diagnostics()
        assert sfu.counters.malformed_rtcp == 0, await diagnostics()

        await page.wait_for_function(
            "() => document.getElementById('preview').videoWidth > 0", timeout=10_000
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "browser-publish.png"))
