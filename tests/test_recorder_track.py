"""Unit tests for recorder.track: reordering, gaps, timing through sender reports, overload."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.track import PublisherClock, TrackRecorder
from sfu.rtcp import build_sender_report, ntp_from_time
from sfu.rtp import build_rtp_header

T0 = 1_800_000_000.0  # the recording's t0 (wall clock)
KEY = bytes([0x10, 0x00, 0x9D])  # VP8: start of partition 0, P=0 (keyframe)
DELTA = bytes([0x10, 0x01, 0x9D])  # VP8: start of partition 0, P=1


@dataclass
class Sink:
    """Collects what a TrackRecorder hands to the writer."""

    backlog_bytes: int = 0
    frames: list[tuple[int, bytes, float, bool]] = field(default_factory=list)
    ended: list[tuple[int, str]] = field(default_factory=list)

    def frame(self, key: int, data: bytes, start: float, keyframe: bool) -> None:
        self.frames.append((key, data, start, keyframe))

    def end_track(self, key: int, reason: str) -> None:
        self.ended.append((key, reason))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rtp(seq: int, timestamp: int, payload: bytes, marker: bool = True, pt: int = 96) -> bytes:
    header = build_rtp_header(
        payload_type=pt, marker=marker, sequence_number=seq & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF, ssrc=1234,
    )  # fmt: skip
    return header + payload


def recorder(
    mime: str = "video/VP8", rate: int = 90000, clock: PublisherClock | None = None
) -> tuple[TrackRecorder, Sink, Clock, list[float]]:
    sink, now, requests = Sink(), Clock(), []
    track = TrackRecorder(1, mime, rate, sink, clock or PublisherClock(), T0, now=now)
    track.request_keyframe = lambda: requests.append(now.now)
    return track, sink, now, requests


def test_reordered_packets_come_out_in_order() -> None:
    track, sink, now, _ = recorder()
    packets = [rtp(65534, 0, KEY, False), rtp(65535, 0, bytes([0x00, 1])),  # wraps
               rtp(0, 3000, DELTA)]  # fmt: skip
    for packet in (packets[0], packets[2], packets[1]):
        track.on_rtp(packet)
        now.now += 0.01
    assert [(f[1], f[3]) for f in sink.frames] == [(b"\x00\x9d\x01", True), (b"\x01\x9d", False)]
    assert track.counters.gaps == 0 and track.counters.received == 3


def test_a_lost_packet_is_given_up_after_the_reorder_delay() -> None:
    track, sink, now, requests = recorder()
    track.on_rtp(rtp(10, 0, KEY))
    track.on_rtp(rtp(12, 6000, DELTA))  # 11 is missing
    assert len(sink.frames) == 1 and track.counters.gaps == 0
    now.now += 0.2
    track.on_rtp(rtp(13, 9000, DELTA))
    assert track.counters.gaps == 1 and track.assembler.waiting
    assert requests == [now.now]  # a keyframe is asked for at once
    track.on_rtp(rtp(11, 3000, DELTA))  # too late now
    assert track.counters.late == 1
    now.now += 1.5
    track.on_rtp(rtp(14, 12000, DELTA))
    assert requests == [T0 + 0.2, T0 + 1.7]  # and again while still waiting
    track.on_rtp(rtp(15, 15000, KEY))
    assert [f[3] for f in sink.frames] == [True, True] and not track.assembler.waiting


def test_sender_reports_align_a_publishers_tracks_whatever_their_delays() -> None:
    clock = PublisherClock()
    video, video_sink, video_now, _ = recorder(clock=clock)
    audio, audio_sink, audio_now, _ = recorder("audio/opus", 48000, clock)
    # The publisher's clock runs 5 s ahead of ours; both tracks captured at our T0 + 1.
    ntp = ntp_from_time(T0 + 5 + 1)
    video.on_rtcp(build_sender_report(1, ntp, 90_000, 0, 0))
    audio.on_rtcp(build_sender_report(2, ntp, 48_000, 0, 0))
    audio_now.now = T0 + 1.02  # audio arrives 20 ms after capture: sets the offset
    audio.on_rtp(rtp(1, 48_000, bytes([0xF8, 1]), pt=111))
    video_now.now = T0 + 1.3  # video 300 ms late: the offset is the publisher's, not its own
    video.on_rtp(rtp(1, 90_000 + 9000, KEY))  # captured 100 ms later
    assert abs(audio_sink.frames[0][2] - 1.02) < 1e-6
    assert abs(video_sink.frames[0][2] - 1.12) < 1e-6
    assert clock.offset is not None and abs(clock.offset - (-5 + 0.02)) < 1e-6


def test_before_a_sender_report_arrival_anchors_the_timestamps() -> None:
    track, sink, now, _ = recorder("audio/opus", 48000)
    track.on_rtcp(build_sender_report(1, 0, 0, 0, 0))  # aiortc's SR before any packet
    now.now = T0 + 2.0
    track.on_rtp(rtp(1, 4_294_967_000, bytes([0xF8])))
    now.now = T0 + 2.5  # arrival jitter does not move later frames: their timestamps do
    track.on_rtp(rtp(2, 4_294_967_000 + 960, bytes([0xF8])))  # wraps past 2**32
    assert [round(f[2], 3) for f in sink.frames] == [2.0, 2.02]
    assert track.counters.sender_reports == 0


def test_a_writer_that_falls_behind_costs_frames_not_memory() -> None:
    track, sink, _, requests = recorder()
    track.on_rtp(rtp(1, 0, KEY))
    sink.backlog_bytes = track.max_backlog + 1
    track.on_rtp(rtp(2, 3000, DELTA))
    sink.backlog_bytes = 0
    track.on_rtp(rtp(3, 6000, DELTA))  # depends on the dropped frame: dropped too
    track.on_rtp(rtp(4, 9000, KEY))
    assert [f[3] for f in sink.frames] == [True, True]
    assert track.counters.overload_drops == 1 and len(requests) == 1


def test_the_end_flushes_and_closes_once() -> None:
    track, sink, _, _ = recorder()
    track.on_rtp(rtp(1, 0, KEY))
    track.on_rtp(rtp(3, 6000, KEY))  # waits for 2
    track.on_ended("left")
    track.on_ended("closed")
    track.on_rtp(rtp(4, 9000, DELTA))
    assert [f[3] for f in sink.frames] == [True, True]
    assert sink.ended == [(1, "left")]


def test_malformed_packets_are_counted() -> None:
    track, _, _, _ = recorder()
    track.on_rtp(b"\x80")
    track.on_rtcp(b"\x81\xc8\x00\x01")
    assert (track.counters.malformed_rtp, track.counters.malformed_rtcp) == (1, 1)


@given(st.lists(st.binary(max_size=64), max_size=20), st.lists(st.binary(max_size=64)))
@settings(max_examples=200)
def test_arbitrary_bytes_never_raise(packets: list[bytes], reports: list[bytes]) -> None:
    track, _, now, _ = recorder()
    for packet in packets:
        track.on_rtp(packet)
        track.on_rtp(rtp(len(packet), len(packet) * 3000, packet, marker=bool(len(packet) % 2)))
        now.now += 0.03
    for report in reports:
        track.on_rtcp(report)
    track.on_ended("fuzzed")
