"""Janus's VideoRoom behind the benchmark's control API: the same teacher and students as
for Sabaq's SFU (`loadtests.control`), another server.

    ip netns exec sabaq-bench-PID env SABAQ_BENCH_ADDRESS=10.231.0.2 \\
        python -m loadtests.janus_control --host 10.231.0.2 [--deadline SECONDS]

Janus gathers no ICE candidate on a loopback interface, so this process runs *inside* a
benchmark network namespace (`loadtests.netns`), started there like the teacher and the
students, and starts Janus as its own child (`loadtests.janus_server`), which thereby runs
in the same namespace with both of its HTTP APIs and ICE on ``$SABAQ_BENCH_ADDRESS``. It
prints ``{"port", "pid", "host", "design": "janus", "measured_pid": <Janus's pid>}``: the
benchmark should take CPU and memory from ``measured_pid`` (Janus), not from this adapter.

How the control API maps to Janus's HTTP REST API (one Janus session for everybody, kept
alive every 25 s; its events come from the session's long poll):

* start: start Janus, ``create`` a session, ``attach`` a VideoRoom handle and ``create``
  room 1234 (8 publishers, VP8 and Opus only, no bitrate cap);
* ``/join``: ``attach`` a VideoRoom handle for the participant; a publisher also sends
  ``join`` with ``ptype: publisher``; a student waits (in the background) until a
  publisher's PeerConnection is up (``webrtcup``) and then ``join``s with ``ptype:
  subscriber`` and ``streams: [{feed}, ...]`` (Janus 1.x multistream), whose event carries
  Janus's JSEP offer: it is posted to the student's mailbox, which ``/offer`` long-polls.
  A publisher that comes up later (a seminar) is added with ``subscribe``, which makes
  Janus offer again; so do offers Janus makes on its own (a feed went away);
* ``/publish``: ``publish`` with the teacher's JSEP offer -> Janus's JSEP answer;
* ``/answer``: ``start`` with the student's JSEP answer;
* ``/leave``: ``detach`` the participant's handle;
* ``/stats``: the admin API's ``list_handles`` and ``handle_info`` of every handle, whose
  ``webrtc.media[mid].stats.in/out`` count RTP packets per m-line: in on publishers
  (``received``), out on subscribers (``forwarded``), grouped by publisher track.

aiortc sends its SDP only once it has gathered every candidate, so each JSEP goes with
``trickle: false`` and is followed by a ``trickle`` with ``completed: true`` (Janus 1.1.2
connects without either, having the candidates from the SDP; they say what is true).

Janus quirks met on the way: a subscriber ``join`` naming a feed whose PeerConnection is not
up yet fails with 428 "No such feed" (hence the wait for ``webrtcup``, and a retry); Janus
logs a warning for each of aiortc's sha-384/sha-512 fingerprints and for the bundled
m-lines' duplicate candidates ("Failed to add some remote candidates"), both harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtests import common, janus_server
from loadtests.control import LAG, BackendError, Offers, main

PLUGIN = "janus.plugin.videoroom"
ROOM = 1234
MAX_PUBLISHERS = 8
KEEPALIVE_S = 25.0  # Janus drops a session after 60 s without a request
POLL_MAX_EVENTS = 64
REQUEST_TIMEOUT_S = 15.0
EVENT_TIMEOUT_S = 20.0
NO_SUCH_FEED = 428  # JANUS_VIDEOROOM_ERROR_NO_SUCH_FEED: the publisher is not up (yet)
SUBSCRIBE_TRIES = 10
ANSWER_TIMEOUT_S = 20.0  # how long a subscriber's next renegotiation waits for its answer
ADMIN_CONCURRENCY = 32


class JanusError(BackendError):
    """Janus answered with an error, or did not answer in time."""


def _error_of(reply: dict[str, Any]) -> str | None:
    """The error of a Janus reply or event: the core's, or the plugin's."""
    if reply.get("janus") == "error":
        error = reply.get("error") or {}
        return f"janus error {error.get('code')}: {error.get('reason')}"
    data = plugin_data(reply)
    if "error" in data or "error_code" in data:
        return f"videoroom error {data.get('error_code')}: {data.get('error')}"
    return None


def plugin_data(reply: dict[str, Any]) -> dict[str, Any]:
    data = (reply.get("plugindata") or {}).get("data") or {}
    return data if isinstance(data, dict) else {}


class JanusSession:
    """One session of Janus's HTTP API: requests, plugin messages (answered either at once
    or by an event with the same transaction), the event long poll and the keepalive."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        self.http = http
        self.url = url
        self.on_event = on_event
        self.id = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def _post(self, path: str, body: dict[str, Any], transaction: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with self.http.post(
            f"{self.url}{path}", json={**body, "transaction": transaction}, timeout=timeout
        ) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        error = _error_of(reply)
        if error:
            raise JanusError(f"{body.get('janus')} {body.get('body', '')}: {error}")
        return reply

    async def request(self, body: dict[str, Any], handle: int | None = None) -> dict[str, Any]:
        """A core request (create, attach, detach, trickle, keepalive...): Janus answers it
        in the HTTP reply."""
        path = f"/{self.id}" if self.id else ""
        if handle is not None:
            path += f"/{handle}"
        return await self._post(path, body, f"t{next(self._ids)}")

    async def open(self) -> None:
        self.id = int((await self.request({"janus": "create"}))["data"]["id"])
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._poll()), loop.create_task(self._keepalive())]

    async def attach(self) -> int:
        reply = await self.request({"janus": "attach", "plugin": PLUGIN})
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A VideoRoom request: its synchronous reply, or the event that answers an "ack"
        (registered before posting: the event may come back before the ack does)."""
        transaction = f"t{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = waiter
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.id}/{handle}", request, transaction)
            if reply.get("janus") != "ack":
                return reply
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                event = await waiter
        except TimeoutError:
            raise JanusError(f"no answer from Janus to {body} in {EVENT_TIMEOUT_S:.0f} s") from None
        finally:
            self._pending.pop(transaction, None)
        error = _error_of(event)
        if error:
            raise JanusError(f"{body.get('request')}: {error}")
        return event

    async def trickle_completed(self, handle: int) -> None:
        """No more candidates: all of aiortc's are in its SDP."""
        await self.request({"janus": "trickle", "candidate": {"completed": True}}, handle)

    async def detach(self, handle: int) -> None:
        await self.request({"janus": "detach"}, handle)

    def _dispatch(self, event: dict[str, Any]) -> None:
        waiter = self._pending.get(str(event.get("transaction", "")))
        if waiter is not None and not waiter.done() and event.get("janus") == "event":
            waiter.set_result(event)
        else:
            self.on_event(event)

    async def _poll(self) -> None:
        """Janus's long poll: up to POLL_MAX_EVENTS events per GET, a keepalive after 30 s."""
        url = f"{self.url}/{self.id}"
        timeout = aiohttp.ClientTimeout(total=60)
        while True:
            try:
                async with self.http.get(
                    url, params={"maxev": str(POLL_MAX_EVENTS)}, timeout=timeout
                ) as r:
                    events = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                print(f"janus long poll: {type(exc).__name__}: {exc}", file=sys.stderr)
                await asyncio.sleep(0.5)
                continue
            for event in events if isinstance(events, list) else [events]:
                if isinstance(event, dict):
                    self._dispatch(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, JanusError):
                await self.request({"janus": "keepalive"})

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.id:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, JanusError):
                await self.request({"janus": "destroy"})


class JanusAdmin:
    """Janus's admin API (HTTP): the per-handle media counters."""

    def __init__(self, http: aiohttp.ClientSession, url: str, secret: str) -> None:
        self.http = http
        self.url = url
        self.secret = secret
        self._ids = itertools.count(1)
        self._slots = asyncio.Semaphore(ADMIN_CONCURRENCY)

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": f"a{next(self._ids)}", "admin_secret": self.secret}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with self._slots, self.http.post(self.url + path, json=body, timeout=timeout) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        error = _error_of(reply)
        if error:
            raise JanusError(f"admin {body['janus']}: {error}")
        return reply

    async def handles(self, session: int) -> list[int]:
        reply = await self.request(f"/{session}", {"janus": "list_handles"})
        return [int(h) for h in reply.get("handles", [])]

    async def handle_info(self, session: int, handle: int) -> dict[str, Any]:
        """The handle's ``info``, or {} when it went away in the meantime."""
        try:
            reply = await self.request(f"/{session}/{handle}", {"janus": "handle_info"})
        except JanusError:
            return {}
        info = reply.get("info")
        return info if isinstance(info, dict) else {}


def media_of(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A handle's m-lines by mid: ``info.webrtc.media`` of handle_info (absent until the
    PeerConnection exists)."""
    media = (info.get("webrtc") or {}).get("media") or {}
    return {str(k): v for k, v in media.items() if isinstance(v, dict)}


def counters_of(stream: dict[str, Any], direction: str) -> dict[str, int]:
    """One m-line's counters in one direction: ``stats.in`` or ``stats.out`` (packets,
    bytes, nacks, and on "in" retransmissions)."""
    stats = (stream.get("stats") or {}).get(direction) or {}
    return {k: v for k, v in stats.items() if isinstance(v, int)}


class Tracks:
    """Per publisher track (feed, mid): packets in from the publisher, packets out to its
    subscribers, and how many subscribers: the shape of the SFU's per-track counters."""

    def __init__(self) -> None:
        self._tracks: dict[tuple[int, str], dict[str, Any]] = {}

    def track(self, feed: int, mid: str, kind: str) -> dict[str, Any]:
        key = (feed, mid)
        if key not in self._tracks:
            self._tracks[key] = {
                "kind": kind,
                "received": 0,
                "received_bytes": 0,
                "forwarded": 0,
                "forwarded_bytes": 0,
                "retransmitted_in": 0,
                "nacks_to_publisher": 0,
                "nacks_from_subscribers": 0,
                "downtracks": 0,
                "upstream_lost": 0,
            }
        return self._tracks[key]

    def add_publisher(self, info: dict[str, Any]) -> None:
        feed = int((info.get("plugin_specific") or {}).get("id") or 0)
        for mid, stream in media_of(info).items():
            track = self.track(feed, mid, str(stream.get("type")))
            counters = counters_of(stream, "in")
            track["received"] += counters.get("packets", 0)
            track["received_bytes"] += counters.get("bytes", 0)
            track["retransmitted_in"] += counters.get("retransmissions", 0)
            track["nacks_to_publisher"] += counters.get("nacks", 0)
            track["upstream_lost"] += int(
                ((stream.get("rtcp") or {}).get("main") or {}).get("lost", 0)
            )

    def add_subscriber(self, info: dict[str, Any]) -> None:
        sources = {
            str(s.get("mid")): (int(s.get("feed_id") or 0), str(s.get("feed_mid")))
            for s in (info.get("plugin_specific") or {}).get("streams") or []
            if isinstance(s, dict)
        }
        for mid, stream in media_of(info).items():
            feed, feed_mid = sources.get(mid, (0, mid))
            track = self.track(feed, feed_mid, str(stream.get("type")))
            counters = counters_of(stream, "out")
            track["forwarded"] += counters.get("packets", 0)
            track["forwarded_bytes"] += counters.get("bytes", 0)
            track["nacks_from_subscribers"] += counters.get("nacks", 0)
            track["downtracks"] += 1

    def as_list(self) -> list[dict[str, Any]]:
        return list(self._tracks.values())


def local_bench_address() -> str:
    """The benchmark address, checked to be usable for Janus here: not loopback (Janus
    gathers no candidate there) and assigned in this network namespace."""
    address = common.bench_address()
    hint = (
        "run loadtests.janus_control inside a benchmark namespace, e.g. ip netns exec "
        f"sabaq-bench-PID env {common.ADDRESS_ENV}=10.231.0.2 python -m "
        "loadtests.janus_control --host 10.231.0.2 (see loadtests.netns)"
    )
    if ipaddress.ip_address(address).is_loopback:
        raise JanusError(f"Janus gathers no ICE candidate on loopback ({address}): {hint}")
    try:
        janus_server.free_port(address)
    except OSError as exc:
        raise JanusError(f"{address} is not an address of this network namespace: {hint}") from exc
    return address


@dataclass
class Peer:
    """A participant: its VideoRoom handle and role."""

    name: str
    handle: int
    publisher: bool
    feed: int = 0  # the VideoRoom publisher id, once joined as one
    up: bool = False  # its PeerConnection is up (Janus's "webrtcup")
    feeds: set[int] = field(default_factory=set)  # what a subscriber receives
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one negotiation at a time
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # the latest offer


class JanusBackend:
    """The control API's `Backend` over a Janus it starts, in this network namespace."""

    design = "janus"

    def __init__(self) -> None:
        self.address = local_bench_address()
        self.offers = Offers()
        self.peers: dict[str, Peer] = {}
        self.by_handle: dict[int, Peer] = {}
        self.connected: set[str] = set()
        self.errors: list[str] = []
        self.published = asyncio.Event()  # a publisher's PeerConnection is up
        self.server: janus_server.JanusServer | None = None
        self.http: aiohttp.ClientSession | None = None
        self._session: JanusSession | None = None
        self._admin: JanusAdmin | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def session(self) -> JanusSession:
        if self._session is None:
            raise JanusError("the Janus session is not open")
        return self._session

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Janus up, a session, the room; a failure is explained on stderr and ends the
        process (exit status 2) with nothing left running."""
        try:
            await self._start()
        except (JanusError, janus_server.JanusError, aiohttp.ClientError, OSError) as exc:
            await self.close()
            print(f"loadtests.janus_control: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        config = janus_server.JanusConfig(
            address=self.address,
            http_port=janus_server.free_port(self.address),
            admin_port=janus_server.free_port(self.address),
        )
        self.server = janus_server.JanusServer(config, log=sys.stderr)
        await self.server.start()
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._session = JanusSession(self.http, config.url, self._on_event)
        await self._session.open()
        self._admin = JanusAdmin(self.http, config.admin_url, config.admin_secret)
        await self._create_room()

    async def _create_room(self) -> None:
        """Room 1234 on a handle of its own: VP8 and Opus, as the teacher sends; bitrate 0
        puts no cap on the publisher's video (the teacher's clip is pre-encoded anyway)."""
        handle = await self.session.attach()
        await self.session.message(
            handle,
            {
                "request": "create",
                "room": ROOM,
                "publishers": MAX_PUBLISHERS,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "bitrate": 0,
            },
        )

    def hello(self) -> dict[str, Any]:
        """Extra fields of the hello line: whose CPU and memory the benchmark measures."""
        return {"measured_pid": self.server.pid if self.server else None}

    async def close(self) -> None:
        """Subscriptions, the session, Janus itself (idempotent)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        session, self._session, self._admin = self._session, None, None
        if session is not None:
            await session.close()
        http, self.http = self.http, None
        if http is not None:
            await http.close()
        if self.server is not None:
            await self.server.stop()
            self.server.remove_files()

    # --- events -------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        """PeerConnection states, and the offers Janus makes on its own (a subscriber's
        feed went away); everything else is ignored."""
        kind = event.get("janus")
        peer = self.by_handle.get(int(event.get("sender") or 0))
        if peer is None:
            return
        if kind == "event" and not peer.publisher and (event.get("jsep") or {}).get("sdp"):
            self._post_offer(peer, event)
        elif kind in ("webrtcup", "hangup"):
            peer.up = kind == "webrtcup"
            print(f"{peer.name}: janus {kind} {event.get('reason', '')}".rstrip(), file=sys.stderr)
            if peer.publisher:
                self._publisher_changed(peer)
            elif peer.up:
                self.connected.add(peer.name)
            else:
                self.connected.discard(peer.name)

    def _publisher_changed(self, publisher: Peer) -> None:
        """A feed came up: subscribers already in get it too. Or went down: forget it."""
        if self._feeds():
            self.published.set()
        else:
            self.published.clear()
        for peer in list(self.peers.values()):
            if peer.publisher:
                continue
            if publisher.up:
                self._background(peer, self._catch_up(peer))
            else:
                peer.feeds.discard(publisher.feed)

    def _background(self, peer: Peer, work: Coroutine[Any, Any, None]) -> None:
        """Run a subscriber's negotiation as a task; its failure is counted, not raised."""

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(f"{peer.name}: {type(exc).__name__}: {exc}")
                print(f"{peer.name}: cannot subscribe: {exc}", file=sys.stderr)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the control API ------------------------------------------------------------------

    async def join(self, participant: str, publisher: bool) -> None:
        if participant in self.peers:
            raise JanusError(f"{participant} has already joined")
        self.offers.box(participant)
        peer = Peer(participant, await self.session.attach(), publisher)
        self.peers[participant] = peer
        self.by_handle[peer.handle] = peer
        if publisher:
            body = {"request": "join", "ptype": "publisher", "room": ROOM, "display": participant}
            event = await self.session.message(peer.handle, body)
            peer.feed = int(plugin_data(event)["id"])
        else:
            self._background(peer, self._subscribe(peer))

    def _feeds(self) -> list[int]:
        """Publishers a subscriber can join: Janus refuses (428) one whose PeerConnection
        is not up yet."""
        return [p.feed for p in self.peers.values() if p.publisher and p.feed and p.up]

    async def _subscribe(self, peer: Peer) -> None:
        """Once a publisher is up: join as a subscriber of every feed that is."""
        await self.published.wait()
        async with peer.lock:
            feeds = self._feeds()
            body = {
                "request": "join",
                "ptype": "subscriber",
                "room": ROOM,
                "streams": [{"feed": feed} for feed in feeds],
            }
            await self._negotiate(peer, body)
            peer.feeds.update(feeds)

    async def _catch_up(self, peer: Peer) -> None:
        """Add the feeds that came up since the subscriber joined (``subscribe``: Janus
        offers again, with more m-lines). One that has not joined yet gets them on joining."""
        async with peer.lock:
            missing = [feed for feed in self._feeds() if feed not in peer.feeds]
            if not peer.feeds or not missing:
                return
            body = {"request": "subscribe", "streams": [{"feed": feed} for feed in missing]}
            await self._negotiate(peer, body)
            peer.feeds.update(missing)

    async def _negotiate(self, peer: Peer, body: dict[str, Any]) -> None:
        """A request Janus answers with an offer: post the offer to the student, then wait
        (bounded) for the answer, so that two negotiations never overlap on one handle."""
        for attempt in range(SUBSCRIBE_TRIES):
            try:
                event = await self.session.message(peer.handle, body)
                break
            except JanusError as exc:
                if f" {NO_SUCH_FEED}:" not in str(exc) or attempt == SUBSCRIBE_TRIES - 1:
                    raise
                await asyncio.sleep(0.2)
        self._post_offer(peer, event)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await peer.answered.wait()

    def _post_offer(self, peer: Peer, event: dict[str, Any]) -> None:
        """Janus's JSEP offer to the student's mailbox, with (mid, kind) per m-line."""
        sdp = str((event.get("jsep") or {})["sdp"])
        streams = plugin_data(event).get("streams") or []
        tracks = [(s.get("mid"), s.get("type")) for s in streams if isinstance(s, dict)]
        peer.answered.clear()
        self.offers.post(peer.name, sdp, tracks)

    async def publish(self, participant: str, sdp: str, sources: dict[str, str]) -> str:
        peer = self.peers[participant]
        if not peer.publisher:
            raise JanusError(f"{participant} did not join as a publisher")
        body = {
            "request": "publish",
            "descriptions": [{"mid": mid, "description": s} for mid, s in sources.items()],
        }
        event = await self.session.message(
            peer.handle, body, {"type": "offer", "sdp": sdp, "trickle": False}
        )
        await self.session.trickle_completed(peer.handle)
        return str((event.get("jsep") or {})["sdp"])

    async def answer(self, participant: str, sdp: str) -> None:
        peer = self.peers[participant]
        await self.session.message(
            peer.handle, {"request": "start"}, {"type": "answer", "sdp": sdp, "trickle": False}
        )
        await self.session.trickle_completed(peer.handle)
        peer.answered.set()

    async def leave(self, participant: str) -> None:
        peer = self.peers.pop(participant)
        self.by_handle.pop(peer.handle, None)
        self.connected.discard(participant)
        await self.session.detach(peer.handle)

    # --- stats ------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Janus's own counters (admin API) and its process's CPU and memory."""
        if self._admin is None or self.server is None:
            raise JanusError("Janus is not running")
        session = self.session.id
        handles = await self._admin.handles(session)
        infos = await asyncio.gather(*(self._admin.handle_info(session, h) for h in handles))
        tracks = Tracks()
        for info in infos:
            role = (info.get("plugin_specific") or {}).get("type")
            if role == "publisher":
                tracks.add_publisher(info)
            elif role == "subscriber":
                tracks.add_subscriber(info)
        per_track = tracks.as_list()
        pid = self.server.pid
        adapter = os.getpid()
        return {
            "design": self.design,
            "loop_lag": LAG.as_dict(),
            "pid": pid,
            "cpu_s": common.cpu_seconds(pid),
            "rss_kib": common.rss_kib(pid),
            "time": time.time(),
            "adapter": {
                "pid": adapter,
                "cpu_s": common.cpu_seconds(adapter),
                "rss_kib": common.rss_kib(adapter),
            },
            "participants": len(self.peers),
            "subscribers_connected": len(self.connected),
            "handles": len(handles),
            "received": sum(t["received"] for t in per_track),
            "forwarded": sum(t["forwarded"] for t in per_track),
            "bytes_sent": sum(t["forwarded_bytes"] for t in per_track),
            "send_errors": 0,
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else "",
            "counters": {},
            "tracks": per_track,
        }


def janus_backend() -> JanusBackend:
    """The backend, or a clear refusal (exit status 2) instead of a traceback."""
    reason = janus_server.missing()
    try:
        if reason:
            raise JanusError(reason)
        return JanusBackend()
    except (JanusError, ValueError) as exc:
        print(f"loadtests.janus_control: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(backend_factory=janus_backend)
