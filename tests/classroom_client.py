"""A classroom participant in Python: the WebSocket protocol plus real aiortc peers.

It speaks docs/protocol.md exactly as the browser does: `join`, answers every
server `offer` on its subscribing connection, publishes pre-encoded clips on
its publishing connection, and records every message and every RTP packet it
receives, so tests can assert on what a student actually got.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests.media import EncodedTrack, cached_clip
from sfu import IcePolicy, Source
from tests.peers import LOOPBACK_ONLY, Captured, _tap_received, peer_connection, wait_until

__all__ = ["ClassroomClient", "Closed"]


class Closed(Exception):
    """The server closed the socket."""


@dataclass
class ClassroomClient:
    """One participant connected to a running Sabaq server."""

    base_url: str  # http://127.0.0.1:port
    lesson_id: str
    token: str | None
    protocols: tuple[str, ...] = ("sabaq.v1",)
    origin: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    received: dict[int, list[Captured]] = field(default_factory=lambda: defaultdict(list))
    close_code: int | None = None
    close_reason: str = ""
    offers: list[dict[str, Any]] = field(default_factory=list)
    publisher: RTCPeerConnection | None = None
    subscriber: RTCPeerConnection = field(default_factory=peer_connection)
    tracks: dict[Source, EncodedTrack] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Clients gather ICE candidates on loopback only, like the servers under
        # test (aioice's default is every other interface of this machine).
        IcePolicy(**LOOPBACK_ONLY).apply()
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._answering = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.answer_offers = True

    # --- connection -------------------------------------------------------------

    async def connect(self, *, send_join: bool = True) -> None:
        """Open the socket and (by default) send `join` with the token."""
        url = self.base_url.replace("http", "ws", 1) + f"/ws/lessons/{self.lesson_id}"
        headers = {"Origin": self.origin} if self.origin else {}
        self._ws = await self._http.ws_connect(
            url, protocols=self.protocols, headers=headers, autoping=True
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        if send_join:
            await self.send({"type": "join", "token": self.token, "client": "tests"})

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        assert self._ws is not None
        if isinstance(data, bytes):
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data)

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send with a fresh id; the reply (`ok`, `answer` or `error`)."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        await self.send({**message, "id": request_id})
        async with asyncio.timeout(timeout):
            return await future

    async def _read(self) -> None:
        assert self._ws is not None
        while True:
            frame = await self._ws.receive()
            if frame.type is aiohttp.WSMsgType.CLOSE:
                self.close_reason = frame.extra or ""
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            self.messages.append(message)
            request_id = message.get("id")
            if request_id in self._replies and message["type"] in ("ok", "error", "answer"):
                future = self._replies.pop(request_id)
                if not future.done():
                    future.set_result(message)
            if message["type"] == "offer" and self.answer_offers:
                self._tasks.append(asyncio.get_running_loop().create_task(self._answer(message)))
        self.close_code = self._ws.close_code
        for future in self._replies.values():
            if not future.done():
                future.set_exception(Closed(self.close_code))

    async def _answer(self, offer: dict[str, Any]) -> None:
        async with self._answering:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            self.offers.append(offer)
            await pc.setLocalDescription(await pc.createAnswer())
            _tap_received(pc, self.received, [])
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "subscriber_answer", "sdp": pc.localDescription.sdp})

    # --- observation --------------------------------------------------------------

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    async def wait_message(self, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first message of this type whose top-level fields match."""

        def found() -> dict[str, Any] | None:
            for m in self.messages:
                if m["type"] == type_ and all(m.get(k) == v for k, v in match.items()):
                    return m
            return None

        await wait_until(lambda: found() is not None or self.closed, timeout)
        message = found()
        if message is None:
            raise Closed(f"closed {self.close_code} before {type_}: {self.messages[-3:]}")
        return message

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        await wait_until(lambda: self.closed, timeout)
        return self.close_code

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    def participant(self, participant_id: str) -> dict[str, Any] | None:
        """The latest view of a participant from welcome/joined/updated."""
        latest: dict[str, Any] | None = None
        for m in self.messages:
            if m["type"] == "welcome":
                for p in m["participants"]:
                    if p["id"] == participant_id:
                        latest = p
            elif m["type"] in ("joined", "updated") and m["participant"]["id"] == participant_id:
                latest = m["participant"]
            elif m["type"] == "left" and m["participant"] == participant_id:
                latest = None
        return latest

    def packets_from(self, participant_id: str, source: Source) -> list[Captured]:
        """RTP packets received on the m-line that carries this participant's source."""
        for offer in reversed(self.offers):
            for entry in offer["tracks"]:
                if entry["participant"] == participant_id and entry["source"] == source.value:
                    ssrc = _ssrc_of(offer["sdp"], entry["mid"])
                    return self.received.get(ssrc, []) if ssrc is not None else []
        return []

    # --- publishing -------------------------------------------------------------------

    async def publish(self, *sources: Source, **clip: Any) -> dict[str, Any]:
        """Publish generated clips for these sources (`clip`: their parameters); the reply."""
        if self.publisher is None:
            self.publisher = peer_connection()
        for source in sources:
            codec = "opus" if source is Source.MICROPHONE else "vp8"
            params = clip if source is not Source.MICROPHONE else {}
            track = EncodedTrack(cached_clip(codec, **params))
            self.tracks[source] = track
            self.publisher.addTrack(track)
        pc = self.publisher
        await pc.setLocalDescription(await pc.createOffer())
        by_mid = {
            t.mid: source for t, source in zip(pc.getTransceivers(), self.tracks, strict=False)
        }
        reply = await self.request(
            {"type": "publish", "sdp": pc.localDescription.sdp, "sources": by_mid}
        )
        if reply["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        # An answer in progress gathers ICE candidates: let it finish, then close.
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        await self._http.close()


def _ssrc_of(sdp: str, mid: str) -> int | None:
    for section in sdp.split("\r\nm=")[1:]:
        if f"a=mid:{mid}\r\n" in section:
            for line in section.split("\r\n"):
                if line.startswith("a=ssrc:"):
                    return int(line.split()[0].split(":")[1])
    return None
