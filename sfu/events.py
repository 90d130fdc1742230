"""Media events the SFU reports to the control plane.

Every event is a frozen, slotted dataclass so that the embedded mode (a direct
callback) and a distributed mode (the same data serialised into a message) are
two transports of one protocol.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ConnectionStateChanged",
    "MediaEvent",
    "MediaEventListener",
    "QualitySample",
    "Source",
    "SpeakingChanged",
    "SubscriberOffer",
    "TrackMuted",
    "TrackPublished",
    "TrackUnpublished",
]


class Source(enum.StrEnum):
    """What a published track carries; permissions are granted per source."""

    CAMERA = "camera"
    MICROPHONE = "microphone"
    SCREEN = "screen"

    @property
    def kind(self) -> str:
        """The media kind ("audio" or "video") a track of this source must have."""
        return "audio" if self is Source.MICROPHONE else "video"


@dataclass(frozen=True, slots=True)
class TrackPublished:
    room_id: str
    participant_id: str
    track_id: str
    source: Source
    kind: str
    codec: str


@dataclass(frozen=True, slots=True)
class TrackUnpublished:
    room_id: str
    participant_id: str
    track_id: str
    source: Source
    reason: str  # "unpublished", "revoked", "left", "closed"


@dataclass(frozen=True, slots=True)
class TrackMuted:
    room_id: str
    participant_id: str
    track_id: str
    source: Source
    muted: bool


@dataclass(frozen=True, slots=True)
class SpeakingChanged:
    room_id: str
    participant_id: str
    track_id: str
    speaking: bool


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    room_id: str
    participant_id: str
    direction: str  # "publish" or "subscribe"
    state: str  # RTCPeerConnection.connectionState


@dataclass(frozen=True, slots=True)
class QualitySample:
    """One participant's link quality over the last sampling interval."""

    room_id: str
    participant_id: str
    # Upstream: what the SFU receives from this participant's published tracks.
    upstream_loss: float | None  # fraction 0..1, None when nothing is published
    upstream_jitter_ms: float | None
    upstream_bitrate_bps: int
    # Downstream: what this participant reports receiving from the SFU (RTCP RR).
    downstream_loss: float | None
    downstream_jitter_ms: float | None
    round_trip_ms: float | None
    downstream_bitrate_bps: int


@dataclass(frozen=True, slots=True)
class SubscriberOffer:
    """The SFU renegotiated a participant's subscribing connection: send this offer."""

    room_id: str
    participant_id: str
    sdp: str
    # (mid, track_id, publisher participant_id, source) of every m-line carrying a track
    tracks: tuple[tuple[str, str, str, str], ...] = ()


MediaEvent = (
    TrackPublished
    | TrackUnpublished
    | TrackMuted
    | SpeakingChanged
    | ConnectionStateChanged
    | QualitySample
    | SubscriberOffer
)


class MediaEventListener(Protocol):
    """Receives media events; called synchronously on the event loop, must not block."""

    def __call__(self, event: MediaEvent) -> None: ...
