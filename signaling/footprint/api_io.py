"""What the footprint API reads from requests and writes in responses.

Query parameters, capped bodies, CSV downloads and the JSON errors, in the
style of :mod:`signaling.rest` (whose error machinery is reused, so every
``/api`` error looks the same).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import hdrs, web

from signaling.footprint.roster import InvalidRoster
from signaling.rest import _ApiError, _json_errors

__all__ = [
    "MAX_FILTER",
    "MAX_TYPES",
    "capped_body",
    "course_path",
    "csv_response",
    "csv_wanted",
    "forbidden",
    "json_errors",
    "text_query",
    "types_query",
]

MAX_FILTER: Final = 128
"""Longest lesson, course or actor filter, in characters."""

MAX_TYPES: Final = 32
"""Most ``type`` filters in one events query (there are about 25 event types)."""

_TYPE = re.compile(r"[a-z][a-z_]{0,30}\.[a-z][a-z_]{0,30}")
_COURSE = re.compile(r"[A-Za-z0-9._-]{1,64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(handler: Handler) -> Handler:
    """signaling.rest's JSON errors, plus a refused roster (422 naming the line or item)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidRoster as error:
            body: dict[str, Any] = {"error": "invalid", "message": error.message}
            body["field"] = "roster"
            if error.line is not None:
                body["line"] = error.line
            if error.item is not None:
                body["item"] = error.item
            return web.json_response(body, status=422)

    return _json_errors(wrapper)


def forbidden(message: str) -> _ApiError:
    """A 403 to raise."""
    return _ApiError(403, "forbidden", message)


def text_query(request: web.Request, name: str) -> str | None:
    """An optional text filter of 1 to MAX_FILTER characters; 400 naming it otherwise."""
    text = request.query.get(name)
    if text is not None and not 1 <= len(text) <= MAX_FILTER:
        raise _ApiError(
            400, "bad_request", f"{name} must be 1 to {MAX_FILTER} characters", field=name
        )
    return text


def types_query(request: web.Request) -> list[str] | None:
    """The repeatable ``type`` filter (None when absent); 400 if one is not an event type."""
    types = request.query.getall("type", [])
    if len(types) > MAX_TYPES or any(_TYPE.fullmatch(t) is None for t in types):
        raise _ApiError(
            400,
            "bad_request",
            f"type must be an event type such as participant.joined (at most {MAX_TYPES})",
            field="type",
        )
    return types or None


def csv_wanted(request: web.Request) -> bool:
    """Whether ``?format=csv`` was asked for (``json`` is the default)."""
    wanted = request.query.get("format", "json")
    if wanted not in ("json", "csv"):
        raise _ApiError(400, "bad_request", "format must be json or csv", field="format")
    return wanted == "csv"


def course_path(request: web.Request) -> str:
    """The ``{course}`` of the path, checked like a lesson's course."""
    course = request.match_info["course"]
    if _COURSE.fullmatch(course) is None:
        raise _ApiError(
            400, "bad_request", "course must be 1 to 64 characters from A-Z a-z 0-9 . _ -",
            field="course",
        )  # fmt: skip
    return course


def csv_response(text: str, filename: str) -> web.Response:
    """A CSV download (UTF-8 with a BOM) named ``filename``, made safe for the header."""
    # The BOM makes Excel read the file as UTF-8: Kazakh and Russian names stay legible.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:120]
    return web.Response(
        body=("\ufeff" + text).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{safe}"'},
    )


async def capped_body(request: web.Request, cap: int) -> bytes:
    """The body, 413 past ``cap`` bytes (chunked bodies have no Content-Length to trust)."""
    too_large = _ApiError(413, "too_large", f"the body is larger than {cap} bytes")
    if request.content_length is not None and request.content_length > cap:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(cap + 1 - size):
        size += len(chunk)
        if size > cap:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
