"""Rooms: who is in a lesson, what is published, who receives what."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from .errors import UnknownEntity
from .events import Source, TrackMuted, TrackPublished, TrackUnpublished
from .participant import Participant
from .track import DownTrack, InboundTrack

if TYPE_CHECKING:
    from .sfu import Sfu

__all__ = ["LocalSubscription", "Room", "TrackConsumer"]


class TrackConsumer(Protocol):
    """An in-process subscriber (the recorder): gets packets exactly as students do.

    `on_rtp` receives each forwarded RTP packet unencrypted, with the
    subscription's own SSRC, sequence numbers and timestamps; `on_rtcp` the
    sender reports that map those timestamps to the publisher's clock.
    """

    def on_rtp(self, packet: bytes) -> None: ...

    def on_rtcp(self, packet: bytes) -> None: ...

    def on_ended(self, reason: str) -> None: ...


class _ConsumerSink:
    __slots__ = ("consumer",)

    def __init__(self, consumer: TrackConsumer) -> None:
        self.consumer = consumer

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        self.consumer.on_rtp(bytes(packet))  # the forwarder reuses its buffer
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.consumer.on_rtcp(packet)
        return True


class LocalSubscription:
    """A consumer's subscription to one track."""

    def __init__(self, room: Room, downtrack: DownTrack, consumer: TrackConsumer) -> None:
        self.room = room
        self.downtrack = downtrack
        self.consumer = consumer
        self.closed = False

    @property
    def track(self) -> InboundTrack:
        return self.downtrack.track

    @property
    def ssrc(self) -> int:
        return self.downtrack.ssrc

    def request_keyframe(self) -> bool:
        """Ask the publisher for a keyframe (rate-limited like any subscriber's)."""
        return self.downtrack.track.request_keyframe()

    def close(self, reason: str = "unsubscribed") -> None:
        """Stop receiving; the consumer's `on_ended` is called once."""
        if self.closed:
            return
        self.closed = True
        self.downtrack.track.remove(self.downtrack)
        self.room._consumers.discard(self)
        self.consumer.on_ended(reason)


class Room:
    """A lesson's media: participants, their tracks and local consumers."""

    def __init__(self, sfu: Sfu, room_id: str) -> None:
        self.sfu = sfu
        self.id = room_id
        self.participants: dict[str, Participant] = {}
        self.tracks: dict[str, InboundTrack] = {}
        self._consumers: set[LocalSubscription] = set()
        self.closed = False

    async def join(
        self,
        participant_id: str,
        allowed_sources: Iterable[Source | str] = (),
        auto_subscribe: bool = True,
    ) -> Participant:
        """Add a participant; the same id joining again replaces the old session."""
        if self.closed:
            raise UnknownEntity(f"room {self.id} is closed")
        old = self.participants.get(participant_id)
        if old is not None:
            await old.close()
            self.participants.pop(participant_id, None)
        participant = Participant(
            self, participant_id, frozenset(Source(s) for s in allowed_sources), auto_subscribe
        )
        self.participants[participant_id] = participant
        if auto_subscribe:
            for track in self.tracks.values():
                participant.subscribe(track)
        return participant

    def participant(self, participant_id: str) -> Participant:
        """The participant with this id, or UnknownEntity."""
        try:
            return self.participants[participant_id]
        except KeyError:
            raise UnknownEntity(f"no participant {participant_id!r} in room {self.id}") from None

    async def leave(self, participant_id: str) -> None:
        """Remove a participant and everything they published."""
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            await participant.close()
        if not self.participants and not self._consumers:
            self.sfu._forget_room_if_idle(self)

    def track(self, track_id: str) -> InboundTrack:
        """The published track with this id, or UnknownEntity."""
        try:
            return self.tracks[track_id]
        except KeyError:
            raise UnknownEntity(f"no track {track_id!r} in room {self.id}") from None

    def add_consumer(self, track_id: str, consumer: TrackConsumer) -> LocalSubscription:
        """Subscribe an in-process consumer (the recorder) to a track."""
        track = self.track(track_id)
        downtrack = DownTrack(
            track=track,
            sink=_ConsumerSink(consumer),
            ssrc=random.getrandbits(32) or 1,
            payload_type=track.codec.payload_type,
            # No negotiation with a consumer: the audio level, when the
            # publisher sends one, is always extension id 1.
            audio_level_id=1 if track.audio_level_id else 0,
        )
        subscription = LocalSubscription(self, downtrack, consumer)
        self._consumers.add(subscription)
        track.add(downtrack)
        return subscription

    @property
    def consumers(self) -> frozenset[LocalSubscription]:
        return frozenset(self._consumers)

    # --- called by participants --------------------------------------------

    def _track_published(self, track: InboundTrack) -> None:
        self.tracks[track.id] = track
        track.on_forwarding_delay = self.sfu.on_forwarding_delay
        self.sfu._published.add(track)
        self.sfu.emit(
            TrackPublished(
                self.id, track.participant_id, track.id, track.source, track.kind, track.codec.name
            )
        )
        for participant in list(self.participants.values()):
            if participant.auto_subscribe and participant.id != track.participant_id:
                participant.subscribe(track)

    def _track_ended(self, track: InboundTrack, reason: str) -> None:
        self.tracks.pop(track.id, None)
        self.sfu._track_ended(track)
        for participant in self.participants.values():
            participant.unsubscribe(track.id)
        for subscription in [s for s in self._consumers if s.track is track]:
            subscription.close(reason)
        track.close()
        self.sfu.emit(
            TrackUnpublished(self.id, track.participant_id, track.id, track.source, reason)
        )

    def _track_muted(self, track: InboundTrack, muted: bool) -> None:
        self.sfu.emit(TrackMuted(self.id, track.participant_id, track.id, track.source, muted))

    def _consumer_reports(self, now: float) -> None:
        for subscription in list(self._consumers):
            report = subscription.downtrack.sender_report(now)
            if report is not None:
                subscription.downtrack.sink.send_rtcp(report)

    async def close(self) -> None:
        """Close every participant and consumer; idempotent."""
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(p.close() for p in list(self.participants.values())))
        self.participants.clear()
        for subscription in list(self._consumers):
            subscription.close("closed")
