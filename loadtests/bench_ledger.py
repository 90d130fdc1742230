"""Durable appends per second to the footprint ledger, and append-to-commit latency.

Concurrent tasks each append events one after another, awaiting each one: a
task's latency is from ``append()`` to its future resolving, i.e. until the
transaction holding the event has committed with ``synchronous=FULL`` (an
fsync). With more tasks the writer thread puts more events into each
transaction, so throughput rises while each commit costs about one fsync.
The ledger lives in a fresh temporary directory (``--dir`` picks where: it
must be a real disk, since on tmpfs an fsync costs nothing). The run ends by
verifying the whole ledger, which times the verifier too.

    python -m loadtests.bench_ledger [--events 50000] [--tasks 1 16 256] [--output file.json]

Target (issue "digital footprint"): at least 5000 durable appends per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from signaling.footprint import Ledger, verify_ledger

TARGET_PER_SECOND = 5000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (ext4, tmpfs …), from df."""
    try:
        out = subprocess.run(
            ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


async def run_once(directory: Path, events: int, tasks: int, every: int) -> dict[str, Any]:
    """One ledger, ``events`` appends from ``tasks`` concurrent tasks; the measurements."""
    ledger = await Ledger.open(
        directory / "footprint.db",
        signing_key=directory / "key.pem",
        checkpoint_every=every,
    )
    latencies: list[float] = []
    commits: list[float] = []
    per_task, extra = divmod(events, tasks)

    async def writer(task: int) -> None:
        count = per_task + (1 if task < extra else 0)
        for i in range(count):
            # A chat message: the commonest event with a body of some size.
            data = {"session": f"w-{task}", "message": i, "text": "Сәлем, әлем! " * 6}
            started = time.perf_counter()
            await ledger.append("L1", "MATH.101", f"s-{task}", "chat.sent", data)
            latencies.append(time.perf_counter() - started)
            commits.append(ledger.last_commit_seconds)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(writer(task) for task in range(tasks)))
        elapsed = time.perf_counter() - started
    finally:
        await ledger.close()
    assert ledger.appended == events, (ledger.appended, events)
    # After the run, so the verifier's disk reads do not slow the appends.
    checked = verify(directory, ledger.public_key_pem, events)
    return {
        "tasks": tasks,
        "events": events,
        "seconds": round(elapsed, 3),
        "appends_per_second": round(events / elapsed),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_max_ms": round(max(latencies) * 1000, 2),
        "commit_p50_ms": round(percentile(commits, 0.50) * 1000, 2),
        **checked,
    }


def verify(directory: Path, public_key_pem: bytes, events: int) -> dict[str, Any]:
    """Verifies the ledger the run wrote; its speed, checkpoints and size on disk."""
    started = time.perf_counter()
    result = verify_ledger(directory / "footprint.db", public_key_pem=public_key_pem)
    seconds = time.perf_counter() - started
    assert result.ok and result.events == events, result
    size = sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith("footprint"))
    return {
        "verify_events_per_second": round(events / seconds),
        "checkpoints": result.checkpoints,
        "bytes_per_event": round(size / events),
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| tasks | events | appends/s | p50 ms | p99 ms | max ms | commit p50 ms "
        "| verify events/s | bytes/event |"
    )
    lines = [header, "|" + "---:|" * 9]
    for r in rows:
        lines.append(
            f"| {r['tasks']} | {r['events']} | {r['appends_per_second']} "
            f"| {r['latency_p50_ms']} | {r['latency_p99_ms']} | {r['latency_max_ms']} "
            f"| {r['commit_p50_ms']} | {r['verify_events_per_second']} | {r['bytes_per_event']} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for tasks in args.tasks:
        # One event per task would measure one fsync per event: fewer of them do that.
        events = args.events if tasks >= 16 else min(args.events, 1000 * tasks)
        with tempfile.TemporaryDirectory(prefix="bench-ledger-", dir=args.dir) as directory:
            row = await run_once(Path(directory), events, tasks, args.checkpoint_every)
        rows.append(row)
        print(f"tasks={tasks}: {row['appends_per_second']} appends/s", file=sys.stderr)
    where = Path(args.dir or tempfile.gettempdir())
    return {
        "benchmark": "footprint ledger: durable appends (synchronous=FULL, WAL)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "filesystem": filesystem(where),
            "directory": str(where),
        },
        "target_appends_per_second": TARGET_PER_SECOND,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="appends per run")
    parser.add_argument(
        "--tasks", type=int, nargs="+", default=[1, 16, 256], help="concurrent tasks per run"
    )
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--dir", help="where the temporary ledger goes (a real disk)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    # uvloop: the event loop of every Sabaq process.
    report = uvloop.run(main_async(args))
    machine = report["machine"]
    print(
        f"\nFootprint ledger, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['filesystem']} at {machine['directory']}\n"
    )
    print(table(report["rows"]))
    best = max(row["appends_per_second"] for row in report["rows"])
    print(f"\nbest: {best} durable appends/s (target {TARGET_PER_SECOND})")
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if best >= TARGET_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
