"""Join-storm students: the real classroom protocol (WebSocket + aiortc), counting, never decoding.

    python -m loadtests.ws_students --server http://127.0.0.1:PORT --lesson demo \\
        --secret-file DATA/dev-jwt-secret --count M --index P --processes K --total N \\
        --start-at MONOTONIC --window SECONDS

Student j of this process is student ``g = j * K + P`` of the whole storm (so K processes
interleave) and opens its WebSocket at ``start-at + window * g / N`` (CLOCK_MONOTONIC, which
every process on the machine shares). Each sends ``join`` with a fresh student token signed
with the demo secret, answers every ``offer`` on an aiortc subscribing connection whose SRTP
is counted and dropped at the socket (`loadtests.students.tap`), and records:

* WebSocket open → ``welcome``;
* WebSocket open → the last packet of the first whole VP8 keyframe (`students.inspect_video`),
  the time to first frame of docs/benchmarks.md;
* end-to-end delay of every later video frame (the teacher's `media.STAMP`).

``stats`` and ``latency`` on stdin, as in `loadtests.students`; ``quit``, end of stdin,
SIGTERM or the deadline end the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import sys
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from loadtests import common
from loadtests.students import (
    Student,
    counters,
    rtx_payload_types,
    serve_until_quit,
    tap,
    video_payload_types,
)
from signaling.identity import mint

ISSUER, AUDIENCE = "sabaq-dev", "sabaq"  # what `sabaq serve --demo` accepts


class WsStudent(Student):
    """A `Student` that also remembers its welcome time and its socket."""

    __slots__ = ("welcome_ms", "ws")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.welcome_ms: float | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None


class Storm:
    """This process's share of the join storm."""

    def __init__(self, args: argparse.Namespace) -> None:
        common.loopback_policy()  # before any peer connection exists
        self.args = args
        self.url = args.server.rstrip("/").replace("http", "ws", 1) + f"/ws/lessons/{args.lesson}"
        self.secret = pathlib.Path(args.secret_file).read_text(encoding="utf-8").strip()
        self.students = [
            WsStudent(f"{args.prefix}{j * args.processes + args.index}") for j in range(args.count)
        ]

    def token(self, sub: str) -> str:
        return mint(
            secret=self.secret,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=sub,
            name=sub,
            role="student",
            lesson=self.args.lesson,
        )

    async def _answer(self, s: WsStudent, offer: dict[str, Any]) -> None:
        assert s.ws is not None
        s.video_pts = video_payload_types(offer["sdp"])
        s.rtx_pts = rtx_payload_types(offer["sdp"])
        await s.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await s.pc.setLocalDescription(await s.pc.createAnswer())
        if s.srtp is None:
            s.srtp = next((t.receiver.transport for t in s.pc.getTransceivers()), None)
        tap(s)
        await s.ws.send_str(
            json.dumps({"type": "subscriber_answer", "sdp": s.pc.localDescription.sdp})
        )

    async def _run(self, http: aiohttp.ClientSession, j: int, s: WsStudent) -> None:
        args = self.args
        g = j * args.processes + args.index
        at = args.start_at + args.window * g / max(1, args.total)
        await asyncio.sleep(max(0.0, at - time.monotonic()))

        @s.pc.on("connectionstatechange")  # type: ignore[misc]
        def on_state() -> None:
            s.connected = s.pc.connectionState == "connected"

        try:
            s.ws = await http.ws_connect(self.url, protocols=("sabaq.v1",), autoping=True)
            s.join_ns = time.monotonic_ns()
            await s.ws.send_str(
                json.dumps({"type": "join", "token": self.token(s.name), "client": "bench"})
            )
            answering = asyncio.Lock()
            async for frame in s.ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(frame.data)
                kind = message.get("type")
                if kind == "welcome":
                    s.joined = True
                    s.welcome_ms = (time.monotonic_ns() - s.join_ns) / 1e6
                elif kind == "offer":
                    async with answering:
                        await self._answer(s, message)
                elif kind == "error":
                    s.error = f"{message.get('code')}: {message.get('message')}"
            if s.ws.close_code not in (None, 1000):
                s.error = s.error or f"closed {s.ws.close_code}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.error = f"{type(exc).__name__}: {exc}"
            print(f"{s.name}: {s.error}", file=sys.stderr)

    def stats(self) -> dict[str, Any]:
        welcome = [s.welcome_ms for s in self.students if s.welcome_ms is not None]
        return {**counters(list(self.students)), "welcome_ms": welcome}

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._run(http, j, s)) for j, s in enumerate(self.students)]
            common.send({"started": len(self.students)})

            try:
                await serve_until_quit(self.stats, list(self.students), tasks)
            finally:
                for s in self.students:
                    if s.ws is not None:
                        with contextlib.suppress(Exception):
                            await s.ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", required=True, help="sabaq serve base URL (127.0.0.1)")
    parser.add_argument("--lesson", default="demo")
    parser.add_argument("--secret-file", required=True, help="the HS256 secret of the demo")
    parser.add_argument("--count", type=int, required=True, help="students in this process")
    parser.add_argument("--index", type=int, default=0, help="this process's number")
    parser.add_argument("--processes", type=int, default=1, help="processes in the storm")
    parser.add_argument("--total", type=int, required=True, help="students in the storm")
    parser.add_argument("--start-at", type=float, required=True, help="CLOCK_MONOTONIC")
    parser.add_argument("--window", type=float, default=10.0, help="seconds the joins span")
    parser.add_argument("--prefix", default="s")
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args()
    common.run_child(lambda: Storm(args).run(), args.deadline)


if __name__ == "__main__":
    main()
