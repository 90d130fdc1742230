"""One live lesson: who is here, who may speak, the lobby, hands and chat.

A `Classroom` owns the lesson's people; the SFU room owns their media. Every
permission is decided here, on the server: a student publishes only the
sources the floor gives them (`sfu.Participant.set_allowed_sources` enforces
it per packet as well), only moderators act on others, only teachers and
admins end the lesson. The connections (`signaling.session.Session`) are
`Peer`s: the classroom posts messages to them and never awaits a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from sfu import (
    ConnectionStateChanged,
    MediaEvent,
    Participant,
    QualitySample,
    Sfu,
    Source,
    SpeakingChanged,
    SubscriberOffer,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)

from .footprint.trail import LessonTrail, Presence
from .identity import Identity, Role
from .lessons import (
    ChatStore,
    Lesson,
    LessonKind,
    LessonStatus,
    LessonStore,
    RecordingPolicy,
)
from .protocol import CloseCode, RequestError

__all__ = ["Classroom", "Member", "Peer", "RecordingHook", "participant_of", "quality_level"]

logger = logging.getLogger(__name__)

MODERATORS: Final = frozenset({Role.TEACHER, Role.ASSISTANT, Role.ADMIN})
ALL_SOURCES: Final = frozenset(Source)
RECENT_CHAT: Final = 100
# Lessons where every student publishes (and is recorded) unless a teacher says otherwise.
PROCTORED: Final = frozenset({LessonKind.EXAM, LessonKind.DEFENCE})


class RecordingHook(Protocol):
    """Starts and stops the recorder of a classroom (signaling.recording_service)."""

    async def start(self, classroom: Classroom) -> str:
        """Start recording; the recording's id."""

    async def stop(self, classroom: Classroom) -> None:
        """Stop and finalize; returns once the files are closed."""


class Peer(Protocol):
    """A participant's connection, as the classroom sees it."""

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; never blocks."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the connection after what is queued; idempotent."""

    def expect_answer(self) -> None:
        """An offer was sent: the client must answer within the offer timeout."""

    def media_connected(self) -> None:
        """The media there was to receive at the join now flows: the join is complete."""


def quality_level(sample: QualitySample) -> str | None:
    """good / fair / poor from loss and round-trip time (None before any figure).

    Thresholds from experience with Opus and VP8: under 2 % loss and 300 ms
    RTT nobody notices; past 10 % or 800 ms speech breaks up.
    """
    losses = [x for x in (sample.upstream_loss, sample.downstream_loss) if x is not None]
    rtt = sample.round_trip_ms
    if not losses and rtt is None:
        return None
    loss = max(losses, default=0.0)
    rtt = rtt or 0.0
    if loss < 0.02 and rtt < 300:
        return "good"
    if loss < 0.10 and rtt < 800:
        return "fair"
    return "poor"


@dataclass(eq=False)
class Member:
    """A person in the classroom or its lobby, with one connection."""

    identity: Identity
    peer: Peer
    moderator: bool
    since: float = field(default_factory=time.time)
    admitted: bool = False
    hand: bool = False
    speaking_tracks: set[str] = field(default_factory=set)
    media: dict[Source, str] = field(default_factory=lambda: dict.fromkeys(Source, "off"))
    quality: str | None = None
    participant: Participant | None = None
    gone: bool = False
    # There was media to receive at the join and no media connection is up yet.
    awaiting_media: bool = False
    presence: Presence = field(init=False)

    def __post_init__(self) -> None:
        identity = self.identity
        self.presence = Presence(
            identity.user_id, identity.name, identity.role.value, uuid.uuid4().hex
        )

    @property
    def id(self) -> str:
        return self.identity.user_id

    @property
    def role(self) -> Role:
        return self.identity.role


class Classroom:
    """The live state of one lesson."""

    def __init__(
        self,
        lesson: Lesson,
        sfu: Sfu,
        lessons: LessonStore,
        chat: ChatStore,
        ice_servers: list[dict[str, Any]],
        on_empty: Callable[[Classroom], None],
        trail: LessonTrail | None = None,
        recording: RecordingHook | None = None,
    ) -> None:
        self.lesson = lesson
        self.sfu = sfu
        self._lessons = lessons
        self._chat = chat
        self._ice_servers = ice_servers
        self._on_empty = on_empty
        self.trail = trail or LessonTrail(None, lesson.id, lesson.course)
        self.members: dict[str, Member] = {}
        self.lobby: dict[str, Member] = {}
        # Kept across reconnects, so a dropped student returns with the floor
        # and without queueing in the lobby again.
        self.floors: dict[str, frozenset[Source]] = {}
        self.admitted_ids: set[str] = set()
        self.removed_ids: set[str] = set()
        self.recording = False
        self.recording_id = ""
        self._recorder = recording
        self.ended = False
        self._lock = asyncio.Lock()

    @property
    def room_id(self) -> str:
        return self.lesson.id

    # --- views ----------------------------------------------------------------

    def describe(self, member: Member, *, with_quality: bool) -> dict[str, Any]:
        """A participant as docs/protocol.md shows it."""
        return {
            "id": member.id,
            "name": member.identity.name,
            "role": member.role.value,
            "hand": member.hand,
            "speaking": bool(member.speaking_tracks),
            "floor": sorted(self.allowed_sources(member)),
            "media": {s.value: state for s, state in member.media.items()},
            "quality": member.quality if with_quality else None,
        }

    def _lobby_view(self) -> list[dict[str, Any]]:
        return [
            {"id": m.id, "name": m.identity.name, "role": m.role.value, "since": m.since}
            for m in self.lobby.values()
        ]

    def allowed_sources(self, member: Member) -> frozenset[Source]:
        """What a member may publish: moderators everything, students their floor.

        In exams and defences every student starts with the floor for camera,
        microphone and screen (they are recorded, docs/protocol.md "Floor"); a
        teacher may still take it away.
        """
        if member.moderator:
            return ALL_SOURCES
        if member.role is Role.STUDENT:
            default = ALL_SOURCES if self.lesson.kind in PROCTORED else frozenset()
            return self.floors.get(member.id, default)
        return frozenset()

    def _broadcast(self, message: dict[str, Any], *, exclude: Member | None = None) -> None:
        for member in self.members.values():
            if member is not exclude:
                member.peer.send(message)

    def _moderators(self) -> Iterable[Member]:
        return (m for m in self.members.values() if m.moderator)

    def _updated(self, member: Member) -> None:
        """Tell everyone about a change; quality only to moderators and the member."""
        full = {"type": "updated", "participant": self.describe(member, with_quality=True)}
        public = {"type": "updated", "participant": self.describe(member, with_quality=False)}
        for other in self.members.values():
            other.peer.send(full if other.moderator or other is member else public)

    def _lobby_changed(self) -> None:
        message = {"type": "lobby_changed", "lobby": self._lobby_view()}
        for moderator in self._moderators():
            moderator.peer.send(message)

    # --- arriving and leaving -------------------------------------------------

    async def join(self, identity: Identity, peer: Peer) -> Member:
        """Enter the lesson or its lobby; the same identity replaces its old session."""
        async with self._lock:
            member = Member(identity, peer, moderator=identity.role in MODERATORS)
            old = self.members.get(member.id) or self.lobby.get(member.id)
            if old is not None:
                old.gone = True
                old.peer.close(CloseCode.REPLACED, "the same identity joined from elsewhere")
                self.trail.left(old.presence, "replaced")
                member.hand = old.hand
                if old.admitted:
                    self.members.pop(member.id, None)
                else:
                    self.lobby.pop(member.id, None)
            admitted = member.moderator or (
                member.id not in self.removed_ids
                and (not self.lesson.lobby or member.id in self.admitted_ids)
            )
            if not admitted:
                self.lobby[member.id] = member
                peer.send(
                    {
                        "type": "lobby",
                        "you": self.describe(member, with_quality=True),
                        "lesson": self.lesson.summary(),
                    }
                )
                self._lobby_changed()
                return member
            starting = member.role is Role.TEACHER and self.lesson.status is not LessonStatus.LIVE
            if starting:
                # Before the teacher's own join, so the record reads in order.
                self.trail.lesson_started(member.id, self.lesson)
                self.lesson = await self._lessons.set_status(self.lesson.id, LessonStatus.LIVE)
            await self._enter(member, replacing=old is not None and old.admitted)
            if starting and self.lesson.recording_policy is RecordingPolicy.AUTOMATIC:
                await self._start_recording("")
            return member

    async def _enter(self, member: Member, *, replacing: bool) -> None:
        # Read before joining the SFU room: from there on, nothing may await
        # until `welcome` is queued, or a subscriber `offer` could overtake it.
        recent = await self._chat.recent(self.lesson.id, RECENT_CHAT)
        member.admitted = True
        self.admitted_ids.add(member.id)
        self.members[member.id] = member
        # Room.join replaces a participant with the same id: the old session's
        # media is torn down before the new one's is set up.
        try:
            member.participant = await self.sfu.room(self.room_id).join(
                member.id, self.allowed_sources(member), auto_subscribe=True
            )
        except BaseException:
            if self.members.get(member.id) is member:
                del self.members[member.id]
            member.gone = True
            raise
        if member.gone:  # replaced or removed while joining the SFU room
            return
        member.peer.send(
            {
                "type": "welcome",
                "you": self.describe(member, with_quality=True),
                "lesson": self.lesson.summary(),
                "participants": [
                    self.describe(m, with_quality=member.moderator or m is member)
                    for m in self.members.values()
                ],
                "chat": [m.to_json() for m in recent],
                "lobby": self._lobby_view() if member.moderator else [],
                "recording": self.recording,
                "ice_servers": self._ice_servers,
            }
        )
        if not member.participant.subscriptions:
            # Nothing to receive yet: present from now. Otherwise the join is
            # recorded when a media connection connects (on_media_event).
            self.trail.joined(member.presence)
        else:
            member.awaiting_media = True
        if replacing:
            self._updated(member)
        else:
            public = {"type": "joined", "participant": self.describe(member, with_quality=False)}
            full = {"type": "joined", "participant": self.describe(member, with_quality=True)}
            for other in self.members.values():
                if other is not member:
                    other.peer.send(full if other.moderator else public)

    async def leave(self, member: Member, reason: str) -> None:
        """The member's connection ended (`reason` as in the `left` message)."""
        async with self._lock:
            if self.lobby.get(member.id) is member:
                del self.lobby[member.id]
                self._lobby_changed()
            elif self.members.get(member.id) is member:
                del self.members[member.id]
                if reason in ("left", "removed") and self.lesson.kind not in PROCTORED:
                    # Leaving on purpose gives the floor back; a dropped
                    # connection keeps it for the reconnect.
                    self.floors.pop(member.id, None)
                if not self.ended:
                    await self.sfu.room(self.room_id).leave(member.id)
                self._broadcast({"type": "left", "participant": member.id, "reason": reason})
            self.trail.left(member.presence, reason)
            member.gone = True
            if not self.members and not self.lobby:
                if self.lesson.status is LessonStatus.LIVE and not self.ended:
                    # Everyone has gone: the lesson is over until a teacher returns.
                    self.ended = True
                    await self._stop_recording("")
                    self.trail.lesson_ended("", "empty")
                    self.lesson = await self._lessons.set_status(self.lesson.id, LessonStatus.ENDED)
                    await self.trail.checkpoint()
                self._on_empty(self)

    # --- moderation -----------------------------------------------------------

    def _target(self, actor: Member, participant_id: str, request_id: int | None) -> Member:
        if not actor.moderator:
            raise RequestError("forbidden", "only teachers and assistants may do this", request_id)
        target = self.members.get(participant_id)
        if target is None:
            raise RequestError("not_found", f"no participant {participant_id!r}", request_id)
        if target.moderator and actor.role is Role.ASSISTANT and target is not actor:
            raise RequestError("forbidden", "an assistant cannot act on a teacher", request_id)
        return target

    async def admit(self, actor: Member, participant_id: str, request_id: int | None) -> None:
        """Let someone in from the lobby."""
        if not actor.moderator:
            raise RequestError("forbidden", "only teachers and assistants admit", request_id)
        async with self._lock:
            member = self.lobby.pop(participant_id, None)
            if member is None:
                raise RequestError("not_found", f"{participant_id!r} is not waiting", request_id)
            self.removed_ids.discard(member.id)
            self._lobby_changed()
            await self.trail.lobby(member.id, True, actor.id)
            await self._enter(member, replacing=False)

    def deny(
        self, actor: Member, participant_id: str, request_id: int | None
    ) -> asyncio.Future[Any]:
        """Refuse someone waiting in the lobby."""
        if not actor.moderator:
            raise RequestError("forbidden", "only teachers and assistants deny", request_id)
        member = self.lobby.pop(participant_id, None)
        if member is None:
            raise RequestError("not_found", f"{participant_id!r} is not waiting", request_id)
        member.gone = True
        member.peer.close(CloseCode.FORBIDDEN, "a teacher declined your request to join")
        self._lobby_changed()
        return self.trail.lobby(member.id, False, actor.id)

    def set_floor(
        self, actor: Member, participant_id: str, sources: frozenset[Source], request_id: int | None
    ) -> asyncio.Future[Any]:
        """Give (or with no sources take) the floor; revoked media stops at once."""
        target = self._target(actor, participant_id, request_id)
        if target.role is not Role.STUDENT:
            raise RequestError(
                "bad_request",
                f"the floor is for students; {target.id!r} is a {target.role}",
                request_id,
            )
        if sources or self.lesson.kind in PROCTORED:
            # An empty floor is kept in a proctored lesson: it overrides the default.
            self.floors[target.id] = sources
        else:
            self.floors.pop(target.id, None)
        if sources and target.hand:
            target.hand = False
            self.trail.hand(target.presence, False, by=actor.id)
        if target.participant is not None:
            # Synchronous: every student's copy of a revoked track ends before
            # this returns (TrackUnpublished events update the media state).
            target.participant.set_allowed_sources(sources)
        target.peer.send({"type": "floor", "sources": sorted(sources), "by": actor.identity.name})
        self._updated(target)
        return self.trail.floor(target.presence, (s.value for s in sources), actor.id)

    def lower_hand(
        self, actor: Member, participant_id: str, request_id: int | None
    ) -> asyncio.Future[Any] | None:
        """A moderator lowers someone's hand."""
        target = self._target(actor, participant_id, request_id)
        if not target.hand:
            return None
        target.hand = False
        self._updated(target)
        return self.trail.hand(target.presence, False, by=actor.id)

    def mute(
        self, actor: Member, participant_id: str, source: Source, request_id: int | None
    ) -> None:
        """Stop forwarding one of someone's sources; they may unmute themselves."""
        target = self._target(actor, participant_id, request_id)
        if target.participant is None or target.media[source] == "off":
            raise RequestError("not_found", f"{target.id!r} does not publish {source}", request_id)
        target.participant.set_muted(source, True)
        target.peer.send({"type": "muted", "source": source.value, "by": actor.identity.name})

    def remove(self, actor: Member, participant_id: str, request_id: int | None) -> None:
        """Remove someone; if they come back they wait in the lobby."""
        target = self._target(actor, participant_id, request_id)
        if target is actor:
            raise RequestError("bad_request", "use 'leave' to leave", request_id)
        if target.moderator and actor.role not in (Role.TEACHER, Role.ADMIN):
            raise RequestError("forbidden", "only a teacher may remove a moderator", request_id)
        self.removed_ids.add(target.id)
        self.admitted_ids.discard(target.id)
        target.peer.close(CloseCode.REMOVED, f"removed from the lesson by {actor.identity.name}")

    async def end(self, actor: Member, request_id: int | None) -> None:
        """End the lesson for everyone."""
        if actor.role not in (Role.TEACHER, Role.ADMIN):
            raise RequestError("forbidden", "only a teacher may end the lesson", request_id)
        self.ended = True
        await self._stop_recording(actor.id)
        for member in self.members.values():
            self.trail.left(member.presence, "ended")
        ended = self.trail.lesson_ended(actor.id, "teacher")
        self.lesson = await self._lessons.set_status(self.lesson.id, LessonStatus.ENDED)
        for member in [*self.members.values(), *self.lobby.values()]:
            member.peer.close(CloseCode.LESSON_ENDED, f"{actor.identity.name} ended the lesson")
        await self.sfu.close_room(self.room_id)
        await ended
        await self.trail.checkpoint()

    # --- the member's own actions ---------------------------------------------

    def check_publish(
        self, member: Member, sources: Iterable[Source], request_id: int | None
    ) -> None:
        """Refuse, with the reason, sources the member may not publish."""
        refused = sorted(set(sources) - self.allowed_sources(member))
        if refused:
            what = ", ".join(refused)
            raise RequestError("forbidden", f"you do not have the floor for {what}", request_id)

    async def chat(self, member: Member, text: str, request_id: int | None) -> None:
        """Keep a chat message with the lesson, then show it to everyone."""
        if member.role is Role.OBSERVER:
            raise RequestError("forbidden", "observers do not write in the chat", request_id)
        message = await self._chat.append(
            self.lesson.id, member.id, member.identity.name, member.role.value, text
        )
        recorded = self.trail.chat(member.presence, message.id, text)
        self._broadcast({"type": "chat", "message": message.to_json()})
        with contextlib.suppress(Exception):  # logged by the trail
            await recorded

    def hand(
        self, member: Member, raised: bool, request_id: int | None
    ) -> asyncio.Future[Any] | None:
        """A student raises or lowers their hand."""
        if member.role is not Role.STUDENT:
            raise RequestError("forbidden", "only students raise hands", request_id)
        if member.hand == raised:
            return None
        member.hand = raised
        self._updated(member)
        return self.trail.hand(member.presence, raised)

    async def record(self, actor: Member, active: bool, request_id: int | None) -> None:
        """A teacher starts or stops the recording."""
        if not actor.moderator:
            raise RequestError("forbidden", "only teachers start and stop recording", request_id)
        if self.lesson.recording_policy is RecordingPolicy.OFF:
            raise RequestError("forbidden", "recording is off for this lesson", request_id)
        if self._recorder is None:
            raise RequestError("bad_request", "this server does not record lessons", request_id)
        if active:
            await self._start_recording(actor.id)
        else:
            await self._stop_recording(actor.id)

    async def _start_recording(self, actor: str) -> None:
        if self._recorder is None or self.recording:
            return
        try:
            recording_id = await self._recorder.start(self)
        except Exception:
            # The lesson carries on without a recording; the badge stays off,
            # so nobody believes they are being recorded when they are not.
            logger.exception("lesson %s: the recording did not start", self.lesson.id)
            return
        self.set_recording(True, actor, recording_id)

    async def _stop_recording(self, actor: str) -> None:
        if self._recorder is None or not self.recording:
            return
        recording_id = self.recording_id
        try:
            await self._recorder.stop(self)
        except Exception:
            logger.exception("lesson %s: the recording did not stop cleanly", self.lesson.id)
        self.set_recording(False, actor, recording_id)

    def set_recording(self, active: bool, actor: str = "", recording: str = "") -> None:
        """The recorder started or stopped: everyone's badge follows."""
        if self.recording != active:
            self.recording = active
            self.recording_id = recording if active else ""
            self.trail.recording(active, actor, recording)
            self._broadcast({"type": "recording", "active": active})

    # --- media events ---------------------------------------------------------

    def on_media_event(self, event: MediaEvent) -> None:
        """Reflect the SFU's events in presence; offers go to their participant."""
        member = self.members.get(event.participant_id)
        if member is None or member.gone:
            return
        participant = member.participant
        if participant is not None and participant.closed:
            return  # an event of a replaced session's media
        match event:
            case SubscriberOffer(sdp=sdp, tracks=tracks):
                member.peer.send(
                    {
                        "type": "offer",
                        "sdp": sdp,
                        "tracks": [
                            {"mid": mid, "track": track, "participant": owner, "source": source}
                            for mid, track, owner, source in tracks
                        ],
                    }
                )
                member.peer.expect_answer()
            case TrackPublished(source=source):
                member.media[source] = "on"
                self.trail.media(member.presence, "media.published", source.value)
                self._updated(member)
            case TrackUnpublished(source=source, track_id=track_id, reason=reason):
                member.media[source] = "off"
                self.trail.media(member.presence, "media.unpublished", source.value, reason)
                self._speaking(member, track_id, False)
                self._updated(member)
            case TrackMuted(source=source, muted=muted):
                member.media[source] = "muted" if muted else "on"
                kind = "media.muted" if muted else "media.unmuted"
                self.trail.media(member.presence, kind, source.value)
                self._updated(member)
            case SpeakingChanged(track_id=track_id, speaking=speaking):
                if self._speaking(member, track_id, speaking):
                    self._updated(member)
            case QualitySample():
                self._quality(member, event)
                self.trail.quality(member.presence, event)
            case ConnectionStateChanged(state="connected"):
                self.trail.joined(member.presence)
                if member.awaiting_media:
                    member.awaiting_media = False
                    member.peer.media_connected()
            case ConnectionStateChanged(direction=direction, state="failed"):
                # The browser reconnects on 4408 and republishes.
                member.peer.close(CloseCode.TIMEOUT, f"the {direction} media connection failed")
            case _:
                pass

    def _speaking(self, member: Member, track_id: str, speaking: bool) -> bool:
        """Track a speaking change; True when the member's speaking state flipped."""
        before = bool(member.speaking_tracks)
        if speaking:
            member.speaking_tracks.add(track_id)
        else:
            member.speaking_tracks.discard(track_id)
        after = bool(member.speaking_tracks)
        if before != after:
            self.trail.speaking(member.presence, after)
        return before != after

    def _quality(self, member: Member, sample: QualitySample) -> None:
        level = quality_level(sample)
        loss = max(
            (x for x in (sample.upstream_loss, sample.downstream_loss) if x is not None),
            default=None,
        )
        member.peer.send(
            {
                "type": "quality",
                "level": level,
                "loss": None if loss is None else round(loss, 4),
                "rtt_ms": None if sample.round_trip_ms is None else round(sample.round_trip_ms),
                "bitrate_bps": sample.downstream_bitrate_bps,
            }
        )
        if level != member.quality:
            member.quality = level
            self._updated(member)


def participant_of(member: Member, request_id: int | None) -> Participant:
    """The member's SFU participant, or a request error for lobby members."""
    if member.participant is None or not member.admitted:
        raise RequestError("in_lobby", "wait until a teacher admits you", request_id)
    return member.participant
