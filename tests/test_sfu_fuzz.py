"""Malformed RTP and RTCP from a connected peer are dropped and counted; nothing closes.

aiortc 1.16 raises ``struct.error`` on a header extension whose length runs
past the packet and closes the whole transport; Sabaq parses before aiortc
sees anything. Packets are SRTP-protected with the publisher's real keys, so
they reach the SFU's parser exactly as a buggy or hostile browser's would.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import pylibsrtp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu import IcePolicy, Sfu, SfuConfig, Source, TrackPublished
from tests.peers import LOOPBACK_ONLY, EventLog, Publisher, Subscriber, wait_until


class Lesson:
    """A live lesson on its own event loop, so Hypothesis can drive it from a sync test."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.runner.__enter__()
        self.runner.run(self._start())

    async def _start(self) -> None:
        self.log = EventLog()
        self.sfu = Sfu(SfuConfig(ice=IcePolicy(**LOOPBACK_ONLY)), on_event=self.log)
        await self.sfu.start()
        room = self.sfu.room("fuzz")
        self.teacher = await room.join("teacher", {Source.CAMERA, Source.MICROPHONE})
        self.publisher = Publisher(self.teacher)
        self.publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
        self.publisher.add(Source.MICROPHONE)
        self.student = Subscriber(await room.join("student"), self.log)
        await self.publisher.publish()
        video = await self.log.wait_for(
            lambda e: isinstance(e, TrackPublished) and e.kind == "video"
        )
        self.video_id = video.track_id
        await wait_until(lambda: len(self.student.packets_for(self.video_id)) > 10, 10)
        self.dtls: Any = self.publisher.pc.getTransceivers()[0].sender.transport
        self.camera_ssrc = self.publisher.ssrc_of(Source.CAMERA)

    def inject(self, packet: bytes, rtcp: bool) -> bool:
        """Protect with the publisher's SRTP keys and send; False if libsrtp refuses it."""
        try:
            srtp = self.dtls._tx_srtp
            data = srtp.protect_rtcp(packet) if rtcp else srtp.protect(packet)
        except (pylibsrtp.Error, ValueError):
            return False
        self.runner.run(self.dtls.transport._send(data))
        return True

    def last_camera_seq(self) -> int:
        return self.publisher.sent[self.camera_ssrc][-1].seq

    def settle(self, seconds: float) -> None:
        self.runner.run(asyncio.sleep(seconds))

    def close(self) -> None:
        async def stop() -> None:
            await self.student.close()
            await self.publisher.close()
            await self.sfu.close()

        self.runner.run(stop())
        self.runner.__exit__(None, None, None)


@pytest.fixture(scope="module")
def lesson() -> Iterator[Lesson]:
    running = Lesson()
    yield running
    running.close()


def _rtp_header(ssrc: int, seq: int, extension: bytes) -> bytes:
    first = 0x90 if extension else 0x80
    return struct.pack("!BBHII", first, 97, seq, 1234, ssrc) + extension


# The block's length fits the packet (libsrtp checks that much), but the
# elements inside may claim more bytes than the block has: aiortc's case.
bad_extensions = st.builds(
    lambda profile, words: struct.pack("!HH", profile, len(words) // 4) + words,
    st.sampled_from([0xBEDE, 0x1000, 0x1001]),
    st.integers(1, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extension=bad_extensions,
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=200),
    to_camera=st.booleans(),
)
def test_malformed_rtp_never_closes_the_connection(
    lesson: Lesson, extension: bytes, seq: int, payload: bytes, to_camera: bool
) -> None:
    if to_camera:
        # libsrtp refuses indexes far behind the stream's; repeat the last one.
        seq = lesson.last_camera_seq()
    ssrc = lesson.camera_ssrc if to_camera else 0x5AB4C
    lesson.inject(_rtp_header(ssrc, seq, extension) + payload, rtcp=False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(min_size=4, max_size=120),
    packet_type=st.integers(192, 223),
    count=st.integers(0, 31),
)
def test_malformed_rtcp_never_closes_the_connection(
    lesson: Lesson, body: bytes, packet_type: int, count: int
) -> None:
    length = len(body) // 4  # deliberately inconsistent with the real size most of the time
    header = struct.pack("!BBH", 0x80 | count, packet_type, length)
    lesson.inject(header + body, rtcp=True)


def test_after_the_fuzzing_the_lesson_is_still_running(lesson: Lesson) -> None:
    # The exact packet that makes aiortc 1.16 raise struct.error and close the transport.
    overflowing = struct.pack("!HH", 0xBEDE, 1) + bytes([0x1F, 0, 0, 0])
    packet = _rtp_header(lesson.camera_ssrc, lesson.last_camera_seq(), overflowing) + b"x" * 20
    assert lesson.inject(packet, rtcp=False)
    lesson.settle(0.3)
    assert lesson.teacher.publisher_pc.connectionState == "connected"
    assert lesson.sfu.counters.malformed_rtp > 0
    assert lesson.sfu.counters.malformed_rtcp > 0
    before = len(lesson.student.packets_for(lesson.video_id))
    lesson.settle(1.0)
    assert len(lesson.student.packets_for(lesson.video_id)) > before + 15
