"""RTP wire format: RFC 3550 headers, RFC 8285 header extensions, RFC 4588 RTX.

Everything here runs once per packet on the forwarding path, so parsing is a
handful of ``struct.unpack_from`` calls and slices, and every malformed input
raises :class:`RtpError` (never ``IndexError`` or ``struct.error``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = [
    "RtpError",
    "RtpHeader",
    "abs_send_time",
    "audio_level",
    "build_extension_block",
    "build_rtp_header",
    "is_rtcp",
    "parse_rtp",
    "unwrap_rtx",
]

# V/P/X/CC, M/PT, sequence number, timestamp, SSRC: 1 + 1 + 2 + 4 + 4 = 12 bytes.
_FIXED = struct.Struct("!BBHII")
# Extension block header: 16-bit profile, 16-bit length in 32-bit words.
_EXT_HEADER = struct.Struct("!HH")
_U16 = struct.Struct("!H")

_FIXED_SIZE = 12
_ONE_BYTE_PROFILE = 0xBEDE
# RFC 8285 section 4.3: 0x100 in the top 12 bits, the low 4 bits are "appbits".
_TWO_BYTE_PROFILE = 0x1000
_TWO_BYTE_PROFILE_MASK = 0xFFF0
# abs-send-time is 6.18 fixed point: 18 fractional bits, 24 bits in all (wraps at 64 s).
_ABS_SEND_TIME_SCALE = 1 << 18
_ABS_SEND_TIME_MASK = 0xFFFFFF


class RtpError(ValueError):
    """A malformed RTP packet or an out-of-range value for an RTP builder."""


@dataclass(slots=True)
class RtpHeader:
    """The parsed RTP header; payload is ``data[payload_start:payload_end]``."""

    payload_type: int
    marker: bool
    sequence_number: int
    timestamp: int
    ssrc: int
    padding: bool
    extensions: dict[int, bytes]
    payload_start: int
    payload_end: int


def _parse_one_byte(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    # RFC 8285 4.2: 4-bit id, 4-bit (length - 1), so 1..16 data bytes per element.
    while pos < end:
        first = data[pos]
        if first == 0:  # padding byte between elements
            pos += 1
            continue
        ext_id = first >> 4
        if ext_id == 15:  # reserved: stop, keep only what came before (RFC 8285 4.2)
            return
        length = (first & 0x0F) + 1
        pos += 1
        if pos + length > end:
            raise RtpError(
                f"one-byte extension element id {ext_id} at offset {pos - 1} needs "
                f"{length} bytes, but the extension block ends at offset {end}"
            )
        out[ext_id] = data[pos : pos + length]
        pos += length


def _parse_two_byte(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    # RFC 8285 4.3: 8-bit id, 8-bit length, so 0..255 data bytes per element.
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:  # padding byte between elements
            pos += 1
            continue
        if pos + 2 > end:
            raise RtpError(
                f"two-byte extension element id {ext_id} at offset {pos} has no length "
                f"byte before the extension block ends at offset {end}"
            )
        length = data[pos + 1]
        pos += 2
        if pos + length > end:
            raise RtpError(
                f"two-byte extension element id {ext_id} at offset {pos - 2} needs "
                f"{length} bytes, but the extension block ends at offset {end}"
            )
        out[ext_id] = data[pos : pos + length]
        pos += length


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse an RTP packet's header, extensions and padding; raise RtpError if malformed."""
    size = len(data)
    if size < _FIXED_SIZE:
        raise RtpError(f"RTP packet is {size} bytes, shorter than the 12-byte fixed header")
    first, second, sequence_number, timestamp, ssrc = _FIXED.unpack_from(data)
    version = first >> 6
    if version != 2:
        raise RtpError(f"RTP version is {version}, expected 2")
    pos = _FIXED_SIZE + 4 * (first & 0x0F)
    if pos > size:
        raise RtpError(f"RTP CSRC list of {first & 0x0F} entries ends at {pos}, past {size}")
    extensions: dict[int, bytes] = {}
    if first & 0x10:
        if pos + 4 > size:
            raise RtpError(f"RTP extension header at offset {pos} does not fit in {size} bytes")
        profile, words = _EXT_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * words
        if end > size:
            raise RtpError(
                f"RTP extension block of {words} words ends at offset {end}, past {size}"
            )
        if profile == _ONE_BYTE_PROFILE:
            _parse_one_byte(data, pos, end, extensions)
        elif profile & _TWO_BYTE_PROFILE_MASK == _TWO_BYTE_PROFILE:
            _parse_two_byte(data, pos, end, extensions)
        pos = end
    payload_end = size
    padding = bool(first & 0x20)
    if padding:
        count = data[-1]
        if count == 0:
            raise RtpError("RTP padding bit is set but the padding count is 0")
        if count > size - pos:
            raise RtpError(
                f"RTP padding count {count} exceeds the {size - pos} bytes after the header"
            )
        payload_end = size - count
    return RtpHeader(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        padding=padding,
        extensions=extensions,
        payload_start=pos,
        payload_end=payload_end,
    )


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a muxed port (RFC 5761 section 4: second byte 192..223)."""
    # RTCP packet types 192..223 never collide with RTP marker+PT when PTs avoid 64..95.
    return len(data) >= 2 and 192 <= data[1] <= 223


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """Build an RFC 8285 extension block (header, elements, zero padding to 32 bits)."""
    if not elements:
        return b""
    one_byte = all(1 <= ext_id <= 14 and 1 <= len(value) <= 16 for ext_id, value in elements)
    body = bytearray()
    if one_byte:
        profile = _ONE_BYTE_PROFILE
        for ext_id, value in elements:
            body.append((ext_id << 4) | (len(value) - 1))
            body += value
    else:
        profile = _TWO_BYTE_PROFILE
        for ext_id, value in elements:
            if not 1 <= ext_id <= 255:
                raise RtpError(f"header extension id {ext_id} is outside 1..255")
            if len(value) > 255:
                raise RtpError(
                    f"header extension id {ext_id} has {len(value)} bytes, more than 255"
                )
            body.append(ext_id)
            body.append(len(value))
            body += value
    body += bytes(-len(body) % 4)
    words = len(body) // 4
    if words > 0xFFFF:
        raise RtpError(f"header extension block of {words} words exceeds 65535")
    return _EXT_HEADER.pack(profile, words) + body


def build_rtp_header(
    *,
    payload_type: int,
    marker: bool,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    padding: bool = False,
    extension_block: bytes = b"",
) -> bytes:
    """Build a 12-byte RTP header (no CSRCs) followed by ``extension_block``."""
    # With padding=True the caller appends the padding bytes and the count after the payload.
    if not 0 <= payload_type <= 127:
        raise RtpError(f"RTP payload type {payload_type} is outside 0..127")
    if extension_block and (len(extension_block) < 4 or len(extension_block) % 4):
        raise RtpError(
            f"RTP extension block of {len(extension_block)} bytes is not a whole, "
            "non-empty number of 32-bit words"
        )
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension_block else 0)
    try:
        fixed = _FIXED.pack(
            first, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc
        )
    except struct.error as exc:
        raise RtpError(f"RTP header field out of range: {exc}") from None
    return fixed + extension_block if extension_block else fixed


def unwrap_rtx(data: bytes, header: RtpHeader) -> tuple[int, bytes]:
    """Return (original sequence number, original payload) of an RFC 4588 RTX packet."""
    start = header.payload_start
    if header.payload_end - start < 2:
        raise RtpError(
            f"RTX payload is {max(header.payload_end - start, 0)} bytes, "
            "too short for the 2-byte original sequence number"
        )
    (original_sequence,) = _U16.unpack_from(data, start)
    return original_sequence, data[start + 2 : header.payload_end]


def audio_level(element: bytes) -> tuple[bool, int]:
    """Decode RFC 6464 ssrc-audio-level into (voice activity, level in -dBov, 127 = silence)."""
    if not element:
        raise RtpError("audio level extension element is empty")
    value = element[0]
    return bool(value & 0x80), value & 0x7F


def abs_send_time(seconds: float) -> bytes:
    """Encode a wall-clock time in seconds as 3-byte abs-send-time (6.18 fixed point)."""
    if not math.isfinite(seconds):
        raise RtpError(f"abs-send-time needs a finite time, got {seconds!r}")
    # 2**18 ticks per second in 24 bits: the value wraps every 2**6 = 64 seconds.
    ticks = round(seconds * _ABS_SEND_TIME_SCALE) & _ABS_SEND_TIME_MASK
    return ticks.to_bytes(3, "big")
