"""The benchmark's students: many aiortc subscribers in one process that count, never decode.

    python -m loadtests.students --server http://127.0.0.1:PORT --count M [--prefix s0-]

Each student joins through the control API, answers every subscriber offer (long-poll)
with an ordinary aiortc peer connection, and from then on never lets aiortc see a media
packet: each ICE socket's ``datagram_received`` is wrapped so that SRTP datagrams (first
byte 128..191, second byte not 192..223, which would be SRTCP) are counted (packets,
bytes, video packets, bytes and frames by the clear-text payload type and marker bit,
audio packets) and dropped. STUN, DTLS and SRTCP go to aioice/aiortc as usual, so ICE consent
and DTLS keep working. The sockets get 4 MiB receive buffers.

Two figures need a look inside the encrypted payload, so a few packets are decrypted with
the connection's own SRTP session (never handed to aiortc):

* time to first frame: from just before the student's join request to the last packet of
  the first complete VP8 keyframe (every video packet is decrypted until one has started);
* end-to-end delay: the last packet of every video frame (the marker) is decrypted and
  its send time (`media.read_stamp`, put there by the teacher) taken from the clock here:
  teacher, server and students share the machine's CLOCK_MONOTONIC. Retransmissions (RTX
  payload types) are neither counted as frames nor timed.

``latency`` on stdin returns (and forgets) the delays and first-frame times collected
since the previous ``latency``.

Students join ``--batch`` at a time (each holds its slot until connected). ``stats`` on
stdin prints the counters as one JSON line; ``quit``, end of stdin, SIGTERM or the
deadline end the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pylibsrtp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests import common
from loadtests.media import read_stamp
from sfu.codecs import is_keyframe
from sfu.rtp import RtpError, parse_rtp

POLL_S = 20.0
MAX_SAMPLES = 200_000  # delays kept per process between two `latency` commands


class Student:
    """One subscriber and its counters."""

    __slots__ = (
        "audio_packets",
        "bytes",
        "connected",
        "error",
        "first_frame_ns",
        "join_ns",
        "joined",
        "key_started",
        "name",
        "packets",
        "pc",
        "rtx_pts",
        "srtp",
        "streams",
        "unprotect_errors",
        "video_bytes",
        "video_frames",
        "video_packets",
        "video_pts",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.pc: RTCPeerConnection = common.peer_connection()
        self.packets = self.bytes = 0
        self.video_packets = self.video_frames = self.audio_packets = 0
        self.video_bytes = 0
        self.video_pts: frozenset[int] = frozenset()
        self.rtx_pts: frozenset[int] = frozenset()
        self.srtp: Any = None  # the DTLS transport, whose SRTP session exists once connected
        self.join_ns = self.first_frame_ns = 0
        self.key_started = False
        self.unprotect_errors = 0
        # SSRC -> [highest extended sequence number, first one]: loss as RFC 3550 counts it
        self.streams: dict[bytes, list[int]] = {}
        self.joined = self.connected = False
        self.error = ""


def video_payload_types(sdp: str) -> frozenset[int]:
    """Payload types of the offer's video m-lines (RTX included)."""
    types: set[int] = set()
    for line in sdp.splitlines():
        if line.startswith("m=video "):
            types.update(int(pt) for pt in line.split()[3:] if pt.isdigit())
    return frozenset(types)


def rtx_payload_types(sdp: str) -> frozenset[int]:
    """Payload types the offer maps to ``rtx`` (retransmissions, not new frames)."""
    types: set[int] = set()
    for line in sdp.splitlines():
        if line.startswith("a=rtpmap:") and " rtx/" in line.lower():
            head = line[len("a=rtpmap:") :].split(" ", 1)[0]
            if head.isdigit():
                types.add(int(head))
    return frozenset(types)


class Samples:
    """Delays (µs) and first-frame times (ms) of one process, until the parent takes them."""

    def __init__(self) -> None:
        self.delays_us: list[int] = []
        self.first_frames_ms: list[float] = []
        self.dropped = 0

    def delay(self, sent_ns: int) -> None:
        if len(self.delays_us) < MAX_SAMPLES:
            self.delays_us.append((time.monotonic_ns() - sent_ns) // 1000)
        else:
            self.dropped += 1

    def take(self) -> dict[str, Any]:
        out = {
            "delays_us": self.delays_us,
            "first_frames_ms": self.first_frames_ms,
            "dropped": self.dropped,
        }
        self.delays_us, self.first_frames_ms, self.dropped = [], [], 0
        return out


SAMPLES = Samples()


def inspect_video(s: Student, data: bytes, marker: bool) -> None:
    """Decrypt what the two figures need: every video packet until the first keyframe has
    started, then only the last packet of each frame."""
    if s.key_started and not marker:
        return
    session = getattr(s.srtp, "_rx_srtp", None)
    if session is None:
        return
    try:
        plain = session.unprotect(data)
        header = parse_rtp(plain)
    except (pylibsrtp.Error, RtpError):
        s.unprotect_errors += 1
        return
    if not s.key_started:
        payload = plain[header.payload_start : header.payload_end]
        s.key_started = is_keyframe("video/vp8", payload)
    if marker:
        if s.key_started and not s.first_frame_ns:
            s.first_frame_ns = time.monotonic_ns()
            SAMPLES.first_frames_ms.append((s.first_frame_ns - s.join_ns) / 1e6)
        sent = read_stamp(plain[: header.payload_end])
        if sent is not None:
            SAMPLES.delay(sent)


def tap(student: Student) -> int:
    """Count-and-drop SRTP on every ICE socket of the student's connection (once each)."""
    tapped = 0
    for protocol in common.ice_protocols(student.pc):
        if getattr(protocol, "_bench_tapped", False):
            continue
        protocol._bench_tapped = True
        original = protocol.datagram_received

        def datagram_received(
            data: bytes,
            addr: tuple[Any, ...],
            original: Any = original,
            s: Student = student,
            streams: dict[bytes, list[int]] = student.streams,
        ) -> None:
            if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                s.packets += 1
                s.bytes += len(data)
                b1 = data[1]
                pt = b1 & 0x7F
                if pt in s.video_pts:
                    s.video_packets += 1
                    s.video_bytes += len(data)
                    if pt not in s.rtx_pts:
                        if b1 & 0x80:  # marker: last packet of a frame
                            s.video_frames += 1
                        inspect_video(s, data, bool(b1 & 0x80))
                else:
                    s.audio_packets += 1
                seq = (data[2] << 8) | data[3]
                stream = streams.get(data[8:12])  # the SSRC, in clear text in SRTP
                if stream is None:
                    streams[data[8:12]] = [seq, seq]
                else:
                    step = (seq - stream[0]) & 0xFFFF
                    if step < 0x8000:
                        stream[0] += step
                return
            original(data, addr)

        protocol.datagram_received = datagram_received
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            common.enlarge_socket_buffers(sock)
        tapped += 1
    return tapped


def counters(students: list[Student]) -> dict[str, Any]:
    """What a student process reports on ``stats``."""
    errors = [s.error for s in students if s.error]
    return {
        "students": len(students),
        "joined": sum(s.joined for s in students),
        "connected": sum(s.connected for s in students),
        "receiving_video": sum(s.video_frames > 0 for s in students),
        "packets": sum(s.packets for s in students),
        "bytes": sum(s.bytes for s in students),
        "video_packets": sum(s.video_packets for s in students),
        "video_bytes": sum(s.video_bytes for s in students),
        "video_frames": sum(s.video_frames for s in students),
        "audio_packets": sum(s.audio_packets for s in students),
        "first_frames": sum(bool(s.first_frame_ns) for s in students),
        "unprotect_errors": sum(s.unprotect_errors for s in students),
        # packets the senders numbered, first to highest received, on every stream
        "expected": sum(h - b + 1 for s in students for h, b in s.streams.values()),
        "per_student": [
            [s.packets, s.video_frames, s.audio_packets, len(s.streams)] for s in students
        ],
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "cpu_s": common.cpu_seconds(os.getpid()),
    }


async def serve_until_quit(
    stats: Callable[[], dict[str, Any]],
    students: list[Student],
    tasks: list[asyncio.Task[None]],
) -> None:
    """Answer ``stats`` and ``latency`` until the parent quits; then stop the students."""

    async def handle(command: str) -> dict[str, Any] | None:
        if command == "stats":
            return stats()
        if command == "latency":
            return SAMPLES.take()
        return {"error": f"unknown command {command!r}"}

    try:
        await common.serve_commands(handle)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await asyncio.gather(*(s.pc.close() for s in students), return_exceptions=True)


class Classroom:
    """The students of this process."""

    def __init__(self, args: argparse.Namespace) -> None:
        common.loopback_policy()  # before any peer connection exists
        self.url = args.server.rstrip("/")
        self.students = [Student(f"{args.prefix}{i}") for i in range(args.count)]
        self.batch = asyncio.Semaphore(max(1, args.batch))
        self.http: aiohttp.ClientSession | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        assert self.http is not None
        async with self.http.post(f"{self.url}{path}", json=body) as r:
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status} {await r.text()}")

    async def _negotiate(self, s: Student, after: int) -> int:
        """Answer the next subscriber offer newer than `after`; returns its version."""
        assert self.http is not None
        params = {"participant": s.name, "after": str(after), "timeout": str(POLL_S)}
        async with self.http.get(f"{self.url}/offer", params=params) as r:
            if r.status == 204:
                return after
            if r.status != 200:
                raise RuntimeError(f"/offer: {r.status} {await r.text()}")
            offer = await r.json()
        s.video_pts = video_payload_types(offer["sdp"])
        s.rtx_pts = rtx_payload_types(offer["sdp"])
        await s.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await s.pc.setLocalDescription(await s.pc.createAnswer())
        if s.srtp is None:
            s.srtp = next((t.receiver.transport for t in s.pc.getTransceivers()), None)
        tap(s)  # gathered by now; nothing but STUN can have arrived yet
        await self._post("/answer", {"participant": s.name, "sdp": s.pc.localDescription.sdp})
        return int(offer["version"])

    async def _run(self, s: Student) -> None:
        @s.pc.on("connectionstatechange")  # type: ignore[misc]
        def on_state() -> None:
            s.connected = s.pc.connectionState == "connected"

        try:
            async with self.batch:
                s.join_ns = time.monotonic_ns()
                await self._post("/join", {"participant": s.name})
                s.joined = True
                version = 0
                while version == 0:
                    version = await self._negotiate(s, version)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while not s.connected:
                            await asyncio.sleep(0.02)
            while True:  # renegotiations
                version = await self._negotiate(s, version)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.error = f"{type(exc).__name__}: {exc}"
            print(f"{s.name}: {s.error}", file=sys.stderr)

    def stats(self) -> dict[str, Any]:
        return counters(self.students)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=POLL_S + 30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            self.http = http
            tasks = [asyncio.get_running_loop().create_task(self._run(s)) for s in self.students]
            common.send({"started": len(self.students)})

            await serve_until_quit(self.stats, self.students, tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", required=True, help="control API base URL (127.0.0.1)")
    parser.add_argument("--count", type=int, required=True, help="students in this process")
    parser.add_argument("--prefix", default="s-", help="participant id prefix")
    parser.add_argument("--batch", type=int, default=10, help="students negotiating at once")
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    common.run_child(lambda: Classroom(args).run(), args.deadline)


if __name__ == "__main__":
    main()
