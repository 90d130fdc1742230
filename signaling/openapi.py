"""The OpenAPI 3.1 description of the REST API in :mod:`signaling.rest`.

Written by hand and kept next to the code it describes; tests/test_rest.py checks
that it validates and that it lists exactly the routes the application registers.
"""

from __future__ import annotations

from typing import Any, Final

from signaling.lessons import LessonKind, LessonStatus, RecordingPolicy

__all__ = ["OPENAPI"]


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
    422: "Invalid",
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
            "NotFound": _json(_ref("Error"), "No such lesson"),
            "Conflict": _json(_ref("Error"), "Duplicate id, or the lesson's status forbids it"),
            "TooLarge": _json(_ref("Error"), "The body is over 64 KiB"),
            "Invalid": _json(_ref("Error"), "A field is invalid; field names it"),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string", "description": "A stable code."},
                    "message": {"type": "string", "description": "English, for developers."},
                    "field": {"type": "string", "description": "The field to blame."},
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
        },
    },
}
"""The OpenAPI document served at ``GET /api/openapi.json``."""
