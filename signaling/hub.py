"""The live lessons of this process: admission, and media events to their classroom.

`Classrooms` decides whether a verified identity may enter a lesson (the
token must admit them; a teacher must be one of the lesson's teachers or
hold a token for exactly this lesson; cancelled and ended lessons refuse
students) and keeps one `Classroom` per live lesson, created on the first
join and dropped when the last person leaves.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from sfu import MediaEvent, Sfu

from .classroom import Classroom, Member, Peer, RecordingHook
from .footprint.trail import Appender, LessonTrail
from .identity import Identity, Role
from .lessons import ChatStore, LessonNotFound, LessonStatus, LessonStore
from .protocol import CloseCode

__all__ = ["Classrooms", "Refused"]

logger = logging.getLogger(__name__)


class Refused(Exception):
    """An identity may not enter a lesson; closes the socket with `code`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Classrooms:
    """Every live classroom of this process, by lesson id."""

    def __init__(
        self,
        sfu: Sfu,
        lessons: LessonStore,
        chat: ChatStore,
        ice_servers: list[dict[str, Any]] | None = None,
        max_participants: int = 500,
        ledger: Appender | None = None,
        recording: RecordingHook | None = None,
    ) -> None:
        self.sfu = sfu
        self.lessons = lessons
        self.chat = chat
        self.ice_servers = ice_servers or []
        self.max_participants = max_participants
        self.ledger = ledger
        self.recording = recording
        self.rooms: dict[str, Classroom] = {}
        self.auth_failures: Counter[str] = Counter()
        sfu.add_listener(self._on_media_event)

    def _on_media_event(self, event: MediaEvent) -> None:
        classroom = self.rooms.get(event.room_id)
        if classroom is not None:
            classroom.on_media_event(event)

    def _forget(self, classroom: Classroom) -> None:
        if self.rooms.get(classroom.room_id) is classroom:
            del self.rooms[classroom.room_id]

    async def enter(
        self, identity: Identity, lesson_id: str, peer: Peer
    ) -> tuple[Classroom, Member]:
        """Admit `identity` to the lesson (or its lobby), or raise Refused."""
        try:
            lesson = await self.lessons.get(lesson_id)
        except LessonNotFound:
            raise Refused(CloseCode.NOT_FOUND, "there is no such lesson") from None
        if lesson.status is LessonStatus.CANCELLED:
            raise Refused(CloseCode.NOT_FOUND, "this lesson was cancelled")
        if not identity.admits(lesson.id, lesson.course):
            raise Refused(CloseCode.FORBIDDEN, "your token does not admit you to this lesson")
        teacher = identity.role is Role.TEACHER
        if teacher and not (lesson.is_teacher(identity.user_id) or identity.lesson_id == lesson.id):
            raise Refused(CloseCode.FORBIDDEN, "you are not a teacher of this lesson")
        classroom = self.rooms.get(lesson.id)
        if classroom is None or classroom.ended:
            if lesson.status is LessonStatus.ENDED and identity.role not in (
                Role.TEACHER,
                Role.ADMIN,
            ):
                raise Refused(CloseCode.LESSON_ENDED, "this lesson has ended")
            classroom = Classroom(
                lesson,
                self.sfu,
                self.lessons,
                self.chat,
                self.ice_servers,
                self._forget,
                LessonTrail(self.ledger, lesson.id, lesson.course),
                self.recording,
            )
            self.rooms[lesson.id] = classroom
        present = len(classroom.members) + len(classroom.lobby)
        if present >= self.max_participants and identity.user_id not in classroom.members:
            raise Refused(CloseCode.FORBIDDEN, "the lesson is full")
        try:
            member = await classroom.join(identity, peer)
        except BaseException:
            if not classroom.members and not classroom.lobby:
                self._forget(classroom)  # created for this join only: do not keep it
            raise
        return classroom, member
