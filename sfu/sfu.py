"""The SFU: configuration, rooms, counters and the RTCP clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import rtcp
from ._aiortc import IcePolicy
from .bwe import LossBasedEstimator
from .events import MediaEvent, MediaEventListener, QualitySample, Source
from .participant import Participant
from .room import Room
from .track import InboundTrack

__all__ = ["ForwardingTotals", "Sfu", "SfuConfig", "SfuCounters"]

logger = logging.getLogger(__name__)

# NACKs to publishers are checked every 20 ms: a lost packet is asked for
# within one video frame interval (33 ms at 30 fps).
NACK_TICK = 0.02
# Sender and receiver reports once a second (RFC 3550 allows 5 s; browsers
# sync audio and video faster with more frequent SRs).
REPORT_INTERVAL = 1.0
# A video subscriber still waiting for its first keyframe asks again after 1 s.
KEYFRAME_RETRY = 1.0


@dataclass
class SfuConfig:
    """Operator settings of the media plane."""

    ice: IcePolicy = field(default_factory=IcePolicy)
    video_codecs: tuple[str, ...] = ("video/VP8", "video/H264")
    audio_codecs: tuple[str, ...] = ("audio/opus",)
    # REMB caps per source, in bit/s.
    max_bitrate: Mapping[Source, int] = field(
        default_factory=lambda: {Source.CAMERA: 1_500_000, Source.SCREEN: 2_500_000}
    )
    speaking: dict[str, Any] = field(default_factory=dict)
    quality_interval: float = 5.0

    def codecs(self, kind: str) -> tuple[str, ...]:
        """Acceptable codecs of a kind, in order of preference."""
        return self.video_codecs if kind == "video" else self.audio_codecs


@dataclass
class SfuCounters:
    """Packets the SFU refused, by reason, and feedback it handled."""

    malformed_rtp: int = 0
    malformed_rtcp: int = 0
    unknown_ssrc: int = 0
    unexpected_rtp: int = 0
    nacks_received: int = 0
    nacks_sent: int = 0
    plis_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class ForwardingTotals:
    """The counters of every track, ended ones included: monotonic, for metrics."""

    received: int = 0
    forwarded: int = 0
    octets_forwarded: int = 0
    duplicates: int = 0
    dropped_muted: int = 0
    retransmitted: int = 0
    keyframe_requests: int = 0

    def add(self, track: InboundTrack) -> None:
        """Add one track's counters."""
        counters = track.counters
        self.received += counters.received
        self.forwarded += counters.forwarded
        self.octets_forwarded += track.octets_forwarded
        self.duplicates += counters.duplicates
        self.dropped_muted += counters.dropped_muted
        self.retransmitted += counters.retransmitted
        self.keyframe_requests += counters.keyframe_requests


class Sfu:
    """Rooms of participants whose media is forwarded without decoding."""

    def __init__(
        self, config: SfuConfig | None = None, on_event: MediaEventListener | None = None
    ) -> None:
        self.config = config or SfuConfig()
        self.config.ice.apply()
        self.rooms: dict[str, Room] = {}
        self.counters = SfuCounters()
        # Given to every track published from now on (`InboundTrack.on_forwarding_delay`).
        self.on_forwarding_delay: Callable[[float], None] | None = None
        self._listeners: list[MediaEventListener] = [on_event] if on_event else []
        self._published: set[InboundTrack] = set()
        self._ended_totals = ForwardingTotals()
        self._estimators: dict[InboundTrack, LossBasedEstimator] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the RTCP clock (NACKs, reports, quality samples)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Close every room and stop; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rooms = list(self.rooms.values())
        self.rooms.clear()
        await asyncio.gather(*(room.close() for room in rooms))

    async def __aenter__(self) -> Sfu:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def add_listener(self, listener: MediaEventListener) -> None:
        """Also deliver media events to `listener`."""
        self._listeners.append(listener)

    def emit(self, event: MediaEvent) -> None:
        """Deliver an event to every listener; a failing listener is logged, not fatal."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("media event listener failed on %r", event)

    def room(self, room_id: str) -> Room:
        """The room with this id, created on first use."""
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            room = self.rooms[room_id] = Room(self, room_id)
        return room

    async def close_room(self, room_id: str) -> None:
        """Close one room and everyone in it."""
        room = self.rooms.pop(room_id, None)
        if room is not None:
            await room.close()

    def _forget_room_if_idle(self, room: Room) -> None:
        if self.rooms.get(room.id) is room and not room.participants and not room.tracks:
            del self.rooms[room.id]

    def _track_ended(self, track: InboundTrack) -> None:
        if track in self._published:
            self._published.remove(track)
            # Before the track detaches its subscribers; nothing is forwarded after this.
            self._ended_totals.add(track)
        self._estimators.pop(track, None)

    def forwarding_totals(self) -> ForwardingTotals:
        """Every track's counters summed, those of ended tracks included (for scrapes)."""
        totals = replace(self._ended_totals)
        for track in self._published:
            totals.add(track)
        return totals

    def participants(self) -> Iterable[Participant]:
        for room in self.rooms.values():
            yield from room.participants.values()

    # --- the RTCP clock ----------------------------------------------------

    async def _run(self) -> None:
        next_report = time.time() + REPORT_INTERVAL
        next_quality = time.time() + self.config.quality_interval
        while True:
            await asyncio.sleep(NACK_TICK)
            now = time.time()
            try:
                self._send_nacks(now)
                if now >= next_report:
                    next_report = now + REPORT_INTERVAL
                    self._send_reports(now)
                if now >= next_quality:
                    next_quality = now + self.config.quality_interval
                    self._sample_quality()
            except Exception:
                # One broken participant must not stop reports for every lesson.
                logger.exception("RTCP clock tick failed")

    def _send_nacks(self, now: float) -> None:
        for track in self._published:
            if track.keyframe_pending:
                track.flush_keyframe_request()
            nack = track.nack
            if nack is None or not len(nack):
                continue
            lost = nack.due(now)
            if lost and track.ssrc is not None:
                track._send_upstream(rtcp.build_nack(track.rtcp_ssrc, track.ssrc, lost))
                self.counters.nacks_sent += 1

    def _send_reports(self, now: float) -> None:
        for room in list(self.rooms.values()):
            room._consumer_reports(now)
            for participant in list(room.participants.values()):
                participant.tick_speaking(now)
                self._report_upstream(participant, now)
                self._report_downstream(participant, now)

    def _report_upstream(self, participant: Participant, now: float) -> None:
        tracks = [t for t in participant.tracks.values() if not t.closed]
        if not tracks or participant.publisher_transport is None:
            return
        blocks = [b for b in (t.report_block(now) for t in tracks) if b is not None]
        packet = rtcp.build_receiver_report(participant.rtcp_ssrc, blocks[:31])
        for track in tracks:
            cap = self.config.max_bitrate.get(track.source)
            if track.kind != "video" or cap is None or track.ssrc is None:
                continue
            estimator = self._estimators.get(track)
            if estimator is None:
                estimator = self._estimators[track] = LossBasedEstimator(cap)
            bitrate = estimator.update(track.last_fraction_lost)
            packet += rtcp.build_remb(participant.rtcp_ssrc, bitrate, [track.ssrc])
        participant.publisher_transport.send_rtcp(packet)

    def _report_downstream(self, participant: Participant, now: float) -> None:
        transport = participant.subscriber_transport
        if transport is None:
            return
        packet = b""
        for entry in participant.subscriptions.values():
            downtrack = entry.downtrack
            if downtrack is None:
                continue
            if downtrack.waiting and downtrack in entry.track.downtracks:
                entry.track.request_keyframe()
            report = downtrack.sender_report(now)
            if report is not None:
                if len(packet) + len(report) > 1200:
                    transport.send_rtcp(packet)
                    packet = b""
                packet += report
        if packet:
            transport.send_rtcp(packet)

    def _sample_quality(self) -> None:
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                self.emit(_quality_of(room.id, participant, self.config.quality_interval))


def _quality_of(room_id: str, participant: Participant, interval: float) -> QualitySample:
    tracks = [t for t in participant.tracks.values() if not t.closed and t.stats.received]
    downtracks = [
        e.downtrack for e in participant.subscriptions.values() if e.downtrack is not None
    ]
    reported = [d for d in downtracks if d.fraction_lost is not None]
    rtts = [d.rtt_ms for d in downtracks if d.rtt_ms is not None]
    up_bytes = sum(t.stats.bytes for t in tracks)
    down_bytes = sum(d.octets_sent for d in downtracks)
    previous = participant.quality_bytes
    participant.quality_bytes = (up_bytes, down_bytes)
    return QualitySample(
        room_id=room_id,
        participant_id=participant.id,
        upstream_loss=max((t.last_fraction_lost for t in tracks), default=None),
        upstream_jitter_ms=max((t.stats.jitter_ms for t in tracks), default=None),
        upstream_bitrate_bps=int(max(0, up_bytes - previous[0]) * 8 / interval),
        downstream_loss=max((d.fraction_lost or 0.0 for d in reported), default=None),
        downstream_jitter_ms=max((d.jitter_ms or 0.0 for d in reported), default=None),
        round_trip_ms=sum(rtts) / len(rtts) if rtts else None,
        downstream_bitrate_bps=int(max(0, down_bytes - previous[1]) * 8 / interval),
    )
