"""Tests for the synthetic clips and the pre-encoded track of loadtests.media."""

from __future__ import annotations

import asyncio
import itertools
import math
import pathlib
import re
import time
from array import array
from fractions import Fraction
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpCodecParameters, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError

from loadtests import media

SECONDS = 4.0
KEYFRAME_S = 1.0
FPS = 30


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("clips")
    video = {"seconds": SECONDS, "fps": FPS, "keyframe_interval_s": KEYFRAME_S}
    return {
        "vp8": media.make_clip(d / "c.webm", codec="vp8", **video),
        "h264": media.make_clip(d / "c.mkv", codec="h264", **video),
        "opus": media.make_clip(d / "c.ogg", codec="opus", seconds=SECONDS),
        "opus2": media.make_clip(d / "c2.ogg", codec="opus", seconds=2.0, channels=2),
    }


def seconds_of(packet: Any) -> float:
    return float(packet.pts * packet.time_base)


def ticks(packets: list[Any]) -> list[int]:
    assert all(p.pts is not None for p in packets)
    return [int(p.pts) for p in packets]


def rms(frame: Any) -> float:
    """RMS of a decoded audio frame (float planar or packed), relative to full scale."""
    fmt = frame.format.name
    samples = array("f" if fmt.startswith("flt") else "h", bytes(frame.planes[0]))
    scale = 1.0 if fmt.startswith("flt") else 32768.0
    channels = 1 if frame.format.is_planar else len(frame.layout.channels)
    samples = samples[: frame.samples * channels]
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples))) / scale


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_video_clip_has_periodic_keyframes_and_duration(
    clips: dict[str, pathlib.Path], codec: str
) -> None:
    packets = media.read_packets(clips[codec], "video")
    assert len(packets) == SECONDS * FPS
    assert all(p.time_base is not None and p.pts is not None for p in packets)
    keys = [seconds_of(p) for p in packets if p.is_keyframe]
    expected = [i * KEYFRAME_S for i in range(int(SECONDS / KEYFRAME_S))]
    assert keys == pytest.approx(expected, abs=0.02)
    duration = seconds_of(packets[-1]) - seconds_of(packets[0]) + 1 / FPS
    assert duration == pytest.approx(SECONDS, abs=0.1)
    with av.open(str(clips[codec])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
    bitrate = sum(p.size for p in packets) * 8 / SECONDS
    assert 300_000 < bitrate < 2_000_000


def test_h264_clip_has_no_b_frames_and_annex_b(clips: dict[str, pathlib.Path]) -> None:
    packets = media.read_packets(clips["h264"])
    assert all(p.pts == p.dts for p in packets)
    assert ticks(packets) == sorted(set(ticks(packets)))  # decode order is display order
    for p in packets:
        data = bytes(p)
        assert data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
        nal_types = {data[m.end()] & 0x1F for m in re.finditer(b"\x00\x00\x01", data)}
        if p.is_keyframe:  # SPS, PPS and IDR in every keyframe, so receivers can join
            assert {7, 8, 5} <= nal_types
        else:
            assert 5 not in nal_types
    with av.open(str(clips["h264"])) as container:
        ctx = container.streams.video[0].codec_context
        assert ctx.profile in ("Baseline", "Constrained Baseline")


@pytest.mark.parametrize(("codec", "mime"), [("vp8", "video/VP8"), ("h264", "video/H264")])
def test_aiortc_packs_video_packets(clips: dict[str, pathlib.Path], codec: str, mime: str) -> None:
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90_000, payloadType=96))
    packets = media.read_packets(clips[codec])
    for p in packets[:40]:
        payloads, timestamp = encoder.pack(p)
        assert payloads and all(len(x) <= 1300 for x in payloads)
        assert timestamp == round(seconds_of(p) * 90_000)


@pytest.mark.parametrize("clip", ["opus", "opus2"])
def test_opus_clip_levels_follow_schedule(clips: dict[str, pathlib.Path], clip: str) -> None:
    packets = media.read_packets(clips[clip], "audio")
    assert packets[0].time_base == Fraction(1, 48_000)
    steps = {b - a for a, b in itertools.pairwise(ticks(packets))}
    assert steps == {960}  # 20 ms frames
    seconds = 2.0 if clip == "opus2" else SECONDS
    assert seconds_of(packets[-1]) + (packets[-1].duration or 0) / 48_000 == pytest.approx(
        seconds, abs=0.1
    )
    decoder = av.CodecContext.create("opus", "r")
    checked = 0
    for p in packets:
        for frame in decoder.decode(p):
            t = seconds_of(p)
            if min(abs(t - k * media.TONE_PERIOD_S) for k in range(10)) < 0.05:
                continue  # near a loud/silent transition
            level = rms(frame)
            assert (level > 0.1) if media.tone_is_loud(t) else (level < 0.01), (t, level)
            checked += 1
    assert checked > len(packets) // 2


def test_cached_clip(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SABAQ_MEDIA_CACHE", str(tmp_path / "cache"))
    assert media.clip_cache_dir() == tmp_path / "cache"
    first = media.cached_clip("vp8", seconds=0.5, width=160, height=96)
    mtime = first.stat().st_mtime_ns
    again = media.cached_clip("vp8", seconds=0.5, height=96, width=160, fps=30)  # same params
    assert again == first and again.stat().st_mtime_ns == mtime
    other = media.cached_clip("vp8", seconds=0.5, width=160, height=96, fps=15)
    assert other != first
    audio = media.cached_clip("opus", seconds=0.5)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in (first, other, audio)
    )
    assert len(media.read_packets(other)) == 8
    with pytest.raises(TypeError):
        media.cached_clip("vp8", nonsense=1)


async def test_realtime_pacing(clips: dict[str, pathlib.Path]) -> None:
    track = media.EncodedTrack(clips["vp8"])
    assert track.kind == "video"
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < 0.5:
        await track.recv()
        count += 1
    assert 8 <= count <= 25  # ~16 at 30 fps, loose bounds
    assert track.frames_sent == count
    fast = media.EncodedTrack(clips["vp8"], speed=4.0)
    start = time.monotonic()
    for _ in range(30):
        await fast.recv()
    assert time.monotonic() - start < 0.9  # 1 s of video at 4x


async def test_looping_keeps_pts_monotonic(clips: dict[str, pathlib.Path]) -> None:
    packets = media.read_packets(clips["vp8"])
    track = media.EncodedTrack(packets, "video", realtime=False)
    assert track.duration_s == pytest.approx(SECONDS, abs=0.05)
    out = [await track.recv() for _ in range(len(packets) * 3 + 5)]
    steps = [b - a for a, b in itertools.pairwise(ticks(out))]
    assert max(steps) <= 34 and min(steps) >= 33  # increasing, no gap or overlap at loops
    assert all(p.time_base == packets[0].time_base for p in out)
    assert [p.is_keyframe for p in out[: len(packets)]] == [p.is_keyframe for p in packets]
    assert out[len(packets)].is_keyframe and bytes(out[len(packets)]) == bytes(packets[0])
    assert seconds_of(out[2 * len(packets)]) == pytest.approx(2 * SECONDS, abs=0.05)


async def test_keyframe_request_jumps_ahead_with_smooth_pts(clips: dict[str, pathlib.Path]) -> None:
    """A PLI is answered by the clip's next keyframe at once; pts carry on without a gap."""
    packets = media.read_packets(clips["vp8"])
    track = media.EncodedTrack(packets, "video", realtime=False, keyframe_min_interval_s=0.0)
    out = [await track.recv() for _ in range(5)]
    assert out[0].is_keyframe and not any(p.is_keyframe for p in out[1:])
    track.request_keyframe()
    forced = await track.recv()
    assert forced.is_keyframe and track.keyframes_forced == 1
    keyframes = [bytes(p) for p in packets if p.is_keyframe]
    assert bytes(forced) in keyframes[1:]  # the next keyframe, not the one just sent
    later = [await track.recv() for _ in range(3)]
    steps = [b - a for a, b in itertools.pairwise(ticks([*out, forced, *later]))]
    assert max(steps) <= 34 and min(steps) >= 33
    assert track.keyframe_requests == 1 and track.keyframes_sent == 2


async def test_keyframe_requests_are_rate_limited(clips: dict[str, pathlib.Path]) -> None:
    """Requests closer than the minimum interval are served once it has passed, not dropped."""
    track = media.EncodedTrack(clips["vp8"], realtime=False, keyframe_min_interval_s=0.15)
    await track.recv()  # the clip's first keyframe, just now
    track.request_keyframe()
    assert not (await track.recv()).is_keyframe  # too soon: still pending
    await asyncio.sleep(0.16)
    assert (await track.recv()).is_keyframe
    assert track.keyframes_forced == 1
    assert not (await track.recv()).is_keyframe  # served once


async def test_stamped_frames_end_with_send_time(clips: dict[str, pathlib.Path]) -> None:
    """A stamped track's video frames end with the send time; aiortc's packetizer puts it at
    the end of the frame's last payload (the marker packet), where read_stamp finds it."""
    track = media.EncodedTrack(clips["vp8"], realtime=False, stamp=True)
    encoder = get_encoder(
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
    )
    original = media.read_packets(clips["vp8"])
    found = 0
    for plain in original[:60]:
        before = time.monotonic_ns()
        packet = await track.recv()
        assert bytes(packet)[: plain.size] == bytes(plain)
        assert packet.is_keyframe == plain.is_keyframe and packet.size == plain.size + 12
        payloads, _ = encoder.pack(packet)
        sent = media.read_stamp(payloads[-1])
        if sent is None:  # the split left part of the stamp in the previous payload
            assert len(payloads) > 1 and len(payloads[-1]) < 4 + media.STAMP.size
            continue
        assert before <= sent <= time.monotonic_ns()
        found += 1
    assert found >= 55
    assert media.read_stamp(b"x" * 40) is None and media.read_stamp(b"") is None
    audio = media.EncodedTrack(clips["opus"], realtime=False, stamp=True)
    assert media.read_stamp(bytes(await audio.recv())) is None  # audio is never stamped


async def test_no_loop_ends_with_media_stream_error(clips: dict[str, pathlib.Path]) -> None:
    track = media.EncodedTrack(clips["opus2"], loop=False, realtime=False)
    assert track.kind == "audio"
    n = len(media.read_packets(clips["opus2"]))
    for _ in range(n):
        await track.recv()
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended" and track.frames_sent == n


async def test_loud_at_matches_decoded_audio(clips: dict[str, pathlib.Path]) -> None:
    track = media.EncodedTrack(clips["opus2"], realtime=False)
    decoder = av.CodecContext.create("opus", "r")
    checked = 0
    for _ in range(250):  # 2.5 loops of the 2 s clip
        packet = await track.recv()
        t = seconds_of(packet)
        clip_t = t % track.duration_s
        frames = decoder.decode(packet)  # decode every packet: Opus decoding has state
        if min(abs(clip_t - k * media.TONE_PERIOD_S) for k in range(4)) < 0.05:
            continue  # near a loud/silent transition
        for frame in frames:
            assert (rms(frame) > 0.1) == track.loud_at(t), t
            checked += 1
    assert checked > 150


@pytest.mark.parametrize(
    ("clip", "mime"), [("vp8", "video/VP8"), ("h264", "video/H264"), ("opus", "audio/opus")]
)
async def test_loopback_peer_connections_decode(
    clips: dict[str, pathlib.Path], monkeypatch: pytest.MonkeyPatch, clip: str, mime: str
) -> None:
    # aioice leaves 127.0.0.1 out of host candidates; keep all traffic on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *a, **k: ["127.0.0.1"])
    config = RTCConfiguration(iceServers=[])
    sender_pc, receiver_pc = RTCPeerConnection(config), RTCPeerConnection(config)
    track = media.EncodedTrack(clips[clip])
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @receiver_pc.on("track")
    def on_track(remote: Any) -> None:
        if not got.done():
            got.set_result(remote)

    try:
        transceiver = sender_pc.addTransceiver(track, direction="sendonly")
        caps = RTCRtpSender.getCapabilities(track.kind).codecs
        transceiver.setCodecPreferences([c for c in caps if c.mimeType == mime])
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        for c in sender_pc.localDescription.sdp.splitlines():
            if c.startswith("a=candidate"):
                assert " 127.0.0.1 " in c
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        async with asyncio.timeout(15):
            remote = await got
            frames = [await remote.recv() for _ in range(10)]
        if track.kind == "video":
            assert all((f.width, f.height) == (640, 360) for f in frames)
        else:
            assert all(f.sample_rate == 48_000 for f in frames)
        assert track.frames_sent >= 10
    finally:
        await sender_pc.close()
        await receiver_pc.close()
