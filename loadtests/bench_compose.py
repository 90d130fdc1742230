"""How fast the downloadable MP4 of a lesson is made (recorder/compose.py).

    python -m loadtests.bench_compose [--seconds 120] [--width 1280 --height 720]
                                      [--chunks 60,20] [--output bench-results/compose.json]

A lesson of ``--seconds`` with the three tracks a teacher publishes, generated once with
loadtests.media (cached under ``$SABAQ_MEDIA_CACHE``):

* camera: VP8 1280x720, 30 fps, 1.5 Mbps, the whole lesson;
* screen: H.264 1920x1080, 10 fps (browsers send few frames for slides), 1 Mbps, from
  12.5 % to 87.5 % of the lesson: the rest is camera-only, so both layouts are timed;
* microphone: Opus mono 32 kbps, the whole lesson.

Each run is the production path: :func:`recorder.compose.run_job_process` starts
``python -m recorder.compose_job`` at nice 19 in a fresh work_dir, and the benchmark
waits for it. Measured per ``--chunks`` value: wall clock from spawn to exit, the child's
CPU seconds (user + system over all its threads, from ``RUSAGE_CHILDREN``), its peak RSS,
and the longest gap between ``progress.json`` updates seen by polling it every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av

from loadtests import media
from recorder.compose import ComposeJob, InputPart, run_job_process


def make_inputs(seconds: float) -> tuple[InputPart, ...]:
    """The three tracks of the lesson (generated once, then read from the clip cache)."""
    camera = media.cached_clip(
        "vp8", seconds=seconds, width=1280, height=720, fps=30, bitrate=1_500_000
    )
    screen_s = 0.75 * seconds
    screen = media.cached_clip(
        "h264",
        seconds=screen_s,
        width=1920,
        height=1080,
        fps=10,
        bitrate=1_000_000,
        keyframe_interval_s=5.0,
    )
    mic = media.cached_clip("opus", seconds=seconds)
    return (
        InputPart(camera, "camera", 0.0),
        InputPart(screen, "screen", 0.125 * seconds),
        InputPart(mic, "microphone", 0.0),
    )


async def run_one(job: ComposeJob) -> dict[str, Any]:
    """Run the job as the server would; measure the child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    progress_file = job.work_dir / "progress.json"
    start = time.perf_counter()
    process = await run_job_process(job)
    last_change, last_mtime, longest_gap = start, 0, 0.0
    while process.returncode is None:
        try:
            mtime = progress_file.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        now = time.perf_counter()
        if mtime != last_mtime:
            longest_gap = max(longest_gap, now - last_change)
            last_change, last_mtime = now, mtime
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"compose failed: {progress_file.read_text()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    minutes = job.duration_s / 60
    return {
        "chunk_s": job.chunk_s,
        "lesson_s": job.duration_s,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "realtime_x": round(job.duration_s / wall, 2),
        "cpu_s_per_lesson_min": round(cpu / minutes, 2),
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),  # the largest child so far
        "longest_progress_gap_s": round(longest_gap, 2),
        "output_mib": round(job.output.stat().st_size / 2**20, 2),
        "output_kbps": round(job.output.stat().st_size * 8 / job.duration_s / 1000),
        "frames": _frames(job.output),
    }


def _frames(path: Path) -> int:
    with av.open(os.fspath(path)) as container:
        return int(container.streams.video[0].frames)


def table(rows: list[dict[str, Any]], width: int, height: int) -> str:
    head = (
        "| chunk s | lesson s | wall s | × real time | CPU s | CPU s / lesson min "
        "| peak RSS MiB | longest progress gap s | output MiB (kbps) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['chunk_s']:g} | {r['lesson_s']:g} | {r['wall_s']} | {r['realtime_x']} "
            f"| {r['cpu_s']} | {r['cpu_s_per_lesson_min']} | {r['peak_rss_mib']} "
            f"| {r['longest_progress_gap_s']} | {r['output_mib']} ({r['output_kbps']}) |"
        )
    lines.append("")
    lines.append(
        f"Output {width}x{height} 25 fps H.264 (libx264 veryfast, 1.5 Mbps) + AAC 96 kbps mono; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, PyAV {av.__version__}."
    )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--chunks", default="60,20", help="chunk lengths to try, in s")
    parser.add_argument("--output", type=Path, default=Path("bench-results/compose.json"))
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    parts = make_inputs(args.seconds)
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        for chunk_s in (float(c) for c in args.chunks.split(",")):
            root = Path(tmp) / f"chunk-{chunk_s:g}"
            job = ComposeJob(
                parts=parts,
                output=root / "lesson.mp4",
                work_dir=root / "work",
                duration_s=args.seconds,
                width=args.width,
                height=args.height,
                chunk_s=chunk_s,
            )
            rows.append(await run_one(job))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(table(rows, args.width, args.height))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
