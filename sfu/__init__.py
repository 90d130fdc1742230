"""Sabaq's media plane: a selective forwarding unit on aiortc's transports.

Packets are forwarded as they arrive, never decoded: see `sfu.track` for the
per-packet path and `sfu._aiortc` for how aiortc's transports are used.
"""

from ._aiortc import IcePolicy
from .errors import NegotiationError, NotAllowed, SfuError, UnknownEntity
from .events import (
    ConnectionStateChanged,
    MediaEvent,
    MediaEventListener,
    QualitySample,
    Source,
    SpeakingChanged,
    SubscriberOffer,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from .participant import Participant
from .room import LocalSubscription, Room, TrackConsumer
from .sfu import ForwardingTotals, Sfu, SfuConfig, SfuCounters
from .track import Codec, DownTrack, InboundTrack

__all__ = [
    "Codec",
    "ConnectionStateChanged",
    "DownTrack",
    "ForwardingTotals",
    "IcePolicy",
    "InboundTrack",
    "LocalSubscription",
    "MediaEvent",
    "MediaEventListener",
    "NegotiationError",
    "NotAllowed",
    "Participant",
    "QualitySample",
    "Room",
    "Sfu",
    "SfuConfig",
    "SfuCounters",
    "SfuError",
    "Source",
    "SpeakingChanged",
    "SubscriberOffer",
    "TrackConsumer",
    "TrackMuted",
    "TrackPublished",
    "TrackUnpublished",
    "UnknownEntity",
]
