"""Tests for sfu.rtp: hand-built fixtures, round trips, truncations and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.rtp import (
    RtpError,
    RtpHeader,
    abs_send_time,
    audio_level,
    build_extension_block,
    build_rtp_header,
    is_rtcp,
    parse_rtp,
    unwrap_rtx,
)

SEQ = 0x1234
TS = 0xDEADBEEF
SSRC = 0x01020304


def fixed(
    first: int = 0x80, second: int = 96, seq: int = SEQ, ts: int = TS, ssrc: int = SSRC
) -> bytes:
    """A 12-byte fixed header with raw first and second bytes."""
    return struct.pack("!BBHII", first, second, seq, ts, ssrc)


# One-byte block: id 1 (1 byte), a padding byte, id 3 (3 bytes), then 1 byte of padding.
ONE_BYTE_BLOCK = struct.pack("!HH", 0xBEDE, 2) + bytes([0x10, 0x22, 0x00, 0x32, 1, 2, 3, 0])
# Two-byte block: id 1 (0 bytes), id 200 (3 bytes), padding to 8 bytes.
TWO_BYTE_BLOCK = struct.pack("!HH", 0x1000, 2) + bytes([1, 0, 200, 3, 7, 8, 9, 0])

VALID_PACKETS: list[tuple[str, bytes, RtpHeader]] = [
    (
        "plain",
        fixed() + b"abc",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {}, 12, 15),
    ),
    (
        "marker_pt111_empty_payload",
        fixed(second=0x80 | 111),
        RtpHeader(111, True, SEQ, TS, SSRC, False, {}, 12, 12),
    ),
    (
        "two_csrcs",
        fixed(first=0x82) + struct.pack("!II", 5, 6) + b"xy",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {}, 20, 22),
    ),
    (
        "one_byte_extensions",
        fixed(first=0x90) + ONE_BYTE_BLOCK + b"pay",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {1: b"\x22", 3: b"\x01\x02\x03"}, 24, 27),
    ),
    (
        "one_byte_id15_stops",
        fixed(first=0x90)
        + struct.pack("!HH", 0xBEDE, 2)
        + bytes([0x10, 0x22, 0xF0, 0x32, 1, 2, 3, 0])
        + b"p",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {1: b"\x22"}, 24, 25),
    ),
    (
        "two_byte_extensions",
        fixed(first=0x90) + TWO_BYTE_BLOCK + b"pay",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {1: b"", 200: b"\x07\x08\x09"}, 24, 27),
    ),
    (
        "two_byte_appbits",
        fixed(first=0x90) + struct.pack("!HH", 0x100F, 1) + bytes([4, 1, 0xAA, 0]),
        RtpHeader(96, False, SEQ, TS, SSRC, False, {4: b"\xaa"}, 20, 20),
    ),
    (
        "unknown_profile_ignored",
        fixed(first=0x90) + struct.pack("!HH", 0x1234, 1) + b"\xff\xff\xff\xff" + b"z",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {}, 20, 21),
    ),
    (
        "empty_extension_block",
        fixed(first=0x90) + struct.pack("!HH", 0xBEDE, 0) + b"z",
        RtpHeader(96, False, SEQ, TS, SSRC, False, {}, 16, 17),
    ),
    (
        "padding",
        fixed(first=0xA0) + b"xy" + b"\x00\x00\x03",
        RtpHeader(96, False, SEQ, TS, SSRC, True, {}, 12, 14),
    ),
    (
        "padding_only",
        fixed(first=0xA0) + b"\x00\x00\x00\x04",
        RtpHeader(96, False, SEQ, TS, SSRC, True, {}, 12, 12),
    ),
    (
        "csrc_extension_padding",
        fixed(first=0xB1) + struct.pack("!I", 9) + ONE_BYTE_BLOCK + b"pp\x02",
        RtpHeader(96, False, SEQ, TS, SSRC, True, {1: b"\x22", 3: b"\x01\x02\x03"}, 28, 29),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [(d, e) for _, d, e in VALID_PACKETS],
    ids=[n for n, _, _ in VALID_PACKETS],
)
def test_parse_valid(data: bytes, expected: RtpHeader) -> None:
    assert parse_rtp(data) == expected


INVALID_PACKETS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "0 bytes, shorter than the 12-byte"),
    ("eleven_bytes", fixed()[:11], "11 bytes, shorter than the 12-byte"),
    ("version_1", fixed(first=0x40), "version is 1, expected 2"),
    ("version_0", fixed(first=0x00), "version is 0, expected 2"),
    ("csrc_past_end", fixed(first=0x83) + bytes(8), "CSRC list of 3 entries ends at 24, past 20"),
    ("ext_header_truncated", fixed(first=0x90) + b"\xbe\xde", "extension header at offset 12"),
    (
        "ext_block_past_end",
        fixed(first=0x90) + struct.pack("!HH", 0xBEDE, 2) + bytes(4),
        "extension block of 2 words ends at offset 24, past 20",
    ),
    (
        "one_byte_element_overrun",
        # id 1 claims 4 bytes (len-1 = 3) but only 3 bytes remain in the 1-word block.
        fixed(first=0x90) + struct.pack("!HH", 0xBEDE, 1) + bytes([0x13, 1, 2, 3]) + b"tail",
        "one-byte extension element id 1 at offset 16 needs 4 bytes, but the extension "
        "block ends at offset 20",
    ),
    (
        "two_byte_element_overrun",
        fixed(first=0x90) + struct.pack("!HH", 0x1000, 1) + bytes([5, 9, 1, 2]),
        "two-byte extension element id 5 at offset 16 needs 9 bytes",
    ),
    (
        "two_byte_length_missing",
        fixed(first=0x90) + struct.pack("!HH", 0x1000, 1) + bytes([0, 0, 0, 7]),
        "two-byte extension element id 7 at offset 19 has no length byte",
    ),
    ("padding_zero", fixed(first=0xA0) + b"ab\x00", "padding count is 0"),
    ("padding_too_big", fixed(first=0xA0) + b"ab\x04", "padding count 4 exceeds the 3 bytes"),
    ("padding_no_room", fixed(first=0xA0), "padding count 4 exceeds the 0 bytes"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    [(d, m) for _, d, m in INVALID_PACKETS],
    ids=[n for n, _, _ in INVALID_PACKETS],
)
def test_parse_invalid(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    assert message in str(info.value)


def test_extension_overrun_is_rtp_error_not_struct_error() -> None:
    # The extension block is 2 words; the second element claims 16 bytes but 4 remain.
    block = struct.pack("!HH", 0xBEDE, 2) + bytes([0x21, 0xAA, 0xBB, 0x3F, 1, 2, 3, 4])
    data = fixed(first=0x90) + block + b"payload"
    with pytest.raises(RtpError, match="id 3 at offset 19 needs 16 bytes"):
        parse_rtp(data)


def _check_consistent(data: bytes, header: RtpHeader) -> None:
    assert 12 <= header.payload_start <= header.payload_end <= len(data)
    assert 0 <= header.payload_type <= 127
    assert all(isinstance(value, bytes) for value in header.extensions.values())


@pytest.mark.parametrize(
    "data", [d for _, d, _ in VALID_PACKETS], ids=[n for n, _, _ in VALID_PACKETS]
)
def test_every_truncation_parses_or_raises_rtp_error(data: bytes) -> None:
    for cut in range(len(data) + 1):
        prefix = data[:cut]
        try:
            header = parse_rtp(prefix)
        except RtpError:
            continue
        _check_consistent(prefix, header)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", False),
        (b"\x80", False),
        (b"\x80\xc8", True),  # SR
        (b"\x81\xcd\x00\x03", True),  # RTPFB
        (b"\x80\xc0", True),  # 192, lowest in range
        (b"\x80\xdf", True),  # 223, highest in range
        (b"\x80\xbf", False),  # 191: RTP marker + PT 63
        (b"\x80\xe0", False),  # 224: RTP marker + PT 96
        (b"\x80\x60", False),  # PT 96, no marker
        (b"\x80\x6f", False),  # PT 111
    ],
)
def test_is_rtcp(data: bytes, expected: bool) -> None:
    assert is_rtcp(data) is expected


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        ([], b""),
        ([(1, b"\x22")], struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, 0x22, 0, 0])),
        (
            [(1, b"\x22"), (3, b"\x01\x02\x03")],
            struct.pack("!HH", 0xBEDE, 2) + bytes([0x10, 0x22, 0x32, 1, 2, 3, 0, 0]),
        ),
        ([(14, bytes(16))], struct.pack("!HH", 0xBEDE, 5) + b"\xef" + bytes(19)),
        # Id 15 forces the two-byte form.
        ([(15, b"\x01")], struct.pack("!HH", 0x1000, 1) + bytes([15, 1, 1, 0])),
        # An empty element forces the two-byte form.
        ([(2, b"")], struct.pack("!HH", 0x1000, 1) + bytes([2, 0, 0, 0])),
        # 17 bytes of data forces the two-byte form.
        ([(2, bytes(17))], struct.pack("!HH", 0x1000, 5) + bytes([2, 17]) + bytes(18)),
        (
            [(1, b"\xaa"), (255, b"\xbb\xcc")],
            struct.pack("!HH", 0x1000, 2) + bytes([1, 1, 0xAA, 255, 2, 0xBB, 0xCC, 0]),
        ),
    ],
)
def test_build_extension_block(elements: list[tuple[int, bytes]], expected: bytes) -> None:
    assert build_extension_block(elements) == expected


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        ([(0, b"\x01")], "id 0 is outside 1..255"),
        ([(256, b"\x01")], "id 256 is outside 1..255"),
        ([(-1, b"\x01")], "id -1 is outside 1..255"),
        ([(3, bytes(256))], "id 3 has 256 bytes, more than 255"),
    ],
)
def test_build_extension_block_invalid(elements: list[tuple[int, bytes]], message: str) -> None:
    with pytest.raises(RtpError, match=message):
        build_extension_block(elements)


def test_build_rtp_header_exact() -> None:
    header = build_rtp_header(
        payload_type=111, marker=True, sequence_number=SEQ, timestamp=TS, ssrc=SSRC
    )
    assert header == fixed(second=0x80 | 111)
    with_ext = build_rtp_header(
        payload_type=96,
        marker=False,
        sequence_number=0,
        timestamp=0,
        ssrc=SSRC,
        padding=True,
        extension_block=ONE_BYTE_BLOCK,
    )
    assert with_ext == fixed(first=0xB0, seq=0, ts=0) + ONE_BYTE_BLOCK


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "payload type 128 is outside 0..127"),
        ({"payload_type": -1}, "payload type -1 is outside 0..127"),
        ({"sequence_number": 65536}, "header field out of range"),
        ({"timestamp": 1 << 32}, "header field out of range"),
        ({"ssrc": -1}, "header field out of range"),
        ({"extension_block": b"\xbe\xde"}, "not a whole, non-empty number of 32-bit words"),
        ({"extension_block": b"\xbe\xde\x00\x01\x00"}, "extension block of 5 bytes"),
    ],
)
def test_build_rtp_header_invalid(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "payload_type": 96,
        "marker": False,
        "sequence_number": 1,
        "timestamp": 2,
        "ssrc": 3,
    }
    args.update(kwargs)
    with pytest.raises(RtpError, match=message):
        build_rtp_header(**args)  # type: ignore[arg-type]


def test_build_then_parse_round_trip() -> None:
    block = build_extension_block([(1, b"\x80"), (2, b"\x01\x02\x03"), (5, b"\x00\x00")])
    data = (
        build_rtp_header(
            payload_type=100,
            marker=True,
            sequence_number=65535,
            timestamp=0xFFFFFFFF,
            ssrc=0xCAFEBABE,
            padding=True,
            extension_block=block,
        )
        + b"media"
        + b"\x00\x02"
    )
    header = parse_rtp(data)
    assert header == RtpHeader(
        payload_type=100,
        marker=True,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0xCAFEBABE,
        padding=True,
        extensions={1: b"\x80", 2: b"\x01\x02\x03", 5: b"\x00\x00"},
        payload_start=12 + len(block),
        payload_end=12 + len(block) + 5,
    )
    assert data[header.payload_start : header.payload_end] == b"media"


def test_unwrap_rtx() -> None:
    data = fixed(first=0xA0, second=97) + struct.pack("!H", 0xBEEF) + b"orig" + b"\x00\x02"
    header = parse_rtp(data)
    assert unwrap_rtx(data, header) == (0xBEEF, b"orig")
    only_osn = fixed(second=97) + b"\x00\x07"
    assert unwrap_rtx(only_osn, parse_rtp(only_osn)) == (7, b"")


@pytest.mark.parametrize("payload", [b"", b"\x01"])
def test_unwrap_rtx_too_short(payload: bytes) -> None:
    data = fixed(second=97) + payload
    with pytest.raises(RtpError, match=f"RTX payload is {len(payload)} bytes"):
        unwrap_rtx(data, parse_rtp(data))


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        (b"\x00", (False, 0)),
        (b"\x7f", (False, 127)),
        (b"\x85", (True, 5)),
        (b"\xff\x00", (True, 127)),
    ],
)
def test_audio_level(element: bytes, expected: tuple[bool, int]) -> None:
    assert audio_level(element) == expected


def test_audio_level_empty() -> None:
    with pytest.raises(RtpError, match="audio level extension element is empty"):
        audio_level(b"")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, b"\x00\x00\x00"),
        (0.5, b"\x02\x00\x00"),
        (1.0, b"\x04\x00\x00"),
        (63.0, b"\xfc\x00\x00"),
        (64.0, b"\x00\x00\x00"),  # wraps every 64 s
        (65.25, b"\x05\x00\x00"),
        (64.0 - 2**-18, b"\xff\xff\xff"),
        (1_700_000_000.0, ((1_700_000_000 % 64) << 18).to_bytes(3, "big")),
    ],
)
def test_abs_send_time(seconds: float, expected: bytes) -> None:
    assert abs_send_time(seconds) == expected


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), float("-inf")])
def test_abs_send_time_not_finite(seconds: float) -> None:
    with pytest.raises(RtpError, match="finite"):
        abs_send_time(seconds)


@given(st.binary(max_size=64))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    try:
        header = parse_rtp(data)
    except RtpError:
        return
    _check_consistent(data, header)


@given(
    st.integers(0x80, 0xBF),
    st.sampled_from([0xBEDE, 0x1000, 0x1005, 0x0000]),
    st.integers(0, 6),
    st.binary(max_size=40),
)
def test_parse_fuzzed_extension_blocks(first: int, profile: int, words: int, rest: bytes) -> None:
    # Version 2 with a plausible extension header, so fuzzing reaches the element parsers.
    data = fixed(first=first) + struct.pack("!HH", profile, words) + rest
    try:
        header = parse_rtp(data)
    except RtpError:
        return
    _check_consistent(data, header)


_elements = st.dictionaries(
    st.integers(1, 255), st.binary(max_size=255), min_size=1, max_size=8
).map(lambda d: list(d.items()))


@given(_elements)
def test_extension_round_trip(elements: list[tuple[int, bytes]]) -> None:
    block = build_extension_block(elements)
    assert len(block) % 4 == 0
    data = (
        build_rtp_header(
            payload_type=96,
            marker=False,
            sequence_number=1,
            timestamp=2,
            ssrc=3,
            extension_block=block,
        )
        + b"x"
    )
    header = parse_rtp(data)
    assert header.extensions == dict(elements)
    assert header.payload_start == 12 + len(block)
