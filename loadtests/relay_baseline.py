"""The baseline the SFU is compared with: aiortc's `MediaRelay`, the naive design.

    python -m loadtests.relay_baseline [--deadline SECONDS]

Same control API as `loadtests.control` (see there). The teacher's tracks are received by
a normal aiortc receiver, which decodes them (once); each student gets its own peer
connection with ``pc.addTrack(relay.subscribe(track, buffered=False))``, so aiortc
re-encodes VP8 and Opus once per student. ``buffered=False`` keeps only the newest frame
per student, so a relay that cannot keep up skips frames (visible as a lower frame rate
at the students) instead of queueing them without bound.

aiortc's VP8 encoder starts at 500 kbps and only moves on REMB from the receiver, which
the benchmark's students (who never parse RTP) do not send; its default is set to 1 Mbps
here so that the relay sends about what the SFU forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiortc.codecs.vpx
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from loadtests import common
from loadtests.control import Offers, main, process_stats

VIDEO_BITRATE = 1_000_000
aiortc.codecs.vpx.DEFAULT_BITRATE = VIDEO_BITRATE  # read by every new Vp8Encoder


def _packets_sent(pc: RTCPeerConnection) -> int:
    return sum(int(getattr(s, "_RTCRtpSender__packet_count", 0)) for s in pc.getSenders())


def _packets_received(pc: RTCPeerConnection) -> int:
    total = 0
    for receiver in pc.getReceivers():
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", {})
        total += sum(s.packets_received for s in streams.values())
    return total


class RelayBackend:
    """One publisher decoded once; one re-encoding aiortc peer connection per student."""

    design = "relay"

    def __init__(self) -> None:
        common.loopback_policy()
        self.offers = Offers()
        self.relay = MediaRelay()
        self.sources: dict[str, MediaStreamTrack] = {}
        self.publishers: dict[str, RTCPeerConnection] = {}
        self.subscribers: dict[str, RTCPeerConnection] = {}
        self.connected: set[str] = set()
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def join(self, participant: str, publisher: bool) -> None:
        self.offers.box(participant)
        if not publisher:
            task = asyncio.get_running_loop().create_task(self._subscribe(participant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _subscribe(self, participant: str) -> None:
        await self._ready.wait()
        pc = common.peer_connection()
        self.subscribers[participant] = pc

        @pc.on("connectionstatechange")  # type: ignore[misc]
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.add(participant)
            else:
                self.connected.discard(participant)

        for kind in ("video", "audio"):
            pc.addTrack(self.relay.subscribe(self.sources[kind], buffered=False))
        await pc.setLocalDescription(await pc.createOffer())
        common.enlarge_pc_buffers(pc)
        tracks = [(t.mid, t.kind) for t in pc.getTransceivers()]
        self.offers.post(participant, pc.localDescription.sdp, tracks)

    async def publish(self, participant: str, sdp: str, sources: dict[str, str]) -> str:
        if participant in self.publishers:
            raise ValueError("the relay baseline takes one publishing offer per participant")
        pc = common.peer_connection()
        self.publishers[participant] = pc

        @pc.on("track")  # type: ignore[misc]
        def on_track(track: MediaStreamTrack) -> None:
            self.sources[track.kind] = track
            if "video" in self.sources and "audio" in self.sources:
                self._ready.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        common.enlarge_pc_buffers(pc)
        return str(pc.localDescription.sdp)

    async def answer(self, participant: str, sdp: str) -> None:
        pc = self.subscribers[participant]
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def leave(self, participant: str) -> None:
        pc = self.subscribers.pop(participant, None) or self.publishers.pop(participant, None)
        if pc is not None:
            await pc.close()

    def stats(self) -> dict[str, Any]:
        subscribers = list(self.subscribers.values())
        return {
            "design": self.design,
            **process_stats(),
            "participants": len(self.subscribers) + len(self.publishers),
            "subscribers_connected": len(self.connected),
            "forwarded": sum(_packets_sent(pc) for pc in subscribers),
            "received": sum(_packets_received(pc) for pc in self.publishers.values()),
            "send_errors": 0,
            "counters": {},
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        pcs = [*self.subscribers.values(), *self.publishers.values()]
        with contextlib.suppress(Exception):
            await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


if __name__ == "__main__":
    main(backend_factory=RelayBackend)
