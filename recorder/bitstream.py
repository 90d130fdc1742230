"""What the muxer needs to know from inside encoded frames, read without decoding.

A video part's picture size comes from its first keyframe (the VP8 frame
header, RFC 6386 section 9.1, or the H.264 sequence parameter set, ITU-T
H.264 section 7.3.2.1.1); an Opus packet's duration from its TOC byte
(RFC 6716 section 3.1). Every function raises :class:`DepacketizeError` on
input it cannot read.
"""

from __future__ import annotations

from .depacketize import DepacketizeError

__all__ = ["h264_dimensions", "h264_sps_dimensions", "opus_samples", "vp8_dimensions"]

# Larger than any encoder produces (H.264 level 6.2 tops out at 8192x4320).
MAX_DIMENSION = 16384
_VP8_START_CODE = b"\x9d\x01\x2a"
# profile_idc values whose SPS carries chroma format, bit depths and scaling lists.
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
# Opus frame sizes in 48 kHz samples by TOC config (RFC 6716 table 2).
_OPUS_FRAME = (
    [480, 960, 1920, 2880] * 3  # SILK-only: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT-only: 2.5, 5, 10, 20 ms
)


def vp8_dimensions(frame: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe's uncompressed header."""
    if len(frame) < 10:
        raise DepacketizeError(f"VP8 frame of {len(frame)} bytes is too short for a keyframe")
    if frame[0] & 0x01:
        raise DepacketizeError("VP8 frame is not a keyframe")
    if frame[3:6] != _VP8_START_CODE:
        raise DepacketizeError("VP8 keyframe lacks the start code 9d 01 2a")
    # 14 bits of size, 2 bits of upscaling hint (ignored: the decoder outputs this size).
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    if not width or not height:
        raise DepacketizeError(f"VP8 keyframe has an empty picture {width}x{height}")
    return width, height


class _Bits:
    """An MSB-first bit reader over an RBSP, with Exp-Golomb codes."""

    __slots__ = ("data", "pos", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.size = len(data) * 8

    def u(self, count: int) -> int:
        if self.pos + count > self.size:
            raise DepacketizeError("H.264 SPS ends in the middle of a field")
        value = 0
        for _ in range(count):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise DepacketizeError("H.264 SPS has an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _rbsp(nal: bytes) -> bytes:
    # Drop emulation prevention: 00 00 03 -> 00 00 (H.264 section 7.4.1).
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def h264_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Cropped width and height from an H.264 SPS NAL unit (with its header byte)."""
    if not sps or sps[0] & 0x1F != 7:
        raise DepacketizeError("not an H.264 SPS NAL unit")
    bits = _Bits(_rbsp(sps[1:]))
    profile = bits.u(8)
    bits.u(16)  # constraint flags and level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format > 3:
            raise DepacketizeError(f"H.264 SPS chroma_format_idc {chroma_format} > 3")
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format == 3 else 8):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        cycle = bits.ue()
        if cycle > 255:
            raise DepacketizeError(f"H.264 SPS has {cycle} reference frames in a POC cycle")
        for _ in range(cycle):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (bits.ue() + 1) * 16
    map_height = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    height = (2 - frame_mbs_only) * map_height * 16
    if bits.u(1):  # frame_cropping_flag, in chroma sample units (H.264 equations 7-19..7-22)
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_array = 0 if separate_planes else chroma_format
        unit_x = 2 if chroma_array in (1, 2) else 1
        unit_y = (2 if chroma_array == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise DepacketizeError(f"H.264 SPS describes an impossible picture {width}x{height}")
    return width, height


def h264_dimensions(access_unit: bytes) -> tuple[int, int]:
    """Width and height from the first SPS of an Annex B access unit."""
    for unit in access_unit.split(b"\x00\x00\x01"):
        nal = unit.rstrip(b"\x00")  # a 4-byte start code leaves a zero on the previous unit
        if nal and nal[0] & 0x1F == 7:
            return h264_sps_dimensions(nal)
    raise DepacketizeError("H.264 access unit carries no SPS")


def opus_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte."""
    if not packet:
        raise DepacketizeError("Opus packet is empty")
    toc = packet[0]
    frame = _OPUS_FRAME[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise DepacketizeError("Opus code 3 packet lacks its frame count byte")
        count = packet[1] & 0x3F
        if count == 0:
            raise DepacketizeError("Opus code 3 packet has zero frames")
    samples = frame * count
    if samples > 5760:  # RFC 6716 3.2.5: at most 120 ms per packet
        raise DepacketizeError(f"Opus packet lasts {samples} samples, over 120 ms")
    return samples
