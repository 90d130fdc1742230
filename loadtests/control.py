"""The benchmark's media server: Sabaq's `Sfu` under uvloop behind a tiny control API.

    python -m loadtests.control [--host 127.0.0.1] [--deadline SECONDS]

prints one JSON line ``{"port": P, "pid": PID, "host": HOST, "design": "sfu"}`` and serves,
on HOST:P only, JSON over HTTP (aiohttp). HOST is 127.0.0.1 unless the benchmark runs in a
network namespace (`loadtests.netns`), where it is the namespace's address, 10.231.0.2:

* ``POST /join``     ``{"participant": id, "publisher": bool}``; a publisher may send
  camera and microphone, everyone else only receives (auto-subscribed);
* ``POST /publish``  ``{"participant", "sdp", "sources": {mid: source}}`` -> ``{"sdp": answer}``;
* ``GET  /offer?participant=ID&after=V&timeout=S`` long-polls for a subscriber offer newer
  than version V -> ``{"version", "sdp", "tracks"}`` (204 when none came in time);
* ``POST /answer``   ``{"participant", "sdp"}``: the answer to the latest offer;
* ``POST /leave``    ``{"participant"}``;
* ``GET  /stats``    forwarded packets (sum over tracks), ``sfu.counters``, send errors, pid...

The process exits when stdin closes, on ``quit``, on SIGTERM, at its deadline, or when its
parent dies. `loadtests.relay_baseline` serves the same API in front of aiortc's MediaRelay,
`loadtests.janus_control` in front of Janus's VideoRoom.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import socket
import sys
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from aiohttp import web

from loadtests import common
from sfu import (
    ConnectionStateChanged,
    MediaEvent,
    Sfu,
    SfuConfig,
    SfuError,
    Source,
    SubscriberOffer,
)

ROOM = "bench"
LAG = common.LoopLag()
MAX_POLL_S = 30.0
DEFAULT_HOST = "127.0.0.1"


class Mailbox:
    """The latest subscriber offer of one participant, with long-poll waiters."""

    def __init__(self) -> None:
        self.version = 0
        self.sdp = ""
        self.tracks: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []

    def post(self, sdp: str, tracks: Any = ()) -> None:
        self.version += 1
        self.sdp = sdp
        self.tracks = [list(t) for t in tracks]
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_newer(self, after: int, timeout: float) -> bool:
        """Wait until an offer newer than `after` exists; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self.version <= after:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            return False
        return True


class Offers:
    """Mailboxes by participant id."""

    def __init__(self) -> None:
        self._boxes: dict[str, Mailbox] = {}

    def box(self, participant: str) -> Mailbox:
        box = self._boxes.get(participant)
        if box is None:
            box = self._boxes[participant] = Mailbox()
        return box

    def post(self, participant: str, sdp: str, tracks: Any = ()) -> None:
        self.box(participant).post(sdp, tracks)


class BackendError(RuntimeError):
    """A backend refused a request (answered 400, like the SFU's own errors)."""


class Backend(Protocol):
    """What the control API drives: Sabaq's SFU, the MediaRelay baseline or Janus.

    `stats` may be a coroutine function: a backend in another process (Janus) has to ask it,
    and a copy fetched in the background would be stale. A backend may also have
    ``hello() -> dict``, whose fields join the hello line (Janus's pid, for instance)."""

    design: str
    offers: Offers

    async def start(self) -> None: ...

    async def join(self, participant: str, publisher: bool) -> None: ...

    async def publish(self, participant: str, sdp: str, sources: dict[str, str]) -> str: ...

    async def answer(self, participant: str, sdp: str) -> None: ...

    async def leave(self, participant: str) -> None: ...

    def stats(self) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...

    async def close(self) -> None: ...


async def backend_stats(backend: Backend) -> dict[str, Any]:
    """The backend's stats, awaited when its `stats` is a coroutine function."""
    stats = backend.stats()
    if inspect.isawaitable(stats):
        return await stats
    return stats


def process_stats() -> dict[str, Any]:
    """The server's own pid, CPU seconds and RSS (the parent reads /proc too)."""
    pid = os.getpid()
    return {
        "loop_lag": LAG.as_dict(),
        "pid": pid,
        "cpu_s": common.cpu_seconds(pid),
        "rss_kib": common.rss_kib(pid),
        "time": time.time(),
    }


class SfuBackend:
    """Sabaq's SFU with one room; every non-publisher is auto-subscribed."""

    design = "sfu"

    def __init__(self) -> None:
        self.offers = Offers()
        self.sfu = Sfu(SfuConfig(ice=common.loopback_policy()), on_event=self._on_event)
        self.room = self.sfu.room(ROOM)
        self.connected: set[str] = set()

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, SubscriberOffer):
            self.offers.post(event.participant_id, event.sdp, event.tracks)
        elif isinstance(event, ConnectionStateChanged) and event.direction == "publish":
            print(f"{event.participant_id}: publisher connection {event.state}", file=sys.stderr)
        elif isinstance(event, ConnectionStateChanged) and event.direction == "subscribe":
            if event.state == "connected":
                self.connected.add(event.participant_id)
            else:
                self.connected.discard(event.participant_id)

    async def start(self) -> None:
        await self.sfu.start()

    async def join(self, participant: str, publisher: bool) -> None:
        sources = {Source.CAMERA, Source.MICROPHONE} if publisher else set()
        self.offers.box(participant)
        await self.sfu.room(ROOM).join(participant, allowed_sources=sources)

    async def publish(self, participant: str, sdp: str, sources: dict[str, str]) -> str:
        p = self.sfu.room(ROOM).participant(participant)
        return await p.publish(sdp, {mid: Source(s) for mid, s in sources.items()})

    async def answer(self, participant: str, sdp: str) -> None:
        await self.sfu.room(ROOM).participant(participant).set_subscriber_answer(sdp)

    async def leave(self, participant: str) -> None:
        await self.sfu.room(ROOM).leave(participant)

    def stats(self) -> dict[str, Any]:
        tracks = []
        for room in self.sfu.rooms.values():
            for track in room.tracks.values():
                c = track.counters
                tracks.append(
                    {
                        "kind": track.kind,
                        "received": c.received,
                        "forwarded": c.forwarded,
                        "retransmitted": c.retransmitted,
                        "duplicates": c.duplicates,
                        "keyframe_requests": c.keyframe_requests,
                        "downtracks": len(track.downtracks),
                        "upstream_lost": track.stats.lost,
                    }
                )
        send_errors = bytes_sent = 0
        participants = list(self.sfu.participants())
        for p in participants:
            for transport in (p.publisher_transport, p.subscriber_transport):
                if transport is not None:
                    send_errors += transport.send_errors
                    bytes_sent += transport.bytes_sent
        return {
            "design": self.design,
            **process_stats(),
            "participants": len(participants),
            "subscribers_connected": len(self.connected),
            "forwarded": sum(t["forwarded"] for t in tracks),
            "received": sum(t["received"] for t in tracks),
            "send_errors": send_errors,
            "bytes_sent": bytes_sent,
            "counters": self.sfu.counters.as_dict(),
            "tracks": tracks,
        }

    async def close(self) -> None:
        await self.sfu.close()


def make_app(backend: Backend) -> web.Application:
    """The JSON control API over a backend."""
    routes = web.RouteTableDef()

    async def body(request: web.Request) -> dict[str, Any]:
        data = await request.json()
        if not isinstance(data, dict) or not isinstance(data.get("participant", ""), str):
            raise web.HTTPBadRequest(text="expected a JSON object with a participant id")
        return data

    @routes.post("/join")
    async def join(request: web.Request) -> web.Response:
        data = await body(request)
        await backend.join(data["participant"], bool(data.get("publisher")))
        return web.json_response({"ok": True})

    @routes.post("/publish")
    async def publish(request: web.Request) -> web.Response:
        data = await body(request)
        answer = await backend.publish(data["participant"], data["sdp"], data["sources"])
        return web.json_response({"sdp": answer})

    @routes.get("/offer")
    async def offer(request: web.Request) -> web.Response:
        participant = request.query["participant"]
        after = int(request.query.get("after", "0"))
        timeout = min(MAX_POLL_S, float(request.query.get("timeout", "10")))
        box = backend.offers.box(participant)
        if not await box.wait_newer(after, timeout):
            return web.Response(status=204)
        return web.json_response({"version": box.version, "sdp": box.sdp, "tracks": box.tracks})

    @routes.post("/answer")
    async def answer(request: web.Request) -> web.Response:
        data = await body(request)
        await backend.answer(data["participant"], data["sdp"])
        return web.json_response({"ok": True})

    @routes.post("/leave")
    async def leave(request: web.Request) -> web.Response:
        data = await body(request)
        await backend.leave(data["participant"])
        return web.json_response({"ok": True})

    @routes.get("/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(await backend_stats(backend))

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except (SfuError, BackendError, KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    app = web.Application(middlewares=[errors], client_max_size=1 << 20)
    app.add_routes(routes)
    return app


async def serve(backend: Backend, host: str = DEFAULT_HOST) -> None:
    """Serve the control API on `host` until the parent says quit or goes away."""
    LAG.start()
    await backend.start()
    runner = web.AppRunner(make_app(backend), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    site = web.SockSite(runner, sock)
    await site.start()
    hello = getattr(backend, "hello", None)
    common.send(
        {
            "port": sock.getsockname()[1],
            "pid": os.getpid(),
            "host": host,
            "design": backend.design,
            **(hello() if hello is not None else {}),
        }
    )

    async def handle(command: str) -> dict[str, Any] | None:
        if command == "stats":
            return await backend_stats(backend)
        return {"error": f"unknown command {command!r}"}

    try:
        await common.serve_commands(handle)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await backend.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await runner.cleanup()


def main(argv: list[str] | None = None, backend_factory: Any = SfuBackend) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--deadline",
        type=float,
        default=600.0,
        help="exit after this many seconds whatever happens",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address of the control API (10.231.0.2 inside a benchmark namespace)",
    )
    args = parser.parse_args(argv)
    try:  # the control API must not listen on a real network either
        host = common.checked_address(args.host, f"--host {args.host}")
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> None:
        await serve(backend_factory(), host)

    common.run_child(run, args.deadline)


if __name__ == "__main__":
    main()
