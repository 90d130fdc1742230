"""One recorded track: the SFU's in-process consumer, from RTP packets to timed frames.

`TrackRecorder.on_rtp` runs synchronously on the SFU's packet path, so it
does only arithmetic and a queue put: parse the header, put the packet in
sequence order (a small reorder buffer), depacketize, give each frame its
start time and hand it to the writer thread.

Start times: a frame's RTP timestamp is mapped through the latest sender
report to the publisher's NTP clock, and from there to our wall clock with
an offset that all tracks of one publisher share (measured once, on the
first frame that had a sender report), so that the publisher's audio and
video stay as aligned as they were sent. Before a track's first sender
report, its first frame's arrival time anchors its timestamps. Times are
seconds since the recording's `t0`, one clock for every track of the lesson,
which is what puts a publisher who reconnects at the right place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sfu.rtcp import RtcpError, SenderReport, parse_rtcp
from sfu.rtp import RtpError, parse_rtp

from .depacketize import FrameAssembler

__all__ = ["FrameSink", "PublisherClock", "TrackRecorder", "TrackRecorderCounters"]

_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
# Wait up to 100 ms for a missing packet: the SFU repairs upstream loss with NACKs
# (a 20 ms tick plus a round trip) and forwards the repaired packet to us as well.
REORDER_DELAY = 0.1
# ...or until this many packets queue behind the gap (a 1080p keyframe is ~100 packets).
REORDER_PACKETS = 256
# While waiting for a keyframe, ask again this often (the SFU rate-limits to 2/s anyway).
KEYFRAME_RETRY = 1.0
# Frames queued for the writer beyond this are dropped (video: until the next keyframe)
# rather than letting a stalled disk grow memory without bound: ~2 minutes of 1080p.
MAX_BACKLOG_BYTES = 64 << 20


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class FrameSink(Protocol):
    """Where timed frames go: the recording's writer."""

    @property
    def backlog_bytes(self) -> int: ...

    def frame(self, key: int, data: bytes, start: float, keyframe: bool) -> None: ...

    def end_track(self, key: int, reason: str) -> None: ...


class PublisherClock:
    """The offset from one publisher's NTP clock to ours, shared by its tracks."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: float | None = None


@dataclass(slots=True)
class TrackRecorderCounters:
    """Packets of one track that never became frames, and why."""

    received: int = 0
    malformed_rtp: int = 0
    malformed_rtcp: int = 0
    late: int = 0  # duplicates, or arrived after their gap was given up on
    gaps: int = 0  # given up on after REORDER_DELAY
    sender_reports: int = 0
    overload_drops: int = 0  # frames dropped because the writer fell behind


class TrackRecorder:
    """Implements the SFU's TrackConsumer for one track of a recording."""

    __slots__ = (
        "_anchor",
        "_buffer",
        "_highest",
        "_last_request",
        "_next",
        "_now",
        "_sr",
        "assembler",
        "clock",
        "clock_rate",
        "counters",
        "ended",
        "key",
        "max_backlog",
        "on_end",
        "reorder_delay",
        "reorder_packets",
        "request_keyframe",
        "sink",
        "t0",
    )

    def __init__(
        self,
        key: int,
        mime_type: str,
        clock_rate: int,
        sink: FrameSink,
        clock: PublisherClock,
        t0: float,
        *,
        on_end: Callable[[TrackRecorder, str], None] | None = None,
        now: Callable[[], float] = time.time,
        reorder_delay: float = REORDER_DELAY,
        reorder_packets: int = REORDER_PACKETS,
        max_backlog: int = MAX_BACKLOG_BYTES,
    ) -> None:
        self.key = key
        self.clock_rate = clock_rate
        self.sink = sink
        self.clock = clock
        self.t0 = t0
        self.on_end = on_end
        self.request_keyframe: Callable[[], object] | None = None
        self.reorder_delay = reorder_delay
        self.reorder_packets = reorder_packets
        self.max_backlog = max_backlog
        self.counters = TrackRecorderCounters()
        self.assembler = FrameAssembler(mime_type, self._keyframe_needed)
        self.ended = False
        self._now = now
        self._buffer: dict[int, tuple[int, bool, bytes, float]] = {}
        self._highest: int | None = None
        self._next: int | None = None
        self._sr: tuple[float, int] | None = None  # (NTP as Unix seconds, RTP timestamp)
        self._anchor: tuple[float, int] | None = None  # (arrival, RTP timestamp)
        self._last_request = -KEYFRAME_RETRY

    # --- TrackConsumer ---------------------------------------------------

    def on_rtp(self, packet: bytes) -> None:
        """One forwarded packet; called synchronously by the SFU."""
        if self.ended:
            return
        now = self._now()
        try:
            header = parse_rtp(packet)
        except RtpError:
            self.counters.malformed_rtp += 1
            return
        self.counters.received += 1
        seq = self._extend(header.sequence_number)
        if self._next is None:
            self._next = seq
        buffer = self._buffer
        if seq < self._next or seq in buffer:
            self.counters.late += 1
            return
        payload = packet[header.payload_start : header.payload_end]
        if seq == self._next and not buffer:  # in order: the common case
            self._next = seq + 1
            self._deliver(seq, header.timestamp, header.marker, payload, now)
        else:
            buffer[seq] = (header.timestamp, header.marker, payload, now)
            self._drain(now, force=False)
        if self.assembler.waiting and now - self._last_request >= KEYFRAME_RETRY:
            self._ask_keyframe(now)

    def on_rtcp(self, packet: bytes) -> None:
        """Sender reports map our RTP timestamps to the publisher's NTP clock."""
        if self.ended:
            return
        try:
            packets = parse_rtcp(packet)
        except RtcpError:
            self.counters.malformed_rtcp += 1
            return
        for report in packets:
            if isinstance(report, SenderReport):
                ntp = report.ntp_timestamp
                seconds = (ntp >> 32) - _NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32
                if seconds <= 0:
                    continue  # aiortc reports NTP 0 until it has sent a packet
                self._sr = (seconds, report.rtp_timestamp)
                self.counters.sender_reports += 1

    def on_ended(self, reason: str) -> None:
        """The track or our subscription ended: flush what is complete, close the part."""
        if self.ended:
            return
        self._drain(self._now(), force=True)
        self.ended = True
        self.sink.end_track(self.key, reason)
        if self.on_end is not None:
            self.on_end(self, reason)

    # --- internals ---------------------------------------------------------

    def _extend(self, seq: int) -> int:
        highest = self._highest
        if highest is None:
            self._highest = seq
            return seq
        delta = (seq - highest) & 0xFFFF
        if delta < 0x8000:
            self._highest = highest + delta
            return highest + delta
        return highest - (0x10000 - delta)

    def _drain(self, now: float, force: bool) -> None:
        buffer = self._buffer
        while buffer:
            assert self._next is not None
            item = buffer.pop(self._next, None)
            if item is not None:
                self._next += 1
                self._deliver(self._next - 1, item[0], item[1], item[2], item[3])
                continue
            first = min(buffer)
            if (
                force
                or len(buffer) > self.reorder_packets
                or now - buffer[first][3] >= (self.reorder_delay)
            ):
                self.counters.gaps += 1
                self._next = first  # the assembler sees the gap and drops what it broke
                continue
            break

    def _deliver(
        self, seq: int, timestamp: int, marker: bool, payload: bytes, arrival: float
    ) -> None:
        for frame in self.assembler.push(seq, timestamp, marker, payload):
            if self.sink.backlog_bytes > self.max_backlog:
                self.counters.overload_drops += 1
                self.assembler.lose()
                continue
            start = self._start_of(frame.timestamp, arrival)
            self.sink.frame(self.key, frame.data, start, frame.keyframe)

    def _start_of(self, timestamp: int, arrival: float) -> float:
        """Seconds from t0 at which a frame with this RTP timestamp was captured."""
        sr = self._sr
        if sr is not None:
            media = sr[0] + _signed32(timestamp - sr[1]) / self.clock_rate
            clock = self.clock
            if clock.offset is None:
                clock.offset = arrival - media
            return media + clock.offset - self.t0
        anchor = self._anchor
        if anchor is None:
            anchor = self._anchor = (arrival, timestamp)
        return anchor[0] + _signed32(timestamp - anchor[1]) / self.clock_rate - self.t0

    def _keyframe_needed(self) -> None:
        self._ask_keyframe(self._now())

    def _ask_keyframe(self, now: float) -> None:
        self._last_request = now
        if self.request_keyframe is not None:
            self.request_keyframe()
