"""The OpenAPI 3.1 description of the REST API in :mod:`signaling.rest`.

Written by hand and kept next to the code it describes; tests/test_rest.py checks
that it validates and that it lists exactly the routes the application registers.
"""

from __future__ import annotations

from typing import Any, Final

from signaling.lessons import LessonKind, LessonStatus, RecordingPolicy

__all__ = ["FOOTPRINT_PATHS", "OPENAPI", "OPENAPI_WITH_FOOTPRINT", "RECORDINGS_PATHS"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"$ref": f"#/components/responses/{_ERROR_NAMES[status]}"}
        for status in statuses
    }


_ERROR_NAMES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "TooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "Unavailable",
}

_TIME: Final = {"type": "string", "format": "date-time"}
_LESSON_ID: Final = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_COURSE: Final = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
_TEACHER_IDS: Final = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 128},
    "minItems": 1,
    "maxItems": 20,
    "uniqueItems": True,
}

_INPUT_PROPERTIES: Final[dict[str, Any]] = {
    "course": _COURSE,
    "title": {"type": "string", "description": "1 to 200 characters after trimming; one line."},
    "kind": _ref("LessonKind"),
    "teacher_ids": _TEACHER_IDS,
    "scheduled_start": {**_TIME, "description": "With a time zone; stored in UTC."},
    "scheduled_end": {
        **_TIME,
        "description": "After scheduled_start, at most 12 hours later.",
    },
    "lobby": {"type": "boolean", "description": "Students and observers wait to be admitted."},
    "recording_policy": _ref("RecordingPolicy"),
}

_LESSON_PATH_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_LIMIT: Final = _query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "Page size."
)

# --- the footprint API (signaling/footprint/api.py) --------------------------------------------

_NUMBER_OR_NULL: Final = {"type": ["number", "null"]}
_TIME_OR_NULL: Final = {"type": ["string", "null"], "format": "date-time"}
_MINUTES: Final = {"type": "number", "description": "Minutes, 2 decimals."}
_SPANS: Final = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
    "description": "[start, end] in seconds from actual_start (3 decimals), merged and sorted.",
}
_STATUS_COUNTS: Final = {
    name: {"type": "integer", "minimum": 0} for name in ("present", "late", "partial", "absent")
}


def _object(required: list[str], properties: dict[str, Any], description: str = "") -> Any:
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    if description:
        schema["description"] = description
    return schema


_LESSON_TIMES: Final[dict[str, Any]] = {
    "held": {"type": "boolean", "description": "The lesson started at least once."},
    "live": {"type": "boolean"},
    "actual_start": _TIME_OR_NULL,
    "actual_end": {**_TIME_OR_NULL, "description": "now while live"},
    "duration_minutes": {**_MINUTES, "description": "Held time, gaps between restarts excluded."},
    "scheduled_minutes": _MINUTES,
    "overrun_minutes": {**_MINUTES, "description": "How far actual_end passed scheduled_end."},
}


def _report(operation: str, summary: str, schema: str, *extra: dict[str, Any]) -> Any:
    """A GET that answers JSON, or CSV with ?format=csv."""
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "parameters": [
                _query("format", {"enum": ["json", "csv"], "default": "json"}, "json or csv."),
                *extra,
            ],
            "responses": {
                "200": {
                    "description": "The report; with ?format=csv a CSV download (UTF-8, BOM)",
                    "content": {
                        "application/json": {"schema": _ref(schema)},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 403, 404, 503),
            },
        }
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_AFTER: Final = _query(
    "after", {"type": "integer", "minimum": 0, "default": 0}, "Events after seq."
)
_PAGE: Final = _query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}, "Page size."
)
_ROSTER_BODY: Final = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": _ref("RosterEntry")}},
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "Header user_id,name (or user_id;name); UTF-8, BOM allowed.",
            }
        },
    },
}

FOOTPRINT_PATHS: Final[dict[str, Any]] = {
    "/api/footprint/events": {
        "get": {
            "operationId": "footprintEvents",
            "summary": "Footprint events by seq (a teacher: of a lesson or course of theirs)",
            "parameters": [
                _query("lesson", {"type": "string"}, "Only this lesson."),
                _query("course", {"type": "string"}, "Only this course."),
                _query("actor", {"type": "string"}, "Only events about this user."),
                {
                    **_query("type", {"type": "array", "items": {"type": "string"}}, "Types."),
                    "style": "form",
                    "explode": True,
                },
                _query("since", _TIME, "At or after this time."),
                _query("until", _TIME, "Before this time."),
                _AFTER,
                _PAGE,
            ],
            "responses": {
                "200": _json(_ref("EventPage"), "A page of events"),
                **_errors(400, 401, 403, 404, 503),
            },
        }
    },
    "/api/footprint/verify": {
        "get": {
            "operationId": "verifyFootprint",
            "summary": "Recompute the chain and check the checkpoints (admin only)",
            "responses": {
                "200": _json(_ref("VerifyResult"), "What verification found"),
                **_errors(401, 403, 503),
            },
        }
    },
    "/api/lessons/{id}/report": {
        "parameters": [_LESSON_PATH_ID],
        **_report("lessonReport", "Attendance of one lesson", "LessonReport"),
    },
    "/api/courses/{course}/report": {
        "parameters": [_path("course", "The course code.")],
        **_report("courseReport", "Attendance of a course and hours held live", "CourseReport"),
    },
    "/api/students/{user_id}/footprint": {
        "parameters": [_path("user_id", "The student (a token's sub).")],
        **_report(
            "studentFootprint",
            "A student's lessons and events (students: their own only)",
            "StudentFootprint",
            _query("course", {"type": "string"}, "Only this course (forced for a teacher)."),
            _AFTER,
            _PAGE,
        ),
    },
    "/api/teachers/{user_id}/report": {
        "parameters": [_path("user_id", "The teacher (a token's sub).")],
        **_report("teacherReport", "The lessons a teacher held", "TeacherReport"),
    },
    "/api/courses/{course}/roster": {
        "parameters": [_path("course", "The course code.")],
        "get": {
            "operationId": "getRoster",
            "summary": "The course's roster (JSON, or CSV with ?format=csv)",
            "parameters": [
                _query("format", {"enum": ["json", "csv"], "default": "json"}, "json or csv.")
            ],
            "responses": {
                "200": _json(_ref("Roster"), "The roster"),
                **_errors(400, 401, 403),
            },
        },
        "put": {
            "operationId": "putRoster",
            "summary": "Replace the course's roster (at most 5000 students)",
            "requestBody": _ROSTER_BODY,
            "responses": {
                "200": _json(_ref("Roster"), "The roster as stored"),
                **_errors(400, 401, 403, 413, 415, 422),
            },
        },
    },
}
"""The paths :func:`signaling.footprint.api.setup_footprint_api` registers."""

_QUALITY: Final = _object(
    ["samples", "loss_mean", "loss_worst", "rtt_mean_ms", "rtt_p95_ms"],
    {
        "samples": {"type": "integer"},
        "loss_mean": {**_NUMBER_OR_NULL, "description": "Worse direction, fraction 0-1."},
        "loss_worst": _NUMBER_OR_NULL,
        "rtt_mean_ms": _NUMBER_OR_NULL,
        "rtt_p95_ms": {**_NUMBER_OR_NULL, "description": "Nearest-rank 95th percentile."},
    },
)

_PERSON: Final = _object(
    ["user_id", "name", "role", "in_roster", "status", "minutes_present", "share"],
    {
        "user_id": {"type": "string"},
        "name": {"type": "string"},
        "role": {"type": "string"},
        "in_roster": {"type": "boolean"},
        "status": _ref("AttendanceStatus"),
        "minutes_present": _MINUTES,
        "share": {"type": "number", "description": "Of the held time, 0-1, 4 decimals."},
        "late_minutes": _MINUTES,
        "first_join": {
            **_TIME_OR_NULL,
            "description": "First moment present while held (a join before the start shows it).",
        },
        "last_leave": {**_TIME_OR_NULL, "description": "Last moment present while held."},
        "sessions": {"type": "integer", "description": "Joins (reconnects count)."},
        "camera_minutes": _MINUTES,
        "microphone_minutes": _MINUTES,
        "talk_minutes": _MINUTES,
        "chat_messages": {"type": "integer"},
        "hands_raised": {"type": "integer"},
        "quality": _QUALITY,
        "timeline": _object(
            ["presence", "camera", "speaking"],
            {"presence": _SPANS, "camera": _SPANS, "speaking": _SPANS},
        ),
    },
)

FOOTPRINT_SCHEMAS: Final[dict[str, Any]] = {
    "AttendanceStatus": {"type": "string", "enum": ["present", "late", "partial", "absent"]},
    "Thresholds": _object(
        ["late_after_min", "present_min_share", "partial_min_share"],
        {
            "late_after_min": {"type": "number"},
            "present_min_share": {"type": "number"},
            "partial_min_share": {"type": "number"},
        },
    ),
    "Event": _object(
        ["seq", "at", "lesson", "course", "actor", "type", "data", "prev", "hash"],
        {
            "seq": {"type": "integer", "minimum": 1},
            "at": _TIME,
            "lesson": {"type": "string"},
            "course": {"type": "string"},
            "actor": {"type": "string"},
            "type": {"type": "string"},
            "data": {"type": "object", "description": "docs/footprint.md, Types."},
            "prev": {"type": "string"},
            "hash": {"type": "string"},
        },
    ),
    "EventPage": _object(
        ["events", "next_after"],
        {
            "events": {"type": "array", "items": _ref("Event")},
            "next_after": {
                "type": ["integer", "null"],
                "description": "Pass as ?after= for the next page; null on the last page.",
            },
        },
    ),
    "LessonReport": _object(
        ["lesson", "held", "thresholds", "counts", "people"],
        {
            "lesson": {"type": "object"},
            **_LESSON_TIMES,
            "segments": _SPANS,
            "thresholds": _ref("Thresholds"),
            "generated_at": _TIME,
            "counts": _object([], _STATUS_COUNTS, "Students only, by status."),
            "people": {"type": "array", "items": _PERSON},
        },
        "Roster students first (absentees included), then everyone else who joined.",
    ),
    "CourseReport": _object(
        ["course", "lessons_held", "academic_hours", "lessons", "students"],
        {
            "course": {"type": "string"},
            "generated_at": _TIME,
            "thresholds": _ref("Thresholds"),
            "lessons_total": {"type": "integer"},
            "lessons_held": {"type": "integer"},
            "live_minutes": _MINUTES,
            "academic_hours": {"type": "number", "description": "live_minutes / 50, 2 decimals."},
            "lessons": {"type": "array", "items": {"type": "object"}},
            "students": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "rate = (present + late + partial / 2) / lessons_held.",
                },
            },
        },
    ),
    "StudentFootprint": _object(
        ["user_id", "summary", "lessons", "events", "next_after"],
        {
            "user_id": {"type": "string"},
            "generated_at": _TIME,
            "thresholds": _ref("Thresholds"),
            "summary": {"type": "object"},
            "lessons": {"type": "array", "items": {"type": "object"}},
            "events": {"type": "array", "items": _ref("Event")},
            "next_after": {"type": ["integer", "null"]},
        },
    ),
    "TeacherReport": _object(
        ["user_id", "summary", "lessons"],
        {
            "user_id": {"type": "string"},
            "generated_at": _TIME,
            "summary": {"type": "object"},
            "lessons": {"type": "array", "items": {"type": "object"}},
        },
    ),
    "RosterEntry": _object(
        ["user_id", "name"],
        {
            "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    ),
    "Roster": _object(
        ["course", "count", "students"],
        {
            "course": {"type": "string"},
            "count": {"type": "integer"},
            "students": {"type": "array", "items": _ref("RosterEntry")},
        },
    ),
    "VerifyResult": _object(
        ["ok", "events", "checkpoints", "signatures_checked", "problem", "position"],
        {
            "ok": {"type": "boolean"},
            "events": {"type": "integer"},
            "checkpoints": {"type": "integer"},
            "signatures_checked": {"type": "boolean"},
            "problem": {"type": ["string", "null"], "description": "The first problem found."},
            "position": {"type": ["integer", "null"], "description": "Its event number."},
            "checked_at": _TIME,
        },
    ),
}
"""The schemas of the footprint API, part of :data:`OPENAPI`'s components."""

# --- the recordings library (signaling/recordings/api.py) --------------------------------------

_RECORDING_PATH_ID: Final = _path("rid", "The recording's id (128-bit random, URL-safe).")
_MEDIA_URL: Final = {
    "type": ["string", "null"],
    "description": (
        "Signed, short-lived (10 min) path /media/recordings/{rid}/{file}?exp=&sig= to fetch "
        "the file with range requests and no Authorization header; null until the file is "
        "ready. Ask for the recording again for fresh URLs."
    ),
}

RECORDINGS_PATHS: Final[dict[str, Any]] = {
    "/api/lessons/{id}/recordings": {
        "parameters": [_LESSON_PATH_ID],
        "get": {
            "operationId": "lessonRecordings",
            "summary": "The lesson's recordings (its teachers, the course's students, admins)",
            "responses": {
                "200": _json(_ref("RecordingList"), "The recordings, oldest first"),
                **_errors(401, 403, 404),
            },
        },
    },
    "/api/recordings/{rid}": {
        "parameters": [_RECORDING_PATH_ID],
        "get": {
            "operationId": "getRecording",
            "summary": "One recording with fresh signed media URLs and its lesson's summary",
            "responses": {
                "200": _json(_ref("RecordingDetail"), "The recording"),
                **_errors(401, 403, 404),
            },
        },
    },
    "/api/recordings/{rid}/viewed": {
        "parameters": [_RECORDING_PATH_ID],
        "post": {
            "operationId": "recordingViewed",
            "summary": "Report watched stretches: a footprint event recording.viewed",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ViewedReport")}},
            },
            "responses": {
                "204": {"description": "Recorded in the footprint (committed)"},
                **_errors(400, 401, 403, 404, 413, 422, 429, 503),
            },
        },
    },
    "/api/recordings/{rid}/chat": {
        "parameters": [_RECORDING_PATH_ID],
        "get": {
            "operationId": "recordingChat",
            "summary": "The recorded lesson's chat, for whoever may watch the recording",
            "parameters": [
                _query(
                    "after",
                    {"type": "integer", "minimum": 0, "default": 0},
                    "Only messages with a larger id.",
                ),
                _LIMIT,
            ],
            "responses": {
                "200": _json(_ref("ChatPage"), "The messages, oldest first"),
                **_errors(400, 401, 403, 404),
            },
        },
    },
}
"""The ``/api`` paths :func:`signaling.recordings.setup_recordings` registers (it also serves
``/media/recordings/{rid}/{file}``, whose signed URL is its own credential)."""

_RECORDING_STATUS: Final = {
    "type": "string",
    "enum": ["recording", "finalizing", "ready", "failed"],
}
_COMPOSITE: Final = _object(
    ["status", "progress", "reason"],
    {
        "status": {"type": "string", "enum": ["pending", "running", "ready", "failed"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": ["string", "null"], "description": "Why it failed."},
        "url": {**_MEDIA_URL, "description": "Detail only: the MP4's signed URL when ready."},
    },
    "The single downloadable MP4, made by a background job.",
)
_PART_PROPERTIES: Final[dict[str, Any]] = {
    "id": {"type": "string"},
    "participant_id": {"type": "string"},
    "participant_name": {"type": "string"},
    "source": {"type": "string", "enum": ["camera", "microphone", "screen"]},
    "kind": {"type": "string", "enum": ["audio", "video"]},
    "codec": {"type": "string"},
    "format": {"type": "string", "description": "The file's container: webm, ogg, mkv, ..."},
    "start_offset_s": {"type": "number", "description": "Where it starts on the timeline."},
    "duration_s": _NUMBER_OR_NULL,
    "size_bytes": {"type": ["integer", "null"]},
    "status": {"type": "string", "enum": ["recording", "complete", "recovered", "broken"]},
}
_RECORDING_PROPERTIES: Final[dict[str, Any]] = {
    "id": {"type": "string"},
    "lesson_id": {"type": "string"},
    "course": {"type": "string"},
    "started_at": _TIME,
    "ended_at": _TIME_OR_NULL,
    "status": _RECORDING_STATUS,
    "reason": {"type": ["string", "null"], "description": "Why it failed."},
    "duration_s": {**_NUMBER_OR_NULL, "description": "End of the last part on the timeline."},
    "size_bytes": {"type": "integer", "description": "The parts' files together."},
    "composite": _COMPOSITE,
    "player_path": {"type": "string", "description": "/r/{id}: the playback page."},
}
_RECORDING_REQUIRED: Final = [
    "id",
    "lesson_id",
    "course",
    "started_at",
    "ended_at",
    "status",
    "reason",
    "duration_s",
    "size_bytes",
    "composite",
    "parts",
    "player_path",
]

RECORDINGS_SCHEMAS: Final[dict[str, Any]] = {
    "RecordingPart": _object(list(_PART_PROPERTIES), _PART_PROPERTIES, "One track file."),
    "Recording": _object(
        _RECORDING_REQUIRED,
        {
            **_RECORDING_PROPERTIES,
            "parts": {"type": "array", "items": _ref("RecordingPart")},
        },
    ),
    "RecordingList": _object(
        ["recordings"], {"recordings": {"type": "array", "items": _ref("Recording")}}
    ),
    "RecordingDetail": _object(
        [*_RECORDING_REQUIRED, "lesson", "urls_expire_at"],
        {
            **_RECORDING_PROPERTIES,
            "parts": {
                "type": "array",
                "items": _object(
                    [*_PART_PROPERTIES, "teacher", "url"],
                    {
                        **_PART_PROPERTIES,
                        "teacher": {"type": "boolean", "description": "A teacher's track."},
                        "url": _MEDIA_URL,
                    },
                ),
            },
            "lesson": {"type": "object", "description": "The lesson summary (docs/protocol.md)."},
            "urls_expire_at": {**_TIME, "description": "When the media URLs stop working."},
        },
    ),
    "ViewedReport": {
        "type": "object",
        "additionalProperties": False,
        "required": ["intervals"],
        "properties": {
            "intervals": {
                "type": "array",
                "maxItems": 500,
                "items": {
                    "type": "array",
                    "items": {"type": "number", "minimum": 0},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "description": (
                    "[from_s, to_s] on the recording's timeline, from < to <= duration + 5; "
                    "played stretches only (seeks are not watching). Merged and rounded to "
                    "3 decimals in the event; an empty list writes nothing."
                ),
            }
        },
    },
}
"""The schemas of the recordings API, part of :data:`OPENAPI`'s components."""

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Sabaq",
        "version": "1",
        "description": (
            "Lessons and their chat. An admin may do everything; a teacher creates lessons "
            "in the course their token names and lists, changes and cancels the lessons they "
            "teach; anyone the token admits to a lesson reads it and its chat."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/lessons": {
            "get": {
                "operationId": "listLessons",
                "summary": "Lessons by scheduled start (a teacher sees only their own)",
                "parameters": [
                    _query("course", {"type": "string"}, "Only this course."),
                    _query("teacher", {"type": "string"}, "Only lessons this user teaches."),
                    _query("status", _ref("LessonStatus"), "Only lessons in this status."),
                    _query("from", _TIME, "Starting at or after this time."),
                    _query("to", _TIME, "Starting before this time."),
                    _LIMIT,
                    _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Skip."),
                ],
                "responses": {
                    "200": _json(_ref("LessonList"), "The lessons"),
                    **_errors(400, 401, 403),
                },
            },
            "post": {
                "operationId": "createLesson",
                "summary": "Schedule a lesson",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("LessonInput")}},
                },
                "responses": {
                    "201": {
                        **_json(_ref("Lesson"), "The new lesson"),
                        "headers": {
                            "Location": {
                                "description": "The lesson's URL",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    **_errors(400, 401, 403, 409, 413, 422),
                },
            },
        },
        "/api/lessons/{id}": {
            "parameters": [_LESSON_PATH_ID],
            "get": {
                "operationId": "getLesson",
                "summary": "One lesson",
                "responses": {
                    "200": _json(_ref("Lesson"), "The lesson"),
                    **_errors(401, 403, 404),
                },
            },
            "patch": {
                "operationId": "updateLesson",
                "summary": "Change some fields of a lesson that is not cancelled",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("LessonChanges")}},
                },
                "responses": {
                    "200": _json(_ref("Lesson"), "The changed lesson"),
                    **_errors(400, 401, 403, 404, 409, 413, 422),
                },
            },
        },
        "/api/lessons/{id}/cancel": {
            "parameters": [_LESSON_PATH_ID],
            "post": {
                "operationId": "cancelLesson",
                "summary": "Cancel a lesson (again: no change); an ended lesson cannot be",
                "responses": {
                    "200": _json(_ref("Lesson"), "The cancelled lesson"),
                    **_errors(401, 403, 404, 409),
                },
            },
        },
        "/api/lessons/{id}/chat": {
            "parameters": [_LESSON_PATH_ID],
            "get": {
                "operationId": "lessonChat",
                "summary": "The lesson's chat, oldest first, after a message id",
                "parameters": [
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "default": 0},
                        "Only messages with a larger id.",
                    ),
                    _LIMIT,
                ],
                "responses": {
                    "200": _json(_ref("ChatPage"), "The messages"),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The university's token (HS256, RS256 or ES256).",
            }
        },
        "responses": {
            "BadRequest": _json(_ref("Error"), "Malformed JSON, not an object, or a bad query"),
            "Unauthorized": {
                **_json(_ref("Error"), "No valid token; error is the reason"),
                "headers": {
                    "WWW-Authenticate": {
                        "description": 'Always Bearer error="invalid_token"',
                        "schema": {"type": "string"},
                    }
                },
            },
            "Forbidden": _json(_ref("Error"), "The token does not allow this"),
            "NotFound": _json(_ref("Error"), "No such lesson or recording"),
            "Conflict": _json(_ref("Error"), "Duplicate id, or the lesson's status forbids it"),
            "TooLarge": _json(_ref("Error"), "The body is over the limit (64 KiB; a roster 1 MiB)"),
            "UnsupportedMediaType": _json(_ref("Error"), "The body's Content-Type is not accepted"),
            "Invalid": _json(
                _ref("Error"), "A field is invalid; field names it (a roster: line or item too)"
            ),
            "TooManyRequests": _json(_ref("Error"), "Too many requests; slow down"),
            "Unavailable": _json(_ref("Error"), "The footprint ledger or verifier is unavailable"),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string", "description": "A stable code."},
                    "message": {"type": "string", "description": "English, for developers."},
                    "field": {"type": "string", "description": "The field to blame."},
                    "line": {"type": "integer", "description": "Roster CSV: the line, from 1."},
                    "item": {"type": "integer", "description": "Roster JSON: the item, from 0."},
                },
            },
            "LessonKind": {"type": "string", "enum": [kind.value for kind in LessonKind]},
            "RecordingPolicy": {
                "type": "string",
                "enum": [policy.value for policy in RecordingPolicy],
            },
            "LessonStatus": {"type": "string", "enum": [status.value for status in LessonStatus]},
            "LessonInput": {
                "type": "object",
                "additionalProperties": False,
                "required": ["course", "title", "kind", "scheduled_start", "scheduled_end"],
                "description": (
                    "teacher_ids is required from an admin; a teacher's defaults to themselves. "
                    "recording_policy defaults to automatic for exams and defences, else manual."
                ),
                "properties": {
                    "id": {**_LESSON_ID, "description": "Generated (unguessable) if absent."},
                    **_INPUT_PROPERTIES,
                    "lobby": {**_INPUT_PROPERTIES["lobby"], "default": False},
                },
            },
            "LessonChanges": {
                "type": "object",
                "additionalProperties": False,
                "description": "Any LessonInput field but id.",
                "properties": _INPUT_PROPERTIES,
            },
            "Lesson": {
                "type": "object",
                "required": [
                    "id",
                    "course",
                    "title",
                    "kind",
                    "teacher_ids",
                    "scheduled_start",
                    "scheduled_end",
                    "lobby",
                    "recording_policy",
                    "status",
                    "created_at",
                    "updated_at",
                    "join_path",
                ],
                "properties": {
                    "id": _LESSON_ID,
                    **_INPUT_PROPERTIES,
                    "status": _ref("LessonStatus"),
                    "created_at": _TIME,
                    "updated_at": _TIME,
                    "join_path": {"type": "string", "description": "/l/{id}"},
                },
            },
            "LessonList": {
                "type": "object",
                "required": ["lessons", "limit", "offset"],
                "properties": {
                    "lessons": {"type": "array", "items": _ref("Lesson")},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                },
            },
            "ChatMessage": {
                "type": "object",
                "required": ["id", "at", "from", "name", "role", "text"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "at": _TIME,
                    "from": {"type": "string", "description": "The writer's user id."},
                    "name": {"type": "string"},
                    "role": {"type": "string"},
                    "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                },
            },
            "ChatPage": {
                "type": "object",
                "required": ["messages"],
                "properties": {"messages": {"type": "array", "items": _ref("ChatMessage")}},
            },
            **FOOTPRINT_SCHEMAS,
            **RECORDINGS_SCHEMAS,
        },
    },
}
"""The OpenAPI document served at ``GET /api/openapi.json``."""

OPENAPI_WITH_FOOTPRINT: Final[dict[str, Any]] = {
    **OPENAPI,
    "paths": {**OPENAPI["paths"], **FOOTPRINT_PATHS, **RECORDINGS_PATHS},
}
"""The document of an application that also has the footprint API (setup_footprint_api) and
the recordings library (setup_recordings)."""
