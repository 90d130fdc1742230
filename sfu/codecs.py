"""Keyframe detection from RTP payloads, without decoding.

The SFU needs to know when a layer switch is safe and when a PLI has been
answered; that only takes the first few bytes of a packet. Every function here
returns False instead of raising on short or garbage payloads.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["is_keyframe"]

# H.264 NAL unit types (RFC 6184 section 5.2 and H.264 table 7-1).
_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28
_H264_KEY_TYPES = frozenset((_H264_IDR, _H264_SPS))


def _vp8_keyframe(payload: bytes) -> bool:
    # RFC 7741 4.2: X R N S R PID(3); keyframes start a frame in partition 0.
    size = len(payload)
    if size < 2:
        return False
    first = payload[0]
    if first & 0x17 != 0x10:  # S set, partition index 0 (X, N and the R bits ignored)
        return False
    pos = 1
    if first & 0x80:  # X: extension byte I L T K RSV(4)
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture ID, 15 bits when its first bit (M) is set
            if pos >= size:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if pos >= size:
        return False
    # RFC 7741 4.3: the payload header's lowest bit P is 0 for keyframes.
    return payload[pos] & 0x01 == 0


def _vp9_keyframe(payload: bytes) -> bool:
    # draft-ietf-payload-vp9 4.2: I P L F B E V Z. We call a packet a keyframe when it
    # starts a frame (B=1), is not inter-picture predicted (P=0) and, when layer indices
    # are present, belongs to spatial layer 0. This is an approximation: an intra-only
    # frame also has P=0 but is not a true keyframe; it still lets a receiver start
    # decoding the base layer, which is what the SFU needs.
    size = len(payload)
    if size < 1:
        return False
    first = payload[0]
    if first & 0x48 != 0x08:  # P (0x40) clear, B (0x08) set
        return False
    pos = 1
    if first & 0x80:  # I: picture ID, 15 bits when M is set
        if pos >= size:
            return False
        pos += 2 if payload[pos] & 0x80 else 1
    spatial_id = 0
    if first & 0x20:  # L: TID(3) U(1) SID(3) D(1), then TL0PICIDX unless flexible (F)
        if pos >= size:
            return False
        spatial_id = (payload[pos] >> 1) & 0x07
        pos += 1 if first & 0x10 else 2
    # Something (scalability structure or frame data) must follow the descriptor.
    return spatial_id == 0 and pos < size


def _h264_keyframe(payload: bytes) -> bool:
    size = len(payload)
    if size < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_TYPES:
        return True
    if nal_type == _H264_STAP_A:
        # RFC 6184 5.7.1: after the STAP-A byte, 16-bit size + NAL unit, repeated.
        pos = 1
        while pos + 2 < size:
            nal_size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if nal_size == 0 or pos + nal_size > size:
                return False
            if payload[pos] & 0x1F in _H264_KEY_TYPES:
                return True
            pos += nal_size
        return False
    if nal_type == _H264_FU_A:
        # RFC 6184 5.8: FU header S E R Type(5); only the start fragment tells us.
        if size < 2:
            return False
        header = payload[1]
        return bool(header & 0x80) and header & 0x1F in _H264_KEY_TYPES
    return False


_DETECTORS: dict[str, Callable[[bytes], bool]] = {
    "video/vp8": _vp8_keyframe,
    "video/vp9": _vp9_keyframe,
    "video/h264": _h264_keyframe,
}


def is_keyframe(mime_type: str, payload: bytes) -> bool:
    """Tell whether an RTP payload starts a keyframe; False for audio and unknown codecs."""
    detector = _DETECTORS.get(mime_type.lower())
    return detector is not None and detector(payload)
