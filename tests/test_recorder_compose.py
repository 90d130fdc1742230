"""The downloadable MP4: layout, A/V timing, chunk joins, resuming, the background process.

Inputs are generated with loadtests.media (cached across runs). Their picture is a
horizontal luma ramp that scrolls 3 levels per frame, so where the ramp wraps from 255 to
0 tells which source frame is on screen: that is the video clock of these tests. Their
audio is a tone, loud for 1 s then silent for 1 s, from clip time 0: the audio clock.

The lesson (21 s, 320x180 output, chunks of 6.08 s so 4 chunks):

    camera      VP8 320x180 25 fps  [0, 20)
    screen      H.264 240x180 10 fps [5, 13)   (4:3, so pillarboxed in 16:9)
    microphone  Opus mono  [2, 14)  loud 2-3, 4-5, ... 12-13 (joins at 6.08, 12.16 are loud)
    microphone  Opus stereo [16, 19) loud 16-17, 18-19      (join at 18.24 is loud)
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import platform
import shutil
import signal
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from loadtests import media
from recorder import compose as compose_module
from recorder.compose import ComposeError, ComposeJob, InputPart, compose, run_job_process

W, H, FPS = 320, 180, 25
DURATION = 21.0
CHUNK_S = 6.0  # rounded to 6.08 s: a multiple of 40 ms (frames) and 21.33 ms (AAC frames)
CHUNKS = 4
SCREEN_AT, SCREEN_S, SCREEN_FPS = 5.0, 8.0, 10
MIC_AT, MIC_S = 2.0, 12.0
MIC2_AT, MIC2_S = 16.0, 3.0
CAMERA_S = 20.0
BACKGROUND_Y = 32
# Geometry the layout implies at 320x180: screen 240x180 at x=40 (pillars 40 px each side);
# PiP 80x45 at (236, 131) (a quarter of the width, 4 px margin).
SCREEN_X0, SCREEN_X1, PIP_Y0 = 40, 280, 131


@pytest.fixture(scope="module")
def clips() -> dict[str, Path]:
    return {
        "camera": media.cached_clip("vp8", seconds=CAMERA_S, width=W, height=H, fps=FPS),
        "screen": media.cached_clip(
            "h264", seconds=SCREEN_S, width=240, height=180, fps=SCREEN_FPS
        ),
        "mic": media.cached_clip("opus", seconds=MIC_S),
        "mic2": media.cached_clip("opus", seconds=MIC2_S, channels=2),
    }


def _job(clips: dict[str, Path], root: Path, **overrides: Any) -> ComposeJob:
    fields: dict[str, Any] = {
        "parts": (
            InputPart(clips["camera"], "camera", 0.0),
            InputPart(clips["screen"], "screen", SCREEN_AT),
            InputPart(clips["mic"], "microphone", MIC_AT),
            InputPart(clips["mic2"], "microphone", MIC2_AT),
        ),
        "output": root / "lesson.mp4",
        "work_dir": root / "work",
        "duration_s": DURATION,
        "width": W,
        "height": H,
        "fps": FPS,
        "video_bitrate": 400_000,
        "chunk_s": CHUNK_S,
    }
    fields.update(overrides)
    return ComposeJob(**fields)


@pytest.fixture(scope="module")
def composed(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ComposeJob:
    job = _job(clips, tmp_path_factory.mktemp("composed"))
    compose(job)
    return job


# --- reading the output back ---------------------------------------------------------------


class Decoded:
    """The output decoded: luma rows of every ``every``-th frame, audio as float samples."""

    def __init__(self, path: Path, every: int = 1) -> None:
        self.frames: list[tuple[float, list[bytes]]] = []
        self.audio = array("f")
        with av.open(os.fspath(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            self.codecs = (video.codec_context.name, audio.codec_context.name)
            self.size = (video.codec_context.width, video.codec_context.height)
            self.duration = container.duration / 1e6 if container.duration else 0.0
            self.rate, self.channels = audio.codec_context.sample_rate, audio.channels
            for n, frame in enumerate(container.decode(video)):
                if n % every == 0:
                    plane = frame.planes[0]
                    data, stride = bytes(plane), plane.line_size
                    rows = [
                        data[r * stride : r * stride + frame.width] for r in range(frame.height)
                    ]
                    self.frames.append((float(frame.pts * frame.time_base), rows))
            container.seek(0)
            for aframe in container.decode(audio):
                self.audio.frombytes(bytes(aframe.planes[0])[: 4 * aframe.samples])

    def at(self, t: float) -> list[bytes]:
        return min(self.frames, key=lambda f: abs(f[0] - t))[1]


def _region(rows: list[bytes], x0: int, x1: int, y0: int, y1: int) -> tuple[float, int]:
    """Mean luma and spread (max - min) of a rectangle."""
    values = [v for row in rows[y0:y1] for v in row[x0:x1]]
    return sum(values) / len(values), max(values) - min(values)


def _wrap(rows: list[bytes], x0: int, x1: int, y0: int, y1: int) -> int | None:
    """Where the ramp wraps (the largest drop between neighbours), by majority over rows."""
    votes: dict[int, int] = {}
    for row in rows[y0:y1:4]:
        drop, at = max((row[x - 1] - row[x], x) for x in range(x0 + 1, x1))
        if drop > 100:
            votes[at] = votes.get(at, 0) + 1
    if not votes:
        return None
    at, count = max(votes.items(), key=lambda kv: kv[1])
    return at if count * 2 > len(rows[y0:y1:4]) else None


def _ramp_wrap(source_frame: int) -> int:
    """x (from the picture's left edge) where a generated clip's ramp wraps in that frame."""
    return (256 - 3 * source_frame % 256) % 256


def _video_offsets(decoded: Decoded) -> list[float]:
    """For each frame where the ramp is visible: shown source frame minus expected, in frames.

    Expected is the frame the timeline puts there: camera frame ``t * 25`` (offset 0, same
    rate); screen frame ``floor((t - 5 + half an output frame) * 10)`` (held between frames).
    A 1 px miss reads as 1/3 frame; a one-frame error as a whole frame.
    """
    offsets: list[float] = []
    for t, rows in decoded.frames:
        if t < CAMERA_S and not SCREEN_AT <= t < SCREEN_AT + SCREEN_S:
            expected, x0, x1, y1 = round(t * FPS), 0, 256, 150  # rows above the noise patch
        elif SCREEN_AT <= t < SCREEN_AT + SCREEN_S:
            expected = int((t - SCREEN_AT + 0.5 / FPS + 1e-6) * SCREEN_FPS)
            x0, x1, y1 = SCREEN_X0, SCREEN_X1, PIP_Y0 - 4
        else:
            continue
        want = _ramp_wrap(expected)
        if not 3 <= want <= x1 - x0 - 3:
            continue  # the wrap is off the picture in this frame
        seen = _wrap(rows, x0, x1, 0, y1)
        assert seen is not None, f"no ramp at t={t:.2f}"
        offsets.append((want - (seen - x0)) / 3)
    return offsets


def _onsets(signal: array[float], threshold: float = 0.1) -> list[float]:
    """Times where the tone starts after at least 100 ms below the threshold."""
    onsets, quiet = [], 4800
    for i, v in enumerate(signal):
        if abs(v) > threshold:
            if quiet >= 4800:
                onsets.append(i / 48_000)
            quiet = 0
        else:
            quiet += 1
    return onsets


def _peak(signal: array[float], t0: float, t1: float) -> float:
    return max(abs(v) for v in signal[round(t0 * 48_000) : round(t1 * 48_000)])


def _check_output(job: ComposeJob, every: int = 1) -> Decoded:
    """Everything about the composed lesson that does not depend on how it was made."""
    decoded = Decoded(job.output, every)
    assert decoded.codecs == ("h264", "aac")
    assert decoded.size == (W, H)
    assert decoded.rate == 48_000 and decoded.channels == 1
    assert abs(decoded.duration - DURATION) < 0.5
    assert abs(decoded.frames[-1][0] - (DURATION - 1 / FPS)) < 1.5 * every / FPS
    assert abs(len(decoded.audio) / 48_000 - DURATION) < 0.05

    # Video clock: every sampled frame shows exactly the source frame its time calls for.
    offsets = _video_offsets(decoded)
    assert len(offsets) > 300 // every
    assert all(abs(o) < 0.5 for o in offsets), sorted(offsets)[:3] + sorted(offsets)[-3:]
    video_error_s = sum(offsets) / len(offsets) / FPS

    # Audio clock: the tone starts where the parts' offsets put it.
    expected = [MIC_AT + 2 * k for k in range(6)] + [MIC2_AT, MIC2_AT + 2]
    onsets = _onsets(decoded.audio)
    assert len(onsets) == len(expected), onsets
    errors = [got - want for got, want in zip(onsets, expected, strict=True)]
    assert all(abs(e) < 0.01 for e in errors), errors
    audio_error_s = sum(errors) / len(errors)
    assert abs(video_error_s - audio_error_s) < 0.1  # A/V sync (it is ~0 here)

    # Loud stretches stay loud across chunk joins (6.08 and 12.16 s, 18.24 s); gaps are silent.
    for t0 in (2, 4, 6, 8, 10, 12):
        window = [_peak(decoded.audio, t0 + s, t0 + s + 0.01) for s in (0.02, 0.5, 0.97)]
        assert all(0.4 < p < 0.6 for p in window), (t0, window)
    for s in (0.02, 0.06, 0.1, 0.14, 0.18, 0.22):  # every 40 ms around the 6.08 and 12.16 joins
        assert 0.4 < _peak(decoded.audio, 6 + s, 6 + s + 0.005) < 0.6
        assert 0.4 < _peak(decoded.audio, 12 + s, 12 + s + 0.005) < 0.6
        assert 0.55 < _peak(decoded.audio, 18.1 + s, 18.1 + s + 0.005) < 0.85  # stereo downmix
    for t0, t1 in ((0.0, 1.98), (14.05, 15.95), (19.05, DURATION - 0.05)):
        assert _peak(decoded.audio, t0, t1) < 0.001, (t0, t1)
    return decoded


# --- the composed lesson ---------------------------------------------------------------------


def test_output_decodes_with_layout_and_sync(composed: ComposeJob) -> None:
    decoded = _check_output(composed)
    assert json.loads((composed.work_dir / "state.json").read_text())["status"] == "ready"
    progress = json.loads((composed.work_dir / "progress.json").read_text())
    assert progress["status"] == "ready" and progress["progress"] == 1.0
    assert not list(composed.work_dir.glob("chunk-*"))  # joined into the output, then removed

    # Screen window: pillarboxed screen, dark bars, camera PiP in the bottom-right corner.
    rows = decoded.at(9.0)
    for x0, x1, y1 in ((0, SCREEN_X0 - 2, H), (SCREEN_X1 + 2, W, PIP_Y0 - 2)):
        mean, spread = _region(rows, x0, x1, 0, y1)
        assert abs(mean - BACKGROUND_Y) < 4 and spread < 8, (x0, mean, spread)
    assert _region(rows, SCREEN_X0 + 4, SCREEN_X1 - 4, 0, PIP_Y0 - 4)[1] > 150  # the ramp
    pip_mean, pip_spread = _region(rows, 240, W - 8, PIP_Y0 + 4, H - 8)
    assert pip_spread > 60 and abs(pip_mean - BACKGROUND_Y) > 10  # camera picture there

    # Camera alone (before and after the screen): full frame, no bars.
    for t in (2.0, 16.0):
        rows = decoded.at(t)
        assert _region(rows, 0, SCREEN_X0 - 2, 0, H)[1] > 25, t
        assert _region(rows, SCREEN_X1 + 2, W, 0, PIP_Y0 - 2)[1] > 25, t

    # Neither (camera ended at 20 s): the dark neutral frame.
    mean, spread = _region(decoded.at(20.6), 0, W, 0, H)
    assert abs(mean - BACKGROUND_Y) < 2 and spread < 4


def test_chunks_share_one_grid() -> None:
    for fps, chunk_s, frames in ((25, 6.0, 152), (25, 60.0, 1504), (30, 60.0, 1792), (24, 1.0, 64)):
        plan = compose_module._Plan.of(
            ComposeJob((), Path("o.mp4"), Path("w"), 300.0, fps=fps, chunk_s=chunk_s)
        )
        assert plan.frames_per_chunk == frames
        start = Fraction(plan.frames_per_chunk, fps)
        assert (start * 48_000) % 1024 == 0  # each chunk starts on an AAC frame
    plan = compose_module._Plan.of(ComposeJob((), Path("o"), Path("w"), DURATION, chunk_s=CHUNK_S))
    assert plan.count == CHUNKS and plan.frames(CHUNKS - 1)[1] == DURATION * FPS


def test_resumes_after_a_crash(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(clips, tmp_path)
    encoded: list[int] = []
    real_encode = compose_module._encode_chunk

    def counting(*args: Any) -> None:
        encoded.append(args[2])
        real_encode(*args)

    monkeypatch.setattr(compose_module, "_encode_chunk", counting)

    class Crash(Exception):
        pass

    def crash_after_two_chunks(value: float) -> None:
        if value >= 2 / CHUNKS:
            raise Crash

    with pytest.raises(Crash):
        compose(job, crash_after_two_chunks)
    assert encoded == [0, 1]
    assert json.loads((job.work_dir / "state.json").read_text())["chunks"] == [0, 1]
    assert json.loads((job.work_dir / "progress.json").read_text())["status"] == "failed"
    assert not job.output.exists()
    finished = {k: compose_module._chunk_path(job.work_dir, k).stat() for k in (0, 1)}

    seen: list[float] = []

    def watch(value: float) -> None:
        if not seen:  # before any new work: the finished chunks are untouched
            for k, before in finished.items():
                after = compose_module._chunk_path(job.work_dir, k).stat()
                assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        seen.append(value)

    encoded.clear()
    assert compose(job, watch) == job.output
    assert encoded == [2, 3]  # only the unfinished chunks were encoded again
    assert seen[0] == 2 / CHUNKS and seen[-1] == 1.0 and seen == sorted(seen)
    # The second run started at 12.16 s by seeking in every input: still exact.
    _check_output(job, every=3)

    encoded.clear()
    assert compose(job) == job.output  # a finished job is not redone
    assert encoded == []


def test_truncated_and_unreadable_parts(
    clips: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    camera = tmp_path / "camera.webm"
    data = clips["camera"].read_bytes()
    camera.write_bytes(data[: len(data) // 2])  # a recorder killed half-way: no cues, no end
    garbage = tmp_path / "screen.mkv"
    garbage.write_bytes(clips["screen"].read_bytes()[:200])  # killed right after the header
    mic = tmp_path / "mic.ogg"
    data = clips["mic"].read_bytes()
    mic.write_bytes(data[: len(data) * 2 // 3] + os.urandom(500))
    job = _job(
        clips,
        tmp_path,
        parts=(
            InputPart(camera, "camera", 0.0),
            InputPart(garbage, "screen", 1.0),
            InputPart(mic, "microphone", 0.0),
        ),
        duration_s=14.0,
    )

    def crash(value: float) -> None:
        if value > 0:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        compose(job, crash)
    compose(job)  # resumes at 6.08 s: seeking in files that have no index (no cues)
    decoded = Decoded(job.output, every=5)
    assert abs(decoded.duration - 14.0) < 0.5
    assert decoded.size == (W, H)
    # The camera plays until about where the file was cut, then the dark frame.
    camera_until = max(t for t, rows in decoded.frames if _region(rows, 0, W, 0, 150)[1] > 25)
    assert 7.0 < camera_until < 11.0
    assert _region(decoded.at(13.5), 0, W, 0, H)[1] < 4
    # The microphone too: its tone until about 8 s, silence after.
    onsets = _onsets(decoded.audio)
    assert onsets[:3] == pytest.approx([0.0, 2.0, 4.0], abs=0.01)
    assert 6.0 <= onsets[-1] < 9.0
    assert _peak(decoded.audio, 9.5, 13.9) < 0.001
    assert "skipping unreadable part" in caplog.text or "no video stream" in caplog.text


def test_gaps_between_parts_and_inputs_deleted_after(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    short = media.cached_clip("vp8", seconds=3.0, width=W, height=H, fps=FPS)
    first, second = tmp_path / "camera-1.webm", tmp_path / "camera-2.webm"
    shutil.copy(short, first)
    shutil.copy(short, second)
    job = _job(
        clips,
        tmp_path,
        parts=(InputPart(first, "camera", 0.0), InputPart(second, "camera", 5.0)),
        duration_s=8.0,
    )
    compose(job)
    decoded = Decoded(job.output)
    for t, rows in decoded.frames:
        textured = _region(rows, 0, W, 0, 150)[1] > 25
        assert textured == (t < 3.0 or t >= 5.0), t  # dark between the parts, nothing held
        want = _ramp_wrap(round((t - 5.0) * FPS))
        if t >= 5.0 and 3 <= want <= 253:  # the second part starts at its own frame 0
            seen = _wrap(rows, 0, 256, 0, 150)
            assert seen is not None and abs(seen - want) <= 1, (t, seen, want)

    # A retention policy may delete the parts once the MP4 exists: asking again is fine.
    first.unlink()
    second.unlink()
    assert compose(job) == job.output
    assert json.loads((job.work_dir / "progress.json").read_text())["status"] == "ready"


def test_missing_input_fails_with_its_path(clips: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "camera-2.webm"
    job = _job(
        clips, tmp_path, parts=(*_job(clips, tmp_path).parts, InputPart(missing, "camera", 3.0))
    )
    with pytest.raises(ComposeError, match=r"camera-2\.webm"):
        compose(job)
    progress = json.loads((job.work_dir / "progress.json").read_text())
    assert progress["status"] == "failed" and str(missing) in progress["reason"]
    assert not job.output.exists()


def test_job_json_round_trip(clips: dict[str, Path], tmp_path: Path) -> None:
    job = _job(clips, tmp_path)
    assert ComposeJob.from_json(job.to_json()) == job
    for text in ("{", "[]", '{"parts": []}', job.to_json().replace('"width": 320', '"width": "x"')):
        with pytest.raises(ComposeError):
            ComposeJob.from_json(text)
    with pytest.raises(ComposeError, match="source"):
        compose(_job(clips, tmp_path, parts=(InputPart(clips["mic"], "whiteboard", 0.0),)))


def test_progress_is_throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(compose_module.time, "monotonic", lambda: now[0])
    values: list[float] = []
    progress = compose_module._Progress(tmp_path, values.append, 4)
    progress.update(0, 0.0, force=True)
    progress.update(0, 0.5)  # too soon
    now[0] += 1.0
    progress.update(1, 0.5)
    progress.update(2, 0.0, force=True)  # chunk ends always go through
    assert values == [0.0, 0.375, 0.5]
    written = json.loads((tmp_path / "progress.json").read_text())
    assert written["status"] == "running" and written["progress"] == 0.5
    assert written["chunks_done"] == 2 and written["updated_at"].endswith("+00:00")


def _ioprio_class(pid: int) -> int | None:
    number = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
    if number is None:
        return None
    value = int(ctypes.CDLL(None, use_errno=True).syscall(number, 1, pid))
    return None if value < 0 else value >> 13


async def _run(job: ComposeJob) -> tuple[int, int, int | None]:
    process = await run_job_process(job)
    nice = os.getpriority(os.PRIO_PROCESS, process.pid)
    ioclass = _ioprio_class(process.pid)
    return await asyncio.wait_for(process.wait(), 60), nice, ioclass


async def test_background_process_at_low_priority(clips: dict[str, Path], tmp_path: Path) -> None:
    job = _job(clips, tmp_path, duration_s=7.0)
    rc, nice, ioclass = await _run(job)
    assert rc == 0 and nice == 19
    if platform.machine() in ("x86_64", "aarch64"):
        assert ioclass == 3  # the idle I/O class
    assert json.loads((job.work_dir / "progress.json").read_text())["status"] == "ready"
    assert Decoded(job.output, every=25).size == (W, H)

    missing = tmp_path / "nowhere.webm"
    failed = _job(clips, tmp_path / "b", parts=(InputPart(missing, "screen", 0.0),))
    rc, _, _ = await _run(failed)
    progress = json.loads((failed.work_dir / "progress.json").read_text())
    assert rc == 1 and progress["status"] == "failed" and str(missing) in progress["reason"]


async def test_background_process_stopped_by_sigterm(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    # A timeline long enough (mostly dark frames past the clips) that the job is
    # still running when it is interrupted: the 21 s one sometimes finished first.
    job = _job(clips, tmp_path, duration_s=4 * DURATION)
    process = await run_job_process(job)
    progress_file = job.work_dir / "progress.json"
    for _ in range(500):  # until the child has started composing
        if json.loads(progress_file.read_text())["status"] == "running":
            break
        await asyncio.sleep(0.01)
    # Frozen first, so that nothing happens between the check and SIGTERM: the
    # signal is handled the moment the child continues.
    process.send_signal(signal.SIGSTOP)
    assert json.loads(progress_file.read_text())["status"] == "running"
    process.terminate()
    process.send_signal(signal.SIGCONT)
    assert await asyncio.wait_for(process.wait(), 30) == 1
    progress = json.loads(progress_file.read_text())
    assert progress["status"] == "failed" and "SIGTERM" in progress["reason"]
    rc, _, _ = await _run(job)  # started again, it finishes the job
    assert rc == 0 and json.loads(progress_file.read_text())["status"] == "ready"


def test_work_dir_is_exclusive(clips: dict[str, Path], tmp_path: Path) -> None:
    job = _job(clips, tmp_path, duration_s=2.0)
    refused: list[str] = []

    def second_run(value: float) -> None:
        if not refused:
            with pytest.raises(ComposeError, match="another compose") as info:
                compose(job)
            refused.append(str(info.value))
            progress = json.loads((job.work_dir / "progress.json").read_text())
            assert progress["status"] == "running"  # the refused run did not touch it

    compose(job, second_run)
    assert refused and job.output.is_file()
