"""Recorder CPU per recorded minute per track, measured beside the same SFU without it.

    python -m loadtests.bench_recorder [--publishers 1,5] [--window 10] [--rounds 3]

One process runs Sabaq's SFU (uvloop) and, in alternating windows of the same length,
no recorder or a `LessonRecorder` of every track; a child process publishes
``--publishers`` teachers, each a looped pre-encoded VP8 clip (640x360, ~1 Mbit/s,
30 fps) and Opus (48 kHz, 20 ms), so the SFU receives the same packets in every
window. The recorder's cost is the SFU process's CPU time (user + system, all threads:
the writer thread included) in "with" windows minus "without" windows, divided by the
track-minutes the recorder wrote (from its manifest).

A second table replays packets captured from the SFU (one video and one audio track,
20 passes) through the recorder's two halves alone: `TrackRecorder.on_rtp`, the event
loop's share per packet (reorder, depacketize, timing; this thread's CPU time), and the
writer thread's muxing per frame (its fsyncs, once a second, are in the first table only:
the replay muxes a minute of frames in well under a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from aiortc import RTCSessionDescription

from loadtests import common
from loadtests.media import EncodedTrack, cached_clip
from recorder import LessonRecorder, read_manifest
from recorder.track import PublisherClock, TrackRecorder
from recorder.writer import RecordingWriter, TrackInfo
from sfu import Room, Sfu, SfuConfig, Source

VIDEO = {"keyframe_interval_s": 2.0}


def cpu() -> float:
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the publishers' process -------------------------------------------------------------


async def publishers(count: int) -> None:
    """Child: `count` peer connections; offers out on stdout, answers in on stdin."""
    common.loopback_policy()
    reader = await common.command_lines()
    pcs = []
    for i in range(count):
        pc = common.peer_connection()
        pc.addTrack(EncodedTrack(cached_clip("vp8", **VIDEO)))
        pc.addTrack(EncodedTrack(cached_clip("opus")))
        await pc.setLocalDescription(await pc.createOffer())
        mids = {t.mid: t.kind for t in pc.getTransceivers()}
        common.send({"i": i, "sdp": pc.localDescription.sdp, "mids": mids})
        answer = json.loads(await reader.readline())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        pcs.append(pc)
    await reader.readline()  # anything (or EOF) ends the child
    for pc in pcs:
        await pc.close()


# --- the SFU's process --------------------------------------------------------------------


async def start_publishers(room: Room, count: int) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.bench_recorder", "--publisher-child", str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    for _ in range(count):
        offer = json.loads(await child.stdout.readline())
        participant = await room.join(f"teacher{offer['i']}", {Source.CAMERA, Source.MICROPHONE})
        sources = {
            mid: Source.CAMERA if kind == "video" else Source.MICROPHONE
            for mid, kind in offer["mids"].items()
        }
        answer = await participant.publish(offer["sdp"], sources)
        child.stdin.write(json.dumps({"sdp": answer}).encode() + b"\n")
        await child.stdin.drain()
    async with asyncio.timeout(20):
        while len(room.tracks) < 2 * count or any(
            t.counters.received < 50 for t in room.tracks.values()
        ):
            await asyncio.sleep(0.1)
    return child


class Capture:
    """A consumer that keeps what it receives, for the replay benchmark."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def on_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def on_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def on_ended(self, reason: str) -> None:
        pass


async def window(room: Room, seconds: float, directory: Path | None) -> dict[str, float]:
    """CPU seconds over `seconds`, with a recorder into `directory` when it is not None."""
    recorder = LessonRecorder(room, directory) if directory is not None else None
    before = cpu()
    started = time.monotonic()
    if recorder is not None:
        await recorder.start()
    await asyncio.sleep(seconds - (time.monotonic() - started))
    result = {"cpu": 0.0, "track_minutes": 0.0, "bytes": 0.0}
    if recorder is not None:
        await recorder.stop()
        assert recorder.status == "ready", recorder.failure
    result["cpu"] = cpu() - before
    result["seconds"] = time.monotonic() - started
    if directory is not None:
        for part in read_manifest(directory / "manifest.jsonl").parts.values():
            result["track_minutes"] += (part["end"] - part["start"]) / 60
            result["bytes"] += part["bytes"]
    return result


class FrameList:
    """A writer stand-in for the loop's share: keeps the frames, never touches a disk."""

    backlog_bytes = 0

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, float, bool]] = []

    def frame(self, key: int, data: bytes, start: float, keyframe: bool) -> None:
        self.frames.append((data, start, keyframe))

    def end_track(self, key: int, reason: str) -> None:
        pass


REPLAYS = 20  # passes over the captured packets: a few thousand calls per figure


async def replay(room: Room, scratch: Path, seconds: float) -> list[dict[str, Any]]:
    """Per packet on the loop, per frame on the writer thread, for one video and one audio."""
    rows = []
    for kind in ("video", "audio"):
        track = next(t for t in room.tracks.values() if t.kind == kind)
        capture = Capture()
        subscription = room.add_consumer(track.id, capture)
        await asyncio.sleep(seconds)
        subscription.close()
        codec = track.codec
        # The loop's share: this thread's CPU time in on_rtp (reorder, depacketize, time).
        loop_s, frames = 0.0, FrameList()
        for _ in range(REPLAYS):
            frames = FrameList()
            recorder = TrackRecorder(1, codec.mime_type, codec.clock_rate, frames,
                                     PublisherClock(), 0.0)  # fmt: skip
            for packet in capture.rtcp:
                recorder.on_rtcp(packet)
            before = time.thread_time()
            for packet in capture.rtp:
                recorder.on_rtp(packet)
            loop_s += time.thread_time() - before
        # The writer thread's share: process CPU from the first queued frame to the
        # thread's end (the loop thread only queues, then waits in join()).
        writer = RecordingWriter(scratch / f"replay-{kind}")
        writer.open({"t0": 0.0})
        writer.add_track(TrackInfo(1, "p", str(track.source), track.id, codec.mime_type))
        before = cpu()
        for i in range(REPLAYS):
            for data, start, keyframe in frames.frames:
                writer.frame(1, data, start + i * seconds * 2, keyframe)
        writer.close()
        writer_s = cpu() - before
        packets, count = len(capture.rtp) * REPLAYS, len(frames.frames) * REPLAYS
        rows.append(
            {
                "kind": f"{kind} ({codec.mime_type})",
                "packets": packets,
                "frames": count,
                "loop_us_per_packet": loop_s / max(1, packets) * 1e6,
                "writer_us_per_frame": writer_s / max(1, count) * 1e6,
            }
        )
    return rows


async def measure(count: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Alternating windows without and with a recorder, for `count` publishers."""
    sfu = Sfu(SfuConfig(ice=common.loopback_policy()))
    await sfu.start()
    room = sfu.room(f"bench{count}")
    child = await start_publishers(room, count)
    try:
        await asyncio.sleep(2.0)  # past the connections' start-up
        windows: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        for i in range(args.rounds):
            windows["without"].append(await window(room, args.window, None))
            directory = scratch / f"n{count}-round{i}"
            windows["with"].append(await window(room, args.window, directory))
        replayed = await replay(room, scratch / f"n{count}", min(args.window, 5.0))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        await child.wait()
        await sfu.close()
    return {"tracks": 2 * count, "windows": windows, "replayed": replayed}


async def run(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="sabaq-bench-recorder-"))
    try:
        results = [await measure(n, args, scratch) for n in args.publishers]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(args, results)


def _rate(windows: list[dict[str, float]]) -> float:
    return sum(w["cpu"] for w in windows) / sum(w["seconds"] for w in windows)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"\nMachine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; publishers of VP8 (640x360, ~1 Mbit/s) "
        f"+ Opus each; {args.rounds} x {args.window:.0f} s windows each way per row.\n"
    )
    print("| tracks | SFU CPU without recorder | with recorder | recorder CPU | "
          "track-minutes recorded | CPU s per recorded minute per track | "
          "share of one core per track | MB written |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        windows = result["windows"]
        without, with_ = _rate(windows["without"]), _rate(windows["with"])
        seconds = sum(w["seconds"] for w in windows["with"])
        recorder_cpu = (with_ - without) * seconds
        minutes = sum(w["track_minutes"] for w in windows["with"])
        mbytes = sum(w["bytes"] for w in windows["with"]) / 1e6
        per_minute = recorder_cpu / minutes if minutes else float("nan")
        print(
            f"| {result['tracks']} | {without * 100:.1f} % | {with_ * 100:.1f} % | "
            f"{recorder_cpu:.2f} s | {minutes:.2f} | {per_minute:.3f} | "
            f"{per_minute / 60 * 100:.2f} % | {mbytes:.1f} |"
        )
    print("\n| replayed track | packets | frames | on_rtp (event loop) µs/packet | "
          "writer thread µs/frame |")  # fmt: skip
    print("|---|---|---|---|---|")
    for row in results[-1]["replayed"]:
        print(
            f"| {row['kind']} | {row['packets']} | {row['frames']} | "
            f"{row['loop_us_per_packet']:.1f} | {row['writer_us_per_frame']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--publishers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 5],
        help="comma-separated publisher counts, one row each (2 tracks per publisher)",
    )
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publisher-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher_child:
        common.run_child(lambda: publishers(args.publisher_child), deadline_s=3600)
        return
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
