"""Synthetic media clips for tests and load tests, sent by aiortc without re-encoding.

Clips are generated at test time with PyAV (nothing binary is committed):

* ``vp8``: VP8 (libvpx, realtime) in WebM;
* ``h264``: H.264 (libx264, ``tune=zerolatency``, baseline profile, so no B-frames) in
  Matroska; :func:`read_packets` turns its length-prefixed NAL units back into Annex B
  (``h264_mp4toannexb``, which also repeats SPS/PPS before each IDR), as aiortc's
  ``H264Encoder.pack()`` expects;
* ``opus``: Opus (libopus, 48 kHz, 20 ms frames, mono or stereo) in Ogg (exact 1/48000 timestamps).

Keyframes are forced every ``keyframe_interval_s``. The picture is a scrolling gradient with a
bouncing white box and a noise patch (so the encoder has real work to do); the audio is a
``TONE_HZ`` sine, loud for ``TONE_PERIOD_S`` then digital silence for ``TONE_PERIOD_S``,
repeating, starting loud at clip time 0 (see :func:`tone_is_loud`).

:class:`EncodedTrack` replays demuxed ``av.Packet`` objects: aiortc's ``RTCRtpSender`` only
packetizes them (``encoder.pack(packet)`` reads ``bytes(packet)``, ``packet.pts`` and
``packet.time_base`` to derive the RTP timestamp).

For load tests it can also behave like a live encoder in two ways: it answers a keyframe
request (``request_keyframe``, wired to the sender's PLI/FIR handling) by jumping to the
clip's next keyframe at once, and with ``stamp=True`` it appends ``STAMP`` (a magic and the
CLOCK_MONOTONIC time at which the frame left the track) to every video frame, so that a
receiver on the same machine can measure end-to-end delay from the last packet of each frame
(:func:`read_stamp`). Decoders ignore bytes after a VP8 frame's last partition, but the stamp
is for synthetic receivers only.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import json
import math
import os
import pathlib
import random
import struct
import tempfile
import time
import uuid
from array import array
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
TONE_HZ = 400.0  # exactly 8 cycles per 20 ms frame, so every loud frame is identical
TONE_AMPLITUDE = 0.5  # peak, relative to full scale (about -9 dBFS RMS)
TONE_PERIOD_S = 1.0  # loud for one period, silent for the next, and so on
_GENERATOR_VERSION = 1  # bump when the generated content changes, to invalidate caches
# Send-time stamp appended to a stamped track's video frames: magic + CLOCK_MONOTONIC ns.
STAMP_MAGIC = b"SBQt"
STAMP = struct.Struct("!4sQ")

PathLike = str | os.PathLike[str]


def tone_is_loud(clip_seconds: float) -> bool:
    """Whether the generated tone is loud at this time from the start of the clip."""
    return int(clip_seconds // TONE_PERIOD_S) % 2 == 0


def _video_frames(width: int, height: int, fps: int, count: int, gop: int) -> Any:
    """Yield ``count`` yuv420p frames; every ``gop``-th one is forced to be a keyframe."""
    rng = random.Random(0)
    probe = av.VideoFrame(width, height, "yuv420p")
    y_stride = probe.planes[0].line_size
    cyclic = bytes(i & 0xFF for i in range(width + 256))
    chroma = [bytes([128]) * p.buffer_size for p in probe.planes[1:]]
    box = max(8, height // 6)
    patch_w, patch_h = max(8, width // 8), max(8, height // 8)
    white = bytes([235]) * box
    for i in range(count):
        shift = (i * 3) % 256
        row = cyclic[shift : shift + width] + bytes(y_stride - width)
        luma = bytearray(row * height)
        # bounce the box around the picture
        bx = abs((i * 7) % (2 * (width - box)) - (width - box))
        by = abs((i * 5) % (2 * (height - box)) - (height - box))
        for r in range(by, by + box):
            luma[r * y_stride + bx : r * y_stride + bx + box] = white
        noise = rng.randbytes(patch_w * patch_h)
        for r in range(patch_h):
            start = (height - patch_h + r) * y_stride + width - patch_w
            luma[start : start + patch_w] = noise[r * patch_w : (r + 1) * patch_w]
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma[0])
        frame.planes[2].update(chroma[1])
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        if i % gop == 0:
            frame.pict_type = av.video.frame.PictureType.I
        yield frame


_X264 = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "bf": "0"}
# codec -> (container format, encoder, encoder options)
_VIDEO_CODECS = {
    "vp8": ("webm", "libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
    "h264": ("matroska", "libx264", {**_X264, "sc_threshold": "0"}),  # no scene-cut keyframes
}


def make_video_clip(
    path: PathLike,
    *,
    codec: str = "vp8",
    seconds: float = 5.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    bitrate: int = 1_000_000,
    keyframe_interval_s: float = 2.0,
) -> pathlib.Path:
    """VP8 (libvpx, realtime, no alt-ref frames) in WebM or H.264 (libx264, zerolatency,
    baseline profile: no B-frames) in Matroska, with a keyframe every ``keyframe_interval_s``.
    """
    fmt, encoder, options = _VIDEO_CODECS[codec]
    gop = max(1, round(keyframe_interval_s * fps))
    # keyint_min = g: no extra keyframes on scene cuts (x264) or by libvpx's own choice
    options = {**options, "g": str(gop), "keyint_min": str(gop)}
    with av.open(os.fspath(path), "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=fps, options=options)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        for frame in _video_frames(width, height, fps, round(seconds * fps), gop):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return pathlib.Path(path)


def make_opus_clip(
    path: PathLike, *, seconds: float = 5.0, channels: int = 1, bitrate: int = 32_000
) -> pathlib.Path:
    """Opus (libopus, 48 kHz, 20 ms frames) in Ogg, with the loud/silent tone schedule."""
    layout = {1: "mono", 2: "stereo"}[channels]
    one = [
        round(32767 * TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_RATE))
        for n in range(AUDIO_FRAME_SAMPLES)
    ]
    loud = array("h", [s for s in one for _ in range(channels)]).tobytes()
    silent = bytes(len(loud))
    with av.open(os.fspath(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=AUDIO_RATE, options={"frame_duration": "20"})
        stream.layout = layout
        stream.bit_rate = bitrate
        for i in range(round(seconds * AUDIO_RATE / AUDIO_FRAME_SAMPLES)):
            frame = av.AudioFrame(format="s16", layout=layout, samples=AUDIO_FRAME_SAMPLES)
            t = i * AUDIO_FRAME_SAMPLES / AUDIO_RATE
            frame.planes[0].update(loud if tone_is_loud(t) else silent)
            frame.sample_rate = AUDIO_RATE
            frame.pts = i * AUDIO_FRAME_SAMPLES
            frame.time_base = Fraction(1, AUDIO_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return pathlib.Path(path)


_SUFFIX = {"vp8": ".webm", "h264": ".mkv", "opus": ".ogg"}


def make_clip(path: PathLike, *, codec: str, **params: Any) -> pathlib.Path:
    """Generate a clip of ``codec`` ("vp8", "h264" or "opus") at ``path``."""
    if codec == "opus":
        return make_opus_clip(path, **params)
    return make_video_clip(path, codec=codec, **params)


def clip_cache_dir() -> pathlib.Path:
    """``$SABAQ_MEDIA_CACHE``, else ``sabaq-media`` under the system temp directory."""
    env = os.environ.get("SABAQ_MEDIA_CACHE")
    path = pathlib.Path(env) if env else pathlib.Path(tempfile.gettempdir()) / "sabaq-media"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_clip(kind: str, **params: Any) -> pathlib.Path:
    """The clip of ``kind`` for these parameters, generated once and shared via the cache."""
    if kind not in _SUFFIX:
        raise ValueError(f"unknown clip kind {kind!r}")
    maker = make_opus_clip if kind == "opus" else make_video_clip
    if kind != "opus":
        params = {**params, "codec": kind}
    bound = inspect.signature(maker).bind("", **params)  # TypeError for unknown params
    bound.apply_defaults()
    key = {k: v for k, v in bound.arguments.items() if k != "path"}
    blob = json.dumps([kind, _GENERATOR_VERSION, av.__version__, key], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    directory = clip_cache_dir()
    final = directory / f"{kind}-{digest}{_SUFFIX[kind]}"
    if final.exists():
        return final
    tmp = directory / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        maker(tmp, **params)
        os.replace(tmp, final)  # atomic: readers never see a partial clip
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _demux(path: PathLike, kind: str | None) -> tuple[str, list[av.Packet[Any]]]:
    with av.open(os.fspath(path)) as container:
        streams = {"video": container.streams.video, "audio": container.streams.audio}
        candidates = streams[kind] if kind else container.streams
        if not candidates:
            raise ValueError(f"{path}: no {kind or 'media'} stream")
        stream = candidates[0]
        time_base = stream.time_base
        assert time_base is not None
        bsf = None
        if stream.codec_context.name == "h264":
            bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        packets: list[av.Packet[Any]] = []
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:  # skip the demuxer's flush packets
                packets.extend(bsf.filter(packet) if bsf else [packet])
        if bsf:
            packets.extend(bsf.filter(None))
        for packet in packets:
            packet.time_base = time_base
        return str(stream.type), packets


def read_packets(path: PathLike, kind: str | None = None) -> list[av.Packet[Any]]:
    """Encoded packets (pts, time_base, is_keyframe) of the first ``kind`` stream; no decoding.

    H.264 packets come out in Annex B with SPS/PPS before each keyframe.
    """
    return _demux(path, kind)[1]


class EncodedTrack(MediaStreamTrack):
    """A track whose ``recv()`` returns pre-encoded ``av.Packet`` objects, paced in real time.

    Output pts start at 0 and keep increasing across loops (``loop=True``), so RTP
    timestamps do too. With ``loop=False``, ``recv()`` raises ``MediaStreamError`` after the
    last packet, which ends aiortc's sender cleanly. ``realtime=False`` delivers as fast as
    the consumer reads; ``speed`` scales real-time pacing.
    """

    def __init__(
        self,
        source: Sequence[av.Packet[Any]] | PathLike,
        kind: str | None = None,
        *,
        loop: bool = True,
        realtime: bool = True,
        speed: float = 1.0,
        stamp: bool = False,
        keyframe_min_interval_s: float = 0.2,
    ) -> None:
        super().__init__()
        if isinstance(source, str | os.PathLike):
            kind, packets = _demux(source, kind)
        else:
            packets = list(source)
        if kind not in ("audio", "video"):
            raise ValueError("kind must be 'audio' or 'video'")
        if not packets:
            raise ValueError("no packets")
        self.kind = kind
        pts = [p.pts for p in packets]
        time_base = packets[0].time_base
        if time_base is None or None in pts:
            raise ValueError("packets need pts and time_base")
        self.time_base: Fraction = time_base
        ticks = [int(t or 0) for t in pts]
        first = min(ticks)
        self._items = [
            (bytes(p), t - first, bool(p.is_keyframe)) for p, t in zip(packets, ticks, strict=True)
        ]
        # One loop lasts up to the last packet plus the typical packet interval (not the
        # last packet's container duration: a trimmed final Opus packet still carries 20 ms).
        steps = sorted(b - a for a, b in itertools.pairwise(ticks))
        step = steps[len(steps) // 2] if steps else max(1, packets[0].duration or 1)
        self._clip_ticks: int = max(ticks) - first + step
        self._origin_s = float(first * self.time_base)
        self.loop, self.realtime, self.speed = loop, realtime, speed
        self.frames_sent = 0
        self.keyframes_sent = 0
        self.keyframes_forced = 0  # keyframes sent early, in answer to request_keyframe()
        self.keyframe_requests = 0
        self.stamp = stamp and kind == "video"
        self.keyframe_min_interval_s = keyframe_min_interval_s
        self._keyframe_wanted = False
        self._last_keyframe_at = -math.inf
        self._index = 0
        self._offset = 0
        self._start: float | None = None

    @property
    def duration_s(self) -> float:
        """Length of one pass over the clip, in seconds."""
        return float(self._clip_ticks * self.time_base)

    def loud_at(self, pts_seconds: float) -> bool:
        """Whether the generated tone is loud at this output pts, in seconds (any loop).

        Output pts are shifted so that the first packet is at 0; for Opus that first packet
        starts before the clip (encoder pre-skip), which is accounted for here.
        """
        return tone_is_loud(pts_seconds % self.duration_s + self._origin_s)

    def request_keyframe(self) -> None:
        """Send a keyframe as soon as allowed: what an encoder does for a PLI or FIR.

        The next frame becomes the clip's next keyframe (output pts carry on as if no frame
        had been skipped, so pacing and RTP timestamps stay smooth). Like a browser's
        encoder, keyframes are at most one per ``keyframe_min_interval_s``: a request
        arriving sooner is served when that interval has passed.
        """
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    def _jump_to_keyframe(self) -> None:
        """Skip ahead to the next keyframe (wrapping to the clip's start), keeping pts."""
        index = self._index
        if self._items[index][2]:
            return
        pts_here = self._items[index][1] + self._offset
        for k in itertools.chain(range(index + 1, len(self._items)), range(index)):
            if self._items[k][2]:
                self._index = k
                self._offset = pts_here - self._items[k][1]
                self.keyframes_forced += 1
                return

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._index == len(self._items):
            if not self.loop:
                self.stop()
                raise MediaStreamError
            self._index = 0
            self._offset += self._clip_ticks
        if (
            self._keyframe_wanted
            and time.monotonic() - self._last_keyframe_at >= self.keyframe_min_interval_s
        ):
            self._keyframe_wanted = False
            self._jump_to_keyframe()
        data, rel, keyframe = self._items[self._index]
        self._index += 1
        packet = av.Packet(data)
        packet.pts = packet.dts = rel + self._offset
        packet.time_base = self.time_base
        packet.is_keyframe = keyframe
        loop = asyncio.get_running_loop()
        if self.realtime:
            if self._start is None:
                self._start = loop.time()
            delay = self._start + float(packet.pts * self.time_base) / self.speed - loop.time()
            await asyncio.sleep(max(0.0, delay))
        else:
            await asyncio.sleep(0)
        if self.readyState != "live":
            raise MediaStreamError
        self.frames_sent += 1
        if keyframe:
            self.keyframes_sent += 1
            self._last_keyframe_at = time.monotonic()
            self._keyframe_wanted = False  # a keyframe due anyway answers a pending request
        if self.stamp:
            stamped = av.Packet(data + STAMP.pack(STAMP_MAGIC, time.monotonic_ns()))
            stamped.pts, stamped.dts = packet.pts, packet.dts
            stamped.time_base, stamped.is_keyframe = packet.time_base, keyframe
            return stamped
        return packet


def read_stamp(payload: bytes) -> int | None:
    """The CLOCK_MONOTONIC send time (ns) a stamped frame's last RTP payload ends with.

    None when the payload does not end with a stamp (an unstamped track, or a frame whose
    last packet holds only part of the stamp because the packetizer split it)."""
    if len(payload) < STAMP.size:
        return None
    magic, sent_ns = STAMP.unpack_from(payload, len(payload) - STAMP.size)
    return int(sent_ns) if magic == STAMP_MAGIC else None
