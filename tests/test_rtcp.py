"""Tests for sfu.rtcp: hand-built fixtures, round trips, truncations and fuzzing."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sfu.rtcp import (
    Bye,
    Fir,
    Nack,
    Other,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SenderReport,
    build_bye,
    build_fir,
    build_nack,
    build_pli,
    build_receiver_report,
    build_remb,
    build_sdes_cname,
    build_sender_report,
    middle_32,
    ntp_from_time,
    parse_rtcp,
)

SENDER = 0x11111111
MEDIA = 0x22222222


def header(count: int, packet_type: int, words: int, padding: bool = False) -> bytes:
    """An RTCP common header; ``words`` is the length field (32-bit words minus one)."""
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, packet_type, words)


def block_bytes(ssrc: int, fraction: int, lost24: int, highest: int, jitter: int) -> bytes:
    """A 24-byte report block with LSR 0x01020304 and DLSR 0x00010000."""
    return struct.pack(
        "!IIIIII", ssrc, (fraction << 24) | lost24, highest, jitter, 0x01020304, 0x10000
    )


BLOCK_A = block_bytes(0xAAAA0001, 64, 0xFFFFFE, 0x0001FFFF, 42)  # lost -2
BLOCK_A_PARSED = ReportBlock(0xAAAA0001, 64, -2, 0x0001FFFF, 42, 0x01020304, 0x10000)
BLOCK_B = block_bytes(0xBBBB0002, 0, 0x7FFFFF, 7, 0)
BLOCK_B_PARSED = ReportBlock(0xBBBB0002, 0, 0x7FFFFF, 7, 0, 0x01020304, 0x10000)
NTP = 0xE8A1B2C3_80000000

SR = header(1, 200, 12) + struct.pack("!IQIII", SENDER, NTP, 90000, 10, 1000) + BLOCK_A
SR_PARSED = SenderReport(SENDER, NTP, 90000, 10, 1000, (BLOCK_A_PARSED,))
RR = header(2, 201, 13) + struct.pack("!I", SENDER) + BLOCK_A + BLOCK_B
RR_PARSED = ReceiverReport(SENDER, (BLOCK_A_PARSED, BLOCK_B_PARSED))
SDES = header(1, 202, 3) + struct.pack("!I", SENDER) + b"\x01\x03abc" + b"\x00\x00\x00"
NACK = header(1, 205, 3) + struct.pack("!IIHH", SENDER, MEDIA, 100, 0b1000_0000_0000_0101)
NACK_PARSED = Nack(SENDER, MEDIA, (100, 101, 103, 116))
NACK_WRAP = header(1, 205, 4) + struct.pack("!IIHHHH", SENDER, MEDIA, 65535, 1, 500, 0)
PLI = header(1, 206, 2) + struct.pack("!II", SENDER, MEDIA)
FIR = header(4, 206, 6) + struct.pack("!IIIB3xIB3x", SENDER, 0, MEDIA, 7, 0x33, 255)
# bitrate = 250000 << 2 = 1_000_000: exponent 2, mantissa 0x3D090.
REMB = header(15, 206, 6) + struct.pack(
    "!II4sBBHII", SENDER, 0, b"REMB", 2, (2 << 2) | 0x3, 0xD090, MEDIA, 0x33
)
BYE = header(2, 203, 4) + struct.pack("!II", SENDER, MEDIA) + b"\x03bye\x00\x00\x00\x00"
APP = header(3, 204, 2) + struct.pack("!I", SENDER) + b"name"
XR = header(0, 207, 1) + struct.pack("!I", SENDER)
TWCC = header(15, 205, 3) + struct.pack("!IIHH", SENDER, MEDIA, 1, 0)
PSFB_APP = header(15, 206, 3) + struct.pack("!II", SENDER, 0) + b"GOOG"
SLI = header(2, 206, 3) + struct.pack("!III", SENDER, MEDIA, 0)
PADDED_RR = header(0, 201, 2, padding=True) + struct.pack("!I", SENDER) + b"\x00\x00\x00\x04"

VALID: list[tuple[str, bytes, list[RtcpPacket]]] = [
    ("sr", SR, [SR_PARSED]),
    ("rr", RR, [RR_PARSED]),
    ("empty_rr", header(0, 201, 1) + struct.pack("!I", SENDER), [ReceiverReport(SENDER, ())]),
    ("sdes", SDES, [Other(202, 1)]),
    ("nack", NACK, [NACK_PARSED]),
    ("nack_wrap", NACK_WRAP, [Nack(SENDER, MEDIA, (65535, 0, 500))]),
    ("pli", PLI, [Pli(SENDER, MEDIA)]),
    ("fir", FIR, [Fir(SENDER, ((MEDIA, 7), (0x33, 255)))]),
    ("remb", REMB, [Remb(SENDER, 1_000_000, (MEDIA, 0x33))]),
    ("bye_with_reason", BYE, [Bye((SENDER, MEDIA))]),
    ("app", APP, [Other(204, 3)]),
    ("xr", XR, [Other(207, 0)]),
    ("transport_cc", TWCC, [Other(205, 15)]),
    ("psfb_app_not_remb", PSFB_APP, [Other(206, 15)]),
    ("sli", SLI, [Other(206, 2)]),
    ("padded_rr", PADDED_RR, [ReceiverReport(SENDER, ())]),
    (
        "compound",
        SR + SDES + NACK + PLI + REMB,
        [
            SR_PARSED,
            Other(202, 1),
            NACK_PARSED,
            Pli(SENDER, MEDIA),
            Remb(SENDER, 1_000_000, (MEDIA, 0x33)),
        ],
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in VALID], ids=[n for n, _, _ in VALID]
)
def test_parse_valid(data: bytes, expected: list[RtcpPacket]) -> None:
    assert parse_rtcp(data) == expected


INVALID: list[tuple[str, bytes, str]] = [
    ("empty", b"", "RTCP packet is empty"),
    ("short_header", b"\x80\xc9\x00", "header at offset 0 truncated: 3 bytes, need 4"),
    ("trailing_bytes", PLI + b"\x80\xc9", "header at offset 12 truncated: 2 bytes, need 4"),
    ("version_1", b"\x40" + PLI[1:], "packet at offset 0 has version 1, expected 2"),
    ("version_0_second", PLI + b"\x00" + PLI[1:], "offset 12 has version 0, expected 2"),
    ("length_past_end", PLI[:-1], "packet at offset 0 claims 12 bytes, only 11 left"),
    ("length_past_end_second", PLI + NACK[:8], "offset 12 claims 16 bytes, only 8 left"),
    (
        "rr_too_many_blocks",
        header(2, 201, 7) + struct.pack("!I", SENDER) + BLOCK_A,
        "RR at offset 0 has 2 report blocks needing 56 bytes, but only 32",
    ),
    (
        "sr_too_many_blocks",
        header(1, 200, 6) + bytes(24),
        "SR at offset 0 has 1 report blocks needing 52 bytes, but only 28",
    ),
    ("sr_short", header(0, 200, 1) + bytes(4), "SR at offset 0 has 0 report blocks needing 28"),
    ("rr_short", header(0, 201, 0), "RR at offset 0 has 0 report blocks needing 8 bytes"),
    ("bye_short", header(3, 203, 2) + bytes(8), "BYE at offset 0 lists 3 SSRCs but has only 12"),
    ("feedback_short", header(1, 206, 1) + bytes(4), "feedback packet at offset 0 is 8 bytes"),
    (
        "nack_fci_not_multiple_of_4",
        header(1, 205, 4, padding=True)
        + struct.pack("!IIHH", SENDER, MEDIA, 1, 0)
        + b"\x00\x00\x00\x02",
        "NACK at offset 0 has 6 bytes of FCI, not a multiple of 4",
    ),
    (
        "fir_fci_not_multiple_of_8",
        header(4, 206, 3) + struct.pack("!III", SENDER, 0, MEDIA),
        "FIR at offset 0 has 4 bytes of FCI, not a multiple of 8",
    ),
    (
        "remb_without_count",
        header(15, 206, 3) + struct.pack("!II", SENDER, 0) + b"REMB",
        "REMB at offset 0 has 4 bytes of FCI, need 8",
    ),
    (
        "remb_fewer_ssrcs_than_count",
        header(15, 206, 5) + struct.pack("!II4sBBHI", SENDER, 0, b"REMB", 2, 0, 1, MEDIA),
        "REMB at offset 0 lists 2 SSRCs but its FCI is only 12 bytes",
    ),
    (
        "padding_zero",
        header(0, 201, 2, padding=True) + struct.pack("!I", SENDER) + bytes(4),
        "offset 0 has bad padding count 0",
    ),
    (
        "padding_too_big",
        header(0, 201, 2, padding=True) + struct.pack("!I", SENDER) + b"\x00\x00\x00\x09",
        "offset 0 has bad padding count 9",
    ),
    (
        "padding_eats_ssrc",
        header(0, 201, 2, padding=True) + struct.pack("!I", SENDER) + b"\x00\x00\x00\x08",
        "RR at offset 0 has 0 report blocks needing 8 bytes, but only 4",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [(d, m) for _, d, m in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_parse_invalid(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError) as info:
        parse_rtcp(data)
    assert message in str(info.value)


@pytest.mark.parametrize("data", [d for _, d, _ in VALID], ids=[n for n, _, _ in VALID])
def test_every_truncation_parses_or_raises_rtcp_error(data: bytes) -> None:
    for cut in range(len(data)):
        prefix = data[:cut]
        try:
            packets = parse_rtcp(prefix)
        except RtcpError:
            continue
        # A prefix only parses when it ends on a packet boundary: then it is a prefix of the list.
        assert packets == parse_rtcp(data)[: len(packets)]


def test_build_sender_report_exact() -> None:
    assert build_sender_report(SENDER, NTP, 90000, 10, 1000, [BLOCK_A_PARSED]) == SR


def test_build_receiver_report_exact() -> None:
    assert build_receiver_report(SENDER, (BLOCK_A_PARSED, BLOCK_B_PARSED)) == RR
    assert build_receiver_report(SENDER) == header(0, 201, 1) + struct.pack("!I", SENDER)


def test_report_block_loss_is_clamped() -> None:
    # RFC 3550 A.3: cumulative loss saturates at the 24-bit signed limits.
    high = ReportBlock(1, 0, 10**9, 0, 0, 0, 0)
    low = ReportBlock(2, 0, -(10**9), 0, 0, 0, 0)
    (rr,) = parse_rtcp(build_receiver_report(SENDER, [high, low]))
    assert isinstance(rr, ReceiverReport)
    assert [b.packets_lost for b in rr.reports] == [0x7FFFFF, -0x800000]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: build_receiver_report(SENDER, [BLOCK_A_PARSED] * 32), "32 report blocks"),
        (lambda: build_receiver_report(1 << 32), "RR field out of range"),
        (
            lambda: build_receiver_report(SENDER, [ReportBlock(1, 256, 0, 0, 0, 0, 0)]),
            "fraction_lost 256 is outside 0..255",
        ),
        (lambda: build_sender_report(SENDER, 1 << 64, 0, 0, 0), "SR field out of range"),
        (lambda: build_sender_report(SENDER, 0, 0, -1, 0), "SR field out of range"),
        (lambda: build_sdes_cname(SENDER, "x" * 256), "CNAME is 256 bytes"),
        (lambda: build_sdes_cname(-1, "x"), "SDES SSRC out of range"),
        (lambda: build_nack(SENDER, MEDIA, []), "at least one lost sequence number"),
        (lambda: build_nack(SENDER, 1 << 32, [1]), "NACK SSRC out of range"),
        (lambda: build_pli(-1, MEDIA), "PLI SSRC out of range"),
        (lambda: build_fir(SENDER, 1 << 32, 0), "FIR SSRC out of range"),
        (lambda: build_remb(SENDER, -1, []), "bitrate -1 is negative"),
        (lambda: build_remb(SENDER, 1 << 81, []), "does not fit"),
        (lambda: build_remb(SENDER, 1, [0] * 256), "256 SSRCs, more than 255"),
        (lambda: build_remb(SENDER, 1, [1 << 32]), "REMB SSRC out of range"),
        (lambda: build_bye(list(range(32))), "32 SSRCs, more than 31"),
        (lambda: build_bye([-1]), "BYE SSRC out of range"),
        (lambda: ntp_from_time(float("nan")), "finite"),
    ],
)
def test_builders_reject_bad_values(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(RtcpError, match=message):
        build()


@pytest.mark.parametrize(
    ("cname", "chunk_tail"),
    [
        ("", b"\x01\x00\x00\x00"),  # 4 + 2 = 6 bytes, pad to 8 (2 nulls)
        ("ab", b"\x01\x02ab\x00\x00\x00\x00"),  # 4 + 4 = 8, a full null word is required
        ("abc", b"\x01\x03abc\x00\x00\x00"),  # 4 + 5 = 9, pad to 12
        ("abcd", b"\x01\x04abcd\x00\x00"),  # 4 + 6 = 10, pad to 12
        ("é", b"\x01\x02\xc3\xa9\x00\x00\x00\x00"),  # length counts UTF-8 bytes
    ],
)
def test_build_sdes_cname(cname: str, chunk_tail: bytes) -> None:
    chunk = struct.pack("!I", SENDER) + chunk_tail
    expected = header(1, 202, len(chunk) // 4) + chunk
    assert build_sdes_cname(SENDER, cname) == expected
    assert parse_rtcp(expected) == [Other(202, 1)]


def test_build_sdes_matches_fixture() -> None:
    assert build_sdes_cname(SENDER, "abc") == SDES


@pytest.mark.parametrize(
    ("lost", "pairs"),
    [
        ([100], [(100, 0)]),
        ([100, 101, 103, 116], [(100, 0b1000_0000_0000_0101)]),
        ([103, 116, 100, 101, 101], [(100, 0b1000_0000_0000_0101)]),  # order, duplicates
        ([100, 117], [(100, 0), (117, 0)]),  # 17 apart: needs a second PID
        ([65534, 65535, 0, 1], [(65534, 0b111)]),  # one pair across the wrap
        ([0, 1, 65535], [(65535, 0b11)]),  # the wrap-earlier seq becomes the PID
        ([65535 + 65536, 65536], [(65535, 0b1)]),  # extended seqs are taken mod 65536
        ([10, 40000], [(40000, 0), (10, 0)]),  # the wide gap decides where to start
    ],
)
def test_build_nack_exact(lost: list[int], pairs: list[tuple[int, int]]) -> None:
    fci = b"".join(struct.pack("!HH", pid, blp) for pid, blp in pairs)
    expected = header(1, 205, 2 + len(pairs)) + struct.pack("!II", SENDER, MEDIA) + fci
    assert build_nack(SENDER, MEDIA, lost) == expected


def test_build_nack_matches_fixture() -> None:
    assert build_nack(SENDER, MEDIA, [116, 103, 101, 100]) == NACK


def test_build_pli_fir_remb_bye_exact() -> None:
    assert build_pli(SENDER, MEDIA) == PLI
    fir = header(4, 206, 4) + struct.pack("!IIIB3x", SENDER, 0, MEDIA, 7)
    assert build_fir(SENDER, MEDIA, 7) == fir
    assert build_fir(SENDER, MEDIA, 256 + 7) == fir  # command sequence wraps mod 256
    assert build_remb(SENDER, 1_000_000, [MEDIA, 0x33]) == REMB
    assert build_bye([SENDER, MEDIA]) == header(2, 203, 2) + struct.pack("!II", SENDER, MEDIA)
    assert build_bye([]) == header(0, 203, 0)


def test_builders_round_trip_compound() -> None:
    blocks = (BLOCK_A_PARSED, BLOCK_B_PARSED)
    data = b"".join(
        [
            build_sender_report(SENDER, NTP, 1, 2, 3, blocks),
            build_receiver_report(MEDIA, blocks),
            build_sdes_cname(SENDER, "user@host"),
            build_nack(SENDER, MEDIA, [5, 6, 30]),
            build_pli(SENDER, MEDIA),
            build_fir(SENDER, MEDIA, 9),
            build_remb(SENDER, 123, []),
            build_bye([SENDER]),
        ]
    )
    assert parse_rtcp(data) == [
        SenderReport(SENDER, NTP, 1, 2, 3, blocks),
        ReceiverReport(MEDIA, blocks),
        Other(202, 1),
        Nack(SENDER, MEDIA, (5, 6, 30)),
        Pli(SENDER, MEDIA),
        Fir(SENDER, ((MEDIA, 9),)),
        Remb(SENDER, 123, ()),
        Bye((SENDER,)),
    ]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, 2_208_988_800 << 32),
        (1.5, (2_208_988_801 << 32) | 0x80000000),
        (-0.25, (2_208_988_799 << 32) | 0xC0000000),
        (1_700_000_000.0, (3_908_988_800 << 32) & 0xFFFF_FFFF_FFFF_FFFF),
        # Era 1 (after 2036-02-07) wraps the 32-bit seconds field.
        (2_085_978_496.0, 0),
    ],
)
def test_ntp_from_time(seconds: float, expected: int) -> None:
    assert ntp_from_time(seconds) == expected


def test_middle_32() -> None:
    assert middle_32(0x1122_3344_5566_7788) == 0x3344_5566
    assert middle_32(ntp_from_time(1.5)) == ((2_208_988_801 & 0xFFFF) << 16) | 0x8000


@given(st.binary(max_size=96))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert packets


@given(
    st.lists(
        st.tuples(
            st.integers(0, 0x3F),  # P bit and count, version forced to 2
            st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]),
            st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
            st.integers(-1, 1),  # skew the length field to exercise length errors
        ),
        min_size=1,
        max_size=4,
    )
)
def test_parse_fuzzed_compound(parts: list[tuple[int, int, bytes, int]]) -> None:
    data = b"".join(
        struct.pack("!BBH", 0x80 | bits, packet_type, max(len(body) // 4 + skew, 0)) + body
        for bits, packet_type, body, skew in parts
    )
    with contextlib.suppress(RtcpError):
        parse_rtcp(data)


@given(
    st.integers(0, 65535),
    st.sets(st.integers(0, 999), min_size=1, max_size=100),
)
@example(65000, {0, 535, 536, 999})  # spans 65535 -> 0
@example(65535, {0, 1, 16, 17})
def test_nack_round_trip(base: int, offsets: set[int]) -> None:
    seqs = [(base + offset) & 0xFFFF for offset in offsets]
    data = build_nack(SENDER, MEDIA, seqs)
    (nack,) = parse_rtcp(data)
    assert isinstance(nack, Nack)
    assert (nack.sender_ssrc, nack.media_ssrc) == (SENDER, MEDIA)
    assert sorted(nack.lost) == sorted(seqs)  # no duplicates, nothing missing
    # Lost seqs come out in wrap-aware order starting at the earliest.
    assert [(seq - base) & 0xFFFF for seq in nack.lost] == sorted(offsets)
    # Greedy packing: each PID covers itself plus the next 16 seqs.
    pairs = (len(data) - 12) // 4
    greedy = 0
    covered_until = -1
    for offset in sorted(offsets):
        if offset > covered_until:
            greedy += 1
            covered_until = offset + 16
    assert pairs == greedy


@given(st.integers(0, (1 << 81) - 1), st.lists(st.integers(0, 0xFFFFFFFF), max_size=8))
@example(0, [])
@example((1 << 18) - 1, [1])
@example(1 << 18, [1])
@example(((1 << 18) - 1) << 63, [])
def test_remb_round_trip(bitrate: int, ssrcs: list[int]) -> None:
    (remb,) = parse_rtcp(build_remb(SENDER, bitrate, ssrcs))
    assert isinstance(remb, Remb)
    assert remb.sender_ssrc == SENDER
    assert remb.ssrcs == tuple(ssrcs)
    # Rounded down to an 18-bit mantissa: relative error at most 2**-17.
    assert remb.bitrate <= bitrate
    assert (bitrate - remb.bitrate) * (1 << 17) <= bitrate


_blocks = st.builds(
    ReportBlock,
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
)


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, (1 << 64) - 1),
    st.lists(_blocks, max_size=31).map(tuple),
)
def test_reports_round_trip(ssrc: int, ntp: int, blocks: tuple[ReportBlock, ...]) -> None:
    sr = build_sender_report(ssrc, ntp, 1, 2, 3, blocks)
    rr = build_receiver_report(ssrc, blocks)
    assert parse_rtcp(sr + rr) == [
        SenderReport(ssrc, ntp, 1, 2, 3, blocks),
        ReceiverReport(ssrc, blocks),
    ]
