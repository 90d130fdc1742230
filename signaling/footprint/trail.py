"""A lesson's footprint events, as the classroom produces them.

`LessonTrail` turns what happens in a classroom into ledger events
(docs/footprint.md, "Types"): it owns the rules that make the record hold
up in a dispute: a participant is *joined* only once their media is
connected (or at admission when there is nothing to receive), every join is
paired with exactly one leave, and quality is sampled every 30 s per person.
The classroom awaits the returned futures where a client's `ok` must mean
"recorded".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = ["QUALITY_PERIOD", "Appender", "LessonTrail", "Presence"]

logger = logging.getLogger(__name__)

QUALITY_PERIOD: Final = 30.0
"""Seconds between two quality samples of one participant in the ledger."""


class Appender(Protocol):
    """The ledger's append (signaling.footprint.Ledger)."""

    def append(
        self, lesson: str, course: str, actor: str, type: str, data: Mapping[str, Any]
    ) -> asyncio.Future[Any]: ...


@dataclass(eq=False)
class Presence:
    """What the trail remembers of one session (one WebSocket of one person)."""

    user_id: str
    name: str
    role: str
    session: str
    joined: bool = False
    left: bool = False
    last_quality: float = field(default=0.0)


def _done() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("footprint event was not recorded: %s", future.exception())


class LessonTrail:
    """Footprint events of one lesson."""

    def __init__(self, ledger: Appender | None, lesson_id: str, course: str) -> None:
        self.ledger = ledger
        self.lesson_id = lesson_id
        self.course = course

    def record(self, type_: str, actor: str, data: Mapping[str, Any]) -> asyncio.Future[Any]:
        """Append one event; the future completes once it is durable."""
        if self.ledger is None:
            return _done()
        try:
            future = self.ledger.append(self.lesson_id, self.course, actor, type_, data)
        except (ValueError, RuntimeError) as exc:  # invalid data, ledger closed
            logger.error("footprint event %s refused: %s", type_, exc)
            return _done()
        future.add_done_callback(_log_failure)
        return future

    # --- the lesson -------------------------------------------------------------

    def lesson_started(self, actor: str, lesson: Any) -> asyncio.Future[Any]:
        return self.record(
            "lesson.started",
            actor,
            {
                "title": lesson.title,
                "kind": str(lesson.kind),
                "scheduled_start": lesson.scheduled_start.isoformat(),
                "scheduled_end": lesson.scheduled_end.isoformat(),
                "teachers": list(lesson.teacher_ids),
            },
        )

    def lesson_ended(self, actor: str, reason: str) -> asyncio.Future[Any]:
        return self.record("lesson.ended", actor, {"reason": reason})

    async def checkpoint(self) -> None:
        """Sign the ledger's head (at every lesson end)."""
        checkpoint = getattr(self.ledger, "checkpoint", None)
        if checkpoint is not None:
            try:
                await checkpoint()
            except (OSError, RuntimeError) as exc:
                logger.error("footprint checkpoint failed: %s", exc)

    # --- presence ---------------------------------------------------------------

    def joined(self, presence: Presence) -> asyncio.Future[Any] | None:
        """Record the join once (media connected, or nothing to receive yet)."""
        if presence.joined or presence.left:
            return None
        presence.joined = True
        return self.record(
            "participant.joined",
            presence.user_id,
            {"session": presence.session, "role": presence.role, "name": presence.name},
        )

    def left(self, presence: Presence, reason: str) -> asyncio.Future[Any] | None:
        """Record the leave that pairs the join; nothing if the join was never recorded."""
        if presence.left:
            return None
        presence.left = True
        if not presence.joined:
            return None
        return self.record(
            "participant.left", presence.user_id, {"session": presence.session, "reason": reason}
        )

    # --- activity ---------------------------------------------------------------

    def media(
        self, presence: Presence, type_: str, source: str, reason: str | None = None
    ) -> asyncio.Future[Any]:
        data: dict[str, Any] = {"session": presence.session, "source": source}
        if reason is not None:
            data["reason"] = reason
        return self.record(type_, presence.user_id, data)

    def speaking(self, presence: Presence, speaking: bool) -> asyncio.Future[Any]:
        kind = "speaking.started" if speaking else "speaking.stopped"
        return self.record(kind, presence.user_id, {"session": presence.session})

    def hand(self, presence: Presence, raised: bool, by: str | None = None) -> asyncio.Future[Any]:
        data: dict[str, Any] = {"session": presence.session}
        if by is not None:
            data["by"] = by
        return self.record("hand.raised" if raised else "hand.lowered", presence.user_id, data)

    def chat(self, presence: Presence, message_id: int, text: str) -> asyncio.Future[Any]:
        return self.record(
            "chat.sent",
            presence.user_id,
            {"session": presence.session, "message": message_id, "text": text},
        )

    def floor(self, presence: Presence, sources: Iterable[str], by: str) -> asyncio.Future[Any]:
        listed = sorted(sources)
        return self.record(
            "floor.given" if listed else "floor.taken",
            presence.user_id,
            {"session": presence.session, "sources": listed, "by": by},
        )

    def lobby(self, user_id: str, admitted: bool, by: str) -> asyncio.Future[Any]:
        return self.record("lobby.admitted" if admitted else "lobby.denied", user_id, {"by": by})

    def recording(self, active: bool, actor: str, recording: str) -> asyncio.Future[Any]:
        kind = "recording.started" if active else "recording.stopped"
        return self.record(kind, actor, {"recording": recording})

    def quality(self, presence: Presence, sample: Any) -> asyncio.Future[Any] | None:
        """One sample every QUALITY_PERIOD seconds per session, while joined."""
        now = time.monotonic()
        if not presence.joined or presence.left or now - presence.last_quality < QUALITY_PERIOD:
            return None
        presence.last_quality = now

        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return self.record(
            "quality.sample",
            presence.user_id,
            {
                "session": presence.session,
                "loss_up": rounded(sample.upstream_loss, 4),
                "loss_down": rounded(sample.downstream_loss, 4),
                "rtt_ms": rounded(sample.round_trip_ms, 1),
                "bitrate_bps": int(sample.downstream_bitrate_bps),
            },
        )
