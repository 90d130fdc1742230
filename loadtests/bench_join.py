"""Join storm against a real `sabaq serve`: how fast students get in and see the teacher.

The server runs as its own process (`sabaq serve --demo`, loopback only);
this process is the synthetic teacher (a pre-encoded VP8 + Opus clip, sent
without re-encoding) and N students who join through the real protocol
within a window, answer the SFU's offers and count the teacher's RTP. For
each student it measures WebSocket open → `welcome` and WebSocket open →
first packet of the teacher's camera, and it reads the server's CPU time
from /proc. The students share this process, so their own CPU use is not in
the server's figure, but on a small machine they compete for the same cores.

    python -m loadtests.bench_join [--n 25 50] [--window 5] [--output file.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sfu import Source
from signaling.identity import mint
from tests.classroom_client import ClassroomClient
from tests.test_serve import free_port, read_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def student(url: str, secret: str, sub: str, result: dict[str, Any]) -> ClassroomClient:
    client = ClassroomClient(url, "demo", token(secret, sub, "student"))
    opened = time.monotonic()
    await client.connect()
    await client.wait_message("welcome", timeout=30)
    result["welcome_ms"] = (time.monotonic() - opened) * 1000
    deadline = time.monotonic() + 30
    while not client.packets_from("teacher", Source.CAMERA) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if client.packets_from("teacher", Source.CAMERA):
        result["first_video_ms"] = (time.monotonic() - opened) * 1000
    return client


async def storm(n: int, window: float, data_dir: Path) -> dict[str, Any]:
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
    clients: list[ClassroomClient] = []
    try:
        await read_until(process, "Running on")
        url = f"http://127.0.0.1:{port}"
        secret = (data_dir / "dev-jwt-secret").read_text().strip()
        teacher = ClassroomClient(url, "demo", token(secret, "teacher", "teacher"))
        clients.append(teacher)
        await teacher.connect()
        await teacher.wait_message("welcome")
        reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE)
        if reply["type"] != "answer":
            raise SystemExit(f"the teacher could not publish: {reply}")
        await asyncio.sleep(1.0)
        results: list[dict[str, Any]] = [{} for _ in range(n)]
        cpu_before = cpu_seconds(process.pid)
        started = time.monotonic()
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, started + window * i / n - time.monotonic()))
            tasks.append(asyncio.create_task(student(url, secret, f"s{i}", results[i])))
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, ClassroomClient):
                clients.append(outcome)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        for client in clients:
            await client.close()
        process.send_signal(signal.SIGINT)
        await process.wait()
    welcome = [r["welcome_ms"] for r in results if "welcome_ms" in r]
    video = [r["first_video_ms"] for r in results if "first_video_ms" in r]
    return {
        "n": n,
        "window_s": window,
        "joined": len(welcome),
        "saw_video": len(video),
        "welcome_p50_ms": statistics.median(welcome) if welcome else None,
        "welcome_p99_ms": percentile(welcome, 0.99) if welcome else None,
        "first_video_p50_ms": statistics.median(video) if video else None,
        "first_video_p99_ms": percentile(video, 0.99) if video else None,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_share": round(cpu / elapsed, 2),
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(await storm(n, args.window, Path(tmp)))
    print(
        "| N | window | joined | saw video | welcome p50 / p99 (ms) |"
        " first video p50 / p99 (ms) | server CPU (s, share of a core) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:

        def ms(key: str, row: dict[str, Any] = r) -> str:
            return "–" if row[key] is None else f"{row[key]:.0f}"

        print(
            f"| {r['n']} | {r['window_s']:.0f} s | {r['joined']} | {r['saw_video']} |"
            f" {ms('welcome_p50_ms')} / {ms('welcome_p99_ms')} |"
            f" {ms('first_video_p50_ms')} / {ms('first_video_p99_ms')} |"
            f" {r['server_cpu_s']} ({r['server_cpu_share']}) |"
        )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--output")
    arguments = parser.parse_args()
    measured = asyncio.run(main(arguments))
    if arguments.output:
        Path(arguments.output).write_text(json.dumps(measured, indent=2))
