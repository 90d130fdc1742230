"""Unit tests for recorder.depacketize and recorder.bitstream: tables, round trips, fuzzing."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.media import cached_clip, read_packets
from recorder.bitstream import h264_dimensions, h264_sps_dimensions, opus_samples, vp8_dimensions
from recorder.depacketize import (
    DepacketizeError,
    Frame,
    FrameAssembler,
    _FuState,
    h264_nal_units,
    vp8_descriptor,
)

# --- VP8 payload descriptor (RFC 7741 4.2) ----------------------------------

VP8_DESCRIPTORS: list[tuple[str, bytes, tuple[bool, int, int]]] = [
    ("minimal_start", bytes([0x10, 0xAA]), (True, 0, 1)),
    ("continuation_partition_3", bytes([0x03, 0xAA]), (False, 3, 1)),
    ("x_without_fields", bytes([0x90, 0x00, 0xAA]), (True, 0, 2)),
    ("picture_id_7_bit", bytes([0x90, 0x80, 0x05, 0xAA]), (True, 0, 3)),
    ("picture_id_15_bit", bytes([0x90, 0x80, 0x81, 0x23, 0xAA]), (True, 0, 4)),
    ("tl0picidx", bytes([0x90, 0x40, 0x07, 0xAA]), (True, 0, 3)),
    ("tid_keyidx", bytes([0x90, 0x30, 0x40, 0xAA]), (True, 0, 3)),
    ("everything", bytes([0x90, 0xF0, 0x80, 0x01, 0x02, 0x03, 0xAA]), (True, 0, 6)),
]

VP8_BAD: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty"),
    ("x_without_extension", bytes([0x90]), "extension byte"),
    ("picture_id_missing", bytes([0x90, 0x80]), "picture ID"),
    ("descriptor_only", bytes([0x10]), "no data"),
    ("15_bit_picture_id_cut", bytes([0x90, 0x80, 0x81]), "no data"),
]


@pytest.mark.parametrize(("payload", "expected"), [c[1:] for c in VP8_DESCRIPTORS])
def test_vp8_descriptor(payload: bytes, expected: tuple[bool, int, int]) -> None:
    assert vp8_descriptor(payload) == expected


@pytest.mark.parametrize(("payload", "message"), [c[1:] for c in VP8_BAD])
def test_vp8_descriptor_errors(payload: bytes, message: str) -> None:
    with pytest.raises(DepacketizeError, match=message):
        vp8_descriptor(payload)


# --- H.264 payloads (RFC 6184) -------------------------------------------------

# The SPS of the 640x360 baseline clip that loadtests.media generates with libx264.
SPS = bytes.fromhex("6742c01eda0280bfe58400000300040000030 0f23c58ba80".replace(" ", ""))
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84]) + bytes(range(40))
SLICE = bytes([0x41, 0x9A, 0x02]) + bytes(range(30))


def stap_a(*nals: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu_a(nal: bytes, pieces: int) -> list[bytes]:
    body, size = nal[1:], -(-(len(nal) - 1) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    indicator = (nal[0] & 0xE0) | 28
    out = []
    for i, chunk in enumerate(chunks):
        header = (nal[0] & 0x1F) | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(bytes([indicator, header]) + chunk)
    return out


H264_PAYLOADS: list[tuple[str, list[bytes], list[list[bytes]]]] = [
    ("single_nal", [SLICE], [[SLICE]]),
    ("stap_a", [stap_a(SPS, PPS)], [[SPS, PPS]]),
    ("fu_a_three_fragments", fu_a(IDR, 3), [[], [], [IDR]]),
    ("fu_a_two_fragments", fu_a(IDR, 2), [[], [IDR]]),
]

H264_BAD: list[tuple[str, list[bytes], str]] = [
    ("empty", [b""], "empty"),
    ("stap_a_cut_size", [bytes([0x78, 0x00])], "truncated"),
    ("stap_a_too_long", [bytes([0x78, 0x00, 0x09, 0x67])], "exceeds"),
    ("stap_a_zero_length", [bytes([0x78, 0x00, 0x00])], "exceeds"),
    ("stap_a_empty", [bytes([0x78])], "no NAL"),
    ("fu_a_continuation_first", fu_a(IDR, 3)[1:2], "without its start"),
    ("fu_a_two_starts", fu_a(IDR, 3)[:1] * 2, "another fragmented"),
    ("fu_a_start_and_end", [bytes([0x7C, 0xC5, 0x00])], "both"),
    ("fu_a_no_fragment", [bytes([0x7C, 0x85])], "no fragment"),
    ("stap_b", [bytes([0x79, 0, 0, 0, 1, 0x41])], "type 25"),
    ("fu_b", [bytes([0x7D, 0x85, 0, 0, 1])], "type 29"),
    ("type_0", [bytes([0x00, 0x01])], "type 0"),
    ("type_31", [bytes([0x1F, 0x01])], "type 31"),
]


@pytest.mark.parametrize(("payloads", "expected"), [c[1:] for c in H264_PAYLOADS])
def test_h264_nal_units(payloads: list[bytes], expected: list[list[bytes]]) -> None:
    fu = _FuState()
    assert [h264_nal_units(p, fu) for p in payloads] == expected
    assert fu.parts is None


@pytest.mark.parametrize(("payloads", "message"), [c[1:] for c in H264_BAD])
def test_h264_nal_unit_errors(payloads: list[bytes], message: str) -> None:
    fu = _FuState()
    with pytest.raises(DepacketizeError, match=message):
        for payload in payloads:
            h264_nal_units(payload, fu)


# --- frame headers ---------------------------------------------------------------

OPUS_TOCS: list[tuple[bytes, int]] = [
    (bytes([0x00]), 480),  # SILK NB 10 ms, one frame
    (bytes([0x08]), 960),  # SILK NB 20 ms
    (bytes([0x18]), 2880),  # SILK NB 60 ms
    (bytes([0x60]), 480),  # hybrid SWB 10 ms
    (bytes([0x78]), 960),  # hybrid FB 20 ms
    (bytes([0x80]), 120),  # CELT NB 2.5 ms
    (bytes([0xF8]), 960),  # CELT FB 20 ms (what browsers send)
    (bytes([0xF9]), 1920),  # code 1: two equal frames
    (bytes([0xFA]), 1920),  # code 2: two frames of different sizes
    (bytes([0xFB, 0x03]), 2880),  # code 3: three frames
    (bytes([0x1B, 0x02]), 5760),  # code 3: two 60 ms frames = 120 ms, the maximum
]


@pytest.mark.parametrize(("packet", "samples"), OPUS_TOCS)
def test_opus_samples(packet: bytes, samples: int) -> None:
    assert opus_samples(packet) == samples


@pytest.mark.parametrize(
    ("packet", "message"),
    [(b"", "empty"), (bytes([0xFB]), "frame count"), (bytes([0xFB, 0x00]), "zero"),
     (bytes([0x1B, 0x03]), "over 120 ms")],
)  # fmt: skip
def test_opus_samples_errors(packet: bytes, message: str) -> None:
    with pytest.raises(DepacketizeError, match=message):
        opus_samples(packet)


def _first_keyframe(codec: str, **clip: Any) -> bytes:
    return next(bytes(p) for p in read_packets(cached_clip(codec, **clip)) if p.is_keyframe)


@pytest.mark.parametrize(("width", "height"), [(640, 360), (176, 144), (320, 240)])
def test_picture_size_of_real_keyframes(width: int, height: int) -> None:
    clip = {"seconds": 0.2, "width": width, "height": height}
    assert vp8_dimensions(_first_keyframe("vp8", **clip)) == (width, height)
    assert h264_dimensions(_first_keyframe("h264", **clip)) == (width, height)


def test_picture_size_errors() -> None:
    key = _first_keyframe("vp8", seconds=0.2)
    with pytest.raises(DepacketizeError, match="not a keyframe"):
        vp8_dimensions(bytes([key[0] | 1]) + key[1:])
    with pytest.raises(DepacketizeError, match="start code"):
        vp8_dimensions(key[:3] + b"\0\0\0" + key[6:])
    with pytest.raises(DepacketizeError, match="no SPS"):
        h264_dimensions(b"\0\0\0\1" + SLICE)
    with pytest.raises(DepacketizeError, match=r"not an H\.264 SPS"):
        h264_sps_dimensions(PPS)
    assert h264_sps_dimensions(SPS) == (640, 360)
    readable = []
    for cut in range(len(SPS)):  # a truncation fails cleanly, unless only the VUI is cut
        try:
            assert h264_sps_dimensions(SPS[:cut]) == (640, 360)
            readable.append(cut)
        except DepacketizeError:
            assert not readable
    assert readable and readable[0] > 5


# --- the assembler ------------------------------------------------------------------


def rtp_of(codec: str, packets: list[av.Packet[Any]]) -> list[tuple[int, int, bool, bytes]]:
    """(seq, timestamp, marker, payload) as aiortc's own packetizers send these frames."""
    packer: Any = Vp8Encoder() if codec == "vp8" else H264Encoder()
    out, seq = [], 1000
    for packet in packets:
        payloads, timestamp = packer.pack(packet)
        for i, payload in enumerate(payloads):
            out.append((seq, timestamp, i == len(payloads) - 1, payload))
            seq += 1
    return out


def assemble(
    codec: str, packets: list[tuple[int, int, bool, bytes]], keyframes: list[int] | None = None
) -> tuple[FrameAssembler, list[Frame]]:
    requests = keyframes if keyframes is not None else []
    assembler = FrameAssembler(codec, lambda: requests.append(1))
    frames = [f for p in packets for f in assembler.push(*p)]
    return assembler, frames


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_round_trip_through_aiortc_packetizers(codec: str) -> None:
    clip = read_packets(cached_clip(codec, seconds=2.0, keyframe_interval_s=1.0))
    assembler, frames = assemble(f"video/{codec}", rtp_of(codec, clip))
    assert [f.keyframe for f in frames] == [bool(p.is_keyframe) for p in clip]
    if codec == "vp8":
        assert [f.data for f in frames] == [bytes(p) for p in clip]
    else:  # aiortc drops the AUD and rewrites start codes; the NAL units are the same
        for frame, packet in zip(frames, clip, strict=True):
            ours = [n for n in frame.data.split(b"\0\0\0\1") if n]
            theirs = [n.strip(b"\0") for n in bytes(packet).split(b"\0\0\1")]
            assert ours == [n for n in theirs if n and n[0] & 0x1F != 9]
    assert assembler.counters.dropped_frames == assembler.counters.parse_errors == 0


def test_a_lost_packet_drops_frames_until_the_next_keyframe() -> None:
    clip = read_packets(cached_clip("vp8", seconds=2.0, keyframe_interval_s=1.0))
    packets = rtp_of("vp8", clip)
    key_starts = [i for i, p in enumerate(packets) if p[3][0] & 0x10 and not p[3][1 + 3] & 1]
    lost = key_starts[0] + 3  # inside the first keyframe (it spans several packets)
    requests: list[int] = []
    assembler, frames = assemble("video/vp8", packets[:lost] + packets[lost + 1 :], requests)
    assert requests == [1]
    second_key = next(i for i, p in enumerate(clip) if p.is_keyframe and i > 0)
    assert frames[0].data == bytes(clip[second_key])
    assert len(frames) == len(clip) - second_key
    assert assembler.counters.losses == 1
    assert assembler.counters.dropped_frames == second_key


def test_a_frame_ends_at_a_new_timestamp_when_its_marker_is_lost() -> None:
    start = bytes([0x10, 0x00, 1, 2, 3])  # S=1, partition 0, keyframe (P=0)
    more = bytes([0x00, 4, 5])
    _, frames = assemble("video/vp8", [(1, 10, False, start), (2, 10, False, more),
                                       (3, 20, True, bytes([0x10, 0x01, 9]))])  # fmt: skip
    assert frames == [Frame(10, bytes([0, 1, 2, 3, 4, 5]), True), Frame(20, bytes([1, 9]), False)]


def test_a_frame_that_does_not_start_a_partition_is_dropped() -> None:
    assembler, frames = assemble("video/vp8", [(1, 10, True, bytes([0x00, 0x00, 1]))])
    assert frames == [] and assembler.counters.parse_errors == 1


def test_h264_idr_gets_the_parameter_sets_it_lacks() -> None:
    packets = [(1, 0, True, stap_a(SPS, PPS, IDR)), (2, 3000, True, SLICE)]
    packets += [(3 + i, 6000, i == 1, p) for i, p in enumerate(fu_a(IDR, 2))]
    _, frames = assemble("video/h264", packets)
    annex_b = b"\0\0\0\1"
    assert [f.keyframe for f in frames] == [True, False, True]
    assert frames[0].data == annex_b + SPS + annex_b + PPS + annex_b + IDR
    assert frames[2].data == annex_b + SPS + annex_b + PPS + annex_b + IDR


def test_h264_idr_without_any_parameter_set_is_not_a_keyframe() -> None:
    assembler, frames = assemble("video/h264", [(1, 0, True, IDR), (2, 10, True, SLICE)])
    assert frames == [] and assembler.waiting


def test_opus_loses_only_what_was_lost() -> None:
    packets = [(seq, seq * 960, False, bytes([0xF8, seq])) for seq in (1, 2, 4, 5, 5, 3)]
    assembler, frames = assemble("audio/opus", packets)
    assert [f.timestamp for f in frames] == [960, 1920, 3840, 4800]
    assert assembler.counters.losses == 1 and assembler.counters.late == 2
    assert not assembler.waiting


def test_unknown_codecs_are_refused() -> None:
    with pytest.raises(ValueError, match="VP9"):
        FrameAssembler("video/VP9")


# --- fuzzing: arbitrary bytes never raise anything but DepacketizeError ---------------


@pytest.mark.parametrize(
    "parser",
    [vp8_descriptor, h264_nal_units, opus_samples, vp8_dimensions, h264_dimensions,
     h264_sps_dimensions, lambda b: h264_sps_dimensions(b"\x67" + b)],
)  # fmt: skip
@given(data=st.binary(max_size=300))
@settings(max_examples=300)
def test_parsers_raise_only_their_error(parser: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DepacketizeError):
        parser(data)


@given(
    codec=st.sampled_from(["video/vp8", "video/h264", "audio/opus"]),
    packets=st.lists(
        st.tuples(st.integers(-2, 3), st.integers(0, 3), st.booleans(), st.binary(max_size=40)),
        max_size=40,
    ),
)
@settings(max_examples=300)
def test_the_assembler_never_raises(
    codec: str, packets: list[tuple[int, int, bool, bytes]]
) -> None:
    assembler = FrameAssembler(codec, lambda: None)
    seq = 100
    for step, timestamp, marker, payload in packets:
        seq += step
        for frame in assembler.push(seq, timestamp, marker, payload):
            assert frame.data


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_every_truncation_of_real_packets_is_survived(codec: str) -> None:
    packets = rtp_of(codec, read_packets(cached_clip(codec, seconds=0.2))[:3])
    for cut in range(0, 60):
        assembler = FrameAssembler(f"video/{codec}", lambda: None)
        for seq, timestamp, marker, payload in packets:
            assembler.push(seq, timestamp, marker, payload[:cut])
