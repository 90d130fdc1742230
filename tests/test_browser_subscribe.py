"""A real Chromium receives an aiortc teacher's camera and microphone through the SFU.

The opposite direction of test_browser.py: here the SFU offers and Chrome
answers with its own SDP, so this checks what the aiortc-only functional tests
cannot: that a browser accepts the SFU's subscriber offers, its rewritten RTP
(SSRCs, sequence numbers, timestamps, header extensions), its RTX and sender
reports, and decodes and plays the video; and that the SFU parses Chrome's
feedback (RR and REMB; NACK and PLI while the test drops packets between the
SFU and the browser). When the teacher leaves, the SFU sends BYE and
renegotiates the student's m-lines to inactive, and the page must follow; when
the teacher comes back, the same m-lines carry the new tracks.

Playwright drives Debian's Chromium (never a downloaded browser); the test is
skipped where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from sfu import (
    NegotiationError,
    Participant,
    QualitySample,
    Room,
    Sfu,
    Source,
    SubscriberOffer,
    TrackPublished,
    UnknownEntity,
)
from sfu.codecs import is_keyframe
from sfu.rtcp import Bye, Other, Pli, RtcpError, parse_rtcp
from sfu.rtp import parse_rtp
from sfu.track import DownTrack, RtpSink
from tests.peers import EventLog, Publisher, wait_until
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PAGE_DIR, _serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"needs Debian's Chromium at {CHROMIUM}: `apt-get install chromium` "
        "(the CI script installs it)",
    ),
]

STUDENT = "student"
# How long GET /offer holds the request before answering 204 (the page asks again).
LONG_POLL_S = 10.0
# The page plays the teacher's microphone in an <audio>, with no click to allow it.
SUBSCRIBE_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


class _StudentSignaling:
    """The page's signaling: join, long-poll the SFU's offers, post the answers."""

    def __init__(self, room: Room, log: EventLog) -> None:
        self.room = room
        self.log = log
        self.participant: Participant | None = None
        self.offers_sent: list[SubscriberOffer] = []
        self.answers = 0
        self._queue: asyncio.Queue[SubscriberOffer | None] = asyncio.Queue()
        self._closed = False
        log.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        if (
            isinstance(event, SubscriberOffer)
            and event.participant_id == STUDENT
            and event.room_id == self.room.id
        ):
            self._queue.put_nowait(event)

    def close(self) -> None:
        """Release a pending long poll (aiohttp waits for running handlers on cleanup)."""
        self._closed = True
        self.log.unsubscribe(self._on_event)
        self._queue.put_nowait(None)

    async def join(self, request: web.Request) -> web.Response:
        # Offers of an earlier session of the same student are not this page's.
        self._queue = asyncio.Queue()
        # Before the SFU's negotiation task runs, so its first offer is queued.
        self.participant = await self.room.join(STUDENT)
        return web.json_response({"participantId": STUDENT})

    async def offer(self, request: web.Request) -> web.Response:
        if self._closed:
            return web.json_response({"error": "the lesson is over"}, status=410)
        try:
            async with asyncio.timeout(LONG_POLL_S):
                offer = await self._queue.get()
        except TimeoutError:
            return web.Response(status=204)
        if offer is None:
            return web.json_response({"error": "the lesson is over"}, status=410)
        self.offers_sent.append(offer)
        tracks = [
            {"mid": mid, "trackId": track_id, "publisherId": publisher, "source": source}
            for mid, track_id, publisher, source in offer.tracks
        ]
        return web.json_response({"sdp": offer.sdp, "tracks": tracks})

    async def answer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        sdp = body.get("sdp") if isinstance(body, dict) else None
        if not isinstance(sdp, str):
            return web.json_response({"error": "expected {sdp: str}"}, status=400)
        if self.participant is None:
            return web.json_response({"error": "join first"}, status=409)
        try:
            await self.participant.set_subscriber_answer(sdp)
        except (NegotiationError, UnknownEntity) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.answers += 1
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/join", self.join)
        app.router.add_get("/offer", self.offer)
        app.router.add_post("/answer", self.answer)
        app.router.add_static("/", PAGE_DIR)
        return app


class _LossySink:
    """A bad link between a student's downtrack and its transport, for a while.

    `every`: drop every n-th video packet (its retransmissions get through, so
    Chrome's NACKs repair it). `keyframes`: drop the first packet of every
    keyframe and every retransmission of it, so nothing is decodable until Chrome
    asks for a keyframe (PLI). Dropped packets count as sent, as on a real link.
    """

    def __init__(self, downtrack: DownTrack, *, every: int = 0, keyframes: bool = False) -> None:
        self.downtrack = downtrack
        self.inner: RtpSink = downtrack.sink
        self.every = every
        self.keyframes = keyframes
        self.seen = 0
        self.dropped: set[int] = set()
        self.retransmissions = 0

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        header = parse_rtp(bytes(packet))
        body = bytes(packet[header.payload_start : header.payload_end])
        if header.ssrc == self.downtrack.rtx_ssrc:
            self.retransmissions += 1
            if self.keyframes and int.from_bytes(body[:2], "big") in self.dropped:
                return True
        else:
            self.seen += 1
            if (self.every and self.seen % self.every == 0) or (
                self.keyframes and is_keyframe("video/VP8", body)
            ):
                self.dropped.add(header.sequence_number)
                return True
        return self.inner.send_rtp(packet)

    def send_rtcp(self, packet: bytes) -> bool:
        return self.inner.send_rtcp(packet)

    def __enter__(self) -> _LossySink:
        self.downtrack.sink = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.downtrack.sink = self.inner


def _rtcp_names(data: bytes) -> list[str]:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return ["unparseable"]
    return [
        f"Other(pt={p.packet_type}, fmt={p.fmt})" if isinstance(p, Other) else type(p).__name__
        for p in packets
    ]


def _tap_rtcp(participant: Participant) -> tuple[Counter[str], Counter[str], list[Bye]]:
    """Record the RTCP of the participant's subscriber connection, both ways.

    Returns the packet types received (the SFU parses them anyway and counts
    what it cannot parse; this records what Chrome sends), the types the SFU
    sends, and the BYEs among them.
    """
    received: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    byes: list[Bye] = []
    dtls = participant.subscriber_pc.getTransceivers()[0].receiver.transport
    handle = dtls._handle_rtcp_data

    async def tapped(data: bytes) -> None:
        received.update(_rtcp_names(data))
        await handle(data)

    dtls._handle_rtcp_data = tapped
    transport = participant.subscriber_transport
    assert transport is not None
    send = transport.send_rtcp

    def sending(packet: bytes) -> bool:
        sent.update(_rtcp_names(packet))
        with contextlib.suppress(RtcpError):
            byes.extend(p for p in parse_rtcp(packet) if isinstance(p, Bye))
        return send(packet)

    transport.send_rtcp = sending  # type: ignore[method-assign]
    return received, sent, byes


async def _published(log: EventLog, kind: str) -> TrackPublished:
    event = await log.wait_for(lambda e: isinstance(e, TrackPublished) and e.kind == kind, 10)
    assert isinstance(event, TrackPublished)
    return event


SNAPSHOT = (
    "async () => ({video: window.sabaqVideo(), inbound: await window.sabaqInbound(),"
    " at: performance.now()})"
)


def _summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed in the page between two snapshots: rates and counters over the window."""
    seconds = (after["at"] - before["at"]) / 1000.0

    def delta(source: str, key: str) -> float:
        new = after["inbound"].get(source, {}).get(key) or 0
        old = before["inbound"].get(source, {}).get(key) or 0
        return new - old

    def buffer_ms(source: str) -> float | None:
        emitted = delta(source, "jitterBufferEmittedCount")
        return round(1000 * delta(source, "jitterBufferDelay") / emitted, 1) if emitted else None

    camera = after["inbound"].get("camera", {})
    microphone = after["inbound"].get("microphone", {})
    return {
        "window_s": round(seconds, 3),
        "current_time_advance_s": round(
            after["video"]["currentTime"] - before["video"]["currentTime"], 3
        ),
        "video_size": (after["video"]["videoWidth"], after["video"]["videoHeight"]),
        "decoded_fps": round(delta("camera", "framesDecoded") / seconds, 1),
        "video_packets": int(delta("camera", "packetsReceived")),
        "video_lost": int(delta("camera", "packetsLost")),
        "video_retransmitted": int(delta("camera", "retransmittedPacketsReceived")),
        "nacks": int(delta("camera", "nackCount")),
        "plis": int(delta("camera", "pliCount")),
        "firs": int(delta("camera", "firCount")),
        "frames_dropped": int(delta("camera", "framesDropped")),
        "freezes": int(delta("camera", "freezeCount")),
        "video_jitter_buffer_ms": buffer_ms("camera"),
        "audio_packets": int(delta("microphone", "packetsReceived")),
        "audio_lost": int(delta("microphone", "packetsLost")),
        "audio_jitter_buffer_ms": buffer_ms("microphone"),
        "totals": {
            "frames_decoded": camera.get("framesDecoded"),
            "key_frames_decoded": camera.get("keyFramesDecoded"),
            "video_packets": camera.get("packetsReceived"),
            "video_lost": camera.get("packetsLost"),
            "nacks": camera.get("nackCount"),
            "plis": camera.get("pliCount"),
            "frames_dropped": camera.get("framesDropped"),
            "audio_packets": microphone.get("packetsReceived"),
            "audio_lost": microphone.get("packetsLost"),
            "sender_reports": (camera.get("senderReports"), microphone.get("senderReports")),
            "sender_report_video_packets": camera.get("senderReportPackets"),
        },
        "codecs": (camera.get("codec"), microphone.get("codec")),
        "round_trip_s": after["inbound"].get("transport", {}).get("currentRoundTripTime"),
    }


def _few_lost(lost: int | None, received: int) -> bool:
    """Loopback loses nothing; allow a little for a busy machine."""
    return lost is not None and lost <= max(3, received // 100)


async def test_chromium_receives_the_teachers_camera_and_microphone(
    sfu: Sfu, log: EventLog
) -> None:
    room = sfu.room("browser-lesson")
    teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
    publisher = Publisher(teacher)
    publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
    publisher.add(Source.MICROPHONE)
    signaling = _StudentSignaling(room, log)
    console: list[str] = []

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(publisher.close)
        base_url = await stack.enter_async_context(_serve(signaling.app()))
        stack.callback(signaling.close)  # runs before the server's cleanup
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=SUBSCRIBE_ARGS
        )
        stack.push_async_callback(browser.close)
        page = await browser.new_page(viewport={"width": 720, "height": 600})
        page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        chrome_rtcp: Counter[str] = Counter()  # tapped once the SFU has offered
        sfu_rtcp: Counter[str] = Counter()

        async def diagnostics(context: str = "") -> str:
            """What the page, Chrome's console and the SFU say, for a failure message."""
            state: Any = "page unavailable"
            with contextlib.suppress(Exception):
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "browser-subscribe.png"))
                state = await page.evaluate(
                    "async () => ({state: window.sabaqState,"
                    " connection: window.sabaqConnectionState,"
                    " error: window.sabaqError, log: window.sabaqLog,"
                    " negotiations: window.sabaqNegotiations,"
                    " trackEvents: window.sabaqTrackEvents,"
                    " transceivers: window.sabaqTransceivers(),"
                    " video: window.sabaqVideo(),"
                    " inbound: await window.sabaqInbound()})"
                )
            events = [
                f"SubscriberOffer({e.participant_id}, {e.tracks})"
                if isinstance(e, SubscriberOffer)
                else e
                for e in log.events
                if not isinstance(e, QualitySample)
            ]
            downtracks = {
                track.id: [(d.ssrc, d.packets_sent, d.fraction_lost) for d in track.downtracks]
                for track in room.tracks.values()
            }
            return (
                f"{context}\npage: {state}\nconsole: {console}\nSFU events: {events}\n"
                f"downtracks (ssrc, sent, fraction lost): {downtracks}\n"
                f"RTCP from Chrome: {dict(chrome_rtcp)}, from the SFU: {dict(sfu_rtcp)}\n"
                f"counters: {sfu.counters.as_dict()}"
            )

        async def wait_in_page(
            condition: str, what: str, timeout_s: float, arg: Any = None
        ) -> None:
            try:
                await page.wait_for_function(
                    f"(arg) => window.sabaqError !== null || ({condition})",
                    arg=arg,
                    timeout=timeout_s * 1000,
                )
            except Exception as exc:
                pytest.fail(f"{what}: {exc!r}\n{await diagnostics()}")
            error = await page.evaluate("window.sabaqError")
            assert error is None, f"the page failed: {error}\n{await diagnostics()}"

        async def measure(seconds: float) -> dict[str, Any]:
            before = await page.evaluate(SNAPSHOT)
            await asyncio.sleep(seconds)
            return _summary(before, await page.evaluate(SNAPSHOT))

        # The student is in the lesson before the teacher starts.
        await page.goto(f"{base_url}/subscribe.html")
        await wait_in_page("window.sabaqState === 'waiting'", "the page never joined", 15)
        await publisher.publish()
        video = await _published(log, "video")
        audio = await _published(log, "audio")
        student = room.participant(STUDENT)
        try:
            await wait_until(lambda: student.subscriber_transport is not None, 10)
        except TimeoutError:
            pytest.fail(f"the SFU never offered to the student\n{await diagnostics()}")
        chrome_rtcp, sfu_rtcp, byes = _tap_rtcp(student)

        # 1. A clean link: the teacher's camera plays at the clip's 30 fps.
        await wait_in_page(
            "window.sabaqConnectionState === 'connected'"
            " && window.sabaqVideo().videoWidth > 0 && window.sabaqVideo().currentTime > 0",
            "the teacher's video never played",
            30,
        )
        clean = await measure(1.5)
        print(f"\nclean link: {clean}")
        why = f"clean link: {clean}"
        transceivers = await page.evaluate("window.sabaqTransceivers()")
        # The page labelled the m-lines by the offer's table.
        assert sorted(t["source"] for t in transceivers if t["source"]) == [
            "camera",
            "microphone",
        ], await diagnostics(why)
        assert clean["codecs"] == ("video/VP8", "audio/opus"), await diagnostics(why)
        assert clean["video_size"] == (640, 360), await diagnostics(why)
        assert clean["current_time_advance_s"] >= 0.5 * clean["window_s"], await diagnostics(why)
        assert clean["decoded_fps"] >= 15, await diagnostics(why)
        assert clean["audio_packets"] >= 25, await diagnostics(why)
        totals = clean["totals"]
        assert _few_lost(totals["video_lost"], totals["video_packets"]), await diagnostics(why)
        assert _few_lost(totals["audio_lost"], totals["audio_packets"]), await diagnostics(why)

        # The SFU side: the student's downtrack hangs on the teacher's camera, and
        # Chrome's receiver reports reach it and parse.
        entry = student.subscriptions[video.track_id]
        downtrack = entry.downtrack
        assert downtrack is not None, await diagnostics(why)
        assert downtrack in room.track(video.track_id).downtracks, await diagnostics(why)
        assert downtrack.packets_sent > 0, await diagnostics(why)
        assert student.subscriptions[audio.track_id].downtrack is not None, await diagnostics(why)
        try:
            await wait_until(lambda: downtrack.fraction_lost is not None, 5)
        except TimeoutError:
            pytest.fail(f"no receiver report from Chrome reached the SFU\n{await diagnostics(why)}")
        assert sfu.counters.malformed_rtcp == 0, await diagnostics(why)
        assert sfu.counters.unexpected_rtp == 0, await diagnostics(why)

        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "browser-subscribe.png"))

        # 2. One video packet in 25 lost: Chrome NACKs, the SFU answers with RTX from
        #    its cache, and the picture goes on.
        camera = room.track(video.track_id)
        nacks, resent = sfu.counters.nacks_received, camera.counters.retransmitted
        with _LossySink(downtrack, every=25) as lossy:
            repaired = await measure(2.0)
        print(f"1 in 25 lost, {len(lossy.dropped)} packets: {repaired}")
        why = f"1 in 25 lost: {repaired}"
        assert lossy.dropped, await diagnostics(why)
        assert sfu.counters.nacks_received > nacks, await diagnostics(why)
        assert camera.counters.retransmitted > resent, await diagnostics(why)
        assert lossy.retransmissions > 0, await diagnostics(why)
        assert repaired["nacks"] > 0, await diagnostics(why)
        assert repaired["decoded_fps"] >= 15, await diagnostics(why)
        assert sfu.counters.malformed_rtcp == 0, await diagnostics(why)

        # 3. Every keyframe lost for good: nothing decodes until Chrome asks for a
        #    keyframe (PLI), which the SFU parses and passes on to the teacher.
        plis, requests = sfu.counters.plis_received, camera.counters.keyframe_requests
        teacher_plis = sum(isinstance(p, Pli) for p in publisher.rtcp_received)
        before = await page.evaluate(SNAPSHOT)
        with _LossySink(downtrack, keyframes=True) as lossy:
            try:
                await wait_until(lambda: sfu.counters.plis_received > plis, 10)
            except TimeoutError:
                pytest.fail(f"Chrome never sent a PLI\n{await diagnostics()}")
        stalled = _summary(before, await page.evaluate(SNAPSHOT))
        why = f"keyframes lost: {stalled}"
        try:  # at most one request per 500 ms: this one may be deferred a little
            await wait_until(lambda: camera.counters.keyframe_requests > requests, 2)
            await wait_until(
                lambda: sum(isinstance(p, Pli) for p in publisher.rtcp_received) > teacher_plis, 2
            )
        except TimeoutError:
            pytest.fail(f"Chrome's PLI did not reach the teacher\n{await diagnostics(why)}")
        # The next keyframe gets through and the picture moves again.
        recovered = await measure(2.0)
        print(f"keyframes lost ({len(lossy.dropped)}): {stalled}\nafter: {recovered}")
        why = f"keyframes lost: {stalled}\nafter: {recovered}"
        assert recovered["totals"]["plis"] >= 1, await diagnostics(why)
        assert recovered["decoded_fps"] >= 10, await diagnostics(why)
        assert sfu.counters.malformed_rtcp == 0, await diagnostics(why)
        # By now the SFU's sender reports (derived from the teacher's) have reached Chrome.
        assert all(n and n > 0 for n in recovered["totals"]["sender_reports"]), await diagnostics(
            why
        )
        print(
            f"SFU: counters {sfu.counters.as_dict()}; camera downtrack: "
            f"{downtrack.packets_sent} sent, fraction lost {downtrack.fraction_lost}, "
            f"jitter {downtrack.jitter_ms} ms, rtt {downtrack.rtt_ms} ms, REMB {downtrack.remb}; "
            f"RTCP from Chrome: {dict(chrome_rtcp)}, from the SFU: {dict(sfu_rtcp)}"
        )

        # 4. The teacher leaves: the SFU sends BYE and renegotiates both m-lines to inactive.
        answered = await page.evaluate("window.sabaqNegotiations")
        audio_ssrc = student.subscriptions[audio.track_id].downtrack.ssrc
        await publisher.close()
        left = time.monotonic()
        await room.leave("teacher")
        await wait_in_page(
            "window.sabaqNegotiations > arg"
            " && window.sabaqTransceivers().every(t => t.currentDirection === 'inactive')",
            "the page did not follow the renegotiation after the teacher left",
            5,
            answered,
        )
        followed_s = time.monotonic() - left
        assert signaling.offers_sent[-1].tracks == (), await diagnostics()
        assert student.subscriptions == {}, await diagnostics()
        assert {s for bye in byes for s in bye.ssrcs} >= {
            downtrack.ssrc,
            audio_ssrc,
        }, await diagnostics(f"BYEs sent: {byes}")
        transceivers = await page.evaluate("window.sabaqTransceivers()")
        track_events = await page.evaluate("window.sabaqTrackEvents")
        print(
            f"teacher left: the page answered the renegotiation in {followed_s:.2f} s; "
            f"BYEs sent {byes}; transceivers {transceivers}; track events {track_events}"
        )
        # Chrome mutes a remote track whose m-line stops receiving.
        assert all(t["trackMuted"] for t in transceivers), await diagnostics()
        assert all(t["trackReadyState"] == "live" for t in transceivers), await diagnostics()

        # 5. The teacher comes back: the SFU reuses the student's two m-lines (same mids,
        #    same SSRCs, numbering continued) and the page plays the new tracks on them.
        teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
        publisher = Publisher(teacher)
        stack.push_async_callback(publisher.close)
        publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
        publisher.add(Source.MICROPHONE)
        answered = await page.evaluate("window.sabaqNegotiations")
        idle = await page.evaluate(SNAPSHOT)
        await publisher.publish()
        back = await log.wait_for(
            lambda e: isinstance(e, TrackPublished) and e.kind == "video" and e != video, 10
        )
        await wait_in_page(
            "window.sabaqNegotiations > arg && window.sabaqTransceivers().every("
            "t => t.currentDirection === 'recvonly' && !t.trackMuted && t.source !== null)",
            "the page did not receive the returning teacher",
            10,
            answered,
        )
        deadline = time.monotonic() + 5
        while (await page.evaluate(SNAPSHOT))["inbound"]["camera"]["framesDecoded"] < (
            idle["inbound"]["camera"]["framesDecoded"] + 5
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"the returning teacher's video never decoded\n{await diagnostics()}")
            await asyncio.sleep(0.1)
        returned = await measure(1.5)
        since_idle = _summary(idle, await page.evaluate(SNAPSHOT))
        print(f"teacher back (track {back.track_id}): {returned}\nsince the return: {since_idle}")
        why = f"teacher back: {returned}\nsince the return: {since_idle}"
        transceivers = await page.evaluate("window.sabaqTransceivers()")
        assert [t["mid"] for t in transceivers] == ["0", "1"], await diagnostics(why)
        end = await page.evaluate(SNAPSHOT)
        for source in ("camera", "microphone"):
            same_ssrc = end["inbound"][source]["ssrc"] == idle["inbound"][source]["ssrc"]
            assert same_ssrc, await diagnostics(why)
        assert returned["decoded_fps"] >= 15, await diagnostics(why)
        assert returned["audio_packets"] >= 25, await diagnostics(why)
        # The numbering continues across the return: Chrome sees no jump, so no loss.
        continued = _few_lost(since_idle["video_lost"], since_idle["video_packets"]) and _few_lost(
            since_idle["audio_lost"], since_idle["audio_packets"]
        )
        assert continued, await diagnostics(why)

        assert await page.evaluate("window.sabaqConnectionState") == "connected"
        assert await page.evaluate("window.sabaqError") is None, await diagnostics()
        assert not [c for c in console if c.startswith("pageerror")], await diagnostics()
        assert sfu.counters.malformed_rtcp == 0, await diagnostics()
        assert sfu.counters.unexpected_rtp == 0, await diagnostics()
        assert "unparseable" not in chrome_rtcp, await diagnostics()
        assert "unparseable" not in sfu_rtcp, await diagnostics()
        # Every offer was answered, the first, the teacher's leaving and return.
        assert signaling.answers == len(signaling.offers_sent) >= 3, await diagnostics()
