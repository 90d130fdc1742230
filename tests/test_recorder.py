"""The recorder with real aiortc publishers through a real SFU on loopback.

Video clips here carry a visible marker: the picture is bright exactly when
the Opus clip's tone is loud (loadtests.media's loud/silent schedule), so
audio/video sync in a recording is the distance between the tone's onsets
and the picture's, both decoded from the files (decoding happens only here).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import pytest
from aiortc import RTCRtpSender

from loadtests.media import EncodedTrack, cached_clip, clip_cache_dir, read_packets, tone_is_loud
from recorder import LessonRecorder, finalize_orphans, read_manifest
from recorder.finalize import RECOVERED_NOTE
from recorder.writer import RecordingWriter
from sfu import Room, Sfu, Source, TrackConsumer
from tests.peers import EventLog, Publisher, Subscriber, wait_until

ROOT = Path(__file__).resolve().parent.parent
# Longer than any recording here: a looping Opus clip drifts 20 ms per loop against the
# video (its last packet adds a frame), which would measure the clip, not the recorder.
CLIP_SECONDS = 8.0
MAX_AV_OFFSET = 0.1


# --- clips and measurements ----------------------------------------------------------


def marker_clip(codec: str, width: int = 320, height: int = 180, fps: int = 30) -> Path:
    """A clip whose picture is bright while the tone of the Opus clip is loud."""
    suffix = ".webm" if codec == "vp8" else ".mkv"
    name = f"marker-v1-{codec}-{width}x{height}-{fps}-{CLIP_SECONDS}{suffix}"
    path = clip_cache_dir() / name
    if path.exists():
        return path
    encoder, fmt, options = {
        "vp8": ("libvpx", "webm", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
        "h264": ("libx264", "matroska", {"preset": "veryfast", "tune": "zerolatency",
                                         "profile": "baseline", "bf": "0", "sc_threshold": "0"}),
    }[codec]  # fmt: skip
    options = {**options, "g": str(fps), "keyint_min": str(fps)}  # a keyframe every second
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with av.open(str(temporary), "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(CLIP_SECONDS * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = 220 if tone_is_loud(i / fps) else 30
            for plane, value in zip(frame.planes, (luma, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            if i % fps == 0:
                frame.pict_type = av.video.frame.PictureType.I
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(temporary, path)
    return path


def onsets(path: Path, start: float) -> tuple[list[float], float, float]:
    """(times the marker turns on, first frame time, end), in seconds from t0; decodes."""
    edges: list[float] = []
    was_on: bool | None = None
    first: float | None = None
    end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams[0]
        for frame in container.decode(stream):
            assert frame.pts is not None and frame.time_base is not None
            t = start + float(frame.pts * frame.time_base)
            first = t if first is None else first
            if isinstance(frame, av.AudioFrame):
                samples = array("f", bytes(frame.planes[0]))[: frame.samples]
                end = t + frame.samples / frame.sample_rate
                levels = [
                    (t + i / 48000, max(abs(x) for x in samples[i : i + 48]))
                    for i in range(0, len(samples), 48)  # 1 ms steps
                ]
                marks = [(at, level > 0.05) for at, level in levels]
            else:
                luma = bytes(frame.planes[0])[::97]
                end = t + 1 / 30
                marks = [(t, sum(luma) / len(luma) > 128)]
            for at, on in marks:
                if was_on is False and on:
                    edges.append(at)
                was_on = on
    assert first is not None, f"{path.name}: no frame decoded"
    return edges, first, end


def av_offset(video: list[float], audio: list[float], markers: int = 2) -> float:
    """The largest distance from a picture onset to the nearest tone onset."""
    assert len(video) >= markers and audio, f"too few markers: video {video}, audio {audio}"
    return max(min(abs(v - a) for a in audio) for v in video)


def parts_of(directory: Path) -> list[dict[str, Any]]:
    return list(read_manifest(directory / "manifest.jsonl").parts.values())


class LossyRoom:
    """The room as a recorder sees it, but every consumer loses some packets."""

    def __init__(self, room: Room, loss: float, seed: int = 7) -> None:
        self._room = room
        self._loss = loss
        self._random = random.Random(seed)
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._room, name)

    def add_consumer(self, track_id: str, consumer: TrackConsumer) -> Any:
        room = self

        class Lossy:
            def on_rtp(self, packet: bytes) -> None:
                if room._random.random() < room._loss:
                    room.dropped += 1
                    return
                consumer.on_rtp(packet)

            def on_rtcp(self, packet: bytes) -> None:
                consumer.on_rtcp(packet)

            def on_ended(self, reason: str) -> None:
                consumer.on_ended(reason)

        return self._room.add_consumer(track_id, Lossy())


def resizing_camera(at: float) -> EncodedTrack:
    """The marked VP8 camera at 320x180, then at 640x360 from `at` s (a keyframe) on."""
    small = read_packets(marker_clip("vp8"))
    large = read_packets(marker_clip("vp8", 640, 360))
    packets = [p for p in small if p.pts is not None and p.pts * p.time_base < at]
    packets += [p for p in large if p.pts is not None and p.pts * p.time_base >= at]
    assert packets[len([p for p in small if p.pts * p.time_base < at])].is_keyframe
    return EncodedTrack(packets, "video")


async def teacher_with_markers(
    room: Room, screen: bool = True, resize_at: float | None = None
) -> Publisher:
    """A publisher of marked VP8 camera, Opus microphone and (optionally) H.264 screen."""
    sources = {Source.CAMERA, Source.MICROPHONE} | ({Source.SCREEN} if screen else set())
    publisher = Publisher(await room.join("teacher", sources))
    opus = cached_clip("opus", seconds=CLIP_SECONDS)
    camera = resizing_camera(resize_at) if resize_at else EncodedTrack(marker_clip("vp8"))
    media = [(Source.CAMERA, camera), (Source.MICROPHONE, EncodedTrack(opus))]
    if screen:
        media.append((Source.SCREEN, EncodedTrack(marker_clip("h264"))))
    for source, track in media:
        publisher.tracks[source] = track
        publisher.pc.addTrack(track)
    if screen:
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if "H264" in c.mimeType]
        publisher.pc.getTransceivers()[2].setCodecPreferences(h264)
    await publisher.publish()
    return publisher


@pytest.fixture(autouse=True)
def _clips() -> None:
    marker_clip("vp8")
    marker_clip("vp8", 640, 360)
    marker_clip("h264")
    cached_clip("opus", seconds=CLIP_SECONDS)


@pytest.fixture
async def recorders() -> AsyncIterator[list[LessonRecorder]]:
    started: list[LessonRecorder] = []
    yield started
    for recorder in started:
        await recorder.stop()


# --- tests ------------------------------------------------------------------------------


async def test_vp8_h264_and_opus_are_recorded_in_sync_with_and_without_loss(
    sfu: Sfu, log: EventLog, tmp_path: Path, recorders: list[LessonRecorder]
) -> None:
    room = sfu.room("lesson")
    clean = LessonRecorder(room, tmp_path / "clean")
    lossy_room = LossyRoom(room, loss=0.05)
    lossy = LessonRecorder(
        cast(Room, lossy_room), tmp_path / "lossy", select=lambda t: t.source != Source.SCREEN
    )
    for recorder in (clean, lossy):
        recorders.append(recorder)
        await recorder.start()
        sfu.add_listener(recorder.on_event)
    published = time.time()
    publisher = await teacher_with_markers(room, resize_at=3.0)
    await asyncio.sleep(6.0)
    await clean.stop()
    await lossy.stop()
    stopped = time.time()
    await publisher.close()

    assert (clean.status, lossy.status) == ("ready", "ready")
    for recorder, sources in ((clean, 3), (lossy, 2)):
        parts = parts_of(recorder.directory)
        assert all(p["status"] == "complete" for p in parts)
        cameras = [(p.get("width"), p["reason"]) for p in parts if p["source"] == "camera"]
        assert cameras == [(320, "resolution change"), (640, "recording stopped")]
        found: dict[str, list[float]] = {}
        covered: dict[str, list[tuple[float, float]]] = {}
        for part in parts:
            edges, first, end = onsets(recorder.directory / part["file"], part["start"])
            found.setdefault(part["source"], []).extend(edges)
            covered.setdefault(part["source"], []).append((first, end))
        assert len(covered) == sources
        for spans in covered.values():
            # Every source covers the lesson, publishing to stop, within a second; a new
            # part for the new picture size continues where the last one ended.
            assert abs((spans[-1][1] - spans[0][0]) - (stopped - published)) < 1.0, spans
            # (With loss, frames before the new size's keyframe may be gone: up to 1 s.)
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert -0.01 <= start - end < (0.1 if recorder is clean else 1.05)
        for source in ("camera", "screen")[: sources - 1]:
            offset = av_offset(found[source], found["microphone"])
            print(f"{recorder.directory.name} {source}: A/V offset {offset * 1000:.1f} ms")
            assert offset < MAX_AV_OFFSET, f"{recorder.directory.name} {source}: {offset:.3f} s"
    assert lossy_room.dropped > 10
    video = next(r for r in lossy.recorders if r.assembler.video)
    assert video.assembler.counters.losses > 0 and video.assembler.counters.dropped_frames > 0
    assert all(r.counters.malformed_rtp == 0 for r in clean.recorders)


async def test_a_teacher_who_reconnects_leaves_a_gap_not_a_broken_file(
    sfu: Sfu, log: EventLog, tmp_path: Path, recorders: list[LessonRecorder]
) -> None:
    room = sfu.room("lesson")
    recorder = LessonRecorder(room, tmp_path / "rec")
    recorders.append(recorder)
    await recorder.start()
    sfu.add_listener(recorder.on_event)
    first = await teacher_with_markers(room, screen=False)
    await asyncio.sleep(3.0)  # past the tone's and the picture's onset at 2 s
    await room.leave("teacher")
    await first.close()
    left = time.time()
    await asyncio.sleep(1.5)
    back = time.time()
    # Through sfu.room() as signaling does: the SFU forgets an empty room and makes a new
    # Room object for the same lesson, which the recorder must follow.
    second = await teacher_with_markers(sfu.room("lesson"), screen=False)
    await asyncio.sleep(3.0)
    await recorder.stop()
    await second.close()

    parts = parts_of(recorder.directory)
    assert [(p["source"], p["reason"]) for p in parts] == [
        ("camera", "left"), ("microphone", "left"),
        ("camera", "recording stopped"), ("microphone", "recording stopped"),
    ]  # fmt: skip
    for before, after in zip(parts[:2], parts[2:], strict=True):
        assert before["end"] <= left - recorder.t0 + 0.2
        assert after["start"] >= back - recorder.t0  # the gap is in the offsets
        assert after["start"] - before["end"] >= 1.4
    edges = {}
    for part in parts:
        edges[part["id"]], _, _ = onsets(recorder.directory / part["file"], part["start"])
    for camera, microphone in ((parts[0], parts[1]), (parts[2], parts[3])):
        assert av_offset(edges[camera["id"]], edges[microphone["id"]], 1) < MAX_AV_OFFSET


CHILD = """
import asyncio, pathlib, sys
from sfu import IcePolicy, Sfu, SfuConfig, Source
from recorder import LessonRecorder
from tests.peers import LOOPBACK_ONLY, Publisher

async def main():
    sfu = Sfu(SfuConfig(ice=IcePolicy(**LOOPBACK_ONLY)))
    await sfu.start()
    room = sfu.room("lesson")
    recorder = LessonRecorder(room, pathlib.Path(sys.argv[1]))
    sfu.add_listener(recorder.on_event)
    await recorder.start()
    publisher = Publisher(await room.join("teacher", {Source.CAMERA, Source.MICROPHONE}))
    publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
    publisher.add(Source.MICROPHONE)
    await publisher.publish()
    print("publishing", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def _record_and_kill(directory: Path, delay: float) -> float:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f"{directory.name}.stderr").open("wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(directory), cwd=ROOT,
            stdout=subprocess.PIPE, stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        assert child.stdout is not None
        async with asyncio.timeout(20):
            assert await child.stdout.readline() == b"publishing\n"
            manifest = directory / "manifest.jsonl"
            await wait_until(lambda: manifest.exists() and len(parts_of(directory)) == 2, 10)
        await asyncio.sleep(delay)
        killed = time.time()
        child.send_signal(signal.SIGKILL)
        return killed
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()


async def test_a_killed_recorder_loses_at_most_two_seconds(tmp_path: Path) -> None:
    cached_clip("vp8", keyframe_interval_s=1.0)  # generated once, not by three children
    cached_clip("opus")
    rng = random.Random()
    delays = [rng.uniform(1.0, 4.0) for _ in range(3)]
    directories = [tmp_path / "lessons" / f"trial{i}" for i in range(3)]
    killed = await asyncio.gather(*map(_record_and_kill, directories, delays))

    assert sorted(finalize_orphans(tmp_path / "lessons")) == directories  # logs beside them
    for directory, kill_time in zip(directories, killed, strict=True):
        manifest = read_manifest(directory / "manifest.jsonl")
        assert (manifest.status, manifest.note) == ("ready", RECOVERED_NOTE)
        t0 = float(manifest.recording["t0"])
        for part in manifest.parts.values():
            assert part["status"] == "recovered", part
            assert (directory / part["original"]).exists()
            _, first, end = onsets(directory / part["file"], part["start"])
            recorded = kill_time - t0  # media up to the kill, on the recording's clock
            print(f"{directory.name} {part['source']}: lost {recorded - end:.2f} s")
            assert recorded - 2.0 <= end <= recorded + 0.2, (part, recorded, delays)
            assert end - first > 0.0
            with av.open(str(directory / part["file"])) as container:
                assert container.duration  # the clean copy has its duration (and cues)


async def test_a_full_disk_stops_the_recording_and_the_lesson_goes_on(
    sfu: Sfu, log: EventLog, tmp_path: Path
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 400 KiB tmpfs to fill needs root")
    result = await asyncio.to_thread(
        subprocess.run,
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode:
        pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
    recorder = None
    try:
        room = sfu.room("lesson")
        # 128 KiB of the 400 are the writer's reserve, freed to close parts and the manifest.
        writer = RecordingWriter(mount / "rec", reserve_bytes=128 * 1024)
        failures: list[str] = []
        recorder = LessonRecorder(room, mount / "rec", writer=writer, on_failure=failures.append)
        await recorder.start()
        sfu.add_listener(recorder.on_event)
        student = Subscriber(await room.join("student"), log)
        # The 640x360 clip at ~1 Mbit/s: the marker clips would take a minute to fill the disk.
        publisher = Publisher(await room.join("teacher", {Source.CAMERA, Source.MICROPHONE}))
        publisher.add(Source.CAMERA, keyframe_interval_s=1.0)
        publisher.add(Source.MICROPHONE)
        await publisher.publish()
        await wait_until(lambda: recorder is not None and recorder.status == "failed", 15)
        assert recorder.failure == "disk_full: No space left on device"
        assert failures == [recorder.failure]
        assert not room.consumers  # unsubscribed from every track
        camera = next(t for t in room.tracks.values() if t.source == Source.CAMERA)
        count = len(student.packets_for(camera.id))
        await wait_until(lambda: len(student.packets_for(camera.id)) > count + 30, 5)
        manifest = read_manifest(mount / "rec" / "manifest.jsonl")
        assert (manifest.status, manifest.failure) == ("failed", recorder.failure)
        statuses = []
        for part in manifest.parts.values():  # the one that hit the error has no trailer
            assert part["reason"] == recorder.failure
            statuses.append(part["status"])
            onsets(mount / "rec" / part["file"], part["start"])  # every part plays
        assert sorted(statuses) in (["complete", "complete"], ["complete", "truncated"])
        await recorder.stop()  # nothing raised, nothing changed
        assert recorder.status == "failed"
        await student.close()
        await publisher.close()
    finally:
        if recorder is not None:
            await recorder.stop()
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(mount)], check=False)
