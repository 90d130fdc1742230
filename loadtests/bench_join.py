"""Join storm against a real `sabaq serve`: how fast students get in and see the teacher.

    python -m loadtests.bench_join [--n 100] [--window 10] [--output file.json]

The server runs as its own process (`sabaq serve --demo`, loopback only). This process is
the synthetic teacher: a `ClassroomClient` publishing a pre-encoded VP8 (~1 Mbps, 30 fps) +
Opus clip without re-encoding, answering the SFU's PLI with the clip's next keyframe at
once (as a browser's encoder would) and stamping each frame with its send time. N students,
in ceil(N / 50) processes of `loadtests.ws_students`, open their WebSockets evenly spread
over the window and join through the real protocol. For each student: WebSocket open →
`welcome`, and WebSocket open → the last packet of the first whole keyframe (time to first
frame); then, for `--steady` seconds after the last join, the end-to-end delay of every
video frame. The server's CPU time comes from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests import common
from loadtests.bench_sfu import Processes, delay_figures, quantile
from loadtests.teacher import answer_keyframe_requests
from sfu import Source
from signaling.identity import mint
from tests.classroom_client import ClassroomClient
from tests.test_serve import free_port, read_until

STUDENTS_PER_PROCESS = 50


def token(secret: str, sub: str, role: str) -> str:
    return mint(
        secret=secret,
        issuer="sabaq-dev",
        audience="sabaq",
        sub=sub,
        name=sub,
        role=role,
        lesson="demo",
    )


def spread(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(quantile(ordered, 0.5), 1),
        "p99": round(quantile(ordered, 0.99), 1),
        "max": round(ordered[-1], 1),
    }


async def publish_teacher(url: str, secret: str) -> ClassroomClient:
    """The teacher's camera and microphone, stamped and answering PLI."""
    teacher = ClassroomClient(url, "demo", token(secret, "teacher", "teacher"))
    await teacher.connect()
    await teacher.wait_message("welcome")
    reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE)
    if reply["type"] != "answer":
        raise SystemExit(f"the teacher could not publish: {reply}")
    camera = teacher.tracks[Source.CAMERA]
    camera.stamp = True
    assert teacher.publisher is not None
    for transceiver in teacher.publisher.getTransceivers():
        if transceiver.sender.track is camera:
            answer_keyframe_requests(transceiver.sender, camera)
    return teacher


async def storm(n: int, window: float, steady: float, data_dir: Path) -> dict[str, Any]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("sabaq")),
        "serve",
        "--demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SABAQ_")},
            "SABAQ_SERVER_PORT": str(port),
            "SABAQ_SERVER_DATA_DIR": str(data_dir),
            "SABAQ_MEDIA_HOST_ADDRESSES": "127.0.0.1",
            "SABAQ_MEDIA_ALLOWED_NETWORKS": "127.0.0.0/8",
        },
    )
    procs = Processes(f"join-n{n}", deadline=60 + window + steady + 0.5 * n)
    teacher: ClassroomClient | None = None
    try:
        await read_until(process, "Running on")
        url = f"http://127.0.0.1:{port}"
        secret_file = data_dir / "dev-jwt-secret"
        teacher = await publish_teacher(url, secret_file.read_text().strip())
        await asyncio.sleep(1.0)
        k = max(1, math.ceil(n / STUDENTS_PER_PROCESS))
        start_at = time.monotonic() + 3.0  # every process is up and waiting by then
        students = [
            await procs.spawn(
                f"students{i}",
                "loadtests.ws_students",
                "--server",
                url,
                "--secret-file",
                str(secret_file),
                "--count",
                str(n // k + (1 if i < n % k else 0)),
                "--index",
                str(i),
                "--processes",
                str(k),
                "--total",
                str(n),
                "--start-at",
                f"{start_at:.6f}",
                "--window",
                str(window),
            )
            for i in range(k)
        ]
        for child in students:
            await child.message(60)
        cpu_before = common.cpu_seconds(process.pid)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()) + window + 2.0)
        storm_cpu = common.cpu_seconds(process.pid) - cpu_before
        joining = await asyncio.gather(*(c.request("latency", timeout=30) for c in students))
        await asyncio.sleep(steady)
        steady_samples = await asyncio.gather(*(c.request("latency", timeout=30) for c in students))
        stats = await asyncio.gather(*(c.request("stats") for c in students))
        procs.check_alive()
        camera = teacher.tracks[Source.CAMERA]
        teacher_stats = {
            "keyframes": camera.keyframes_sent,
            "keyframes_forced": camera.keyframes_forced,
            "keyframe_requests": camera.keyframe_requests,
        }
    finally:
        await procs.close()
        if teacher is not None:
            await teacher.close()
        process.send_signal(signal.SIGINT)
        await process.wait()
    first = [f for r in joining for f in r["first_frames_ms"]]
    welcome = [w for r in stats for w in r["welcome_ms"]]
    delays = [d for r in steady_samples for d in r["delays_us"]]
    first_frame = spread(first)
    welcomed = spread(welcome)
    return {
        "n": n,
        "window_s": window,
        "processes": len(students),
        "joined": sum(r["joined"] for r in stats),
        "saw_video": len(first),
        "errors": sum(r["errors"] for r in stats),
        "first_error": next((r["first_error"] for r in stats if r["first_error"]), ""),
        "welcome_p50_ms": welcomed["p50"],
        "welcome_p99_ms": welcomed["p99"],
        "first_frame_p50_ms": first_frame["p50"],
        "first_frame_p99_ms": first_frame["p99"],
        "first_frame_max_ms": first_frame["max"],
        **delay_figures(delays, sum(int(r["dropped"]) for r in steady_samples)),
        "server_cpu_s_during_storm": round(storm_cpu, 2),
        "server_cpu_share_during_storm": round(storm_cpu / (window + 2.0), 2),
        "teacher": teacher_stats,
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(await storm(n, args.window, args.steady, Path(tmp)))
    print(
        "| N | window | joined | first frame | welcome p50 / p99 (ms) |"
        " first frame p50 / p99 / max (ms) | delay p50 / p99 (ms) | server CPU in storm |"
        " keyframes forced / PLIs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:

        def ms(key: str, row: dict[str, Any] = r) -> str:
            return "–" if row.get(key) is None else f"{row[key]:.0f}"

        def ms2(key: str, row: dict[str, Any] = r) -> str:
            return "–" if row.get(key) is None else f"{row[key]:.2f}"

        t = r["teacher"]
        print(
            f"| {r['n']} | {r['window_s']:.0f} s | {r['joined']} | {r['saw_video']} |"
            f" {ms('welcome_p50_ms')} / {ms('welcome_p99_ms')} |"
            f" {ms('first_frame_p50_ms')} / {ms('first_frame_p99_ms')} /"
            f" {ms('first_frame_max_ms')} |"
            f" {ms2('delay_p50_ms')} / {ms2('delay_p99_ms')} |"
            f" {r['server_cpu_share_during_storm']:.2f} core |"
            f" {t['keyframes_forced']} / {t['keyframe_requests']} |"
        )
        if r["errors"]:
            print(f"  {r['errors']} student errors, first: {r['first_error']}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100])
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--steady", type=float, default=5.0, help="delay-measuring seconds")
    parser.add_argument("--output")
    arguments = parser.parse_args()
    measured = asyncio.run(main(arguments))
    if arguments.output:
        Path(arguments.output).write_text(json.dumps(measured, indent=2))
