"""`make bench`: CPU per forwarded packet, loss and memory of the SFU, next to aiortc's MediaRelay.

    python -m loadtests.bench_sfu [--n 25,50,100,200] [--relay-n 5,10,25,...] [--window 10]
                                  [--quick] [--no-relay] [--no-floor]

For every N, a fresh set of processes, all on 127.0.0.1:

* the server (`loadtests.control`: Sabaq's SFU, or `loadtests.relay_baseline`: aiortc's
  MediaRelay, which decodes once and re-encodes per student), under uvloop;
* one teacher (`loadtests.teacher`) publishing pre-encoded VP8 (~1 Mbps, 30 fps, a looped
  clip) and Opus;
* ceil(N / 50) student processes (`loadtests.students`) whose aiortc peer connections count
  SRTP datagrams at the socket and drop them: no decryption, no depacketizing, no decoding.

Once every student receives video, a steady window is measured from each process's own
accounting: server CPU seconds (/proc/PID/stat utime+stime, and each of them alone: on
loopback, stime includes the kernel delivering every datagram to the receiving socket
inside the sender's `sendto`) over RTP packets it sent to the
students (the SFU's per-track ``forwarded`` counters; the relay's aiortc senders' counts),
loss (1 - packets the students counted / packets the server sent), UDP receive-buffer errors
(/proc/net/snmp, and /proc/net/udp drops of the server's and the students' own sockets), and
server RSS growth per student (VmRSS after the students joined minus before).

After each SFU stage, the "floor" (`loadtests.floor`, unless --no-floor) runs at the same N:
a bare uvloop sender doing per packet only what the SFU's fan-out must do (copy, rewrite
seq/timestamp/SSRC with struct.pack_into, pylibsrtp protect, transport.sendto; one socket
and one SRTP session per destination) to N sockets of a separate receiver process that
drains and counts them, at the SFU stage's packet rate (its incoming packets per second,
each fanned out to all N back to back) and with its measured video/audio packet sizes and
proportion. Its CPU per packet (user and system) is the floor the SFU's is compared with.

The relay stops growing N at the first N where it saturates: server CPU >= 90 % of one core,
or students receiving under 80 % of the teacher's frame rate. Where the relay runs at an N
that is not in --n, the SFU runs there too, so that every relay row has its ratio.

Results go to bench-results/sfu.json; logs of every process to bench-results/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import math
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import uvloop

from loadtests import common, floor, janus_server, netns
from loadtests.teacher import clips

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
SERVERS = {
    "sfu": "loadtests.control",
    "relay": "loadtests.relay_baseline",
    # side by side, both inside a network namespace (Janus ignores loopback for ICE)
    "sfu-ns": "loadtests.control",
    "janus": "loadtests.janus_control",
}
IN_NAMESPACE = frozenset({"sfu-ns", "janus"})
STUDENTS_PER_PROCESS = 50
MAX_STUDENT_PROCESSES = 8
SATURATED_CPU_PCT = 90.0
SATURATED_RATE = 0.8
SNAPSHOT_TRIES = 30
MESSAGE_LIMIT = 64 * 1024 * 1024  # one JSON line from a child: delay samples can be large
FLOOR_DEFAULT_BYTES = 1000  # plaintext RTP bytes when the SFU stage measured no sizes
FLOOR_DEFAULT_RATE = 166.0  # incoming packets/s when it measured no rate (~ the teacher's)
FLOOR_BEHIND = 0.95  # the floor "saturates" below this share of its target packet rate

_live_groups: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (an exception escaped every finally): no child outlives the benchmark."""
    for pgid in list(_live_groups):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    _live_groups.clear()


class StageError(RuntimeError):
    """A stage could not be measured (a process died, nobody received video...)."""


class Child:
    """A child process in its own process group, talking JSON lines over stdin/stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: pathlib.Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self._lock = asyncio.Lock()
        # whose CPU and memory the figures are: a server child may name another process
        # (the Janus adapter names Janus)
        self.measured_pid = proc.pid

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def message(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the child prints (other lines are skipped)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise StageError(
                        f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if isinstance(data, dict):
                        return data

    async def request(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            return await self.message(timeout)

    async def stop(self, grace: float = 3.0) -> None:
        """quit, then SIGTERM, then SIGKILL to the whole process group."""
        proc = self.proc
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b"quit\n")
                proc.stdin.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await proc.wait()
                break
        with contextlib.suppress(OSError):  # anything the child left in its group
            os.killpg(proc.pid, signal.SIGKILL)
        _live_groups.discard(proc.pid)


class Processes:
    """The children of one stage; `close` stops them all."""

    def __init__(self, tag: str, deadline: float, ns: netns.Namespace | None = None) -> None:
        self.tag = tag
        self.deadline = deadline
        self.ns = ns  # every child runs inside it, with its address for ICE
        self.children: list[Child] = []

    async def spawn(self, name: str, module: str, *args: str) -> Child:
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{self.tag}-{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", module, *args, "--deadline", f"{self.deadline:.0f}"]
        if self.ns is not None:
            argv, env = self.ns.argv(argv), self.ns.env(env)
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                limit=MESSAGE_LIMIT,
            )
        _live_groups.add(proc.pid)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.proc.returncode is not None:
                raise StageError(
                    f"{child.name} exited ({child.proc.returncode}):\n{child.log_tail()}"
                )

    async def close(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.children), return_exceptions=True)


@dataclass
class Options:
    sfu_n: list[int]
    relay_n: list[int]
    window: float
    warmup: float
    settle: float
    base_window: float
    video_bitrate: int
    fps: int
    clip_seconds: float
    batch: int
    output: pathlib.Path
    floor: bool = True
    seminar_publishers: int = 8
    seminar_receivers: int = 12
    janus_n: tuple[int, ...] = ()
    install_janus: bool = True


@dataclass
class Snapshot:
    time: float
    server: dict[str, Any]
    teacher: dict[str, Any]
    students: list[dict[str, Any]]
    server_cpu: float
    server_user: float
    server_sys: float
    teacher_cpu: float
    student_cpu: list[float]
    snmp: dict[str, int]
    server_drops: int
    student_drops: int
    teacher_drops: int
    exact: bool
    tries: int


def combine_teachers(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """The publishers' counters added up (a seminar has several); the worst connection state."""
    total: dict[str, Any] = {}
    for reply in replies:
        for key, value in reply.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    states = [r.get("state") for r in replies]
    total["state"] = next((s for s in states if s != "connected"), "connected")
    return total


async def snapshot(
    http: aiohttp.ClientSession,
    url: str,
    server: Child,
    teachers: list[Child],
    students: list[Child],
    ns: netns.Namespace | None = None,
    tries: int = SNAPSHOT_TRIES,
) -> Snapshot:
    """Everything at one instant: the students' counters are read between two readings of
    the server's, and only kept when the server sent nothing in between (it sends in bursts,
    one per incoming packet), so that both count the same packets. After a few tries the
    last reading is kept and marked inexact."""

    async def server_stats() -> dict[str, Any]:
        async with http.get(f"{url}/stats") as r:
            r.raise_for_status()
            return dict(await r.json())

    for attempt in range(tries):
        t = time.monotonic()
        server_user, server_sys = common.cpu_times(server.measured_pid)
        first = await server_stats()
        replies = await asyncio.gather(*(c.request("stats") for c in [*teachers, *students]))
        second = await server_stats()
        exact = second["forwarded"] == first["forwarded"]
        if exact:
            break
        await asyncio.sleep(0.001 * (attempt % 7))
    return Snapshot(
        time=t,
        server=first,
        teacher=combine_teachers(list(replies[: len(teachers)])),
        students=list(replies[len(teachers) :]),
        server_cpu=server_user + server_sys,
        server_user=server_user,
        server_sys=server_sys,
        teacher_cpu=sum(common.cpu_seconds(t.pid) for t in teachers),
        student_cpu=[common.cpu_seconds(s.pid) for s in students],
        snmp=ns.udp_snmp() if ns is not None else common.udp_snmp(),
        server_drops=common.udp_socket_drops([server.measured_pid])["drops"],
        student_drops=common.udp_socket_drops([s.pid for s in students])["drops"],
        teacher_drops=common.udp_socket_drops([t.pid for t in teachers])["drops"],
        exact=exact,
        tries=attempt + 1,
    )


async def take_samples(students: list[Child]) -> dict[str, Any]:
    """The delays and first-frame times every student process collected since the last call."""
    replies = await asyncio.gather(*(s.request("latency", timeout=30) for s in students))
    return {
        "delays_us": [d for r in replies for d in r.get("delays_us", [])],
        "first_frames_ms": [f for r in replies for f in r.get("first_frames_ms", [])],
        "dropped": sum(int(r.get("dropped", 0)) for r in replies),
    }


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted list."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def delay_figures(delays_us: list[int], dropped: int) -> dict[str, Any]:
    """End-to-end delay (teacher's send time to the student's socket, ms) over the window."""
    ordered = sorted(delays_us)
    if not ordered:
        return {"delay_samples": 0}
    return {
        "delay_samples": len(ordered),
        "delay_samples_dropped": dropped,
        "delay_p50_ms": round(quantile(ordered, 0.50) / 1000, 3),
        "delay_p99_ms": round(quantile(ordered, 0.99) / 1000, 3),
        "delay_p999_ms": round(quantile(ordered, 0.999) / 1000, 3),
        "delay_max_ms": round(ordered[-1] / 1000, 3),
    }


def first_frame_figures(first_frames_ms: list[float], n: int) -> dict[str, Any]:
    """Join request → last packet of the first whole keyframe, per student (ms)."""
    ordered = sorted(first_frames_ms)
    if not ordered:
        return {"first_frames": 0}
    return {
        "first_frames": len(ordered),
        "first_frame_missing": n - len(ordered),
        "first_frame_p50_ms": round(quantile(ordered, 0.50), 1),
        "first_frame_p99_ms": round(quantile(ordered, 0.99), 1),
        "first_frame_max_ms": round(ordered[-1], 1),
    }


def student_split(n: int) -> list[int]:
    """Students per process: ceil(N / 50) processes (at most 8), as even as possible."""
    k = max(1, min(MAX_STUDENT_PROCESSES, math.ceil(n / STUDENTS_PER_PROCESS)))
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


async def run_stage(design: str, n: int, opts: Options, publishers: int = 1) -> dict[str, Any]:
    """Fresh server, teacher(s) and students; measure one steady window.

    One publisher is a lecture; several (`publishers`) a seminar, every student receiving
    every publisher."""
    join_timeout = 30.0 + 0.3 * n * publishers
    deadline = 90.0 + opts.settle + opts.warmup + opts.window + join_timeout
    tag = f"{design}-n{n}" if publishers == 1 else f"{design}-seminar{publishers}x{n}"
    ns = netns.Namespace() if design in IN_NAMESPACE else None
    procs = Processes(tag, deadline, ns)
    started = time.monotonic()
    try:
        host_args = ["--host", ns.address] if ns is not None else []
        server = await procs.spawn("server", SERVERS[design], *host_args)
        hello = await server.message(60)
        server.measured_pid = int(hello.get("measured_pid", server.pid))
        url = f"http://{hello.get('host', '127.0.0.1')}:{int(hello['port'])}"
        clip = [
            "--video-bitrate",
            str(opts.video_bitrate),
            "--fps",
            str(opts.fps),
            "--clip-seconds",
            str(opts.clip_seconds),
        ]
        teachers = [
            await procs.spawn(
                f"teacher{i}" if publishers > 1 else "teacher",
                "loadtests.teacher",
                "--server",
                url,
                "--participant",
                f"teacher{i}" if publishers > 1 else "teacher",
                *clip,
            )
            for i in range(publishers)
        ]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for teacher in teachers:
                await teacher.message(60)
            async with asyncio.timeout(30):
                while True:  # the server gets the teacher's media
                    async with http.get(f"{url}/stats") as r:
                        if (await r.json())["received"] > 0:
                            break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(opts.settle)
            # the server's fixed cost: the teacher's media coming in, timers, no student yet
            base_t, base_cpu = time.monotonic(), common.cpu_seconds(server.measured_pid)
            await asyncio.sleep(opts.base_window)
            base_pct = (
                100.0
                * (common.cpu_seconds(server.measured_pid) - base_cpu)
                / (time.monotonic() - base_t)
            )
            rss_before = common.rss_kib(server.measured_pid)
            joined_at = time.monotonic()
            students = [
                await procs.spawn(
                    f"students{i}",
                    "loadtests.students",
                    "--server",
                    url,
                    "--count",
                    str(count),
                    "--prefix",
                    f"s{i}-",
                    "--batch",
                    str(opts.batch),
                )
                for i, count in enumerate(student_split(n))
            ]
            for child in students:
                await child.message(60)
            receiving = 0
            next_note = 10.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(join_timeout):
                    while receiving < n:
                        await asyncio.sleep(0.5)
                        procs.check_alive()
                        replies = await asyncio.gather(*(s.request("stats") for s in students))
                        # every publisher's audio and video reach the student
                        receiving = sum(
                            row[1] > 0 and row[3] >= 2 * publishers
                            for r in replies
                            for row in r["per_student"]
                        )
                        waited = time.monotonic() - joined_at
                        if waited >= next_note and receiving < n:
                            next_note += 10.0
                            connected = sum(r["connected"] for r in replies)
                            print(
                                f"    {waited:.0f} s: {connected} connected, {receiving} of "
                                f"{n} receive video",
                                flush=True,
                            )
            join_s = time.monotonic() - joined_at
            if receiving == 0:
                raise StageError(f"no student received video within {join_timeout:.0f} s")
            await asyncio.sleep(opts.warmup)
            joining = await take_samples(students)  # first frames; delays while joining
            # Janus's counters come from its admin API, a request per handle: never a
            # consistent instant, so one reading (loss then comes from sequence numbers)
            tries = 1 if design == "janus" else SNAPSHOT_TRIES
            before = await snapshot(http, url, server, teachers, students, ns, tries)
            await asyncio.sleep(opts.window)
            after = await snapshot(http, url, server, teachers, students, ns, tries)
            steady = await take_samples(students)
            rss_after = common.rss_kib(server.measured_pid)
            procs.check_alive()
        result = measure(design, n, before, after)
        result["publishers"] = publishers
        result.update(delay_figures(steady["delays_us"], steady["dropped"]))
        result.update(first_frame_figures(joining["first_frames_ms"], n))
        if result["forwarded"]:
            marginal = result["server_cpu_pct"] - base_pct
            result["marginal_us_per_packet"] = round(
                marginal / 100.0 * 1e6 / result["forwarded_pps"], 2
            )
        overload = []
        if receiving < n:
            overload.append(f"only {receiving} of {n} students received video")
        if result["teacher_state"] != "connected":
            overload.append(f"the teacher's connection is {result['teacher_state']}")
        if overload:
            result["saturated"] = True
            result["saturation"] = "; ".join(filter(None, [result["saturation"], *overload]))
        result.update(
            base_cpu_pct=round(base_pct, 1),
            processes=len(students),
            join_s=round(join_s, 2),
            receiving=receiving,
            all_receiving=receiving == n,
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            kib_per_student=round((rss_after - rss_before) / n, 1),
            stage_s=round(time.monotonic() - started, 1),
        )
        return result
    finally:
        await procs.close()
        if ns is not None:
            ns.close()


# --- the floor ---------------------------------------------------------------------


def floor_spec(n: int, sfu: dict[str, Any] | None) -> dict[str, Any]:
    """What the floor sends at N: the SFU stage's incoming packet rate (its forwarded packets
    per second over N), its video/audio proportion and sizes (as the students received
    them, less the 16-byte GCM tag that protect adds back); fixed defaults without one."""
    tag = floor.SRTP_TAG_BYTES
    rate = sfu["forwarded_pps"] / n if sfu and sfu.get("forwarded_pps") else None
    avg = sfu.get("avg_bytes") if sfu else None
    video = sfu.get("avg_video_bytes") if sfu else None
    audio = sfu.get("avg_audio_bytes") if sfu else None
    share = sfu.get("video_share") if sfu else None
    if share is None or (video is None and audio is None):
        video = audio = avg  # one average size for every packet
        share = 1.0
    video = video if video is not None else audio
    audio = audio if audio is not None else video
    sized = video is not None and audio is not None
    return {
        "basis": ("sfu" if rate else "default rate") + ("" if sized else ", default size"),
        "tick_rate": round(rate or FLOOR_DEFAULT_RATE, 3),
        "video_bytes": round(video - tag) if video is not None else FLOOR_DEFAULT_BYTES,
        "audio_bytes": round(audio - tag) if audio is not None else FLOOR_DEFAULT_BYTES,
        "video_share": round(share, 4),
        "profile": floor.PROFILE,
    }


@dataclass
class FloorSnapshot:
    time: float
    user: float
    sys: float
    sender: dict[str, Any]
    receiver: dict[str, Any]
    receiver_cpu: float
    snmp: dict[str, int]
    sender_drops: int
    receiver_drops: int
    exact: bool
    tries: int


async def floor_snapshot(sender: Child, receiver: Child) -> FloorSnapshot:
    """The sender's CPU and counters and the receiver's counts at one instant: kept when the
    sender sent nothing between two readings around the receiver's (which drains its
    sockets before answering; loopback delivers inside `sendto`), else marked inexact."""
    for attempt in range(SNAPSHOT_TRIES):
        t = time.monotonic()
        user, system = common.cpu_times(sender.pid)
        first = await sender.request("stats")
        received = await receiver.request("stats")
        second = await sender.request("stats")
        for reply in (first, received):
            if "error" in reply:
                raise StageError(f"floor: {reply['error']}")
        exact = second.get("sent") == first["sent"]
        if exact:
            break
        await asyncio.sleep(0.001 * (attempt % 7))
    return FloorSnapshot(
        time=t,
        user=user,
        sys=system,
        sender=first,
        receiver=received,
        receiver_cpu=common.cpu_seconds(receiver.pid),
        snmp=common.udp_snmp(),
        sender_drops=common.udp_socket_drops([sender.pid])["drops"],
        receiver_drops=common.udp_socket_drops([receiver.pid])["drops"],
        exact=exact,
        tries=attempt + 1,
    )


async def run_floor_stage(n: int, sfu: dict[str, Any] | None, opts: Options) -> dict[str, Any]:
    """A fresh receiver (N sockets) and bare sender; measure one window as long as the SFU's."""
    spec = floor_spec(n, sfu)
    deadline = 60.0 + opts.warmup + opts.window + 30.0
    procs = Processes(f"floor-n{n}", deadline)
    started = time.monotonic()
    try:
        receiver = await procs.spawn("receiver", "loadtests.floor", "receive", "--count", str(n))
        ports = (await receiver.message(30))["ports"]
        if len(ports) != n:
            raise StageError(f"floor receiver opened {len(ports)} of {n} sockets")
        sender = await procs.spawn(
            "sender",
            "loadtests.floor",
            "send",
            "--ports",
            ",".join(str(int(p)) for p in ports),
            "--rate",
            str(spec["tick_rate"]),
            "--video-bytes",
            str(spec["video_bytes"]),
            "--audio-bytes",
            str(spec["audio_bytes"]),
            "--video-share",
            str(spec["video_share"]),
        )
        hello = await sender.message(30)
        if hello.get("started") != n:
            raise StageError(f"floor sender: {hello}")
        await asyncio.sleep(opts.warmup)
        a = await floor_snapshot(sender, receiver)
        await asyncio.sleep(opts.window)
        b = await floor_snapshot(sender, receiver)
        procs.check_alive()
    finally:
        await procs.close()
    wall = b.time - a.time
    user, system = b.user - a.user, b.sys - a.sys
    cpu = user + system
    sent = b.sender["sent"] - a.sender["sent"]
    received = b.receiver["packets"] - a.receiver["packets"]
    rx_bytes = b.receiver["bytes"] - a.receiver["bytes"]
    target_pps = spec["tick_rate"] * n
    cpu_pct = 100.0 * _rate(cpu, wall)
    pps = _rate(sent, wall)
    us = cpu * 1e6 / sent if sent else None
    pps_per_student = pps / n
    reasons = []
    if cpu_pct >= SATURATED_CPU_PCT:
        reasons.append(f"sender CPU {cpu_pct:.0f}% >= {SATURATED_CPU_PCT:.0f}% of one core")
    if pps < FLOOR_BEHIND * target_pps:
        reasons.append(f"sent {pps:.0f} of {target_pps:.0f} packets/s")
    return {
        "design": "floor",
        "n": n,
        "window_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(cpu_pct, 1),
        "forwarded": sent,
        "forwarded_pps": round(pps, 1),
        "target_pps": round(target_pps, 1),
        "us_per_packet": round(us, 2) if us is not None else None,
        "user_us_per_packet": round(user * 1e6 / sent, 2) if sent else None,
        "sys_us_per_packet": round(system * 1e6 / sent, 2) if sent else None,
        "server_user_s": round(user, 3),
        "server_sys_s": round(system, 3),
        "students_received": received,
        "avg_bytes": round(rx_bytes / received, 1) if received else None,
        "loss_pct": round(100.0 * (1 - received / sent), 3) if sent else None,
        "loss_exact": a.exact and b.exact,
        "snapshot_tries": [a.tries, b.tries],
        "send_errors": (
            b.sender["send_errors"]
            + b.sender["error_received"]
            - a.sender["send_errors"]
            - a.sender["error_received"]
        ),
        "sender_write_buffer": b.sender.get("buffered", 0),
        "late_ticks": b.sender.get("late_ticks", 0) - a.sender.get("late_ticks", 0),
        "socket_drops": b.sender_drops + b.receiver_drops - a.sender_drops - a.receiver_drops,
        "server_socket_drops": b.sender_drops - a.sender_drops,
        "student_socket_drops": b.receiver_drops - a.receiver_drops,
        "udp_rcvbuf_errors": b.snmp.get("RcvbufErrors", 0) - a.snmp.get("RcvbufErrors", 0),
        "udp_in_errors": b.snmp.get("InErrors", 0) - a.snmp.get("InErrors", 0),
        "student_pps": round(pps_per_student, 2),
        "students_cpu_pct": round(100.0 * _rate(b.receiver_cpu - a.receiver_cpu, wall), 1),
        "students_per_core": (
            round(1e6 / (us * pps_per_student), 1) if us and pps_per_student else None
        ),
        "saturated": bool(reasons),
        "saturation": "; ".join(reasons),
        "floor": {**spec, "sender_video_bytes": hello.get("video_bytes")},
        "stage_s": round(time.monotonic() - started, 1),
    }


def _rate(delta: float, seconds: float) -> float:
    return delta / seconds if seconds > 0 else 0.0


def measure(design: str, n: int, a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """The window's figures from two snapshots."""
    wall = b.time - a.time
    cpu = b.server_cpu - a.server_cpu
    forwarded = b.server["forwarded"] - a.server["forwarded"]
    received = sum(s["packets"] for s in b.students) - sum(s["packets"] for s in a.students)
    rx_bytes = sum(s["bytes"] for s in b.students) - sum(s["bytes"] for s in a.students)
    expected = sum(s["expected"] for s in b.students) - sum(s["expected"] for s in a.students)
    per_a = [p for s in a.students for p in s["per_student"]]
    per_b = [p for s in b.students for p in s["per_student"]]
    video_fps = [_rate(y[1] - x[1], wall) for x, y in zip(per_a, per_b, strict=True)]
    audio_pps = [_rate(y[2] - x[2], wall) for x, y in zip(per_a, per_b, strict=True)]
    teacher_fps = _rate(b.teacher["video_frames"] - a.teacher["video_frames"], wall)
    teacher_aps = _rate(b.teacher["audio_frames"] - a.teacher["audio_frames"], wall)
    teacher_sent = (
        b.teacher["video_packets"]
        + b.teacher["audio_packets"]
        - a.teacher["video_packets"]
        - a.teacher["audio_packets"]
    )
    server_in = b.server["received"] - a.server["received"]
    us_per_packet = cpu * 1e6 / forwarded if forwarded else None
    user_us = (b.server_user - a.server_user) * 1e6 / forwarded if forwarded else None
    sys_us = (b.server_sys - a.server_sys) * 1e6 / forwarded if forwarded else None
    video_rx = sum(s["video_packets"] for s in b.students) - sum(
        s["video_packets"] for s in a.students
    )
    video_rx_bytes = sum(s.get("video_bytes", 0) for s in b.students) - sum(
        s.get("video_bytes", 0) for s in a.students
    )
    audio_rx = received - video_rx
    audio_rx_bytes = rx_bytes - video_rx_bytes
    pps_per_student = _rate(forwarded, wall) / n
    cpu_pct = 100.0 * _rate(cpu, wall)
    mean_fps = sum(video_fps) / len(video_fps) if video_fps else 0.0
    mean_aps = sum(audio_pps) / len(audio_pps) if audio_pps else 0.0
    reasons = []
    if cpu_pct >= SATURATED_CPU_PCT:
        reasons.append(f"server CPU {cpu_pct:.0f}% >= {SATURATED_CPU_PCT:.0f}% of one core")
    if teacher_fps and mean_fps < SATURATED_RATE * teacher_fps:
        reasons.append(f"students get {mean_fps:.1f} of {teacher_fps:.1f} video frames/s")
    if teacher_aps and mean_aps < SATURATED_RATE * teacher_aps:
        reasons.append(f"students get {mean_aps:.1f} of {teacher_aps:.1f} audio packets/s")
    student_errors = sum(s["errors"] for s in b.students)
    return {
        "design": design,
        "n": n,
        "window_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(cpu_pct, 1),
        "forwarded": forwarded,
        "forwarded_pps": round(_rate(forwarded, wall), 1),
        "us_per_packet": round(us_per_packet, 2) if us_per_packet is not None else None,
        "user_us_per_packet": round(user_us, 2) if user_us is not None else None,
        "sys_us_per_packet": round(sys_us, 2) if sys_us is not None else None,
        "server_user_s": round(b.server_user - a.server_user, 3),
        "server_sys_s": round(b.server_sys - a.server_sys, 3),
        "students_received": received,
        # SRTP sizes as received, by kind: what the floor sends
        "video_share": round(video_rx / received, 4) if received else None,
        "avg_video_bytes": round(video_rx_bytes / video_rx, 1) if video_rx else None,
        "avg_audio_bytes": round(audio_rx_bytes / audio_rx, 1) if audio_rx else None,
        "avg_bytes": round(rx_bytes / received, 1) if received else None,
        "loss_pct": round(100.0 * (1 - received / forwarded), 3) if forwarded else None,
        "loss_exact": a.exact and b.exact,
        "snapshot_tries": [a.tries, b.tries],
        "seq_loss_pct": round(100.0 * (1 - received / expected), 3) if expected else None,
        "send_errors": b.server.get("send_errors", 0) - a.server.get("send_errors", 0),
        "socket_drops": (
            b.server_drops
            + b.student_drops
            + b.teacher_drops
            - a.server_drops
            - a.student_drops
            - a.teacher_drops
        ),
        "server_socket_drops": b.server_drops - a.server_drops,
        "student_socket_drops": b.student_drops - a.student_drops,
        "teacher_socket_drops": b.teacher_drops - a.teacher_drops,
        "udp_rcvbuf_errors": b.snmp.get("RcvbufErrors", 0) - a.snmp.get("RcvbufErrors", 0),
        "udp_in_errors": b.snmp.get("InErrors", 0) - a.snmp.get("InErrors", 0),
        "server_in_pps": round(_rate(server_in, wall), 1),
        "upstream_loss_pct": (
            round(100.0 * (1 - server_in / teacher_sent), 3)
            if teacher_sent and design != "relay"
            else None
        ),
        "teacher_pps": round(_rate(teacher_sent, wall), 1),
        "teacher_video_fps": round(teacher_fps, 2),
        "teacher_audio_pps": round(teacher_aps, 2),
        "student_pps": round(pps_per_student, 2),
        "student_kbps": round(_rate(rx_bytes, wall) * 8 / 1000 / n, 1),
        "student_video_fps": round(mean_fps, 2),
        "student_video_fps_min": round(min(video_fps), 2) if video_fps else None,
        "student_audio_pps": round(mean_aps, 2),
        "students_per_core": (
            round(1e6 / (us_per_packet * pps_per_student), 1)
            if us_per_packet and pps_per_student
            else None
        ),
        "teacher_cpu_pct": round(100.0 * _rate(b.teacher_cpu - a.teacher_cpu, wall), 1),
        "students_cpu_pct": round(100.0 * _rate(sum(b.student_cpu) - sum(a.student_cpu), wall), 1),
        "students_cpu_pct_max_process": round(
            max(
                (
                    100.0 * _rate(y - x, wall)
                    for x, y in zip(a.student_cpu, b.student_cpu, strict=True)
                ),
                default=0.0,
            ),
            1,
        ),
        "saturated": bool(reasons),
        "saturation": "; ".join(reasons),
        "student_errors": student_errors,
        "teacher_state": b.teacher.get("state"),
        "server_loop_lag": b.server.get("loop_lag"),
        "server_loop_lags_over_500ms_in_window": (
            b.server.get("loop_lag", {}).get("over_500ms", 0)
            - a.server.get("loop_lag", {}).get("over_500ms", 0)
        ),
        "server_counters": b.server.get("counters", {}),
        "server_tracks": b.server.get("tracks", []),
    }


# --- report ------------------------------------------------------------------------

COLUMNS = [
    ("N", "n", "{:d}"),
    ("pubs", "publishers", "{:d}"),
    ("design", "design", "{}"),
    ("µs/pkt", "us_per_packet", "{:.1f}"),
    ("user µs/pkt", "user_us_per_packet", "{:.1f}"),
    ("sys µs/pkt", "sys_us_per_packet", "{:.1f}"),
    ("server CPU %", "server_cpu_pct", "{:.1f}"),
    ("pkts/s fwd", "forwarded_pps", "{:.0f}"),
    ("loss %", "loss_pct", "{:.2f}"),
    ("rcvbuf drops", "socket_drops", "{:d}"),
    ("sys RcvbufErr", "udp_rcvbuf_errors", "{:d}"),
    ("KiB RSS/student", "kib_per_student", "{:.1f}"),
    ("pkts/s/student", "student_pps", "{:.1f}"),
    ("students CPU %", "students_cpu_pct", "{:.1f}"),
    ("students/core", "students_per_core", "{:.0f}"),
    ("delay p50 ms", "delay_p50_ms", "{:.2f}"),
    ("delay p99 ms", "delay_p99_ms", "{:.2f}"),
    ("1st frame p50 ms", "first_frame_p50_ms", "{:.0f}"),
    ("1st frame p99 ms", "first_frame_p99_ms", "{:.0f}"),
]


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    text = fmt.format(value)
    if key == "design" and row.get("saturated"):
        text += "*"
    inexact = not row.get("loss_exact", True)
    if key == "loss_pct" and inexact and row.get("seq_loss_pct") is not None:
        text = fmt.format(row["seq_loss_pct"]) + "s"
    return text


def floor_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SFU over floor, µs per packet, at every N that has both: total, user and system."""
    by_key = {(r["design"], r["n"]): r for r in rows}
    ratios = []
    for (design, n), fl in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        sfu = by_key.get(("sfu", n))
        if design != "floor" or not sfu or not fl["us_per_packet"] or not sfu["us_per_packet"]:
            continue
        entry: dict[str, Any] = {"n": n}
        for part, key in (
            ("", "us_per_packet"),
            ("user_", "user_us_per_packet"),
            ("sys_", "sys_us_per_packet"),
        ):
            entry[f"sfu_{part}us"] = sfu.get(key)
            entry[f"floor_{part}us"] = fl.get(key)
            entry[f"{part}ratio"] = (
                round(sfu[key] / fl[key], 2) if sfu.get(key) and fl.get(key) else None
            )
        ratios.append(entry)
    return ratios


def _times(a: float | None, b: float | None, ratio: float | None) -> str:
    if a is None or b is None or ratio is None:
        return "-"
    return f"{a:.1f} / {b:.1f} = {ratio:.1f}x"


def report(
    rows: list[dict[str, Any]], failures: list[dict[str, Any]], relay_saturated_at: int | None
) -> tuple[str, list[dict[str, Any]]]:
    """The table, the relay/SFU ratios and the notes, as printed."""
    cells = [[title for title, _, _ in COLUMNS]]
    cells += [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ratios = []
    by_key = {(r["design"], r["n"]): r for r in rows}
    for (design, n), relay in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        sfu = by_key.get(("sfu", n))
        if design == "relay" and sfu and relay["us_per_packet"] and sfu["us_per_packet"]:
            ratios.append(
                {
                    "n": n,
                    "relay_us": relay["us_per_packet"],
                    "sfu_us": sfu["us_per_packet"],
                    "ratio": round(relay["us_per_packet"] / sfu["us_per_packet"], 1),
                }
            )
    lines.append("")
    for r in ratios:
        lines.append(
            f"N={r['n']}: relay/SFU µs per packet = {r['relay_us']:.1f} / "
            f"{r['sfu_us']:.1f} = {r['ratio']:.1f}x"
        )
    for r in floor_ratios(rows):
        lines.append(
            f"N={r['n']}: SFU/floor µs per packet = "
            f"{_times(r['sfu_us'], r['floor_us'], r['ratio'])}; "
            f"user only {_times(r['sfu_user_us'], r['floor_user_us'], r['user_ratio'])}"
        )
    for r in rows:
        if r.get("saturated"):
            lines.append(f"* {r['design']} saturated at N={r['n']}: {r['saturation']}")
    if relay_saturated_at is not None:
        lines.append(f"relay: saturated at N={relay_saturated_at}; larger N not run")
    for r in rows:
        if r.get("send_errors"):
            lines.append(f"! {r['design']} N={r['n']}: {r['send_errors']} server send errors")
        if r.get("student_errors"):
            lines.append(f"! {r['design']} N={r['n']}: {r['student_errors']} student errors")
    for f in failures:
        lines.append(f"! {f['design']} N={f['n']} failed: {f['error'].splitlines()[0]}")
    lines.append(
        "students/core = 10^6 / (µs per packet x packets/s per student); "
        "loss = 1 - packets students counted / packets the server sent"
    )
    lines.append(
        "user/sys µs/pkt: the server's utime/stime (/proc/PID/stat) per packet sent; on "
        "loopback sys includes the kernel delivering each datagram to the receiving socket"
    )
    if any(r["design"] == "floor" for r in rows):
        lines.append(
            "floor: bare uvloop sender, per packet only copy + pack_into(seq, ts, ssrc) + "
            "pylibsrtp protect (AEAD_AES_128_GCM) + sendto, one socket and SRTP session per "
            "destination, at the SFU's rate and sizes; server CPU % = the sender's, "
            "students CPU % = its receiver's"
        )
    if any(not r.get("loss_exact", True) for r in rows):
        lines.append(
            "loss % with s: from the students' RTP sequence numbers (the server was never "
            "idle while the counters were read, so the counts were not comparable)"
        )
    lines.append(
        "rcvbuf drops: /proc/net/udp drops on this run's own sockets (server, teacher, "
        "students); sys RcvbufErr: /proc/net/snmp, machine-wide (other processes too)"
    )
    return "\n".join(lines), ratios


# --- side by side with Janus ---------------------------------------------------------


def janus_unavailable(install: bool) -> str | None:
    """Why Janus cannot run here (None when it can): namespaces first, then the package,
    which is installed with apt-get when allowed and possible (root, Debian's `janus`)."""
    reason = netns.available()
    if reason:
        return reason
    missing = janus_server.missing()
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Janus: apt-get install janus ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "janus"]):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
        missing = janus_server.missing()
    return missing


async def side_by_side(
    opts: Options, rows: list[dict[str, Any]], failures: list[dict[str, Any]], began: float
) -> None:
    """Sabaq and Janus in alternating stages at every N, both inside a network namespace
    with the same teacher and students; then the seminar, the same way."""
    stages = [(design, n, 1) for n in opts.janus_n for design in ("sfu-ns", "janus")]
    if opts.seminar_receivers and opts.seminar_publishers:
        stages += [
            (design, opts.seminar_receivers, opts.seminar_publishers)
            for design in ("sfu-ns", "janus")
        ]
    for design, n, pubs in stages:
        what = f"N={n}" if pubs == 1 else f"seminar {pubs}x{n}"
        print(f"[{time.monotonic() - began:6.1f}s] {design} {what} ...", flush=True)
        try:
            row = await run_stage(design, n, opts, publishers=pubs)
        except (
            StageError,
            TimeoutError,
            aiohttp.ClientError,
            OSError,
            KeyError,
            netns.NamespaceError,
        ) as exc:
            error = f"{type(exc).__name__}: {exc}"
            print(f"    failed: {error}", flush=True)
            failures.append({"design": design, "n": n, "publishers": pubs, "error": error})
            continue
        rows.append(row)
        print(
            f"    {row['us_per_packet']} µs/pkt (user {row['user_us_per_packet']}, sys "
            f"{row['sys_us_per_packet']}), server CPU {row['server_cpu_pct']}%, "
            f"{row['forwarded_pps']} pkts/s, loss {row['loss_pct']}%, delay p50/p99 "
            f"{row.get('delay_p50_ms')}/{row.get('delay_p99_ms')} ms",
            flush=True,
        )


def janus_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sabaq / Janus at every (N, publishers) where both were measured in the namespace."""
    by_key = {(r["design"], r["n"], r.get("publishers", 1)): r for r in rows}
    out = []
    for (design, n, pubs), ours in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        theirs = by_key.get(("janus", n, pubs))
        if design != "sfu-ns" or theirs is None:
            continue

        def ratio(key: str, a: dict[str, Any] = ours, b: dict[str, Any] = theirs) -> float | None:
            x, y = a.get(key), b.get(key)
            return round(x / y, 2) if x and y else None

        out.append(
            {
                "n": n,
                "publishers": pubs,
                "sabaq_us_per_packet": ours.get("us_per_packet"),
                "janus_us_per_packet": theirs.get("us_per_packet"),
                "cpu_per_packet": ratio("us_per_packet"),
                "user_cpu_per_packet": ratio("user_us_per_packet"),
                "sabaq_delay_p50_ms": ours.get("delay_p50_ms"),
                "janus_delay_p50_ms": theirs.get("delay_p50_ms"),
                "delay_p50": ratio("delay_p50_ms"),
                "sabaq_delay_p99_ms": ours.get("delay_p99_ms"),
                "janus_delay_p99_ms": theirs.get("delay_p99_ms"),
                "delay_p99": ratio("delay_p99_ms"),
                "first_frame_p50": ratio("first_frame_p50_ms"),
                "rss_per_student": ratio("kib_per_student"),
            }
        )
    return out


def format_janus_ratios(ratios: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value}"

    lines = [
        "Sabaq / Janus, same machine, same load, alternating stages in one namespace:",
        "| N | pubs | µs/pkt Sabaq | µs/pkt Janus | CPU/pkt ratio | user CPU ratio | "
        "delay p50 ms S / J | delay p99 ms S / J | p99 ratio | 1st frame ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ratios:
        lines.append(
            f"| {r['n']} | {r['publishers']} | {cell(r['sabaq_us_per_packet'])} | "
            f"{cell(r['janus_us_per_packet'])} | {cell(r['cpu_per_packet'])} | "
            f"{cell(r['user_cpu_per_packet'])} | {cell(r['sabaq_delay_p50_ms'])} / "
            f"{cell(r['janus_delay_p50_ms'])} | {cell(r['sabaq_delay_p99_ms'])} / "
            f"{cell(r['janus_delay_p99_ms'])} | {cell(r['delay_p99'])} | "
            f"{cell(r['first_frame_p50'])} |"
        )
    return "\n".join(lines)


def plan(opts: Options) -> list[tuple[str, int]]:
    """(design, N) in order: at each N the SFU, its floor, then the relay (same conditions,
    back to back)."""
    stages = []
    for n in sorted(set(opts.sfu_n) | set(opts.relay_n)):
        if n in opts.sfu_n or n in opts.relay_n:
            stages.append(("sfu", n))
            if opts.floor:
                stages.append(("floor", n))
        if n in opts.relay_n:
            stages.append(("relay", n))
    return stages


async def run(opts: Options) -> int:
    began = time.monotonic()
    print(
        f"clips: {[str(p) for p in clips(opts.video_bitrate, opts.fps, opts.clip_seconds)]}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    relay_saturated_at: int | None = None
    sfu_attempted: dict[int, dict[str, Any] | None] = {}
    for design, n in plan(opts):
        if design == "relay" and relay_saturated_at is not None:
            continue
        if design == "floor":
            if n not in sfu_attempted:
                continue  # its SFU stage did not run
            print(f"[{time.monotonic() - began:6.1f}s] floor N={n} ...", flush=True)
            try:
                row = await run_floor_stage(n, sfu_attempted[n], opts)
            except (StageError, TimeoutError, OSError, KeyError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                print(f"    failed: {error}", flush=True)
                failures.append({"design": design, "n": n, "error": error})
                continue
            rows.append(row)
            print(
                f"    {row['us_per_packet']} µs/pkt (user {row['user_us_per_packet']}, sys "
                f"{row['sys_us_per_packet']}), sender CPU {row['server_cpu_pct']}%, "
                f"{row['forwarded_pps']} of {row['target_pps']} pkts/s, loss {row['loss_pct']}%, "
                f"receiver CPU {row['students_cpu_pct']}%, stage {row['stage_s']} s",
                flush=True,
            )
            continue
        if (
            design == "sfu"
            and n not in opts.sfu_n
            and (relay_saturated_at is not None or n not in opts.relay_n)
        ):
            continue  # an SFU comparison point for a relay stage that will not run
        print(f"[{time.monotonic() - began:6.1f}s] {design} N={n} ...", flush=True)
        if design == "sfu":
            sfu_attempted[n] = None
        try:
            row = await run_stage(design, n, opts)
        except (StageError, TimeoutError, aiohttp.ClientError, OSError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            print(f"    failed: {error}", flush=True)
            failures.append({"design": design, "n": n, "error": error})
            if design == "relay":
                relay_saturated_at = n  # a relay that cannot even be measured is saturated
            continue
        rows.append(row)
        if design == "sfu":
            sfu_attempted[n] = row
        print(
            f"    {row['us_per_packet']} µs/pkt (user {row['user_us_per_packet']}, sys "
            f"{row['sys_us_per_packet']}; {row.get('marginal_us_per_packet')} over the "
            f"{row['base_cpu_pct']}% CPU without students), server CPU {row['server_cpu_pct']}%, "
            f"{row['forwarded_pps']} pkts/s, loss {row['loss_pct']}%, "
            f"students CPU {row['students_cpu_pct']}%, joined in {row['join_s']} s, "
            f"stage {row['stage_s']} s",
            flush=True,
        )
        if design == "relay" and row["saturated"]:
            relay_saturated_at = n
    janus_skipped = None
    if opts.janus_n:
        janus_skipped = janus_unavailable(opts.install_janus)
        if janus_skipped:
            print(f"Janus side by side skipped: {janus_skipped}", flush=True)
        else:
            await side_by_side(opts, rows, failures, began)
    if opts.seminar_receivers and opts.seminar_publishers:
        pubs, receivers = opts.seminar_publishers, opts.seminar_receivers
        print(
            f"[{time.monotonic() - began:6.1f}s] sfu seminar: {pubs} publishers, "
            f"{receivers} receiving students ...",
            flush=True,
        )
        try:
            row = await run_stage("sfu", receivers, opts, publishers=pubs)
        except (StageError, TimeoutError, aiohttp.ClientError, OSError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            print(f"    failed: {error}", flush=True)
            failures.append({"design": "sfu", "n": receivers, "publishers": pubs, "error": error})
        else:
            rows.append(row)
            print(
                f"    {row['us_per_packet']} µs/pkt, server CPU {row['server_cpu_pct']}%, "
                f"{row['forwarded_pps']} pkts/s, loss {row['loss_pct']}%, delay p99 "
                f"{row.get('delay_p99_ms')} ms",
                flush=True,
            )
    table, ratios = report(rows, failures, relay_saturated_at)
    print()
    print(table)
    janus_table = janus_ratios(rows)
    if janus_table:
        print()
        print(format_janus_ratios(janus_table))
    document = {
        "benchmark": "sfu",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - began, 1),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "clk_tck": common.CLK_TCK,
        },
        "options": {
            k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(opts).items()
        },
        "results": rows,
        "failures": failures,
        "ratios": ratios,
        "floor_ratios": floor_ratios(rows),
        "janus_ratios": janus_table,
        "janus_skipped": janus_skipped,
        "relay_saturated_at": relay_saturated_at,
        "table": table,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten {opts.output} in {time.monotonic() - began:.0f} s")
    return 1 if failures and not rows else 0


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_sfu", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument(
        "--n", type=_int_list, help="students per SFU stage (default 25,50,100,200; --quick: 10)"
    )
    parser.add_argument(
        "--relay-n",
        type=_int_list,
        help="students per MediaRelay stage, "
        "stopping at saturation (default 5,10 then --n; --quick: 5)",
    )
    parser.add_argument("--no-relay", action="store_true", help="skip the MediaRelay baseline")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the bare copy + protect + sendto floor after each SFU stage",
    )
    parser.add_argument("--window", type=float, help="measured seconds (default 10; --quick: 3)")
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds between all students receiving and the window (default 2; --quick: 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=10, relay at N=5")
    parser.add_argument("--video-bitrate", type=int, default=1_000_000)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument(
        "--batch", type=int, default=10, help="students negotiating at once, per student process"
    )
    parser.add_argument(
        "--seminar",
        type=_int_list,
        metavar="PUBLISHERS,RECEIVERS",
        help="the seminar stage: publishers and students receiving all of them "
        "(default 8,12: 20 participants; --quick: 2,3)",
    )
    parser.add_argument("--no-seminar", action="store_true", help="skip the seminar stage")
    parser.add_argument(
        "--janus-n",
        type=_int_list,
        help="students per side-by-side stage with Janus (default: --n; --quick: 10)",
    )
    parser.add_argument("--no-janus", action="store_true", help="skip the Janus side by side")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install janus when missing"
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS / "sfu.json")
    args = parser.parse_args(argv)
    sfu_n = args.n or ([10] if args.quick else [25, 50, 100, 200, 400])
    seminar = args.seminar or ([2, 3] if args.quick else [8, 12])
    if len(seminar) != 2:
        parser.error("--seminar takes two numbers: PUBLISHERS,RECEIVERS")
    if args.no_seminar:
        seminar = [0, 0]
    if args.no_relay:
        relay_n: list[int] = []
    elif args.relay_n:
        relay_n = args.relay_n
    else:
        relay_n = [5] if args.quick else sorted({5, 10, *(n for n in sfu_n if n <= 200)})
    return Options(
        sfu_n=sorted(set(sfu_n)),
        relay_n=sorted(set(relay_n)),
        window=args.window or (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        settle=1.0,
        base_window=1.0 if args.quick else 2.0,
        video_bitrate=args.video_bitrate,
        fps=args.fps,
        clip_seconds=args.clip_seconds,
        batch=args.batch,
        output=args.output,
        floor=not args.no_floor,
        seminar_publishers=seminar[0],
        seminar_receivers=seminar[1],
        janus_n=() if args.no_janus else tuple(sorted(set(args.janus_n or sfu_n))),
        install_janus=not args.no_install,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        return await run(opts)

    try:
        code = uvloop.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    finally:
        _kill_leftovers()
    sys.exit(code)


if __name__ == "__main__":
    main()
