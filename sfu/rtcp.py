"""RTCP wire format: RFC 3550 reports, RFC 4585/5104 feedback, REMB.

``parse_rtcp`` walks a compound packet and returns one frozen dataclass per
packet; anything malformed raises :class:`RtcpError` with the offending offset.
The builders each return one RTCP packet; concatenate them for a compound packet.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Bye",
    "Fir",
    "Nack",
    "Other",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SenderReport",
    "build_bye",
    "build_fir",
    "build_nack",
    "build_pli",
    "build_receiver_report",
    "build_remb",
    "build_sdes_cname",
    "build_sender_report",
    "middle_32",
    "ntp_from_time",
    "parse_rtcp",
]

_PT_SR = 200
_PT_RR = 201
_PT_SDES = 202
_PT_BYE = 203
_PT_RTPFB = 205
_PT_PSFB = 206
_REPORT_TYPES = frozenset((_PT_SR, _PT_RR))
_FEEDBACK_TYPES = frozenset((_PT_RTPFB, _PT_PSFB))

_HEADER = struct.Struct("!BBH")  # V/P/count, packet type, length in words minus one
_U32 = struct.Struct("!I")
_FEEDBACK = struct.Struct("!II")  # sender SSRC, media SSRC
_NACK_ITEM = struct.Struct("!HH")  # PID, BLP
_FIR_ITEM = struct.Struct("!IB3x")  # SSRC, command sequence number, 3 reserved bytes
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packet and octet counts
_REPORT_BLOCK = struct.Struct("!IIIIII")  # 24 bytes, see RFC 3550 6.4.1
_REMB_HEAD = struct.Struct("!4sBBH")  # "REMB", SSRC count, exponent and mantissa (24 bits)

_SR_FIXED = 4 + _SENDER_INFO.size  # 28 bytes before the first report block
_RR_FIXED = 8  # header + reporter SSRC
_FEEDBACK_FIXED = 12  # header + sender SSRC + media SSRC
_MAX_COUNT = 31  # the 5-bit RC/SC field
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


class RtcpError(ValueError):
    """A malformed RTCP packet or an out-of-range value for an RTCP builder."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block; ``packets_lost`` is signed 24-bit."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (PT 200)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (PT 201)."""

    ssrc: int
    reports: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK (RTPFB fmt 1) with PID/BLP pairs expanded to sequence numbers."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Pli:
    """Picture Loss Indication (PSFB fmt 1)."""

    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class Fir:
    """Full Intra Request (PSFB fmt 4); entries are (SSRC, command sequence number)."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver Estimated Maximum Bitrate (PSFB fmt 15, "REMB"), bitrate in bits/s."""

    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (PT 203); any reason text is ignored."""

    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Other:
    """Any other well-formed RTCP packet (SDES, APP, XR, transport-cc, ...)."""

    packet_type: int
    fmt: int


RtcpPacket = SenderReport | ReceiverReport | Nack | Pli | Fir | Remb | Bye | Other


def _report_blocks(data: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for _ in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:  # sign-extend the 24-bit cumulative loss
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += _REPORT_BLOCK.size
    return tuple(blocks)


def _parse_one(data: bytes, pos: int, end: int, packet_type: int, count: int) -> RtcpPacket:
    # ``end`` excludes RTCP padding; the caller has checked that it lies within ``data``.
    size = end - pos
    if packet_type in _REPORT_TYPES:
        fixed = _SR_FIXED if packet_type == _PT_SR else _RR_FIXED
        needed = fixed + count * _REPORT_BLOCK.size
        if needed > size:
            raise RtcpError(
                f"RTCP {'SR' if packet_type == _PT_SR else 'RR'} at offset {pos} has "
                f"{count} report blocks needing {needed} bytes, but only {size}"
            )
        reports = _report_blocks(data, pos + fixed, count)
        if packet_type == _PT_RR:
            (ssrc,) = _U32.unpack_from(data, pos + 4)
            return ReceiverReport(ssrc, reports)
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, pos + 4)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports)
    if packet_type == _PT_BYE:
        if 4 + 4 * count > size:
            raise RtcpError(
                f"RTCP BYE at offset {pos} lists {count} SSRCs but has only {size} bytes"
            )
        return Bye(struct.unpack_from(f"!{count}I", data, pos + 4))
    if packet_type not in _FEEDBACK_TYPES:
        return Other(packet_type, count)
    if size < _FEEDBACK_FIXED:
        raise RtcpError(f"RTCP feedback packet at offset {pos} is {size} bytes, less than 12")
    sender, media = _FEEDBACK.unpack_from(data, pos + 4)
    fci = pos + _FEEDBACK_FIXED
    fci_size = end - fci
    if packet_type == _PT_RTPFB:
        if count != 1:
            return Other(packet_type, count)
        if fci_size % 4:
            raise RtcpError(
                f"RTCP NACK at offset {pos} has {fci_size} bytes of FCI, not a multiple of 4"
            )
        lost: list[int] = []
        for pid, blp in _NACK_ITEM.iter_unpack(data[fci:end]):
            lost.append(pid)
            mask = blp
            bit = 0
            while mask:  # bit i of BLP marks PID + i + 1 as lost too (RFC 4585 6.2.1)
                if mask & 1:
                    lost.append((pid + bit + 1) & 0xFFFF)
                mask >>= 1
                bit += 1
        return Nack(sender, media, tuple(lost))
    if count == 1:
        return Pli(sender, media)
    if count == 4:
        if fci_size % 8:
            raise RtcpError(
                f"RTCP FIR at offset {pos} has {fci_size} bytes of FCI, not a multiple of 8"
            )
        return Fir(sender, tuple(_FIR_ITEM.iter_unpack(data[fci:end])))
    if count == 15 and data[fci : fci + 4] == b"REMB":
        if fci_size < _REMB_HEAD.size:
            raise RtcpError(f"RTCP REMB at offset {pos} has {fci_size} bytes of FCI, need 8")
        _, num_ssrc, exp_hi, mantissa_lo = _REMB_HEAD.unpack_from(data, fci)
        if _REMB_HEAD.size + 4 * num_ssrc > fci_size:
            raise RtcpError(
                f"RTCP REMB at offset {pos} lists {num_ssrc} SSRCs but its FCI "
                f"is only {fci_size} bytes"
            )
        # 6-bit exponent, then an 18-bit mantissa split across the next 3 bytes.
        mantissa = ((exp_hi & 0x03) << 16) | mantissa_lo
        ssrcs = struct.unpack_from(f"!{num_ssrc}I", data, fci + _REMB_HEAD.size)
        return Remb(sender, mantissa << (exp_hi >> 2), ssrcs)
    return Other(packet_type, count)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its packets; raise RtcpError if malformed."""
    total = len(data)
    if total == 0:
        raise RtcpError("RTCP packet is empty")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < total:
        if total - pos < 4:
            raise RtcpError(f"RTCP header at offset {pos} truncated: {total - pos} bytes, need 4")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP packet at offset {pos} has version {first >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > total:
            raise RtcpError(
                f"RTCP packet at offset {pos} claims {end - pos} bytes, only {total - pos} left"
            )
        body_end = end
        if first & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > end - pos - 4:
                raise RtcpError(f"RTCP packet at offset {pos} has bad padding count {padding}")
            body_end = end - padding
        packets.append(_parse_one(data, pos, body_end, packet_type, first & 0x1F))
        pos = end
    return packets


def _header(count: int, packet_type: int, size: int) -> bytes:
    # ``size`` is the whole packet in bytes, always a multiple of 4 here.
    return _HEADER.pack(0x80 | count, packet_type, size // 4 - 1)


def _pack(what: str, fmt: struct.Struct | str, *values: int | bytes) -> bytes:
    # Builders take caller-supplied ints; turn struct's range errors into RtcpError.
    try:
        return fmt.pack(*values) if isinstance(fmt, struct.Struct) else struct.pack(fmt, *values)
    except struct.error as exc:
        raise RtcpError(f"{what} out of range: {exc}") from None


def _pack_reports(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > _MAX_COUNT:
        raise RtcpError(f"{len(reports)} report blocks exceed the RTCP maximum of 31")
    out = bytearray()
    for block in reports:
        if not 0 <= block.fraction_lost <= 255:
            raise RtcpError(f"fraction_lost {block.fraction_lost} is outside 0..255")
        # RFC 3550 A.3: clamp the cumulative loss to the signed 24-bit range.
        lost = min(max(block.packets_lost, -0x800000), 0x7FFFFF) & 0xFFFFFF
        out += _pack(
            "report block field",
            _REPORT_BLOCK,
            block.ssrc,
            (block.fraction_lost << 24) | lost,
            block.highest_sequence,
            block.jitter,
            block.lsr,
            block.dlsr,
        )
    return bytes(out)


def build_sender_report(
    ssrc: int,
    ntp_timestamp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """Build an RTCP SR with up to 31 report blocks."""
    blocks = _pack_reports(reports)
    info = _pack(
        "SR field", _SENDER_INFO, ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count
    )
    return _header(len(reports), _PT_SR, _SR_FIXED + len(blocks)) + info + blocks


def build_receiver_report(ssrc: int, reports: Sequence[ReportBlock] = ()) -> bytes:
    """Build an RTCP RR with up to 31 report blocks."""
    blocks = _pack_reports(reports)
    reporter = _pack("RR field", _U32, ssrc)
    return _header(len(reports), _PT_RR, _RR_FIXED + len(blocks)) + reporter + blocks


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    """Build an RTCP SDES with one chunk holding a CNAME item."""
    text = cname.encode()
    if len(text) > 255:
        raise RtcpError(f"CNAME is {len(text)} bytes in UTF-8, more than 255")
    # Item type 1 (CNAME), then at least one null octet and nulls up to a 32-bit boundary.
    chunk = _pack("SDES SSRC", _U32, ssrc) + bytes((1, len(text))) + text
    chunk += bytes(4 - len(chunk) % 4)
    return _header(1, _PT_SDES, 4 + len(chunk)) + chunk


def _wrap_order(seqs: set[int]) -> list[int]:
    # Start right after the widest gap on the 16-bit circle, so {65534, 65535, 0, 1}
    # comes out in that order and packs into one PID/BLP pair instead of two.
    ordered = sorted(seqs)
    best_gap = ordered[0] + 0x10000 - ordered[-1]
    start = 0
    for index in range(1, len(ordered)):
        gap = ordered[index] - ordered[index - 1]
        if gap > best_gap:
            best_gap, start = gap, index
    return ordered[start:] + ordered[:start]


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """Build a generic NACK, packing ``lost`` (taken mod 65536) into few PID/BLP pairs."""
    seqs = {seq & 0xFFFF for seq in lost}
    if not seqs:
        raise RtcpError("NACK needs at least one lost sequence number")
    ids = _pack("NACK SSRC", _FEEDBACK, sender_ssrc, media_ssrc)
    fci = bytearray()
    pid = -1
    blp = 0
    for seq in _wrap_order(seqs):
        delta = (seq - pid) & 0xFFFF
        if pid >= 0 and delta <= 16:  # one PID covers itself and the next 16 seqs
            blp |= 1 << (delta - 1)
            continue
        if pid >= 0:
            fci += _NACK_ITEM.pack(pid, blp)
        pid, blp = seq, 0
    fci += _NACK_ITEM.pack(pid, blp)
    return _header(1, _PT_RTPFB, _FEEDBACK_FIXED + len(fci)) + ids + fci


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """Build a Picture Loss Indication."""
    ids = _pack("PLI SSRC", _FEEDBACK, sender_ssrc, media_ssrc)
    return _header(1, _PT_PSFB, _FEEDBACK_FIXED) + ids


def build_fir(sender_ssrc: int, media_ssrc: int, command_seq: int) -> bytes:
    """Build a Full Intra Request for one SSRC; ``command_seq`` is taken mod 256."""
    # RFC 5104 4.3.1.2: the header's media SSRC is 0, the target goes in the FCI.
    body = _pack("FIR SSRC", "!IIIB3x", sender_ssrc, 0, media_ssrc, command_seq & 0xFF)
    return _header(4, _PT_PSFB, 4 + len(body)) + body


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: Sequence[int]) -> bytes:
    """Build a REMB; ``bitrate`` is rounded down to an 18-bit mantissa and 6-bit exponent."""
    if bitrate < 0:
        raise RtcpError(f"REMB bitrate {bitrate} is negative")
    if len(ssrcs) > 255:
        raise RtcpError(f"REMB lists {len(ssrcs)} SSRCs, more than 255")
    # Rounding down keeps the estimate conservative; the error is below 2**-17 relative.
    exponent = max(bitrate.bit_length() - 18, 0)
    if exponent > 63:
        raise RtcpError(f"REMB bitrate {bitrate} does not fit in 18 bits << 63")
    mantissa = bitrate >> exponent
    body = _pack(
        "REMB SSRC",
        f"!II4sBBH{len(ssrcs)}I",
        sender_ssrc,
        0,
        b"REMB",
        len(ssrcs),
        (exponent << 2) | (mantissa >> 16),
        mantissa & 0xFFFF,
        *ssrcs,
    )
    return _header(15, _PT_PSFB, 4 + len(body)) + body


def build_bye(ssrcs: Sequence[int]) -> bytes:
    """Build an RTCP BYE for up to 31 SSRCs, without a reason."""
    if len(ssrcs) > _MAX_COUNT:
        raise RtcpError(f"BYE lists {len(ssrcs)} SSRCs, more than 31")
    body = _pack("BYE SSRC", f"!{len(ssrcs)}I", *ssrcs)
    return _header(len(ssrcs), _PT_BYE, 4 + len(body)) + body


def ntp_from_time(seconds: float) -> int:
    """Convert Unix time in seconds to a 64-bit NTP timestamp (32.32 fixed point)."""
    if not math.isfinite(seconds):
        raise RtcpError(f"NTP time needs a finite value, got {seconds!r}")
    whole = math.floor(seconds)
    # Split before scaling: seconds * 2**32 as one float would keep only 53 of 64 bits.
    fraction = int((seconds - whole) * 4_294_967_296.0)
    return (((whole + _NTP_EPOCH_OFFSET) << 32) | fraction) & 0xFFFF_FFFF_FFFF_FFFF


def middle_32(ntp: int) -> int:
    """Return the middle 32 bits of a 64-bit NTP timestamp (the SR's LSR form)."""
    return (ntp >> 16) & 0xFFFF_FFFF
