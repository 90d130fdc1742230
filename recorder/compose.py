"""One downloadable MP4 per lesson: screen and camera composed, H.264 + AAC, made offline.

The live path never decodes; this background job does, after the lesson, at the lowest CPU
and I/O priority (:func:`run_job_process`). It reads an explicit :class:`ComposeJob` (the
caller builds it from the recording's catalogue) and writes one MP4:

* **Layout.** While a screen part covers the moment, the screen fills the frame (letterboxed,
  aspect kept) and the camera is a picture-in-picture a quarter of the width wide in the
  bottom-right corner; with no screen the camera fills the frame; with neither, a dark
  neutral frame. Audio is the microphone parts at their offsets, silence in the gaps, AAC
  48 kHz mono (one lecturer's microphone: stereo would double the encoder's work for nothing).
* **Timing.** A frame of a part is at ``start_offset_s + (pts - stream start) * time_base``
  on the lesson's timeline. Output frame ``n`` shows, per source, the latest frame at or
  before ``n / fps`` (half a frame of tolerance), held until the part's next frame or, for
  the last one, for its own duration; so video is within half an output frame of its place
  and audio within a sample, far inside the 100 ms A/V budget.
* **Chunks.** The timeline is encoded in chunks of about ``chunk_s``; each is its own MP4 in
  ``work_dir`` (written, fsynced, renamed) and listed in ``state.json`` (fsynced), so a
  restarted job skips what is done. Chunk boundaries are rounded to a multiple of both the
  frame duration and the AAC frame (1024 samples): then every chunk's packets tile the
  timeline exactly and :func:`compose` can join them by remuxing with shifted timestamps,
  no re-encoding and no drift. Each chunk's audio is encoded with 2048 samples of real
  signal before and after it and only its own packets kept, so the MDCT overlap across a
  boundary is computed from the true signal on both sides and no click is heard.
* **Progress.** ``(chunks done + fraction of the current one) / chunks``, 0.0 to 1.0, given
  to the callback and written to ``work_dir/progress.json`` at least every second.

Inputs that a crash truncated are used up to their last good packet; a part that cannot
be opened at all is skipped with a warning; a missing file fails the job with its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import platform
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

__all__ = [
    "SOURCES",
    "ComposeError",
    "ComposeJob",
    "InputPart",
    "compose",
    "run_job_process",
]

log = logging.getLogger(__name__)

SOURCES = frozenset({"camera", "screen", "microphone"})
_AUDIO_RATE = 48_000
_AAC_FRAME = 1024  # samples per AAC-LC packet
# Real signal encoded on each side of a chunk's audio and then dropped: two AAC frames cover
# the MDCT window (2048 samples) of the packets that straddle the boundary.
_AUDIO_ROLL = 2 * _AAC_FRAME
# An audio frame further than 20 ms from where the previous one ended starts a new run
# (a gap in the part); closer, it is contiguous and sub-millisecond pts rounding (WebM
# stores milliseconds) does not tear the waveform.
_AUDIO_JUMP = _AUDIO_RATE // 50
_SEEK_PREROLL_S = 1.0  # decode from a keyframe at least this far before a resume point
_PROGRESS_EVERY_S = 1.0  # the page polling progress.json treats 2 s without news as stale
_MAX_DECODE_ERRORS = 25  # consecutive bad packets after which a part is considered over
_BACKGROUND = (32, 128, 128)  # Y, U, V of the dark neutral grey behind everything
_STATE_VERSION = 1
# libx264 "veryfast": 9.0 CPU s against 16.3 for "medium" on 30 s of the benchmark lesson
# (loadtests/bench_compose.py, 720p, same bitrate); a background job on the live server's
# machine should be cheap first, and slides and a talking head compress easily anyway.
_X264_PRESET = "veryfast"
_KEYFRAME_S = 4  # seek granularity of the downloaded file


class ComposeError(Exception):
    """The job cannot be done as described: a missing input, an invalid job, a busy work_dir."""


@dataclass(frozen=True, slots=True)
class InputPart:
    """One recorded file of one track and where it starts on the lesson's timeline."""

    path: Path  # a WebM (VP8/Opus) or Matroska (H.264) file of ONE track
    source: str  # "camera" | "screen" | "microphone"
    start_offset_s: float  # parts of one source may leave gaps between them


@dataclass(frozen=True, slots=True)
class ComposeJob:
    """Everything :func:`compose` needs; serialisable so a child process can run it."""

    parts: tuple[InputPart, ...]
    output: Path  # the final .mp4
    work_dir: Path  # chunk files, state.json and progress.json live here
    duration_s: float  # the lesson's timeline length
    width: int = 1280
    height: int = 720
    fps: int = 25
    video_bitrate: int = 1_500_000
    audio_bitrate: int = 96_000
    chunk_s: float = 60.0

    def to_json(self) -> str:
        """The job as a JSON object (paths as strings)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["parts"] = [
            {"path": str(p.path), "source": p.source, "start_offset_s": p.start_offset_s}
            for p in self.parts
        ]
        fields["output"], fields["work_dir"] = str(self.output), str(self.work_dir)
        return json.dumps(fields, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ComposeJob:
        """Parse :meth:`to_json`'s output; raise :class:`ComposeError` on anything else."""
        try:
            raw = json.loads(text)
            parts = tuple(
                InputPart(Path(_typed(p["path"], str)), p["source"], float(p["start_offset_s"]))
                for p in raw["parts"]
            )
            optional = {
                name: _typed(raw[name], int)
                for name in ("width", "height", "fps", "video_bitrate", "audio_bitrate")
                if name in raw
            }
            if "chunk_s" in raw:
                optional["chunk_s"] = float(raw["chunk_s"])
            job = cls(
                parts=parts,
                output=Path(_typed(raw["output"], str)),
                work_dir=Path(_typed(raw["work_dir"], str)),
                duration_s=float(raw["duration_s"]),
                **optional,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ComposeError(f"invalid compose job: {exc!r}") from None
        return job


def _typed(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _validate(job: ComposeJob) -> None:
    if not (math.isfinite(job.duration_s) and job.duration_s > 0):
        raise ComposeError(f"duration_s must be positive, got {job.duration_s}")
    if job.width < 16 or job.height < 16 or job.width % 2 or job.height % 2:
        raise ComposeError(f"width and height must be even and >= 16, got {job.width}x{job.height}")
    if job.fps <= 0 or job.chunk_s <= 0 or job.video_bitrate <= 0 or job.audio_bitrate <= 0:
        raise ComposeError("fps, chunk_s and bitrates must be positive")
    for part in job.parts:
        if part.source not in SOURCES:
            raise ComposeError(f"unknown source {part.source!r} for {part.path}")
        if not math.isfinite(part.start_offset_s):
            raise ComposeError(f"start_offset_s is not finite for {part.path}")
    missing = [str(p.path) for p in job.parts if not p.path.is_file()]
    if missing:
        raise ComposeError(f"input part missing: {', '.join(missing)}")


# --- the chunk grid ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """Chunk boundaries on a grid common to video frames and AAC frames."""

    fps: int
    frames_per_chunk: int
    total_frames: int

    @classmethod
    def of(cls, job: ComposeJob) -> _Plan:
        aac, frame = Fraction(_AAC_FRAME, _AUDIO_RATE), Fraction(1, job.fps)
        # lcm of two fractions: lcm of numerators over gcd of denominators (0.32 s at 25 fps)
        unit = Fraction(
            math.lcm(aac.numerator, frame.numerator),
            math.gcd(aac.denominator, frame.denominator),
        )
        units = max(1, round(Fraction(job.chunk_s) / unit))
        frames = int(units * unit * job.fps)
        total = max(1, round(job.duration_s * job.fps))
        return cls(job.fps, frames, total)

    @property
    def count(self) -> int:
        return -(-self.total_frames // self.frames_per_chunk)

    def frames(self, k: int) -> tuple[int, int]:
        start = k * self.frames_per_chunk
        return start, min(start + self.frames_per_chunk, self.total_frames)

    def samples(self, k: int) -> tuple[int, int]:
        # exact for chunk starts (on the grid); the lesson's end is rounded up to a sample
        first, last = self.frames(k)
        return first * _AUDIO_RATE // self.fps, -(-last * _AUDIO_RATE // self.fps)

    def start(self, k: int) -> Fraction:
        return Fraction(self.frames(k)[0], self.fps)


# --- decoding the parts -----------------------------------------------------------------


_Frames = Generator[tuple[float, float, Any], None, None]  # (time, duration, frame)


def _part_frames(part: InputPart, kind: str, start_s: float) -> _Frames:
    """(timeline time, duration, frame) of a part's first ``kind`` stream, from about
    ``start_s`` on (seeking when the part starts well before it), up to its last good packet.
    """
    into_s = start_s - part.start_offset_s - _SEEK_PREROLL_S
    # First try seeking (a resumed job); without an index, or if the demuxer lands after
    # the resume point, decode the part from its start instead: slower, never wrong.
    for seek_s in (into_s, 0.0) if into_s > 0 else (0.0,):
        with _open_stream(part, kind) as opened:
            if opened is None:
                return
            container, stream, origin, time_base, length_s = opened
            if seek_s > 0:
                if length_s is not None and seek_s > length_s:
                    return  # the part ended before the resume point
                try:
                    container.seek(origin + int(seek_s / time_base), stream=stream, backward=True)
                except av.FFmpegError:
                    continue
            frames = _decode(container, stream, part, origin, time_base)
            head = next(frames, None)
            if seek_s > 0 and (head is None or head[0] > start_s):
                log.debug("compose: seek in %s missed, decoding from the start", part.path)
                frames.close()
                continue
            if head is None:
                return
            yield head
            yield from frames
            return


@contextlib.contextmanager
def _open_stream(
    part: InputPart, kind: str
) -> Iterator[tuple[Any, Any, int, Fraction, float | None] | None]:
    """(container, stream, stream start, time base, length in s or None), or None if unusable."""
    try:
        container = av.open(os.fspath(part.path))
    except FileNotFoundError:
        raise ComposeError(f"input part missing: {part.path}") from None
    except (av.FFmpegError, OSError) as exc:
        log.warning("compose: skipping unreadable part %s: %s", part.path, exc)
        yield None
        return
    with container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        stream = streams[0] if streams else None
        if stream is None or stream.time_base is None:
            log.warning("compose: no %s stream in %s", kind, part.path)
            yield None
            return
        # frame threads: decoding is the second cost after x264 (Opus ignores it)
        stream.codec_context.thread_type = "AUTO"
        # The container's estimate of the part's length, to skip parts that end before a
        # resume point without decoding them; None for files a crash left unfinished.
        length_s = container.duration / 1e6 if container.duration else None
        yield container, stream, stream.start_time or 0, stream.time_base, length_s


def _decode(
    container: Any, stream: Any, part: InputPart, origin: int, time_base: Fraction
) -> _Frames:
    packets, bad = container.demux(stream), 0
    while True:
        try:
            packet = next(packets, None)
        except av.FFmpegError as exc:
            # A truncated or damaged file: what was read so far is kept.
            log.warning("compose: %s ends early (%s); using it up to there", part.path, exc)
            packet = None
        if packet is None or bad >= _MAX_DECODE_ERRORS:
            packet = None  # the end: flush the frames the decoder's threads still hold
        elif not packet.size:
            continue  # the demuxer's own end marker; the flush comes with None above
        try:
            frames = stream.decode(packet)
            bad = 0
        except (av.FFmpegError, EOFError) as exc:
            # A corrupt packet costs its frame; a run of them is a damaged tail.
            bad += 1
            log.debug("compose: bad packet in %s: %s", part.path, exc)
            if bad == _MAX_DECODE_ERRORS:
                log.warning("compose: %s unreadable after %d bad packets", part.path, bad)
            if packet is None:
                return
            continue
        for frame in frames:
            if frame.pts is not None:
                t = part.start_offset_s + float((frame.pts - origin) * time_base)
                yield t, float(frame.duration * time_base), frame
        if packet is None:
            return


@dataclass(slots=True)
class _Shown:
    time: float
    end: float  # when this frame stops being shown if no later frame of its part comes
    part: int
    serial: int
    frame: Any


class _VideoTrack:
    """The frame of one source (camera or screen) to show at each output time."""

    def __init__(
        self, parts: Sequence[InputPart], start_s: float, fps: int, beat: Callable[[], None]
    ) -> None:
        self._frames = self._iterate(sorted(parts, key=lambda p: p.start_offset_s), start_s, fps)
        self._half = 0.5 / fps
        self._beat = beat
        self._shown: _Shown | None = None
        self._next = next(self._frames, None)

    @staticmethod
    def _iterate(
        parts: Sequence[InputPart], start_s: float, fps: int
    ) -> Generator[_Shown, None, None]:
        serial = itertools.count()
        for index, part in enumerate(parts):
            for t, duration, frame in _part_frames(part, "video", start_s):
                # A frame without a duration is shown for one output frame after the last.
                yield _Shown(
                    t, t + (duration if duration > 0 else 1 / fps), index, next(serial), frame
                )

    def at(self, t: float) -> _Shown | None:
        """The latest frame at or before ``t`` (half a frame early at most) if its part covers t."""
        # 1 µs of slack: a frame exactly half a frame ahead (float sums) counts as due
        while self._next is not None and self._next.time <= t + self._half + 1e-6:
            self._shown, self._next = self._next, next(self._frames, None)
            self._beat()  # skipping to a resume point without an index can take minutes
        shown = self._shown
        if shown is None:
            return None
        if self._next is not None and self._next.part == shown.part:
            return shown  # held until its part's next frame: a static slide sends few frames
        return shown if t < shown.end else None

    def close(self) -> None:
        self._frames.close()


class _AudioTrack:
    """The microphone parts as one 48 kHz mono float signal with silence in the gaps."""

    def __init__(
        self, parts: Sequence[InputPart], start_s: float, beat: Callable[[], None]
    ) -> None:
        self._beat = beat
        self._pieces: deque[tuple[int, array[float]]] = deque()
        self._source = self._iterate(sorted(parts, key=lambda p: p.start_offset_s), start_s)
        self._reached = -sys.maxsize  # position of the latest piece pulled from the source

    @staticmethod
    def _iterate(
        parts: Sequence[InputPart], start_s: float
    ) -> Generator[tuple[int, array[float]], None, None]:
        for part in parts:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=_AUDIO_RATE)
            cursor: int | None = None
            for t, _, frame in _part_frames(part, "audio", start_s):
                target = round(t * _AUDIO_RATE)
                if cursor is None or abs(target - cursor) > _AUDIO_JUMP:
                    cursor = target
                for out in resampler.resample(frame):
                    yield cursor, _samples(out)
                    cursor += out.samples
            if cursor is not None:
                for out in resampler.resample(None):
                    yield cursor, _samples(out)
                    cursor += out.samples

    def render(self, start: int, end: int) -> array[float]:
        """Samples ``[start, end)`` of the timeline; ``start`` never goes back between calls."""
        while self._reached < end:
            piece = next(self._source, None)
            if piece is None:
                self._reached = sys.maxsize
                break
            self._pieces.append(piece)
            self._reached = piece[0]
            self._beat()
        out = array("f", bytes(4 * (end - start)))
        for pos, samples in self._pieces:
            lo, hi = max(pos, start), min(pos + len(samples), end)
            if lo < hi:
                out[lo - start : hi - start] = samples[lo - pos : hi - pos]
        while self._pieces and self._pieces[0][0] + len(self._pieces[0][1]) <= start:
            self._pieces.popleft()
        return out

    def close(self) -> None:
        self._source.close()


def _samples(frame: Any) -> array[float]:
    out = array("f")
    out.frombytes(memoryview(frame.planes[0])[: 4 * frame.samples])
    return out


# --- composing a frame ------------------------------------------------------------------


def _fit(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest even size with the aspect of ``width x height`` inside the box."""
    scale = min(box_w / width, box_h / height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class _Canvas:
    """Output frames: screen letterboxed with a camera PiP, or camera alone, or background."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        probe = av.VideoFrame(width, height, "yuv420p")
        self._background = [
            bytes([v]) * p.buffer_size for v, p in zip(_BACKGROUND, probe.planes, strict=True)
        ]
        self._scaled: dict[str, tuple[tuple[int, int, int], Any]] = {}
        self._last: tuple[tuple[int, ...], Any] | None = None
        # PiP: a quarter of the width, inset by 1/64 of it (20 px at 1280), never over half
        # the height (a phone camera in portrait).
        self._pip_box = (width // 4, height // 2)
        self._margin = max(2, width // 128 * 2)

    def frame(self, screen: _Shown | None, camera: _Shown | None) -> Any:
        """A new yuv420p frame for these sources (the same picture as last time is copied)."""
        key = (-1 if screen is None else screen.serial, -1 if camera is None else camera.serial)
        out = av.VideoFrame(self.width, self.height, "yuv420p")
        if self._last is not None and self._last[0] == key:
            for dst, src in zip(out.planes, self._last[1].planes, strict=True):
                memoryview(dst)[:] = memoryview(src)
            return out
        for plane, background in zip(out.planes, self._background, strict=True):
            memoryview(plane)[:] = background
        if screen is not None:
            self._place(out, "screen", screen, self.width, self.height, None)
            if camera is not None:
                self._place(out, "camera", camera, *self._pip_box, self._margin)
        elif camera is not None:
            self._place(out, "camera", camera, self.width, self.height, None)
        self._last = (key, out)
        return out

    def _place(
        self, out: Any, role: str, shown: _Shown, box_w: int, box_h: int, margin: int | None
    ) -> None:
        src = shown.frame
        w, h = _fit(src.width, src.height, box_w, box_h)
        cached = self._scaled.get(role)
        if cached is not None and cached[0] == (shown.serial, w, h):
            scaled = cached[1]
        else:
            # AREA keeps slide text legible when a 1080p screen shrinks to 720p.
            scaled = src.reformat(w, h, "yuv420p", interpolation="AREA")
            self._scaled[role] = ((shown.serial, w, h), scaled)
        if margin is None:  # centred
            x, y = (self.width - w) // 4 * 2, (self.height - h) // 4 * 2
        else:  # bottom-right corner
            x, y = self.width - w - margin, self.height - h - margin
        _paste(out, scaled, x, y)


def _paste(dst: Any, src: Any, x: int, y: int) -> None:
    """Copy ``src`` (yuv420p) into ``dst`` (yuv420p) with its top-left corner at even x, y."""
    for index, (dp, sp) in enumerate(zip(dst.planes, src.planes, strict=True)):
        shift = 1 if index else 0
        dx, dy, w = x >> shift, y >> shift, sp.width
        dmv, smv = memoryview(dp), memoryview(sp)
        dls, sls = dp.line_size, sp.line_size
        if dx == 0 and w == dp.width and dls == sls:  # full-width rows: one copy
            dmv[dy * dls : (dy + sp.height) * dls] = smv[: sp.height * sls]
            continue
        for row in range(sp.height):
            d, s = (dy + row) * dls + dx, row * sls
            dmv[d : d + w] = smv[s : s + w]


# --- state and progress files -----------------------------------------------------------


def _write_json(path: Path, value: dict[str, Any], *, durable: bool) -> None:
    """Atomically replace ``path``; ``durable`` also fsyncs the file and its directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    """fsync a file (its data) or a directory (a rename in it) by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_progress(work_dir: Path, status: str, progress: float, **extra: Any) -> None:
    value = {
        "status": status,
        "progress": round(min(1.0, max(0.0, progress)), 4),
        "updated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **extra,
    }
    _write_json(work_dir / "progress.json", value, durable=False)


class _Progress:
    """Progress to the callback and progress.json: at most once a second, and at chunk ends."""

    def __init__(
        self, work_dir: Path, callback: Callable[[float], None] | None, chunks: int
    ) -> None:
        self._work_dir, self._callback, self._chunks = work_dir, callback, chunks
        self._last = -math.inf
        self._done, self._status = 0, "running"

    def update(
        self, done: int, fraction: float, *, force: bool = False, status: str = "running"
    ) -> None:
        """Report ``done`` chunks and ``fraction`` of the next one."""
        now = time.monotonic()
        if not force and now - self._last < _PROGRESS_EVERY_S:
            return
        self._last, self._done, self._status = now, done, status
        value = (done + fraction) / self._chunks
        _write_progress(self._work_dir, status, value, chunks_done=done, chunks_total=self._chunks)
        if self._callback is not None and status == "running":
            self._callback(value)  # not again while joining: the value is 1.0 by then

    def beat(self) -> None:
        """Show the job is alive (updated_at) while no frame is being encoded."""
        if time.monotonic() - self._last >= _PROGRESS_EVERY_S:
            self.update(self._done, 0.0, force=True, status=self._status)


def _job_key(job: ComposeJob) -> str:
    """The job itself, output path included: what a finished output answers to."""
    return hashlib.sha256(job.to_json().encode()).hexdigest()


def _fingerprint(job: ComposeJob) -> str:
    """What the chunks depend on: the job (not where its output goes), inputs, library versions."""
    blob = json.loads(job.to_json())
    del blob["output"], blob["work_dir"]
    stats = []
    for part in job.parts:
        st = part.path.stat()
        stats.append([st.st_size, st.st_mtime_ns])
    blob.update(inputs=stats, av=av.__version__, libs=sorted(av.library_versions.items()))
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _chunk_path(work_dir: Path, k: int) -> Path:
    return work_dir / f"chunk-{k:05d}.mp4"


# --- encoding a chunk -------------------------------------------------------------------


def _encode_chunk(
    job: ComposeJob,
    plan: _Plan,
    k: int,
    screen: _VideoTrack,
    camera: _VideoTrack,
    audio: _AudioTrack,
    canvas: _Canvas,
    progress: Callable[[float], None],
) -> None:
    """Encode chunk ``k`` to its file (atomically: a temporary name, fsync, rename)."""
    final = _chunk_path(job.work_dir, k)
    tmp = final.with_name(f".{final.name}.tmp")
    f0, f1 = plan.frames(k)
    s0, s1 = plan.samples(k)
    with av.open(os.fspath(tmp), "w", format="mp4") as out:
        video = out.add_stream(
            "libx264",
            rate=job.fps,
            options={"preset": _X264_PRESET, "g": str(_KEYFRAME_S * job.fps)},
        )
        video.width, video.height, video.pix_fmt = job.width, job.height, "yuv420p"
        video.bit_rate = job.video_bitrate
        sound = out.add_stream("aac", rate=_AUDIO_RATE)
        sound.layout = "mono"
        sound.bit_rate = job.audio_bitrate
        pending = deque(_encode_audio(sound, audio, s0, s1))
        frame_tb = Fraction(1, job.fps)
        for n in range(f0, f1):
            t = n / job.fps
            frame = canvas.frame(screen.at(t), camera.at(t))
            frame.pts, frame.time_base = n - f0, frame_tb
            for packet in video.encode(frame):
                _mux_until(out, pending, packet)
            progress((n + 1 - f0) / (f1 - f0))
        for packet in video.encode(None):
            _mux_until(out, pending, packet)
        out.mux(list(pending))
    _fsync(tmp)
    os.replace(tmp, final)
    _fsync(final.parent)


def _mux_until(out: Any, pending: deque[Any], packet: Any) -> None:
    """Mux the video packet after the audio packets that come before it (interleaving)."""
    if packet.dts is not None:
        limit = packet.dts * packet.time_base
        while pending and pending[0].pts * pending[0].time_base <= limit:
            out.mux(pending.popleft())
    out.mux(packet)


def _encode_audio(stream: Any, audio: _AudioTrack, s0: int, s1: int) -> list[Any]:
    """AAC packets of samples ``[s0, s1)``, pts relative to ``s0``.

    The encoder sees ``_AUDIO_ROLL`` samples of real signal before and after; only the
    packets that start inside the chunk are kept, so chunks join without a click.
    """
    start = s0 - _AUDIO_ROLL
    count = -(-(s1 + _AUDIO_ROLL - start) // _AAC_FRAME)
    signal = audio.render(start, start + count * _AAC_FRAME)
    tb = Fraction(1, _AUDIO_RATE)
    # The lesson's first chunk also keeps the packet before 0: decoders need it to rebuild
    # the first 1024 samples; the MP4 muxer hides it behind an edit list (AAC priming).
    first = -_AAC_FRAME if s0 == 0 else 0
    packets: list[Any] = []
    for i in range(count + 1):
        if i < count:
            frame = av.AudioFrame(format="fltp", layout="mono", samples=_AAC_FRAME)
            frame.planes[0].update(signal[i * _AAC_FRAME : (i + 1) * _AAC_FRAME].tobytes())
            frame.sample_rate = _AUDIO_RATE
            frame.pts, frame.time_base = i * _AAC_FRAME - _AUDIO_ROLL, tb
            encoded = stream.encode(frame)
        else:
            encoded = stream.encode(None)
        packets.extend(p for p in encoded if p.pts is not None and first <= p.pts < s1 - s0)
    return packets


# --- joining the chunks -----------------------------------------------------------------


def _concat(job: ComposeJob, plan: _Plan, beat: Callable[[], None]) -> None:
    """Remux the chunks into ``job.output`` with shifted timestamps (no re-encoding)."""
    tmp = job.output.with_name(f".{job.output.name}.tmp")
    chunks = [_chunk_path(job.work_dir, k) for k in range(plan.count)]
    with av.open(os.fspath(chunks[0])) as first:
        extradata = [s.codec_context.extradata for s in first.streams]
        # faststart: the index moves to the front so a browser can play while downloading.
        with av.open(os.fspath(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            streams = [out.add_stream_from_template(s) for s in first.streams]
            last_dts: list[int | None] = [None] * len(streams)
            for k, path in enumerate(chunks):
                with av.open(os.fspath(path)) as chunk:
                    if [s.codec_context.extradata for s in chunk.streams] != extradata:
                        raise ComposeError(f"{path.name} was encoded with other parameters")
                    for packet in chunk.demux():
                        if packet.dts is None:
                            continue  # the demuxer's end-of-stream marker
                        index = packet.stream.index
                        shift = plan.start(k) / packet.time_base
                        if shift.denominator != 1:
                            raise ComposeError(f"{path.name}: chunk start off its time base")
                        packet.dts += int(shift)
                        if packet.pts is not None:
                            packet.pts += int(shift)
                        previous = last_dts[index]
                        if previous is not None and packet.dts <= previous:
                            raise ComposeError(f"{path.name}: timestamps go back at the join")
                        last_dts[index] = packet.dts
                        packet.stream = streams[index]
                        out.mux(packet)
                beat()
    _fsync(tmp)
    os.replace(tmp, job.output)
    _fsync(job.output.parent)


# --- the job ----------------------------------------------------------------------------


def compose(job: ComposeJob, progress: Callable[[float], None] | None = None) -> Path:
    """Compose the lesson into ``job.output`` (resuming from ``job.work_dir``); return it."""
    job.work_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(job.work_dir):  # outside the try: a refused second run leaves no trace
        try:
            return _compose(job, progress)
        except BaseException as exc:
            reason = str(exc) or type(exc).__name__
            with contextlib.suppress(OSError):
                _write_progress(job.work_dir, "failed", 0.0, reason=reason)
            raise


@contextlib.contextmanager
def _exclusive(work_dir: Path) -> Iterator[None]:
    """One compose per work_dir: a second one (a supervisor restarting too early) fails."""
    with open(work_dir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ComposeError(f"another compose is running in {work_dir}") from None
        yield


def _compose(job: ComposeJob, callback: Callable[[float], None] | None) -> Path:
    state_path = job.work_dir / "state.json"
    state = _read_state(state_path)
    key = _job_key(job)
    if state.get("status") == "ready" and state.get("job") == key and job.output.is_file():
        # Done before; checked ahead of the inputs, which a retention policy may have
        # deleted once the MP4 existed.
        _write_progress(job.work_dir, "ready", 1.0)
        return job.output
    _validate(job)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    plan = _Plan.of(job)
    fingerprint = _fingerprint(job)
    if state.get("fingerprint") != fingerprint:
        # another job, other inputs or other libraries: its chunks cannot be joined to ours
        for stale in job.work_dir.glob("chunk-*.mp4"):
            stale.unlink()
        state = {"version": _STATE_VERSION, "job": key, "fingerprint": fingerprint, "chunks": []}
    for leftover in job.work_dir.glob(".*.tmp"):
        leftover.unlink()  # a chunk or a JSON file a crash interrupted
    done = {k for k in state["chunks"] if _chunk_path(job.work_dir, k).is_file()}
    state.update(status="running", job=key, chunks=sorted(done), chunk_count=plan.count)
    _write_json(state_path, state, durable=True)

    reporter = _Progress(job.work_dir, callback, plan.count)
    reporter.update(len(done), 0.0, force=True)
    canvas = _Canvas(job.width, job.height)
    tracks: tuple[_VideoTrack, _VideoTrack, _AudioTrack] | None = None
    previous = -2
    try:
        for k in range(plan.count):
            if k in done:
                continue
            if tracks is None or k != previous + 1:
                # (re)open the inputs where this chunk starts: seeking, not decoding from 0
                if tracks is not None:
                    _close(tracks)
                tracks = _open_tracks(job, float(plan.start(k)), reporter.beat)
            report = functools.partial(reporter.update, len(done))
            _encode_chunk(job, plan, k, *tracks, canvas, report)
            previous = k
            done.add(k)
            state["chunks"] = sorted(done)
            _write_json(state_path, state, durable=True)
            log.info("compose: chunk %d/%d of %s done", k + 1, plan.count, job.output.name)
            reporter.update(len(done), 0.0, force=True)
    finally:
        if tracks is not None:
            _close(tracks)

    reporter.update(plan.count, 0.0, force=True, status="finishing")
    _concat(job, plan, lambda: reporter.update(plan.count, 0.0, status="finishing"))
    state.update(status="ready")
    _write_json(state_path, state, durable=True)
    for k in range(plan.count):
        _chunk_path(job.work_dir, k).unlink(missing_ok=True)  # the output now holds them
    _write_progress(job.work_dir, "ready", 1.0, chunks_done=plan.count, chunks_total=plan.count)
    return job.output


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        return {}
    chunks = state.get("chunks")
    if not isinstance(chunks, list) or not all(isinstance(k, int) for k in chunks):
        return {}
    return state


def _open_tracks(
    job: ComposeJob, start_s: float, beat: Callable[[], None]
) -> tuple[_VideoTrack, _VideoTrack, _AudioTrack]:
    def of(source: str) -> list[InputPart]:
        return [p for p in job.parts if p.source == source]

    return (
        _VideoTrack(of("screen"), start_s, job.fps, beat),
        _VideoTrack(of("camera"), start_s, job.fps, beat),
        _AudioTrack(of("microphone"), start_s, beat),
    )


def _close(tracks: tuple[_VideoTrack, _VideoTrack, _AudioTrack]) -> None:
    for track in tracks:
        track.close()


# --- running it in the background -------------------------------------------------------

# ioprio_set(2) has no wrapper in Python's os module; its number per architecture.
# 64-bit user space only: a 32-bit Python on an x86_64 kernel would need i386's number.
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "riscv64": 30}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_IDLE = 3 << 13  # class IDLE (3) in the top bits: I/O only when the disk is idle


def _lower_priority(pid: int = 0) -> None:
    """nice 19 and the idle I/O class for ``pid`` (0: this process).

    Where ioprio_set is unavailable (another OS or architecture), the kernel's default
    applies: a process without an I/O class gets best-effort priority (nice + 20) / 5, the
    lowest best-effort level (7) at nice 19.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    number = _IOPRIO_SET.get(platform.machine()) if sys.platform == "linux" else None
    if number is None or ctypes.sizeof(ctypes.c_void_p) != 8:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, _IOPRIO_WHO_PROCESS, pid, _IOPRIO_IDLE) != 0:
            log.debug("compose: ioprio_set failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.debug("compose: ioprio_set unavailable: %s", exc)


async def run_job_process(job: ComposeJob) -> asyncio.subprocess.Process:
    """Start ``python -m recorder.compose_job`` for ``job`` at nice 19 and idle I/O priority.

    The job is written to ``work_dir/job.json`` first and progress.json says "queued";
    the child writes progress.json from then on and exits 0 (ready) or 1 (failed).
    """
    job_file = await asyncio.to_thread(_queue, job)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder.compose_job",
        os.fspath(job_file),
        stdin=asyncio.subprocess.DEVNULL,
    )
    # The child lowers its own priority first thing too; doing it here as well leaves only
    # the interpreter's start-up at normal priority. Threads the child makes later inherit it.
    _lower_priority(process.pid)
    return process


def _queue(job: ComposeJob) -> Path:
    """Write ``work_dir/job.json`` (atomically) and a "queued" progress.json; return the former."""
    job.work_dir.mkdir(parents=True, exist_ok=True)
    job_file = job.work_dir / "job.json"
    tmp = job_file.with_name(f".{job_file.name}.tmp")
    tmp.write_text(job.to_json(), encoding="utf-8")
    os.replace(tmp, job_file)
    _write_progress(job.work_dir, "queued", 0.0)
    return job_file
