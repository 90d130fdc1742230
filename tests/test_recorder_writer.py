"""Unit tests for the recorder's writer, manifest and finalizer (no network: frames from clips)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import av
import pytest

from loadtests.media import cached_clip, read_packets
from recorder.finalize import RECOVERED_NOTE, finalize_orphans
from recorder.manifest import MANIFEST_NAME, ManifestWriter, read_manifest
from recorder.writer import RESERVE_NAME, RecordingWriter, TrackInfo, failure_reason


def decode(path: Path) -> tuple[int, float, float]:
    """(frames, first pts, end) of a file's only stream, decoding every frame (raises on errors)."""
    frames, first, end = 0, None, 0.0
    with av.open(str(path)) as container:
        stream = container.streams[0]
        for frame in container.decode(stream):
            assert frame.pts is not None and frame.time_base is not None
            t = float(frame.pts * frame.time_base)
            first = t if first is None else first
            length = getattr(frame, "samples", 0) / 48000 if stream.type == "audio" else 1 / 30
            end = max(end, t + length)
            frames += 1
    assert first is not None, f"{path} has no frame"
    return frames, first, end


def feed(writer: RecordingWriter, key: int, codec: str, offset: float = 0.0, **clip: Any) -> float:
    """Queue a clip's packets as frames starting `offset` s after t0; returns the clip's end."""
    packets = read_packets(cached_clip(codec, **clip))
    end = offset
    for packet in packets:
        assert packet.pts is not None and packet.time_base is not None
        start = offset + float(packet.pts * packet.time_base)
        writer.frame(key, bytes(packet), start, bool(packet.is_keyframe))
        end = start
    return end


def info(key: int, mime: str, source: str = "camera") -> TrackInfo:
    return TrackInfo(key, "teacher", source, f"track{key}", mime)


def test_parts_per_track_and_a_new_part_on_a_resolution_change(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec")
    writer.open({"t0": 0.0, "room": "r"})
    writer.add_track(info(1, "video/VP8"))
    writer.add_track(info(2, "audio/opus", "microphone"))
    writer.add_track(info(3, "video/H264", "screen"))
    feed(writer, 1, "vp8", seconds=1.0, width=176, height=144)
    feed(writer, 1, "vp8", 1.1, seconds=1.0, width=320, height=240)
    feed(writer, 2, "opus", seconds=2.0)
    feed(writer, 3, "h264", 0.5, seconds=1.0)
    writer.end_track(3, "left")
    writer.close()
    directory = tmp_path / "rec"
    manifest = read_manifest(directory / MANIFEST_NAME)
    assert manifest.status == "ready" and manifest.skipped_lines == 0
    parts = list(manifest.parts.values())
    summary = [(p["source"], p.get("width"), p["start"], p["status"], p["reason"]) for p in parts]
    assert summary == [
        ("camera", 176, 0.0, "complete", "resolution change"),
        ("camera", 320, 1.1, "complete", "stopped"),
        ("microphone", None, -0.006, "complete", "stopped"),
        ("screen", 640, 0.5, "complete", "left"),
    ]
    assert [p["file"][-4:] for p in parts] == ["webm", "webm", "webm", ".mkv"]
    for part, frames in zip(parts, (30, 30, 101, 30), strict=True):
        count, first, end = decode(directory / part["file"])
        assert count == part["frames"] == frames
        assert first < 0.01
        assert abs(part["start"] + end - part["end"]) < 0.05
        with av.open(str(directory / part["file"])) as container:  # closed cleanly: duration
            assert container.duration and container.duration / 1e6 == pytest.approx(end, abs=0.05)
    assert not (directory / RESERVE_NAME).exists()


def test_a_video_part_waits_for_a_keyframe_with_a_picture_size(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path)
    writer.open({})
    writer.add_track(info(1, "video/VP8"))
    packets = read_packets(cached_clip("vp8", seconds=2.0, keyframe_interval_s=1.0))
    for packet in packets[5:]:
        assert packet.pts is not None and packet.time_base is not None
        writer.frame(1, bytes(packet), float(packet.pts * packet.time_base), packet.is_keyframe)
    writer.close()
    (part,) = read_manifest(tmp_path / MANIFEST_NAME).parts.values()
    assert part["start"] == 1.0 and part["frames"] == 30


def _crash_image(source: Path, target: Path, cut: int = 0) -> None:
    """What a SIGKILL would leave: the files as they are now, optionally cut short."""
    shutil.copytree(source, target)
    for part in target.glob("*.webm"):
        if cut:
            with part.open("r+b") as f:
                f.truncate(max(0, part.stat().st_size - cut))


@pytest.mark.parametrize("cut", [0, 1, 777, 5000])
def test_finalize_recovers_what_a_crash_left(tmp_path: Path, cut: int) -> None:
    live = tmp_path / "live"
    writer = RecordingWriter(live, fsync_interval=0.1)
    writer.open({"t0": time.time()})
    writer.add_track(info(1, "video/VP8"))
    writer.add_track(info(2, "audio/opus", "microphone"))
    feed(writer, 1, "vp8", seconds=3.0)
    feed(writer, 2, "opus", seconds=3.0)
    time.sleep(0.5)  # the writer muxes and fsyncs what is queued
    crashed = tmp_path / "root" / "lesson" / "rec1"
    _crash_image(live, crashed, cut)
    writer.close()
    finished = tmp_path / "root" / "done"
    shutil.copytree(live, finished)
    originals = {p.name: p.read_bytes() for p in crashed.glob("*.webm")}
    full = {p.name: p.stat().st_size for p in live.glob("*.webm")}

    assert finalize_orphans(tmp_path / "root") == [crashed]
    manifest = read_manifest(crashed / MANIFEST_NAME)
    assert (manifest.status, manifest.note) == ("ready", RECOVERED_NOTE)
    for part in manifest.parts.values():
        assert part["status"] == "recovered"
        assert (crashed / part["original"]).read_bytes() == originals[part["original"]]
        _, _, end = decode(crashed / part["file"])
        # Clusters of at most 0.8 s: what is lost is the open cluster and the bytes cut.
        cut_seconds = 3.0 * cut / full[part["original"]] * 1.3  # headers and cues are bytes too
        assert 3.0 - 0.9 - cut_seconds < end <= 3.05
        assert part["end"] == pytest.approx(end + part["start"], abs=0.05)
        with av.open(str(crashed / part["file"])) as container:
            assert container.duration
    assert not (crashed / RESERVE_NAME).exists()
    assert finalize_orphans(tmp_path / "root") == []  # idempotent; "done" was never touched
    assert read_manifest(finished / MANIFEST_NAME).note is None


def test_finalize_leaves_a_recording_in_progress_alone(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec")
    writer.open({})
    try:
        assert finalize_orphans(tmp_path) == []  # its manifest is locked by the live writer
    finally:
        writer.close()


def test_a_cut_manifest_line_is_skipped_and_ended(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_NAME
    path.write_text('{"type":"recording","status":"recording","t0":1}\n{"type":"part","id"')
    manifest = ManifestWriter(path)
    manifest.append({"type": "status", "status": "failed", "failure": "disk_full: x"})
    manifest.close()
    state = read_manifest(path)
    assert (state.status, state.failure, state.skipped_lines) == ("failed", "disk_full: x", 1)
    assert json.loads(path.read_text().splitlines()[-1])["status"] == "failed"
    assert finalize_orphans(tmp_path) == []


def test_failure_reasons() -> None:
    assert failure_reason(OSError(28, "No space left on device")) == (
        "disk_full: No space left on device"
    )
    assert failure_reason(OSError(5, "Input/output error")) == "write_error: Input/output error"
