"""The forwarding path without a network: offsets, keyframe waits, RTX, sender reports."""

from __future__ import annotations

import itertools
import struct

import pytest

from sfu import Source
from sfu.rtcp import SenderReport, parse_rtcp
from sfu.rtp import parse_rtp
from sfu.track import Codec, DownTrack, InboundTrack

VP8 = Codec("video/VP8", 90000, None, 96, 97, feedback=frozenset({"nack", "nack pli"}))
KEY = bytes([0x10, 0x00])  # VP8 descriptor S=1, PID=0; payload header P=0: keyframe
DELTA = bytes([0x10, 0x01])  # P=1: interframe


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        self.rtp.append(bytes(packet))
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True


def _track() -> tuple[InboundTrack, list[bytes]]:
    upstream: list[bytes] = []
    track = InboundTrack(
        "t1",
        "teacher",
        Source.CAMERA,
        VP8,
        1111,
        2222,
        0,
        lambda p: upstream.append(p) or True,
        3333,
    )
    return track, upstream


def _feed(track: InboundTrack, seq: int, ts: int, body: bytes, now: float = 0.0) -> None:
    track.on_packet(seq & 0xFFFF, ts & 0xFFFFFFFF, False, body, None, now)


@pytest.mark.parametrize("first_seq", [0, 1000, 40000, 65530])
def test_video_starts_at_a_keyframe_and_numbers_continuously(first_seq: int) -> None:
    track, upstream = _track()
    sink = Sink()
    down = DownTrack(track, sink, ssrc=5555, payload_type=100, abs_send_time_id=3)
    track.add(down)
    assert upstream, "a new subscriber asks for a keyframe at once"
    _feed(track, first_seq, 0, DELTA + b"a")
    assert sink.rtp == []  # an interframe is useless before a keyframe
    for i in range(1, 10):
        _feed(track, first_seq + i, i * 3000, (KEY if i == 1 else DELTA) + bytes([i]))
    headers = [parse_rtp(p) for p in sink.rtp]
    assert len(headers) == 9
    assert {h.ssrc for h in headers} == {5555} and {h.payload_type for h in headers} == {100}
    seqs = [h.sequence_number for h in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert set(headers[0].extensions) == {3}  # abs-send-time, with the subscriber's id
    assert sink.rtp[0][headers[0].payload_start :] == KEY + b"\x01"


def test_mute_then_unmute_continues_the_sequence_and_waits_for_a_keyframe() -> None:
    track, _ = _track()
    sink = Sink()
    down = DownTrack(track, sink, ssrc=1, payload_type=96)
    track.add(down)
    _feed(track, 50000, 0, KEY)
    _feed(track, 50001, 3000, DELTA)
    track.set_muted(True)
    _feed(track, 50002, 6000, DELTA, now=0.1)
    track.set_muted(False)
    _feed(track, 50003, 9000, DELTA, now=0.2)
    _feed(track, 50004, 12000, KEY, now=2.0)
    seqs = [parse_rtp(p).sequence_number for p in sink.rtp]
    assert len(seqs) == 3
    assert (seqs[2] - seqs[1]) & 0xFFFF == 1


def test_nack_is_answered_with_rtx_carrying_the_original_sequence_number() -> None:
    track, _ = _track()
    sink = Sink()
    down = DownTrack(track, sink, ssrc=1, payload_type=96, rtx_ssrc=2, rtx_payload_type=97)
    track.add(down)
    for i in range(5):
        _feed(track, 100 + i, i * 3000, (KEY if i == 0 else DELTA) + bytes([i]))
    lost = parse_rtp(sink.rtp[2]).sequence_number
    assert down.retransmit((lost, (lost + 500) & 0xFFFF)) == 1  # the second is not cached
    rtx = parse_rtp(sink.rtp[-1])
    assert (rtx.ssrc, rtx.payload_type) == (2, 97)
    body = sink.rtp[-1][rtx.payload_start :]
    assert struct.unpack("!H", body[:2])[0] == lost and body[2:] == DELTA + bytes([2])


def test_sender_reports_map_our_timestamps_onto_the_publishers_clock() -> None:
    track, _ = _track()
    sink = Sink()
    down = DownTrack(track, sink, ssrc=1, payload_type=96)
    track.add(down)
    _feed(track, 10, 90000, KEY, now=100.0)
    report = SenderReport(
        1111, ntp_timestamp=7 << 32, rtp_timestamp=90000, packet_count=1, octet_count=2, reports=()
    )
    track.on_sender_report(report, now=100.0)
    packet = down.sender_report(now=101.0)
    assert packet is not None
    sr = parse_rtcp(packet)[0]
    assert isinstance(sr, SenderReport)
    out_ts = parse_rtp(sink.rtp[0]).timestamp
    assert sr.ntp_timestamp == 8 << 32  # one second later on the publisher's clock
    assert sr.rtp_timestamp == (out_ts + 90000) & 0xFFFFFFFF
    assert sr.packet_count == 1


def test_keyframe_requests_are_rate_limited_but_never_lost() -> None:
    track, upstream = _track()
    track.ssrc = 1111
    assert track.request_keyframe()
    assert not track.request_keyframe()  # inside 500 ms: deferred
    assert track.keyframe_pending
    track._last_keyframe_request -= 1.0
    track.flush_keyframe_request()
    assert len(upstream) == 2 and not track.keyframe_pending
