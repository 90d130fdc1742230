"""The REST API under ``/api``: lessons, their chat, and the OpenAPI document.

Every request but ``GET /api/openapi.json`` carries ``Authorization: Bearer <JWT>``,
checked by :class:`~signaling.identity.Verifier`. The token is never logged and
never echoed: refusals carry :class:`~signaling.identity.AuthError`'s reason and
message only.

Who may do what (anything else is 403):

- an admin: everything;
- a teacher: create lessons in the course their token names, listing themselves
  among the teachers (by default they are the only one); list, change and cancel
  the lessons they teach;
- anyone the token admits to a lesson (:meth:`Identity.admits`), and its teachers:
  read it and its chat.

Errors are JSON ``{"error": code, "message": text}``, with ``"field"`` when one
field is to blame.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import hdrs, web

from signaling.identity import AuthError, Identity, Role, Verifier
from signaling.lessons import (
    ChatStore,
    InvalidLesson,
    Lesson,
    LessonConflict,
    LessonError,
    LessonNotFound,
    LessonStatus,
    LessonStore,
    validate_lesson_fields,
)
from signaling.openapi import OPENAPI

__all__ = ["MAX_BODY", "MAX_PAGE", "setup_rest"]

_log = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024
"""Largest request body in bytes; a lesson is well under 4 KiB."""

MAX_PAGE: Final = 500
"""Largest ``limit`` of a list or chat page."""

_DEFAULT_PAGE: Final = 100

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LESSON_ERROR_STATUS: Final[Mapping[type[LessonError], int]] = {
    LessonNotFound: 404,
    LessonConflict: 409,
    InvalidLesson: 422,
}


class _ApiError(Exception):
    """Ends a request with a JSON error."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _forbidden(message: str) -> _ApiError:
    return _ApiError(403, "forbidden", message)


def _error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _json_errors(handler: _Handler) -> _Handler:
    """Turns the errors a handler raises into JSON responses (for /api only)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as error:
            # The reason is a fixed word and safe to log; the token is not.
            _log.debug("REST %s %s refused: %s", request.method, request.path, error.reason)
            return _error_response(
                401,
                error.reason,
                str(error),
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer error="invalid_token"'},
            )
        except _ApiError as error:
            return _error_response(error.status, error.code, error.message, field=error.field)
        except LessonError as error:
            status = _LESSON_ERROR_STATUS.get(type(error), 400)
            field = error.field if isinstance(error, InvalidLesson) else None
            return _error_response(status, error.code, error.message, field=field)

    return wrapper


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON, though Python's parser accepts them.
    raise ValueError(f"{name} is not JSON")


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object; 413 past MAX_BODY, 400 if not an object."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    # Read with a cap rather than trust Content-Length: chunked bodies have none.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY + 1 - size):
        size += len(chunk)
        if size > MAX_BODY:
            raise _ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _ApiError(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _ApiError(400, "bad_request", "the body must be a JSON object")
    return data


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    # isdecimal() and a length cap: no signs, spaces, '_' or huge numbers reach int().
    if not (text.isascii() and text.isdecimal() and len(text) <= 18) or not (
        low <= int(text) <= high
    ):
        raise _ApiError(
            400, "bad_request", f"{name} must be an integer from {low} to {high}", field=name
        )
    return int(text)


def _time_query(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text) if len(text) <= 64 else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise _ApiError(
            400,
            "bad_request",
            f"{name} must be an ISO 8601 date and time with a time zone",
            field=name,
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _ApiError(400, "bad_request", f"{name} is out of range", field=name) from None


def _status_query(request: web.Request) -> LessonStatus | None:
    text = request.query.get("status")
    if text is None:
        return None
    try:
        return LessonStatus(text)
    except ValueError:
        choices = ", ".join(status.value for status in LessonStatus)
        raise _ApiError(
            400, "bad_request", f"status must be one of: {choices}", field="status"
        ) from None


def _may_manage(identity: Identity) -> None:
    """Only admins and teachers create, list, change and cancel lessons."""
    if identity.role not in (Role.ADMIN, Role.TEACHER):
        raise _forbidden(f"a {identity.role.value} cannot manage lessons")


def _may_change(identity: Identity, lesson: Lesson) -> None:
    _may_manage(identity)
    if identity.role is Role.TEACHER and not lesson.is_teacher(identity.user_id):
        raise _forbidden("only the lesson's own teachers may change or cancel it")


def _may_read(identity: Identity, lesson: Lesson) -> None:
    if identity.admits(lesson.id, lesson.course):
        return
    if identity.role is Role.TEACHER and lesson.is_teacher(identity.user_id):
        return
    raise _forbidden("the token does not admit you to this lesson")


def _teacher_keeps_limits(identity: Identity, fields: Mapping[str, Any], course: str) -> None:
    """A teacher works in their token's course and stays among the teachers they set."""
    if identity.role is not Role.TEACHER:
        return
    if "course" in fields and fields["course"] != course and fields["course"] != identity.course_id:
        raise _forbidden("a teacher may only use the course their token names")
    if "teacher_ids" in fields and identity.user_id not in fields["teacher_ids"]:
        raise _forbidden("a teacher must be among the lesson's teacher_ids")


class _Api:
    """The handlers, bound to the stores and the verifier."""

    def __init__(self, lessons: LessonStore, chat: ChatStore, verifier: Verifier) -> None:
        self._lessons = lessons
        self._chat = chat
        self._verifier = verifier

    def _identity(self, request: web.Request) -> Identity:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("missing")
        return self._verifier.verify(token.strip())

    async def list_lessons(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        _may_manage(identity)
        limit = _int_query(request, "limit", _DEFAULT_PAGE, 1, MAX_PAGE)
        offset = _int_query(request, "offset", 0, 0, 10**12)
        teacher = request.query.get("teacher")
        if identity.role is Role.TEACHER:
            teacher = identity.user_id  # a teacher sees only their own lessons
        lessons = await self._lessons.list(
            course=request.query.get("course"),
            teacher=teacher,
            status=_status_query(request),
            starts_after=_time_query(request, "from"),
            starts_before=_time_query(request, "to"),
            limit=limit,
            offset=offset,
        )
        return web.json_response(
            {"lessons": [lesson.to_json() for lesson in lessons], "limit": limit, "offset": offset}
        )

    async def create_lesson(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        _may_manage(identity)
        data = await _json_object(request)
        if identity.role is Role.TEACHER:
            data.setdefault("teacher_ids", [identity.user_id])
        fields = validate_lesson_fields(data, partial=False)
        if identity.role is Role.TEACHER and fields["course"] != identity.course_id:
            raise _forbidden("a teacher may only create lessons in the course their token names")
        _teacher_keeps_limits(identity, fields, fields["course"])
        lesson = await self._lessons.create(fields)
        location = request.app.router["api.lesson"].url_for(id=lesson.id)
        return web.json_response(
            lesson.to_json(), status=201, headers={hdrs.LOCATION: str(location)}
        )

    async def get_lesson(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        lesson = await self._lessons.get(request.match_info["id"])
        _may_read(identity, lesson)
        return web.json_response(lesson.to_json())

    async def update_lesson(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        _may_manage(identity)
        lesson = await self._lessons.get(request.match_info["id"])
        _may_change(identity, lesson)
        fields = validate_lesson_fields(await _json_object(request), partial=True)
        _teacher_keeps_limits(identity, fields, lesson.course)
        updated = await self._lessons.update(lesson.id, fields)
        return web.json_response(updated.to_json())

    async def cancel_lesson(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        _may_manage(identity)
        lesson = await self._lessons.get(request.match_info["id"])
        _may_change(identity, lesson)
        cancelled = await self._lessons.cancel(lesson.id)
        return web.json_response(cancelled.to_json())

    async def lesson_chat(self, request: web.Request) -> web.StreamResponse:
        identity = self._identity(request)
        lesson = await self._lessons.get(request.match_info["id"])
        _may_read(identity, lesson)
        after = _int_query(request, "after", 0, 0, 2**53 - 1)
        limit = _int_query(request, "limit", _DEFAULT_PAGE, 1, MAX_PAGE)
        messages = await self._chat.page(lesson.id, after_id=after, limit=limit)
        return web.json_response({"messages": [message.to_json() for message in messages]})


def setup_rest(
    app: web.Application,
    *,
    lessons: LessonStore,
    chat: ChatStore,
    verifier: Verifier,
    openapi: Mapping[str, Any] = OPENAPI,
) -> None:
    """Adds the ``/api`` routes to ``app``; ``openapi`` is the document that describes them all."""
    api = _Api(lessons, chat, verifier)
    router = app.router

    async def openapi_document(_: web.Request) -> web.StreamResponse:
        return web.json_response(openapi)

    # allow_head=False: the OpenAPI document lists every route exactly, and HEAD is in none.
    collection = router.add_resource("/api/lessons", name="api.lessons")
    collection.add_route("GET", _json_errors(api.list_lessons))
    collection.add_route("POST", _json_errors(api.create_lesson))
    lesson = router.add_resource("/api/lessons/{id}", name="api.lesson")
    lesson.add_route("GET", _json_errors(api.get_lesson))
    lesson.add_route("PATCH", _json_errors(api.update_lesson))
    router.add_post(
        "/api/lessons/{id}/cancel", _json_errors(api.cancel_lesson), name="api.lesson.cancel"
    )
    router.add_get(
        "/api/lessons/{id}/chat",
        _json_errors(api.lesson_chat),
        name="api.lesson.chat",
        allow_head=False,
    )
    router.add_get("/api/openapi.json", openapi_document, name="api.openapi", allow_head=False)
