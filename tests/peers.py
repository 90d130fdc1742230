"""Real aiortc peers for functional tests: a publisher and a subscriber over loopback.

Both are plain aiortc clients, as a non-browser participant would be; the
only additions are taps that record the RTP packets they send and receive,
so tests can compare bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from loadtests.media import EncodedTrack, cached_clip
from sfu import MediaEvent, Participant, Sfu, Source, SubscriberOffer
from sfu.rtcp import parse_rtcp
from sfu.rtp import is_rtcp, parse_rtp

LOOPBACK_ONLY: dict[str, Any] = {
    "host_addresses": ["127.0.0.1"],
    "allowed_networks": ["127.0.0.0/8"],
}


@dataclass
class Captured:
    """One RTP packet seen by a tap (unprotected)."""

    ssrc: int
    seq: int
    timestamp: int
    payload_type: int
    payload: bytes
    extensions: dict[int, bytes]


class EventLog:
    """Collects SFU events; tests wait for the ones they expect."""

    def __init__(self) -> None:
        self.events: list[MediaEvent] = []
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[MediaEvent], None]] = []

    def __call__(self, event: MediaEvent) -> None:
        self.events.append(event)
        self._changed.set()
        for listener in list(self._listeners):
            listener(event)

    def subscribe(self, listener: Callable[[MediaEvent], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[MediaEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def wait_for(
        self, predicate: Callable[[MediaEvent], bool], timeout: float = 10.0
    ) -> MediaEvent:
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def _tap_sent(pc: RTCPeerConnection, sink: dict[int, list[Captured]], rtcp_sink: list[Any]) -> None:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if getattr(dtls, "_sabaq_tapped", False):
            continue
        dtls._sabaq_tapped = True
        original = dtls._send_rtp

        async def send_rtp(data: bytes, original: Any = original) -> None:
            if not is_rtcp(data):
                packet = _captured(data)
                sink[packet.ssrc].append(packet)
            await original(data)

        dtls._send_rtp = send_rtp
        _tap_rtcp(dtls, rtcp_sink)


def _captured(data: bytes) -> Captured:
    h = parse_rtp(data)
    payload = data[h.payload_start : h.payload_end]
    return Captured(
        h.ssrc, h.sequence_number, h.timestamp, h.payload_type, payload, dict(h.extensions)
    )


def _tap_rtcp(dtls: Any, rtcp_sink: list[Any]) -> None:
    original = dtls._handle_rtcp_data

    async def handle_rtcp(data: bytes) -> None:
        with contextlib.suppress(ValueError):
            rtcp_sink.extend(parse_rtcp(data))
        await original(data)

    dtls._handle_rtcp_data = handle_rtcp


def _tap_received(
    pc: RTCPeerConnection,
    sink: dict[int, list[Captured]],
    rtcp_sink: list[Any],
    drop: Callable[[Captured], bool] | None = None,
) -> None:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if getattr(dtls, "_sabaq_tapped", False):
            continue
        dtls._sabaq_tapped = True
        original = dtls._handle_rtp_data

        async def handle_rtp(data: bytes, arrival_time_ms: int, original: Any = original) -> None:
            packet = _captured(data)
            if drop is not None and drop(packet):
                return  # simulated loss between the SFU and this subscriber
            sink[packet.ssrc].append(packet)
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = handle_rtp
        _tap_rtcp(dtls, rtcp_sink)


def peer_connection() -> RTCPeerConnection:
    # Never aiortc's default public STUN server.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclass
class Publisher:
    """An aiortc client publishing pre-encoded clips through the SFU."""

    participant: Participant
    pc: RTCPeerConnection = field(default_factory=peer_connection)
    sent: dict[int, list[Captured]] = field(default_factory=lambda: defaultdict(list))
    rtcp_received: list[Any] = field(default_factory=list)
    tracks: dict[Source, EncodedTrack] = field(default_factory=dict)

    def add(self, source: Source, codec: str | None = None, **clip: Any) -> EncodedTrack:
        codec = codec or ("opus" if source is Source.MICROPHONE else "vp8")
        track = EncodedTrack(cached_clip(codec, **clip))
        self.tracks[source] = track
        self.pc.addTrack(track)
        return track

    async def publish(self, mids: dict[str, Source] | None = None) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        _tap_sent(self.pc, self.sent, self.rtcp_received)
        sources = mids or {
            t.mid: source for t, source in zip(self.pc.getTransceivers(), self.tracks, strict=False)
        }
        answer = await self.participant.publish(self.pc.localDescription.sdp, sources)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return answer

    def ssrc_of(self, source: Source) -> int:
        index = list(self.tracks).index(source)
        return int(self.pc.getTransceivers()[index].sender._ssrc)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Subscriber:
    """An aiortc client that answers the SFU's subscriber offers and records what arrives."""

    participant: Participant
    log: EventLog
    pc: RTCPeerConnection = field(default_factory=peer_connection)
    received: dict[int, list[Captured]] = field(default_factory=lambda: defaultdict(list))
    rtcp_received: list[Any] = field(default_factory=list)
    offers: list[SubscriberOffer] = field(default_factory=list)
    drop: Callable[[Captured], bool] | None = None
    remote_tracks: list[Any] = field(default_factory=list)
    _queue: asyncio.Queue[SubscriberOffer] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        pid, room = self.participant.id, self.participant.room.id

        def on_event(event: MediaEvent) -> None:
            if (
                isinstance(event, SubscriberOffer)
                and event.participant_id == pid
                and event.room_id == room
            ):
                self._queue.put_nowait(event)

        self._on_event = on_event
        self.log.subscribe(on_event)
        # No replay of earlier offers: they may belong to a replaced session of the
        # same identity. Construct the Subscriber right after `Room.join`, before
        # the SFU's negotiation task has run.

        @self.pc.on("track")  # type: ignore[misc]
        def on_track(track: Any) -> None:
            self.remote_tracks.append(track)

        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            offer = await self._queue.get()
            await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            # Only now does pc.remoteDescription hold this offer: aiortc sets the mids
            # before it awaits the remote candidates and stores the description.
            self.offers.append(offer)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            _tap_received(self.pc, self.received, self.rtcp_received, self.drop)
            await self.participant.set_subscriber_answer(self.pc.localDescription.sdp)

    def packets_for(self, track_id: str) -> list[Captured]:
        """What arrived on the m-line that carries `track_id` (by the SDP's SSRC)."""
        for offer in reversed(self.offers):
            for mid, tid, _, _ in offer.tracks:
                if tid == track_id:
                    for t in self.pc.getTransceivers():
                        if t.mid == mid:
                            try:
                                return self.received.get(self._remote_ssrc(mid), [])
                            except KeyError:
                                return []
        return []

    def rtx_for(self, track_id: str) -> list[Captured]:
        """Retransmissions (RTX) received for the m-line that carries `track_id`."""
        for offer in reversed(self.offers):
            for mid, tid, _, _ in offer.tracks:
                if tid == track_id:
                    return self.received.get(self._remote_ssrc(mid, rtx=True), [])
        return []

    def _remote_ssrc(self, mid: str, rtx: bool = False) -> int:
        if self.pc.remoteDescription is None:
            raise KeyError(mid)
        desc = self.pc.remoteDescription.sdp.split("\r\nm=")
        for section in desc[1:]:
            if f"a=mid:{mid}\r\n" in section:
                for line in section.split("\r\n"):
                    if line.startswith("a=ssrc-group:FID") and rtx:
                        return int(line.split()[2])
                    if line.startswith("a=ssrc:") and not rtx:
                        return int(line.split()[0].split(":")[1])
        raise KeyError(mid)

    async def close(self) -> None:
        self.log.unsubscribe(self._on_event)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pc.close()


async def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.05
) -> None:
    """Poll `condition` until true or fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(step)


__all__ = ["Captured", "EventLog", "Publisher", "Sfu", "Subscriber", "wait_until"]
