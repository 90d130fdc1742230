"""The recordings API: the library of a lesson, one recording, its media, viewing reports.

Same conventions as :mod:`signaling.rest` (Bearer JWT, JSON errors
``{"error", "message"}``, 401 with ``WWW-Authenticate``). Routes:

- ``GET /api/lessons/{id}/recordings``: the lesson's recordings;
- ``GET /api/recordings/{rid}``: one recording, each playable part and a ready
  composite with a fresh signed media URL, and the lesson's summary;
- ``POST /api/recordings/{rid}/viewed``: ``{"intervals": [[from_s, to_s], ...]}``
  becomes a footprint event ``recording.viewed`` (204 once it is committed);
- ``GET /media/recordings/{rid}/{part id | composite}?exp=&sig=``: the file, with
  range requests; the signed URL (:mod:`.urls`) is the only credential.

Who may watch (anything else is 403): an admin; a teacher of the lesson; a
student on the course's roster. An unknown recording id is 404 with no detail,
and ids are 128-bit random, so nothing can be learnt by guessing them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import hdrs, web

from signaling.footprint.canonical import format_time
from signaling.footprint.roster import RosterStore
from signaling.identity import AuthError, Identity, Role, Verifier
from signaling.lessons import ChatStore, Lesson, LessonStore
from signaling.rest import _ApiError, _int_query, _json_errors, _json_object

from .catalogue import Catalogue
from .model import Part, Recording, RecordingNotFound
from .retention import RetentionTask
from .urls import MEDIA_PREFIX, MediaSigner
from .viewing import InvalidViewing, ReportLimiter, parse_viewed

__all__ = ["CATALOGUE_KEY", "MEDIA_CACHE_CONTROL", "LedgerAppend", "setup_recordings"]

_log = logging.getLogger(__name__)

CATALOGUE_KEY: Final = web.AppKey("recordings.catalogue", Catalogue)
"""Where :func:`setup_recordings` leaves the catalogue, for the recorder and the composite job."""

MEDIA_CACHE_CONTROL: Final = "private, max-age=600"
"""A media response may be kept by the viewer's browser only, as long as its URL lives."""

VIEWED_EVENT: Final = "recording.viewed"

# By file suffix: (type of a video part or composite, type of an audio-only part).
_CONTENT_TYPES: Final = {
    ".webm": ("video/webm", "audio/webm"),
    ".mkv": ("video/x-matroska", "audio/x-matroska"),
    ".mp4": ("video/mp4", "audio/mp4"),
    ".ogg": ("video/ogg", "audio/ogg"),
    ".opus": ("audio/ogg", "audio/ogg"),
}


class LedgerAppend(Protocol):
    """The part of ``signaling.footprint.Ledger`` this API writes with."""

    def append(
        self, lesson: str, course: str, actor: str, type: str, data: dict[str, Any]
    ) -> Awaitable[Any]: ...


def _content_type(path: Path, kind: str) -> str:
    video, audio = _CONTENT_TYPES.get(path.suffix.lower(), ("application/octet-stream",) * 2)
    return audio if kind == "audio" else video


def _locate(media_root: Path, relative: str) -> Path | None:
    """The file at ``relative`` inside ``media_root``, or None if missing or outside it."""
    root = media_root.resolve()
    path = (root / relative).resolve()
    # resolve() has followed any symlink: a link out of the folder is refused here.
    return path if path.is_relative_to(root) and path.is_file() else None


def _not_found() -> _ApiError:
    # The same answer for every unknown id, whatever was asked: nothing to learn from it.
    return _ApiError(404, "not_found", "no such recording")


@dataclass(frozen=True, slots=True)
class _Config:
    media_root: Path
    signer: MediaSigner
    clock: Callable[[], datetime]


class _Api:
    """The handlers, bound to the stores, the ledger and the verifier."""

    def __init__(
        self,
        catalogue: Catalogue,
        lessons: LessonStore,
        roster: RosterStore,
        ledger: LedgerAppend,
        verifier: Verifier,
        config: _Config,
        chat: ChatStore | None = None,
    ) -> None:
        self._chat = chat
        self._catalogue = catalogue
        self._lessons = lessons
        self._roster = roster
        self._ledger = ledger
        self._verifier = verifier
        self._config = config
        self._limiter = ReportLimiter()

    def _identity(self, request: web.Request) -> Identity:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("missing")
        return self._verifier.verify(token.strip())

    async def _may_watch(self, identity: Identity, lesson: Lesson) -> None:
        if identity.role is Role.ADMIN:
            return
        if identity.role is Role.TEACHER and lesson.is_teacher(identity.user_id):
            return
        if identity.role is Role.STUDENT and lesson.course in await self._roster.courses_of(
            identity.user_id
        ):
            return
        raise _ApiError(
            403,
            "forbidden",
            "only the lesson's teachers, the course's enrolled students and admins "
            "may watch its recordings",
        )

    async def _recording(
        self, request: web.Request, identity: Identity
    ) -> tuple[Recording, Lesson]:
        """The recording named in the path and its lesson, if ``identity`` may watch it."""
        try:
            recording = await self._catalogue.get(request.match_info["rid"])
        except RecordingNotFound:
            raise _not_found() from None
        lesson = await self._lessons.get(recording.lesson_id)
        await self._may_watch(identity, lesson)
        return recording, lesson

    def _signed(self, recording_id: str, file: str) -> str:
        url, _ = self._config.signer.sign(recording_id, file)
        return url

    def _part_json(self, part: Part, lesson: Lesson) -> dict[str, Any]:
        body = part.to_json()
        body["teacher"] = lesson.is_teacher(part.participant_id)
        body["url"] = self._signed(part.recording_id, part.id) if part.playable else None
        return body

    async def lesson_recordings(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        lesson = await self._lessons.get(request.match_info["id"])
        await self._may_watch(identity, lesson)
        recordings = await self._catalogue.for_lesson(lesson.id)
        return web.json_response({"recordings": [r.to_json() for r in recordings]})

    async def recording(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        recording, lesson = await self._recording(request, identity)
        body = recording.to_json()
        body["parts"] = [self._part_json(part, lesson) for part in recording.parts]
        ready = recording.composite_status == "ready" and recording.composite_path is not None
        body["composite"]["url"] = self._signed(recording.id, "composite") if ready else None
        body["lesson"] = lesson.summary()
        expires = datetime.fromtimestamp(self._config.signer.expiry(), UTC)
        body["urls_expire_at"] = format_time(expires)
        return web.json_response(body, headers={hdrs.CACHE_CONTROL: "no-store"})

    async def recording_chat(self, request: web.Request) -> web.StreamResponse:
        """The lesson's chat, for whoever may watch the recording (their token may be for
        another lesson of the course: the lesson's own chat route would refuse it)."""
        identity = self._identity(request)
        recording, _ = await self._recording(request, identity)
        if self._chat is None:
            raise _ApiError(404, "not_found", "this server keeps no chat")
        after = _int_query(request, "after", 0, 0, 2**53 - 1)
        limit = _int_query(request, "limit", 100, 1, 500)
        messages = await self._chat.page(recording.lesson_id, after_id=after, limit=limit)
        return web.json_response({"messages": [message.to_json() for message in messages]})

    def _limit_s(self, recording: Recording) -> float:
        """The recording's length as far as known: its parts', or the time it has run."""
        end = recording.ended_at or self._config.clock()
        elapsed = max(0.0, (end - recording.started_at).total_seconds())
        duration = recording.duration_s
        if duration is None:
            return elapsed
        return max(duration, elapsed) if recording.status == "recording" else duration

    async def viewed(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        recording, _ = await self._recording(request, identity)
        body = await _json_object(request)
        try:
            intervals = parse_viewed(body, self._limit_s(recording))
        except InvalidViewing as error:
            raise _ApiError(422, "invalid", error.message, field=error.field) from None
        if intervals:
            if not self._limiter.allow(identity.user_id, recording.id):
                raise _ApiError(
                    429, "rate_limited", "too many viewing reports; send one every 30 s"
                )
            data = {"recording": recording.id, "intervals": [[a, b] for a, b in intervals]}
            try:
                written = self._ledger.append(
                    recording.lesson_id, recording.course, identity.user_id, VIEWED_EVENT, data
                )
            except RuntimeError:  # LedgerClosed: the server is shutting down
                raise _ApiError(503, "unavailable", "the footprint ledger is closed") from None
            except ValueError as error:  # a user id longer than the ledger keeps
                raise _ApiError(400, "bad_request", str(error)) from None
            # Answered only once committed: a 204 means the viewing counts.
            await written
        return web.Response(status=204)

    async def media(self, request: web.Request) -> web.StreamResponse:
        recording_id, file = request.match_info["rid"], request.match_info["file"]
        query = request.query
        # The signature first: without one, nothing (not even whether the id exists) is told.
        if not self._config.signer.verify(recording_id, file, query.get("exp"), query.get("sig")):
            raise _ApiError(403, "forbidden", "the media link is invalid or has expired")
        try:
            recording = await self._catalogue.get(recording_id)
        except RecordingNotFound:
            raise _not_found() from None
        if file == "composite":
            relative, kind = recording.composite_path, "video"
            if recording.composite_status != "ready":
                relative = None
        else:
            part = next((p for p in recording.parts if p.id == file and p.playable), None)
            relative, kind = (part.path, part.kind) if part is not None else (None, "video")
        if relative is None:
            raise _ApiError(404, "not_found", "no such file in this recording")
        # In a thread: resolve() and stat() touch the disk, which may be a network share.
        path = await asyncio.to_thread(_locate, self._config.media_root, relative)
        if path is None:
            _log.warning("recording %s: file %s is missing", recording_id, relative)
            raise _ApiError(404, "not_found", "the file of this recording is missing")
        return web.FileResponse(
            path,
            headers={
                hdrs.CONTENT_TYPE: _content_type(path, kind),
                hdrs.CACHE_CONTROL: MEDIA_CACHE_CONTROL,
            },
        )


def setup_recordings(
    app: web.Application,
    *,
    catalogue: Catalogue,
    lessons: LessonStore,
    roster: RosterStore,
    ledger: LedgerAppend,
    verifier: Verifier,
    media_root: Path,
    url_secret_file: Path,
    retention_days: int | None,
    url_lifetime_s: int = 600,
    clock: Callable[[], datetime] | None = None,
    chat: ChatStore | None = None,
) -> None:
    """Adds the recordings routes (``RECORDINGS_PATHS`` of :mod:`signaling.openapi`, and
    ``/media/recordings/...``) to ``app``, and the hourly retention task to its life cycle.
    """
    signer = MediaSigner.from_file(url_secret_file, lifetime_s=url_lifetime_s)
    now = clock or (lambda: datetime.now(UTC))
    api = _Api(catalogue, lessons, roster, ledger, verifier, _Config(media_root, signer, now), chat)
    app[CATALOGUE_KEY] = catalogue
    router = app.router
    # allow_head=False on /api, as in signaling.rest: the OpenAPI document lists every route.
    router.add_get(
        "/api/lessons/{id}/recordings",
        _json_errors(api.lesson_recordings),
        name="api.lesson.recordings",
        allow_head=False,
    )
    router.add_get(
        "/api/recordings/{rid}", _json_errors(api.recording), name="api.recording", allow_head=False
    )
    router.add_post(
        "/api/recordings/{rid}/viewed", _json_errors(api.viewed), name="api.recording.viewed"
    )
    router.add_get(
        "/api/recordings/{rid}/chat",
        _json_errors(api.recording_chat),
        name="api.recording.chat",
        allow_head=False,
    )
    router.add_get(MEDIA_PREFIX + "/{rid}/{file}", _json_errors(api.media), name="media.recording")

    retention = RetentionTask(catalogue, media_root, retention_days, clock=now)

    async def start_retention(_: web.Application) -> None:
        retention.start()

    async def stop_retention(_: web.Application) -> None:
        await retention.stop()

    app.on_startup.append(start_retention)
    # At shutdown, before the cleanups that close the database; again at cleanup (a no-op
    # then) for runners that skip the shutdown signal.
    app.on_shutdown.append(stop_retention)
    app.on_cleanup.append(stop_retention)
