"""Tests for sfu.codecs.is_keyframe: hand-built payload descriptors and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.codecs import is_keyframe

# VP8 payload header + start code of a real keyframe: P bit (0x01) clear, show_frame set.
VP8_KEY_HEADER = b"\x50\x04\x00\x9d\x01\x2a"
# Same with the P bit set: an interframe.
VP8_INTER_HEADER = b"\x51\x04\x00\x9d\x01\x2a"

VP8_CASES: list[tuple[str, bytes, bool]] = [
    ("minimal_key", b"\x10" + VP8_KEY_HEADER, True),
    ("minimal_inter", b"\x10" + VP8_INTER_HEADER, False),
    ("not_start", b"\x00" + VP8_KEY_HEADER, False),
    ("partition_1", b"\x11" + VP8_KEY_HEADER, False),
    ("start_partition_1_continued", b"\x01" + VP8_KEY_HEADER, False),
    ("non_reference_key", b"\x30" + VP8_KEY_HEADER, True),  # N bit does not matter
    ("reserved_bits_ignored", b"\x58" + VP8_KEY_HEADER, True),
    # X, then I L T set: 7-bit picture id, TL0PICIDX, TID/Y/KEYIDX.
    ("ext_pic7_l_t", b"\x90\xe0\x05\x07\x20" + VP8_KEY_HEADER, True),
    # X, I with M: 15-bit picture id.
    ("ext_pic15", b"\x90\x80\x81\x23" + VP8_KEY_HEADER, True),
    ("ext_pic15_inter", b"\x90\x80\x81\x23" + VP8_INTER_HEADER, False),
    ("ext_k_only", b"\x90\x10\x00" + VP8_KEY_HEADER, True),
    ("ext_no_fields", b"\x90\x00" + VP8_KEY_HEADER, True),
    # Without the 15-bit picture id being skipped, byte 0x23 (P=1) would be read.
    ("pic15_skipped_correctly", b"\x90\x80\x80\x23" + VP8_KEY_HEADER, True),
    ("empty", b"", False),
    ("descriptor_only", b"\x10", False),
    ("ext_truncated", b"\x90", False),
    ("pic_id_missing", b"\x90\x80", False),
    ("pic15_no_header", b"\x90\x80\x80\x01", False),
    ("all_fields_no_header", b"\x90\xf0\x05\x07\x20", False),
]


@pytest.mark.parametrize(
    ("payload", "expected"), [(p, e) for _, p, e in VP8_CASES], ids=[n for n, _, _ in VP8_CASES]
)
def test_vp8(payload: bytes, expected: bool) -> None:
    assert is_keyframe("video/VP8", payload) is expected


# VP9 descriptor bits: I=0x80 P=0x40 L=0x20 F=0x10 B=0x08 E=0x04 V=0x02 Z=0x01.
VP9_CASES: list[tuple[str, bytes, bool]] = [
    # Non-flexible, I (15-bit id), L (TID 0, SID 0) + TL0PICIDX, B, V, then SS bytes.
    ("nonflex_key_with_ss", b"\xaa\x80\x01\x00\x00" + b"\x18\x01\x40", True),
    ("nonflex_sid1", b"\xaa\x80\x01\x02\x00" + b"\x18", False),
    ("nonflex_tid2_sid0", b"\xaa\x80\x01\x40\x00" + b"\x18", True),
    ("predicted", b"\xea\x80\x01\x00\x00" + b"\x18", False),
    ("not_start", b"\xa2\x80\x01\x00\x00" + b"\x18", False),
    # Flexible mode: I (7-bit id), L without TL0PICIDX, B; no P_DIFF since P=0.
    ("flex_key", b"\xb8\x05\x00" + b"\x82", True),
    ("flex_sid2", b"\xb8\x05\x04" + b"\x82", False),
    ("flex_predicted", b"\xf8\x05\x00\x02" + b"\x82", False),
    ("no_i_no_l", b"\x08\x82", True),
    ("end_of_frame_too", b"\x0c\x82", True),
    ("only_descriptor_byte", b"\x08", False),
    ("empty", b"", False),
    ("pic_id_missing", b"\x88", False),
    ("pic15_truncated", b"\x88\x80", False),
    ("layer_byte_missing", b"\xa8\x05", False),
    ("tl0picidx_missing", b"\xa8\x05\x00", False),
    ("flex_nothing_after_layer", b"\xb8\x05\x00", False),
]


@pytest.mark.parametrize(
    ("payload", "expected"), [(p, e) for _, p, e in VP9_CASES], ids=[n for n, _, _ in VP9_CASES]
)
def test_vp9(payload: bytes, expected: bool) -> None:
    assert is_keyframe("video/VP9", payload) is expected


def stap_a(*nals: bytes) -> bytes:
    """An RFC 6184 STAP-A payload (NRI 3) aggregating ``nals``."""
    return b"\x78" + b"".join(len(nal).to_bytes(2, "big") + nal for nal in nals)


SPS = b"\x67\x42\xc0\x1f\xda"
PPS = b"\x68\xce\x3c\x80"
SEI = b"\x06\x05\x01\x80"
IDR = b"\x65\x88\x84"

H264_CASES: list[tuple[str, bytes, bool]] = [
    ("idr", IDR, True),
    ("sps", SPS, True),
    ("pps", PPS, False),
    ("non_idr_slice", b"\x41\x9a\x00", False),
    ("sei", SEI, False),
    ("idr_low_nri", b"\x25\x88", True),
    ("stap_a_sps_pps", stap_a(SPS, PPS), True),
    ("stap_a_sei_idr", stap_a(SEI, IDR), True),
    ("stap_a_pps_sei", stap_a(PPS, SEI), False),
    ("stap_a_empty", b"\x78", False),
    ("stap_a_size_truncated", b"\x78\x00", False),
    ("stap_a_nal_past_end", b"\x78\x00\x09\x67\x42", False),
    ("stap_a_zero_size", b"\x78\x00\x00\x67", False),
    ("stap_a_trailing_garbage", stap_a(PPS) + b"\x00", False),
    ("fu_a_start_idr", b"\x7c\x85\x88\x84", True),
    ("fu_a_start_sps", b"\x7c\x87", True),
    ("fu_a_middle_idr", b"\x7c\x05\x00", False),
    ("fu_a_end_idr", b"\x7c\x45\x00", False),
    ("fu_a_start_non_idr", b"\x7c\x81\x9a", False),
    ("fu_a_no_header", b"\x7c", False),
    ("fu_b_ignored", b"\x7d\x85\x00\x00", False),
    ("empty", b"", False),
]


@pytest.mark.parametrize(
    ("payload", "expected"), [(p, e) for _, p, e in H264_CASES], ids=[n for n, _, _ in H264_CASES]
)
def test_h264(payload: bytes, expected: bool) -> None:
    assert is_keyframe("video/H264", payload) is expected


@pytest.mark.parametrize(
    ("mime_type", "payload", "expected"),
    [
        ("video/h264", IDR, True),
        ("VIDEO/H264", IDR, True),
        ("Video/Vp8", b"\x10" + VP8_KEY_HEADER, True),
        ("video/vp9", b"\x08\x82", True),
        ("audio/opus", IDR, False),
        ("audio/PCMU", b"\x10" + VP8_KEY_HEADER, False),
        ("video/AV1", IDR, False),
        ("video/rtx", IDR, False),
        ("", IDR, False),
    ],
)
def test_mime_dispatch(mime_type: str, payload: bytes, expected: bool) -> None:
    assert is_keyframe(mime_type, payload) is expected


@given(
    st.sampled_from(["video/VP8", "video/VP9", "video/H264", "audio/opus", "video/AV1"]),
    st.binary(max_size=32),
)
def test_arbitrary_payload_never_raises(mime_type: str, payload: bytes) -> None:
    assert isinstance(is_keyframe(mime_type, payload), bool)
