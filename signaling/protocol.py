"""The classroom protocol's messages: parse or refuse, with an exact reason.

docs/protocol.md is the specification; this module is its parser. Every client
message becomes a frozen dataclass, or one of two exceptions: `ProtocolError`
(the frame is not a JSON object with a string ``type``: the socket is closed
with 1002) or `RequestError` (a well-formed message that cannot be carried
out: the client gets an ``error`` reply and the connection carries on).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from sfu import Source

__all__ = [
    "MAX_CHAT_CHARS",
    "Admit",
    "Chat",
    "ClientMessage",
    "CloseCode",
    "Deny",
    "End",
    "Floor",
    "Hand",
    "Ice",
    "Join",
    "Leave",
    "LowerHand",
    "Media",
    "Mute",
    "ProtocolError",
    "Publish",
    "Record",
    "Remove",
    "RequestError",
    "SubscriberAnswer",
    "Unpublish",
    "parse_message",
]

MAX_CHAT_CHARS: Final = 2000
MAX_SDP_CHARS: Final = 64 * 1024
MAX_CANDIDATE_CHARS: Final = 1024
MAX_ID_CHARS: Final = 128
_MAX_REQUEST_ID: Final = 2**53
_SOURCE_NAMES: Final = frozenset(s.value for s in Source)


class CloseCode(enum.IntEnum):
    """WebSocket close codes of the protocol (docs/protocol.md, "Close codes")."""

    LEFT = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    LESSON_ENDED = 4000
    UNAUTHORISED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TIMEOUT = 4408
    REPLACED = 4409
    REMOVED = 4410
    RATE_LIMITED = 4429


class ProtocolError(Exception):
    """The frame breaks the envelope; the connection is closed with 1002."""


ErrorCode = Literal[
    "bad_request",
    "unknown_type",
    "not_joined",
    "already_joined",
    "forbidden",
    "not_found",
    "negotiation_failed",
    "rate_limited",
    "in_lobby",
]


class RequestError(Exception):
    """A request that is refused; the client receives ``error`` and carries on."""

    def __init__(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id

    def to_json(self) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.request_id is not None:
            reply["id"] = self.request_id
        return reply


@dataclass(frozen=True, slots=True)
class Join:
    id: int | None
    token: str | None
    client: str | None


@dataclass(frozen=True, slots=True)
class Leave:
    id: int | None


@dataclass(frozen=True, slots=True)
class Publish:
    id: int | None
    sdp: str
    sources: Mapping[str, Source]


@dataclass(frozen=True, slots=True)
class Unpublish:
    id: int | None
    source: Source


@dataclass(frozen=True, slots=True)
class Media:
    id: int | None
    source: Source
    muted: bool


@dataclass(frozen=True, slots=True)
class SubscriberAnswer:
    id: int | None
    sdp: str


@dataclass(frozen=True, slots=True)
class Ice:
    id: int | None
    direction: Literal["publish", "subscribe"]
    candidate: str
    mid: str | None


@dataclass(frozen=True, slots=True)
class Chat:
    id: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Hand:
    id: int | None
    raised: bool


@dataclass(frozen=True, slots=True)
class Admit:
    id: int | None
    participant: str


@dataclass(frozen=True, slots=True)
class Deny:
    id: int | None
    participant: str


@dataclass(frozen=True, slots=True)
class Floor:
    id: int | None
    participant: str
    sources: frozenset[Source]


@dataclass(frozen=True, slots=True)
class LowerHand:
    id: int | None
    participant: str


@dataclass(frozen=True, slots=True)
class Mute:
    id: int | None
    participant: str
    source: Source


@dataclass(frozen=True, slots=True)
class Remove:
    id: int | None
    participant: str


@dataclass(frozen=True, slots=True)
class End:
    id: int | None


@dataclass(frozen=True, slots=True)
class Record:
    id: int | None
    active: bool


ClientMessage = (
    Join
    | Leave
    | Publish
    | Unpublish
    | Media
    | SubscriberAnswer
    | Ice
    | Chat
    | Hand
    | Admit
    | Deny
    | Floor
    | LowerHand
    | Mute
    | Remove
    | End
    | Record
)


class _Fields:
    """Typed access to one message's fields; every failure names the field."""

    __slots__ = ("_data", "id", "type")

    def __init__(self, data: Mapping[str, Any], type_: str, request_id: int | None) -> None:
        self._data = data
        self.type = type_
        self.id = request_id

    def _bad(self, message: str) -> RequestError:
        return RequestError("bad_request", f"{self.type}: {message}", self.id)

    def string(self, name: str, max_chars: int, *, optional: bool = False) -> str | None:
        value = self._data.get(name)
        if value is None:
            if optional:
                return None
            raise self._bad(f"'{name}' is required")
        if not isinstance(value, str):
            raise self._bad(f"'{name}' must be a string")
        if len(value) > max_chars:
            raise self._bad(f"'{name}' is longer than {max_chars} characters")
        return value

    def required(self, name: str, max_chars: int) -> str:
        value = self.string(name, max_chars)
        assert value is not None
        return value

    def participant(self) -> str:
        value = self.required("participant", MAX_ID_CHARS)
        if not value:
            raise self._bad("'participant' must not be empty")
        return value

    def boolean(self, name: str) -> bool:
        value = self._data.get(name)
        if not isinstance(value, bool):
            raise self._bad(f"'{name}' must be true or false")
        return value

    def source(self, name: str = "source", default: Source | None = None) -> Source:
        value = self._data.get(name)
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or value not in _SOURCE_NAMES:
            raise self._bad(f"'{name}' must be one of camera, microphone, screen")
        return Source(value)

    def sources_by_mid(self) -> dict[str, Source]:
        value = self._data.get("sources")
        if not isinstance(value, dict) or not value:
            raise self._bad("'sources' must be an object mapping each mid to a source")
        if len(value) > len(Source):
            raise self._bad(f"'sources' names more than {len(Source)} m-lines")
        result: dict[str, Source] = {}
        for mid, source in value.items():
            if len(mid) > 32:
                raise self._bad("a mid in 'sources' is longer than 32 characters")
            if not isinstance(source, str) or source not in _SOURCE_NAMES:
                raise self._bad(f"'sources' maps mid {mid[:32]!r} to an unknown source")
            result[mid] = Source(source)
        if len(set(result.values())) != len(result):
            raise self._bad("'sources' names a source twice")
        return result

    def source_list(self) -> frozenset[Source]:
        value = self._data.get("sources")
        if (
            not isinstance(value, list)
            or len(value) > len(Source)
            or not all(isinstance(v, str) and v in _SOURCE_NAMES for v in value)
        ):
            raise self._bad("'sources' must be a list of camera, microphone, screen")
        return frozenset(Source(v) for v in value)


def _join(f: _Fields) -> Join:
    return Join(f.id, f.string("token", 8192, optional=True), f.string("client", 64, optional=True))


def _publish(f: _Fields) -> Publish:
    return Publish(f.id, f.required("sdp", MAX_SDP_CHARS), f.sources_by_mid())


def _ice(f: _Fields) -> Ice:
    direction = f.required("direction", 16)
    if direction not in ("publish", "subscribe"):
        raise f._bad("'direction' must be publish or subscribe")
    return Ice(
        f.id,
        "publish" if direction == "publish" else "subscribe",
        f.required("candidate", MAX_CANDIDATE_CHARS),
        f.string("mid", 32, optional=True),
    )


def _chat(f: _Fields) -> Chat:
    value = f.required("text", 2**20)  # the 64 KiB frame limit bounds it first
    text = value.strip()
    if not text:
        raise f._bad("'text' is empty")
    if len(text) > MAX_CHAT_CHARS:
        raise f._bad(f"'text' is longer than {MAX_CHAT_CHARS} characters")
    return Chat(f.id, text)


def _mute(f: _Fields) -> Mute:
    source = f.source(default=Source.MICROPHONE)
    if source is Source.SCREEN:
        raise f._bad("'source' must be microphone or camera")
    return Mute(f.id, f.participant(), source)


_PARSERS: Final[Mapping[str, Callable[[_Fields], ClientMessage]]] = {
    "join": _join,
    "leave": lambda f: Leave(f.id),
    "publish": _publish,
    "unpublish": lambda f: Unpublish(f.id, f.source()),
    "media": lambda f: Media(f.id, f.source(), f.boolean("muted")),
    "subscriber_answer": lambda f: SubscriberAnswer(f.id, f.required("sdp", MAX_SDP_CHARS)),
    "ice": _ice,
    "chat": _chat,
    "hand": lambda f: Hand(f.id, f.boolean("raised")),
    "admit": lambda f: Admit(f.id, f.participant()),
    "deny": lambda f: Deny(f.id, f.participant()),
    "floor": lambda f: Floor(f.id, f.participant(), f.source_list()),
    "lower_hand": lambda f: LowerHand(f.id, f.participant()),
    "mute": _mute,
    "remove": lambda f: Remove(f.id, f.participant()),
    "end": lambda f: End(f.id),
    "record": lambda f: Record(f.id, f.boolean("active")),
}


def parse_message(text: str) -> ClientMessage:
    """Parse one text frame into a message, or raise ProtocolError / RequestError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"the frame is not JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError):  # huge integers, absurd nesting
        raise ProtocolError("the frame is not acceptable JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("the frame is not a JSON object")
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("the message has no string 'type'")
    request_id = data.get("id")
    if request_id is not None and (
        not isinstance(request_id, int)
        or isinstance(request_id, bool)
        or not 0 <= request_id < _MAX_REQUEST_ID
    ):
        raise RequestError("bad_request", "'id' must be an integer from 0 to 2^53-1")
    parser = _PARSERS.get(type_)
    if parser is None:
        shown = type_ if len(type_) <= 32 else type_[:32] + "…"
        raise RequestError("unknown_type", f"unknown message type {shown!r}", request_id)
    return parser(_Fields(data, type_, request_id))
