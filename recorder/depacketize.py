"""RTP payloads back into whole encoded frames: VP8 (RFC 7741), H.264 (RFC 6184), Opus.

Each payload parser is a pure function that raises :class:`DepacketizeError`
and nothing else. :class:`FrameAssembler` feeds packets (in sequence order,
gaps allowed) through them and returns frames that are safe to mux: a frame
with a sequence gap inside is dropped, and after any lost video packet every
frame is dropped until the next intact keyframe, so a file never holds a
frame whose references are missing. Parse errors are counted there, never
raised: a bad packet costs frames, not the recording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AssemblerCounters",
    "DepacketizeError",
    "Frame",
    "FrameAssembler",
    "h264_nal_units",
    "vp8_descriptor",
]

# A 4K VP8 keyframe is well under 1 MB; more is an attack or a broken sender.
MAX_FRAME_BYTES = 4 << 20
_ANNEX_B = b"\x00\x00\x00\x01"
_H264_IDR, _H264_SPS, _H264_PPS = 5, 7, 8
_H264_STAP_A, _H264_FU_A = 24, 28


class DepacketizeError(ValueError):
    """A payload that cannot be part of a frame of its codec."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame: VP8 frame, H.264 access unit (Annex B) or Opus packet."""

    timestamp: int  # RTP timestamp of its packets
    data: bytes
    keyframe: bool


def vp8_descriptor(payload: bytes) -> tuple[bool, int, int]:
    """Parse an RFC 7741 payload descriptor: (start of partition, partition id, size)."""
    size = len(payload)
    if size < 1:
        raise DepacketizeError("VP8 payload is empty")
    first = payload[0]
    pos = 1
    if first & 0x80:  # X: one extension byte I L T K, then the fields it announces
        if size < 2:
            raise DepacketizeError("VP8 descriptor announces an extension byte it lacks")
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture ID, 15 bits when its first bit (M) is set
            if pos >= size:
                raise DepacketizeError("VP8 descriptor ends before its picture ID")
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos >= size:
        raise DepacketizeError(f"VP8 payload of {size} bytes has no data after its descriptor")
    return bool(first & 0x10), first & 0x07, pos


class _FuState:
    """An H.264 FU-A NAL unit being reassembled across packets."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] | None = None


def h264_nal_units(payload: bytes, fu: _FuState | None = None) -> list[bytes]:
    """The complete NAL units in one RFC 6184 payload (single NAL, STAP-A or FU-A).

    FU-A fragments accumulate in `fu` and come out with the end fragment.
    """
    if not payload:
        raise DepacketizeError("H.264 payload is empty")
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return [payload]
    if nal_type == _H264_STAP_A:
        nals: list[bytes] = []
        pos, size = 1, len(payload)
        while pos < size:
            if pos + 2 > size:
                raise DepacketizeError(f"STAP-A size field at offset {pos} is truncated")
            length = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if length == 0 or pos + length > size:
                raise DepacketizeError(
                    f"STAP-A NAL unit of {length} bytes at offset {pos} exceeds {size} bytes"
                )
            nals.append(payload[pos : pos + length])
            pos += length
        if not nals:
            raise DepacketizeError("STAP-A carries no NAL unit")
        return nals
    if nal_type == _H264_FU_A:
        if len(payload) < 3:
            raise DepacketizeError(f"FU-A payload of {len(payload)} bytes has no fragment")
        if fu is None:
            fu = _FuState()
        header = payload[1]
        start, end = header & 0x80, header & 0x40
        if start and end:
            raise DepacketizeError("FU-A fragment has both the start and the end bit")
        if start:
            if fu.parts is not None:
                raise DepacketizeError("FU-A start while another fragmented NAL is open")
            # The NAL header: F and NRI from the FU indicator, the type from the FU header.
            fu.parts = [bytes([(payload[0] & 0xE0) | (header & 0x1F)]), payload[2:]]
            return []
        if fu.parts is None:
            raise DepacketizeError("FU-A continuation without its start fragment")
        fu.parts.append(payload[2:])
        if not end:
            return []
        nal = b"".join(fu.parts)
        fu.parts = None
        return [nal]
    raise DepacketizeError(f"H.264 packetization type {nal_type} is not supported")


@dataclass(slots=True)
class AssemblerCounters:
    """What happened to one track's packets on their way to frames."""

    packets: int = 0
    frames: int = 0
    dropped_frames: int = 0  # broken, or waiting for a keyframe
    parse_errors: int = 0
    losses: int = 0  # sequence gaps seen
    late: int = 0  # older than the frame being assembled
    keyframe_requests: int = 0


class FrameAssembler:
    """Turns one track's packets, in sequence order, into frames that decode."""

    def __init__(self, mime_type: str, on_keyframe_needed: Callable[[], None] | None = None):
        self.codec = mime_type.lower()
        if self.codec not in ("video/vp8", "video/h264", "audio/opus"):
            raise ValueError(f"no depacketizer for {mime_type}")
        self.video = self.codec.startswith("video/")
        self.counters = AssemblerCounters()
        self.waiting = self.video  # the SFU starts a video consumer on a keyframe
        self._on_keyframe_needed = on_keyframe_needed
        self._next: int | None = None
        self._ts: int | None = None  # timestamp of the open frame
        self._parts: list[bytes] = []
        self._size = 0
        self._broken = False
        self._vp8_key = False
        self._fu = _FuState()
        self._types: set[int] = set()  # NAL unit types in the open H.264 access unit
        self._sps: bytes | None = None
        self._pps: bytes | None = None

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> list[Frame]:
        """Add one packet (`seq` extended, never wrapping); returns the frames it completes."""
        counters = self.counters
        counters.packets += 1
        out: list[Frame] = []
        if self._next is not None and seq != self._next:
            if seq < self._next:
                counters.late += 1
                return out
            counters.losses += 1
            self._broken = self._ts is not None  # the open frame lost packets
            self._need_keyframe()
        self._next = seq + 1
        if not self.video:
            self._opus(timestamp, payload, out)
            return out
        if self._ts is not None and timestamp != self._ts:
            self._close(out)  # the open frame ended without its marker
        first = self._ts is None
        if first:
            self._ts = timestamp
        if not self._broken:
            try:
                self._add(payload, first)
            except DepacketizeError:
                counters.parse_errors += 1
                self._broken = True
                self._need_keyframe()
        if marker:
            self._close(out)
        return out

    def lose(self) -> None:
        """Treat what is being assembled as lost (e.g. the writer fell behind)."""
        self._broken = self._ts is not None
        self._need_keyframe()

    def _opus(self, timestamp: int, payload: bytes, out: list[Frame]) -> None:
        if not payload:
            self.counters.parse_errors += 1
            return
        self.counters.frames += 1
        out.append(Frame(timestamp, payload, True))

    def _add(self, payload: bytes, first: bool) -> None:
        if self.codec == "video/vp8":
            start, partition, pos = vp8_descriptor(payload)
            if first:
                if not start or partition != 0:
                    raise DepacketizeError("VP8 frame does not begin with partition 0's start")
                # RFC 7741 4.3: bit 0 of the VP8 payload header is P, 0 for keyframes.
                self._vp8_key = payload[pos] & 0x01 == 0
            data = payload[pos:]
        else:
            nals = h264_nal_units(payload, self._fu)
            for nal in nals:
                kind = nal[0] & 0x1F
                self._types.add(kind)
                if kind == _H264_SPS:
                    self._sps = nal
                elif kind == _H264_PPS:
                    self._pps = nal
            data = b"".join(_ANNEX_B + nal for nal in nals)
        self._size += len(data)
        if self._size > MAX_FRAME_BYTES:
            raise DepacketizeError(f"frame exceeds {MAX_FRAME_BYTES} bytes")
        self._parts.append(data)

    def _close(self, out: list[Frame]) -> None:
        timestamp, parts, broken, types = self._ts, self._parts, self._broken, self._types
        self._ts, self._parts, self._size, self._broken, self._types = None, [], 0, False, set()
        fu_open = self._fu.parts is not None
        self._fu.parts = None
        if timestamp is None:
            return
        frame = None
        if not broken and not fu_open and parts:
            data = b"".join(parts)
            if self.codec == "video/vp8":
                frame = Frame(timestamp, data, self._vp8_key)
            else:
                frame = self._access_unit(timestamp, data, types)
        if frame is None:
            self.counters.dropped_frames += 1
            if not broken:  # a broken frame asked when it broke
                self._need_keyframe()
            return
        if self.waiting and not frame.keyframe:
            self.counters.dropped_frames += 1
            return
        self.waiting = False
        self.counters.frames += 1
        out.append(frame)

    def _access_unit(self, timestamp: int, data: bytes, types: set[int]) -> Frame:
        if _H264_IDR not in types:
            return Frame(timestamp, data, False)
        # An IDR decodes only with its parameter sets: repeat the last ones seen when
        # the sender put them in an earlier packet (or we lost them).
        prefix = b""
        if _H264_SPS not in types and self._sps is not None:
            prefix += _ANNEX_B + self._sps
        if _H264_PPS not in types and self._pps is not None:
            prefix += _ANNEX_B + self._pps
        keyframe = self._sps is not None and self._pps is not None
        return Frame(timestamp, prefix + data, keyframe)

    def _need_keyframe(self) -> None:
        # Ask on every loss, even while already waiting: the keyframe we waited for may
        # be the frame that broke. The SFU rate-limits requests to the publisher.
        if self.video:
            self.waiting = True
            self.counters.keyframe_requests += 1
            if self._on_keyframe_needed is not None:
                self._on_keyframe_needed()
