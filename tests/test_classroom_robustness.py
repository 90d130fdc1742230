"""The classroom WebSocket against bad input and misbehaving clients (docs/protocol.md).

Every test runs the real embedded-mode server (aiohttp TestServer on
127.0.0.1, the SFU, SQLite in memory) and talks to it as a client would: a
raw aiohttp WebSocket where the exact close code and reason matter, and
`ClassroomClient` (real aiortc peers) where media must flow. Each case checks
the precise code, the reason or error message, that no reason ever carries
the token, and that the server goes on serving: a fresh join still works.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType

from sfu import Source
from signaling.app import CLASSROOMS_KEY
from signaling.identity import mint
from tests.conftest import AUDIENCE, ISSUER, JWT_SECRET, ClassroomServer
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(30)

FRAME_LIMIT = 64 * 1024


# --- a raw WebSocket client: every frame, the close code and the close reason ---------


class RawSocket:
    """One WebSocket to the server, read by hand: messages, close code and reason."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.token: str | None = None
        self._ids = itertools.count(1)

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def _next(self) -> dict[str, Any] | None:
        """The next JSON message, or None once the socket is closed."""
        assert self.ws is not None
        if self.close_code is not None:
            return None
        while True:
            frame = await self.ws.receive()
            if frame.type is WSMsgType.TEXT:
                message = json.loads(frame.data)
                self.messages.append(message)
                return message
            if frame.type is WSMsgType.CLOSE:
                self.close_code, self.close_reason = frame.data, frame.extra or ""
                return None
            if frame.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                self.close_code = self.ws.close_code
                return None
            # PING (autoping=False), PONG, BINARY: not messages of the protocol

    async def wait(self, type_: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first message (seen or to come) of this type whose fields match."""

        def matches(m: dict[str, Any]) -> bool:
            return m["type"] == type_ and all(m.get(k) == v for k, v in match.items())

        for message in self.messages:
            if matches(message):
                return message
        async with asyncio.timeout(timeout):
            while True:
                message = await self._next()
                if message is None:
                    raise AssertionError(
                        f"closed {self.close_code} {self.close_reason!r} before {type_} "
                        f"{match}: {self.messages[-3:]}"
                    )
                if matches(message):
                    return message

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send with a fresh id; the reply that repeats it."""
        request_id = next(self._ids)
        await self.send({**message, "id": request_id})
        async with asyncio.timeout(timeout):
            while True:
                reply = await self._next()
                if reply is None:
                    raise AssertionError(
                        f"closed {self.close_code} {self.close_reason!r} before the reply "
                        f"to {message['type']}"
                    )
                if reply.get("id") == request_id and reply["type"] in ("ok", "error", "answer"):
                    return reply

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read on until the server closes; its close code and reason."""
        async with asyncio.timeout(timeout):
            while await self._next() is not None:
                pass
        return self.close_code, self.close_reason

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    def errors(self, code: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "error" and m["code"] == code]

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await self.http.close()


OpenSocket = Callable[..., Awaitable[RawSocket]]


def ws_url(base: str, lesson: str) -> str:
    return base.replace("http", "ws", 1) + f"/ws/lessons/{lesson}"


async def open_socket(
    base_url: str,
    opened: list[RawSocket],
    lesson: str = "L1",
    *,
    token: str | None = None,
    join: bool = True,
    welcome: bool = True,
    protocols: tuple[str, ...] = ("sabaq.v1",),
    origin: str | None = None,
    autoping: bool = True,
) -> RawSocket:
    raw = RawSocket(aiohttp.ClientSession())
    opened.append(raw)
    raw.token = token
    headers = {"Origin": origin} if origin else {}
    raw.ws = await raw.http.ws_connect(
        ws_url(base_url, lesson), protocols=protocols, headers=headers, autoping=autoping
    )
    if join:
        message: dict[str, Any] = {"type": "join", "client": "robustness-tests"}
        if token is not None:
            message["token"] = token
        await raw.send(message)
        if welcome:
            await raw.wait("welcome")
    return raw


@pytest.fixture
async def raw(classroom: ClassroomServer) -> AsyncIterator[OpenSocket]:
    """Opens raw sockets to the test server: raw(lesson, token=..., join=...)."""
    opened: list[RawSocket] = []

    async def opener(lesson: str = "L1", **kwargs: Any) -> RawSocket:
        return await open_socket(classroom.url, opened, lesson, **kwargs)

    try:
        yield opener
    finally:
        for socket_ in opened:
            await socket_.close()


# --- tokens ------------------------------------------------------------------------------


def token(sub: str = "s1", role: str = "student", **kwargs: Any) -> str:
    claims: dict[str, Any] = {"lesson": "L1", **kwargs}
    return mint(
        secret=claims.pop("secret", JWT_SECRET),
        issuer=claims.pop("issuer", ISSUER),
        audience=claims.pop("audience", AUDIENCE),
        sub=sub,
        name=f"User {sub}",
        role=role,
        **claims,
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "s1",
        "name": "User s1",
        "role": "student",
        "lesson": "L1",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return {k: v for k, v in claims.items() if v is not None}


def alg_none_token() -> str:
    """An unsigned token: header alg=none, a valid payload, an empty signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."


def assert_no_token(text: str, secret: str | None) -> None:
    """The text (a close reason, an error message) shows no part of the token."""
    assert len(text.encode()) <= 123
    if secret:
        assert secret not in text
        for part in secret.split("."):
            if len(part) >= 8:
                assert part not in text


async def assert_server_alive(classroom: ClassroomServer, lesson: str = "L1") -> None:
    """A fresh participant can still join and be answered."""
    opened: list[RawSocket] = []
    try:
        fresh = await open_socket(
            classroom.url, opened, lesson, token=token("fresh", lesson=lesson)
        )
        reply = await fresh.request({"type": "chat", "text": "still serving"})
        assert reply["type"] == "ok", reply
    finally:
        for socket_ in opened:
            await socket_.close()


async def teacher_socket(classroom: ClassroomServer, raw: OpenSocket) -> RawSocket:
    await classroom.lesson()
    return await raw(token=token("t1", "teacher"))


# --- frames that break the envelope --------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param('{"type": "chat", "text": "hi"', "the frame is not JSON (", id="truncated"),
        pytest.param("hello", "the frame is not JSON (", id="not-json"),
        pytest.param("", "the frame is not JSON (", id="empty"),
        pytest.param('[{"type": "chat"}]', "the frame is not a JSON object", id="array"),
        pytest.param("42", "the frame is not a JSON object", id="number"),
        pytest.param('"chat"', "the frame is not a JSON object", id="string"),
        pytest.param("null", "the frame is not a JSON object", id="null"),
        pytest.param('{"text": "hi"}', "the message has no string 'type'", id="no-type"),
        pytest.param('{"type": 7}', "the message has no string 'type'", id="type-number"),
        pytest.param('{"type": null}', "the message has no string 'type'", id="type-null"),
        pytest.param('{"type": ["chat"]}', "the message has no string 'type'", id="type-list"),
        pytest.param("[" * 50_000, "the frame is not acceptable JSON", id="deep-nesting"),
    ],
)
async def test_a_frame_that_breaks_the_envelope_closes_with_1002(
    classroom: ClassroomServer, raw: OpenSocket, frame: str, reason: str
) -> None:
    teacher = await teacher_socket(classroom, raw)
    student = await raw(token=token("s1"))
    await student.send_raw(frame)
    code, text = await student.closed()
    assert code == 1002
    assert text.startswith(reason), text
    assert_no_token(text, student.token)
    left = await teacher.wait("left", participant="s1")
    assert left["reason"] == "network"
    await assert_server_alive(classroom)


async def test_a_broken_frame_before_join_closes_with_1002(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    client = await raw(join=False)
    await client.send_raw("{not json")
    code, reason = await client.closed()
    assert (code, reason.split(" (")[0]) == (1002, "the frame is not JSON")


async def test_a_binary_frame_closes_with_1003(classroom: ClassroomServer, raw: OpenSocket) -> None:
    teacher = await teacher_socket(classroom, raw)
    student = await raw(token=token("s1"))
    await student.send_raw(json.dumps({"type": "chat", "text": "hi"}).encode())
    assert await student.closed() == (1003, "binary frames are not part of the protocol")
    await teacher.wait("left", participant="s1", reason="network")
    await assert_server_alive(classroom)


async def test_a_frame_over_64_kib_closes_with_1009(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    teacher = await teacher_socket(classroom, raw)
    student = await raw(token=token("s1"))
    frame = json.dumps({"type": "chat", "text": "x" * (FRAME_LIMIT + 100)})
    await student.send_raw(frame)
    code, reason = await student.closed()
    assert code == 1009
    assert_no_token(reason, student.token)
    await teacher.wait("left", participant="s1", reason="network")
    await assert_server_alive(classroom)


async def test_a_binary_frame_over_64_kib_closes_with_1009(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    student = await raw(token=token("s1"))
    await student.send_raw(b"\0" * (FRAME_LIMIT + 1))
    code, _ = await student.closed()
    assert code == 1009
    await assert_server_alive(classroom)


async def test_a_frame_of_exactly_64_kib_is_accepted(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    student = await raw(token=token("s1"))
    head = '{"type": "chat", "id": 1, "text": "'
    frame = head + "x" * (FRAME_LIMIT - len(head) - 2) + '"}'
    assert len(frame.encode()) == FRAME_LIMIT
    await student.send_raw(frame)
    reply = await student.wait("error", id=1)
    assert reply["code"] == "bad_request"


async def test_a_60_kib_chat_is_refused_for_its_length_not_closed(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await teacher_socket(classroom, raw)
    student = await raw(token=token("s1"))
    reply = await student.request({"type": "chat", "text": "x" * (60 * 1024)})
    assert reply["type"] == "error" and reply["code"] == "bad_request"
    assert reply["message"].startswith("chat: 'text' is longer than "), reply
    assert (await student.request({"type": "chat", "text": "short"}))["type"] == "ok"
    assert student.close_code is None


async def test_a_60_kib_chat_error_states_the_real_limit(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await teacher_socket(classroom, raw)
    student = await raw(token=token("s1"))
    reply = await student.request({"type": "chat", "text": "x" * (60 * 1024)})
    assert reply["message"] == "chat: 'text' is longer than 2000 characters"


async def test_a_2001_character_chat_names_the_limit(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    teacher = await teacher_socket(classroom, raw)
    reply = await teacher.request({"type": "chat", "text": "я" * 2001})
    assert (reply["code"], reply["message"]) == (
        "bad_request",
        "chat: 'text' is longer than 2000 characters",
    )
    # 2000 characters after trimming are fine.
    assert (await teacher.request({"type": "chat", "text": "  " + "я" * 2000 + "  "}))[
        "type"
    ] == "ok"


# --- requests that are refused while the connection carries on ----------------------------


async def test_an_unknown_type_is_an_error_and_the_connection_continues(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    teacher = await teacher_socket(classroom, raw)
    reply = await teacher.request({"type": "frobnicate", "x": 1})
    assert reply == {
        "type": "error",
        "id": reply["id"],
        "code": "unknown_type",
        "message": "unknown message type 'frobnicate'",
    }
    long = await teacher.request({"type": "z" * 500})
    assert long["code"] == "unknown_type"
    assert long["message"] == f"unknown message type {'z' * 32 + '…'!r}"
    assert (await teacher.request({"type": "chat", "text": "still here"}))["type"] == "ok"


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("7", id="string"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(2**60, id="2^60"),
        pytest.param(2**53, id="2^53"),
        pytest.param(1.5, id="float"),
        pytest.param(3.0, id="integral-float"),
        pytest.param([1], id="list"),
        pytest.param({"n": 1}, id="object"),
    ],
)
async def test_a_bad_id_is_a_bad_request(
    classroom: ClassroomServer, raw: OpenSocket, bad_id: Any
) -> None:
    teacher = await teacher_socket(classroom, raw)
    await teacher.send({"type": "chat", "id": bad_id, "text": "hello"})
    error = await teacher.wait("error")
    assert error == {
        "type": "error",
        "code": "bad_request",
        "message": "'id' must be an integer from 0 to 2^53-1",
    }
    assert not any(m["type"] == "chat" for m in teacher.messages)  # not carried out
    assert (await teacher.request({"type": "chat", "text": "ok"}))["type"] == "ok"


async def test_the_largest_id_is_repeated(classroom: ClassroomServer, raw: OpenSocket) -> None:
    teacher = await teacher_socket(classroom, raw)
    await teacher.send({"type": "chat", "id": 2**53 - 1, "text": "hi"})
    assert (await teacher.wait("ok"))["id"] == 2**53 - 1
    await teacher.send({"type": "chat", "id": 0, "text": "hi"})
    await teacher.wait("ok", id=0)


LONG = "x" * 200
FIELD_CASES: list[Any] = [
    # join
    ({"type": "join", "token": 123}, "token"),
    ({"type": "join", "token": ["a"]}, "token"),
    ({"type": "join", "client": 5}, "client"),
    ({"type": "join", "client": "c" * 65}, "client"),
    # publish
    ({"type": "publish", "sources": {"0": "camera"}}, "sdp"),
    ({"type": "publish", "sdp": 5, "sources": {"0": "camera"}}, "sdp"),
    ({"type": "publish", "sdp": "v=0"}, "sources"),
    ({"type": "publish", "sdp": "v=0", "sources": ["camera"]}, "sources"),
    ({"type": "publish", "sdp": "v=0", "sources": {}}, "sources"),
    ({"type": "publish", "sdp": "v=0", "sources": {"0": "smell"}}, "sources"),
    ({"type": "publish", "sdp": "v=0", "sources": {"0": 1}}, "sources"),
    ({"type": "publish", "sdp": "v=0", "sources": {"0": "camera", "1": "camera"}}, "sources"),
    (
        {
            "type": "publish",
            "sdp": "v=0",
            "sources": {str(i): s for i, s in enumerate(["camera", "microphone", "screen", "x"])},
        },
        "sources",
    ),
    ({"type": "publish", "sdp": "v=0", "sources": {"m" * 33: "camera"}}, "sources"),
    # unpublish, media
    ({"type": "unpublish"}, "source"),
    ({"type": "unpublish", "source": "video"}, "source"),
    ({"type": "unpublish", "source": 1}, "source"),
    ({"type": "media", "muted": True}, "source"),
    ({"type": "media", "source": "camera"}, "muted"),
    ({"type": "media", "source": "camera", "muted": "yes"}, "muted"),
    ({"type": "media", "source": "camera", "muted": 1}, "muted"),
    # subscriber_answer
    ({"type": "subscriber_answer"}, "sdp"),
    ({"type": "subscriber_answer", "sdp": ["v=0"]}, "sdp"),
    # ice
    ({"type": "ice", "candidate": ""}, "direction"),
    ({"type": "ice", "direction": "both", "candidate": ""}, "direction"),
    ({"type": "ice", "direction": 1, "candidate": ""}, "direction"),
    ({"type": "ice", "direction": "publish"}, "candidate"),
    ({"type": "ice", "direction": "publish", "candidate": 5}, "candidate"),
    ({"type": "ice", "direction": "publish", "candidate": "c" * 1025}, "candidate"),
    ({"type": "ice", "direction": "publish", "candidate": "", "mid": 0}, "mid"),
    ({"type": "ice", "direction": "publish", "candidate": "", "mid": "m" * 33}, "mid"),
    # chat, hand
    ({"type": "chat"}, "text"),
    ({"type": "chat", "text": 5}, "text"),
    ({"type": "chat", "text": " \n\t "}, "text"),
    ({"type": "hand"}, "raised"),
    ({"type": "hand", "raised": "true"}, "raised"),
    ({"type": "hand", "raised": None}, "raised"),
    # moderation
    *(
        case
        for type_ in ("admit", "deny", "lower_hand", "remove", "mute", "floor")
        for case in (
            ({"type": type_, "sources": []}, "participant"),
            ({"type": type_, "participant": 7, "sources": []}, "participant"),
            ({"type": type_, "participant": "", "sources": []}, "participant"),
            ({"type": type_, "participant": LONG, "sources": []}, "participant"),
        )
    ),
    ({"type": "floor", "participant": "s1"}, "sources"),
    ({"type": "floor", "participant": "s1", "sources": "camera"}, "sources"),
    ({"type": "floor", "participant": "s1", "sources": ["smell"]}, "sources"),
    ({"type": "floor", "participant": "s1", "sources": [1]}, "sources"),
    ({"type": "mute", "participant": "s1", "source": "video"}, "source"),
    pytest.param(
        {"type": "mute", "participant": "s1", "source": "screen"},
        "source",
        id="mute-screen",
    ),
]


def _case_id(case: Any) -> str:
    message, field = case
    shown = {k: v for k, v in message.items() if k != "type"}
    return f"{message['type']}-{field}-" + "-".join(
        f"{k}={type(v).__name__}{len(v) if isinstance(v, str | list | dict) else ''}"
        for k, v in shown.items()
    )


@pytest.mark.parametrize(
    ("message", "field"),
    [pytest.param(*c, id=_case_id(c)) if type(c) is tuple else c for c in FIELD_CASES],
)
async def test_a_missing_or_mistyped_field_is_a_bad_request_naming_it(
    classroom: ClassroomServer, raw: OpenSocket, message: dict[str, Any], field: str
) -> None:
    teacher = await teacher_socket(classroom, raw)
    reply = await teacher.request(message)
    assert reply["type"] == "error", reply
    assert reply["code"] == "bad_request", reply
    assert reply["message"].startswith(f"{message['type']}: '{field}'") or (
        reply["message"].startswith(f"{message['type']}: ") and f"'{field}'" in reply["message"]
    ), reply
    assert (await teacher.request({"type": "chat", "text": "still here"}))["type"] == "ok"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "chat", "text": "hi"},
        {"type": "hand", "raised": True},
        {"type": "publish", "sdp": "v=0", "sources": {"0": "camera"}},
        {"type": "subscriber_answer", "sdp": "v=0"},
        {"type": "ice", "direction": "publish", "candidate": ""},
        {"type": "admit", "participant": "s1"},
        {"type": "end"},
        {"type": "leave"},
    ],
    ids=lambda m: m["type"],
)
async def test_a_message_before_join_is_not_joined(
    classroom: ClassroomServer, raw: OpenSocket, message: dict[str, Any]
) -> None:
    await classroom.lesson()
    client = await raw(join=False)
    reply = await client.request(message)
    assert reply == {
        "type": "error",
        "id": reply["id"],
        "code": "not_joined",
        "message": "send 'join' first",
    }
    await client.send({"type": "join", "token": token("s1")})
    await client.wait("welcome")


async def test_a_second_join_is_already_joined(classroom: ClassroomServer, raw: OpenSocket) -> None:
    await classroom.lesson()
    student = await raw(token=token("s1"))
    again = token("s2")
    reply = await student.request({"type": "join", "token": again})
    assert reply == {
        "type": "error",
        "id": reply["id"],
        "code": "already_joined",
        "message": "this connection has already joined",
    }
    assert_no_token(reply["message"], again)
    # still s1, still connected
    assert (await student.request({"type": "hand", "raised": True}))["type"] == "ok"
    assert [m["you"]["id"] for m in student.messages if m["type"] == "welcome"] == ["s1"]


async def test_a_mistyped_join_is_a_bad_request_and_a_good_one_follows(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    client = await raw(join=False)
    reply = await client.request({"type": "join", "token": {"jwt": "x"}})
    assert (reply["code"], reply["message"]) == ("bad_request", "join: 'token' must be a string")
    await client.send({"type": "join", "token": token("s1")})
    await client.wait("welcome")


# --- tokens -------------------------------------------------------------------------------

_HOUR = timedelta(hours=1)

TOKEN_CASES = [
    pytest.param(lambda: None, "missing", "no token was given", id="missing"),
    pytest.param(lambda: "", "missing", "no token was given", id="empty"),
    pytest.param(lambda: "   ", "missing", "no token was given", id="blank"),
    pytest.param(
        lambda: token(now=datetime.now(UTC) - timedelta(seconds=100), ttl=60),
        "expired",
        "the token has expired",
        id="expired-beyond-leeway",
    ),
    pytest.param(
        lambda: token(now=datetime.now(UTC) - 24 * _HOUR),
        "expired",
        "the token has expired",
        id="expired-yesterday",
    ),
    pytest.param(
        lambda: token(now=datetime.now(UTC) + _HOUR),
        "not_yet_valid",
        "the token is not valid yet",
        id="issued-in-the-future",
    ),
    pytest.param(
        lambda: token(secret="another-secret-that-is-long-enough-000"),
        "bad_signature",
        "the token's signature does not verify",
        id="forged",
    ),
    pytest.param(
        lambda: token()[:-4] + ("AAAA" if not token().endswith("AAAA") else "BBBB"),
        "bad_signature",
        "the token's signature does not verify",
        id="tampered-signature",
    ),
    pytest.param(
        alg_none_token,
        "algorithm_not_allowed",
        "the token's algorithm is not allowed",
        id="alg-none",
    ),
    pytest.param(
        lambda: jwt.encode(_claims(), JWT_SECRET * 2, algorithm="HS512"),
        "algorithm_not_allowed",
        "the token's algorithm is not allowed",
        id="alg-hs512",
    ),
    pytest.param(
        lambda: token(audience="another-audience"),
        "wrong_audience",
        "the token is meant for another audience",
        id="wrong-audience",
    ),
    pytest.param(
        lambda: token(issuer="https://evil.example"),
        "wrong_issuer",
        "the token comes from another issuer",
        id="wrong-issuer",
    ),
    pytest.param(
        lambda: "garbage",
        "malformed",
        "the token is not a well-formed JWT",
        id="garbage",
    ),
    pytest.param(
        lambda: "a.b.c",
        "malformed",
        "the token is not a well-formed JWT",
        id="three-garbage-parts",
    ),
    pytest.param(
        lambda: "é" + token(),
        "malformed",
        "the token is not a well-formed JWT",
        id="non-ascii",
    ),
    pytest.param(
        lambda: jwt.encode(_claims(role=None), JWT_SECRET, algorithm="HS256"),
        "missing_claim",
        "the token lacks a required claim: role",
        id="no-role",
    ),
    pytest.param(
        lambda: jwt.encode(_claims(role="wizard"), JWT_SECRET, algorithm="HS256"),
        "bad_claim",
        "the token has an invalid claim: role",
        id="bad-role",
    ),
]


@pytest.mark.parametrize(("make_token", "cause", "reason"), TOKEN_CASES)
async def test_a_bad_token_closes_with_4401_naming_the_cause(
    classroom: ClassroomServer,
    raw: OpenSocket,
    make_token: Callable[[], str | None],
    cause: str,
    reason: str,
) -> None:
    await classroom.lesson()
    bad = make_token()
    client = await raw(join=False)
    await client.send({"type": "join"} if bad is None else {"type": "join", "token": bad})
    code, text = await client.closed()
    assert (code, text) == (4401, reason)
    assert_no_token(text, bad)
    failures = classroom.app[CLASSROOMS_KEY].auth_failures
    assert failures == {cause: 1}
    await assert_server_alive(classroom)


async def test_a_token_expired_within_the_leeway_is_accepted(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    late = token(now=datetime.now(UTC) - timedelta(seconds=70), ttl=60)  # 10 s ago
    await raw(token=late)
    assert not classroom.app[CLASSROOMS_KEY].auth_failures


async def test_the_token_in_the_subprotocol_header_is_accepted(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    tok = token("s1")
    client = await raw(protocols=("sabaq.v1", "sabaq.token." + tok))
    assert client.ws is not None and client.ws.protocol == "sabaq.v1"
    assert client.messages[-1]["you"]["id"] == "s1"


async def test_a_bad_token_in_the_subprotocol_header_closes_with_4401(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    expired = token(now=datetime.now(UTC) - _HOUR, ttl=60)
    client = await raw(protocols=("sabaq.v1", "sabaq.token." + expired), welcome=False)
    code, reason = await client.closed()
    assert (code, reason) == (4401, "the token has expired")
    assert_no_token(reason, expired)
    assert classroom.app[CLASSROOMS_KEY].auth_failures["expired"] == 1


async def test_the_join_token_wins_over_the_header_token(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    client = await raw(token=token("s2"), protocols=("sabaq.v1", "sabaq.token." + token("s1")))
    assert client.messages[-1]["you"]["id"] == "s2"


@pytest.mark.parametrize(
    "protocols",
    [
        pytest.param((), id="none"),
        pytest.param(("sabaq.v2",), id="other-version"),
        pytest.param(("sabaq.token.x",), id="only-token"),
    ],
)
async def test_without_the_sabaq_v1_subprotocol_the_socket_closes_with_1002(
    classroom: ClassroomServer, raw: OpenSocket, protocols: tuple[str, ...]
) -> None:
    await classroom.lesson()
    client = await raw(protocols=protocols, join=False)
    assert client.ws is not None and client.ws.protocol is None
    assert await client.closed() == (1002, "the subprotocol sabaq.v1 is required")
    await assert_server_alive(classroom)


# --- admission ---------------------------------------------------------------------------


async def test_a_token_for_another_lesson_closes_with_4403(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    await classroom.lesson("L2")
    client = await raw(token=token("s1", lesson="L2"), welcome=False)
    assert await client.closed() == (4403, "your token does not admit you to this lesson")


async def test_a_token_for_the_lessons_course_is_admitted(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    client = await raw(token=token("s1", lesson=None, course="CS101"))
    assert client.messages[-1]["lesson"]["id"] == "L1"


async def test_a_token_for_another_course_closes_with_4403(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    client = await raw(token=token("s1", lesson=None, course="MATH2"), welcome=False)
    assert await client.closed() == (4403, "your token does not admit you to this lesson")


async def test_a_course_teacher_who_is_not_the_lessons_teacher_closes_with_4403(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()  # teacher_ids ["t1"]
    client = await raw(token=token("t9", "teacher", lesson=None, course="CS101"), welcome=False)
    assert await client.closed() == (4403, "you are not a teacher of this lesson")
    # the lesson's own teacher with the same kind of token is admitted
    await raw(token=token("t1", "teacher", lesson=None, course="CS101"))
    # and so is a teacher whose token names exactly this lesson
    await raw(token=token("t8", "teacher", lesson="L1"))


async def test_no_such_lesson_closes_with_4404(classroom: ClassroomServer, raw: OpenSocket) -> None:
    client = await raw("NOPE", token=token("s1", lesson="NOPE"), welcome=False)
    assert await client.closed() == (4404, "there is no such lesson")
    assert not classroom.app[CLASSROOMS_KEY].rooms


async def test_a_cancelled_lesson_closes_with_4404(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    await classroom.lessons.cancel("L1")
    for sub, role in (("s1", "student"), ("t1", "teacher")):
        client = await raw(token=token(sub, role), welcome=False)
        assert await client.closed() == (4404, "this lesson was cancelled")
    assert not classroom.app[CLASSROOMS_KEY].rooms


# --- origin ------------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_with_403_before_the_upgrade(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(token=token("s1"), origin="https://evil.example")
    assert refused.value.status == 403
    # the body says why
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            classroom.url + "/ws/lessons/L1", headers={"Origin": "https://evil.example"}
        ) as response,
    ):
        assert response.status == 403
        assert await response.text() == "origin not allowed"
    assert not classroom.app[CLASSROOMS_KEY].rooms


async def test_an_allowed_origin_is_accepted(classroom: ClassroomServer, raw: OpenSocket) -> None:
    await classroom.lesson()
    await raw(token=token("s1"), origin="https://lms.example.edu")


async def test_the_servers_own_origin_is_accepted(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson()
    port = classroom.url.rsplit(":", 1)[1]
    await raw(token=token("s1"), origin=classroom.url)
    await raw(token=token("s2"), origin=f"http://localhost:{port}")
    # the same host on another port is another origin
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(token=token("s3"), origin=f"http://127.0.0.1:{int(port) + 1}")
    assert refused.value.status == 403


# --- bad SDP and peer-connection hygiene ---------------------------------------------------


async def test_bad_sdp_is_refused_and_negotiation_still_works_afterwards(
    classroom: ClassroomServer,
) -> None:
    await classroom.lesson()
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    for sdp in ("garbage", "v=0\r\n", "x" * 1000):
        reply = await teacher.request({"type": "publish", "sdp": sdp, "sources": {"0": "camera"}})
        assert reply["type"] == "error" and reply["code"] == "negotiation_failed", reply
        assert reply["message"] and len(reply["message"]) < 300
    reply = await teacher.publish(Source.CAMERA)
    assert reply["type"] == "answer", reply

    student = await classroom.client("s1", join=False)
    student.answer_offers = False
    await student.send({"type": "join", "token": classroom.token("s1")})
    offer = await student.wait_message("offer")
    bad = await student.request({"type": "subscriber_answer", "sdp": "garbage"})
    assert bad["type"] == "error" and bad["code"] == "negotiation_failed", bad
    assert bad["message"].startswith("cannot apply the answer"), bad
    # the connection continues: a real answer to the same offer gets media flowing
    assert (await student.request({"type": "hand", "raised": True}))["type"] == "ok"
    await student._answer(offer)
    await wait_until(lambda: len(student.packets_from("t1", Source.CAMERA)) > 10, timeout=15)
    assert not student.closed and not teacher.closed

    await student.close()
    await teacher.close()
    await wait_until(lambda: not classroom.sfu.rooms, timeout=10)
    await wait_until(lambda: not classroom.app[CLASSROOMS_KEY].rooms, timeout=10)


async def test_an_answer_without_an_offer_is_refused(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    teacher = await teacher_socket(classroom, raw)
    reply = await teacher.request({"type": "subscriber_answer", "sdp": "garbage"})
    assert (reply["code"], reply["message"]) == (
        "negotiation_failed",
        "no subscriber offer is waiting for an answer",
    )
    ice = await teacher.request(
        {"type": "ice", "direction": "publish", "candidate": "candidate:garbage"}
    )
    assert (ice["code"], ice["message"]) == (
        "negotiation_failed",
        "no publish connection to add a candidate to",
    )
    assert (await teacher.request({"type": "chat", "text": "ok"}))["type"] == "ok"


async def test_no_peer_connection_leaks_after_abuse(classroom: ClassroomServer) -> None:
    await classroom.lesson()
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    await teacher.request({"type": "publish", "sdp": "garbage", "sources": {"0": "camera"}})
    assert (await teacher.publish(Source.CAMERA, Source.MICROPHONE))["type"] == "answer"
    students = []
    for i in range(3):
        student = await classroom.client(f"s{i}")
        await student.wait_message("welcome")
        students.append(student)
    await wait_until(
        lambda: all(len(s.packets_from("t1", Source.CAMERA)) > 5 for s in students), timeout=15
    )
    # one student drops with a protocol error, one with a binary frame, one leaves
    await students[0].send_raw("not json")
    await students[1].send_raw(b"\x00")
    await students[2].send({"type": "leave"})
    assert [await s.wait_closed() for s in students] == [1002, 1003, 1000]
    room = classroom.sfu.rooms["L1"]
    await wait_until(lambda: set(room.participants) == {"t1"}, timeout=10)
    await teacher.close()
    await wait_until(lambda: not classroom.sfu.rooms, timeout=10)
    await wait_until(lambda: not classroom.app[CLASSROOMS_KEY].rooms, timeout=10)


# --- one lesson's bad client does not disturb another ----------------------------------------


async def _abuse(classroom: ClassroomServer, raw: OpenSocket, lesson: str) -> None:
    """Every kind of bad client, against one lesson."""
    frames: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"type": 5}',
        b"\x00\x01",
        "x" * (FRAME_LIMIT + 1),
        "[" * 50_000,
    ]
    for frame in frames:
        client = await raw(lesson, token=token("bad", lesson=lesson))
        await client.send_raw(frame)
        code, _ = await client.closed()
        assert code in (1002, 1003, 1009)
    for bad in ("garbage", alg_none_token(), token("x", lesson=lesson, secret="s" * 40)):
        client = await raw(lesson, token=bad, welcome=False)
        assert (await client.closed())[0] == 4401
    spammer = await raw(lesson, token=token("spam", lesson=lesson))
    for i in range(30):
        await spammer.send({"type": ["unknown", "chat", "publish"][i % 3], "id": i, "text": 5})
    await spammer.wait("error", id=29)


async def test_a_bad_client_of_one_lesson_does_not_disturb_another(
    classroom: ClassroomServer, raw: OpenSocket
) -> None:
    await classroom.lesson("L1")
    await classroom.lesson("L2")
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    assert (await teacher.publish(Source.CAMERA))["type"] == "answer"
    student = await classroom.client("s1")
    await student.wait_message("welcome")
    await wait_until(lambda: len(student.packets_from("t1", Source.CAMERA)) > 5, timeout=15)
    l2_teacher = await raw("L2", token=token("t1", "teacher", lesson="L2"))

    def received() -> int:
        return len(student.packets_from("t1", Source.CAMERA))

    async def keep_abusing() -> int:
        rounds = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            await _abuse(classroom, raw, "L2")
            rounds += 1
        return rounds

    abuser = asyncio.get_running_loop().create_task(keep_abusing())
    samples = [received()]
    while not abuser.done():
        await asyncio.sleep(0.25)
        samples.append(received())
    assert await abuser >= 3
    # the student's stream kept growing all along
    assert len(samples) >= 5
    assert all(later > earlier for earlier, later in itertools.pairwise(samples)), samples
    assert not student.closed and not teacher.closed
    assert not student.of_type("error") and not teacher.of_type("error")
    # L1 saw none of it
    assert {m["participant"]["id"] for m in student.of_type("joined")} <= {"t1"}
    assert not student.of_type("left")
    # L2's teacher saw the bad clients come and go, and is still there
    assert (await l2_teacher.request({"type": "chat", "text": "still here"}))["type"] == "ok"
    await assert_server_alive(classroom, "L2")


async def test_the_server_survives_everything(classroom: ClassroomServer, raw: OpenSocket) -> None:
    await classroom.lesson("L1")
    await _abuse(classroom, raw, "L1")
    for origin in ("https://evil.example", "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await raw(token=token("o"), origin=origin)
    no_protocol = await raw(protocols=(), join=False)
    assert (await no_protocol.closed())[0] == 1002
    assert classroom.app[CLASSROOMS_KEY].auth_failures == {
        "malformed": 1,
        "algorithm_not_allowed": 1,
        "bad_signature": 1,
    }
    await assert_server_alive(classroom)
    async with aiohttp.ClientSession() as http, http.get(classroom.url + "/healthz") as response:
        assert await response.json() == {"status": "ok"}


# --- limits (each class runs its own server with small limits) -------------------------------


async def test_chat_has_its_own_bucket(classroom: ClassroomServer, raw: OpenSocket) -> None:
    teacher = await teacher_socket(classroom, raw)
    replies = [await teacher.request({"type": "chat", "text": f"m{i}"}) for i in range(6)]
    assert [r["type"] for r in replies] == ["ok"] * 5 + ["error"]
    assert replies[5] == {
        "type": "error",
        "id": replies[5]["id"],
        "code": "rate_limited",
        "message": "too many chat messages; wait a few seconds",
    }
    # other messages are not limited by chat's bucket; the connection stays open
    assert (await teacher.request({"type": "hand", "raised": True}))["code"] == "forbidden"
    assert (await teacher.request({"type": "frobnicate"}))["code"] == "unknown_type"
    assert teacher.close_code is None


class TestRateLimit:
    @pytest.fixture
    def classroom_limits(self) -> dict[str, Any]:
        return {"messages_per_second": 5, "message_burst": 5, "refused_before_close": 20}

    async def test_a_burst_is_refused_then_closed_with_4429(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        teacher = await teacher_socket(classroom, raw)
        student = await raw(token=token("s1"))
        for i in range(60):
            with contextlib.suppress(ConnectionError):
                await student.send({"type": "hand", "raised": i % 2 == 0, "id": i + 1})
        code, reason = await student.closed()
        assert (code, reason) == (4429, "too many messages")
        limited = student.errors("rate_limited")
        # burst 5 (join took one), then refusals: 19 answered with rate_limited in a
        # row, and the 20th refused in a row closes
        assert student.messages[-19:] == limited[-19:], student.messages
        assert all(e["message"] == "too many messages; slow down" for e in limited)
        assert len(student.of_type("ok")) >= 4
        await teacher.wait("left", participant="s1")
        assert teacher.close_code is None
        await asyncio.sleep(0.3)  # refill, then a fresh client
        await assert_server_alive(classroom)

    async def test_a_refusal_that_is_not_in_a_row_does_not_close(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        student = await raw(token=token("s1"))
        for _ in range(3):
            for i in range(15):  # 4 or 5 pass, about 10 refused
                await student.send({"type": "hand", "raised": i % 2 == 0})
            await asyncio.sleep(0.5)  # refill: the next message passes and resets the count
        assert (await student.request({"type": "hand", "raised": False}))["type"] == "ok"
        assert len(student.errors("rate_limited")) >= 20
        assert student.close_code is None

    async def test_a_rate_limited_request_gets_its_id_back(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        student = await raw(token=token("s1"))
        for i in range(10):
            await student.send({"type": "hand", "raised": i % 2 == 0, "id": i + 1})
        await student.wait("ok", id=1)
        refused = await student.wait("error", code="rate_limited")
        assert refused.get("id") in range(2, 11), refused


class TestJoinTimeout:
    @pytest.fixture
    def classroom_limits(self) -> dict[str, Any]:
        return {"join_timeout_s": 0.5}

    async def test_no_join_closes_with_4408(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        started = time.monotonic()
        client = await raw(join=False)
        code, reason = await client.closed(timeout=3)
        assert (code, reason) == (4408, "no join message within the join timeout")
        assert 0.4 <= time.monotonic() - started < 2.5
        assert not classroom.app[CLASSROOMS_KEY].rooms
        await assert_server_alive(classroom)

    async def test_a_join_in_time_is_not_closed(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        client = await raw(join=False)
        await asyncio.sleep(0.2)
        await client.send({"type": "join", "token": token("s1")})
        await client.wait("welcome")
        await asyncio.sleep(0.6)  # past the join timeout: joined, so kept
        assert (await client.request({"type": "hand", "raised": True}))["type"] == "ok"

    async def test_a_non_join_message_does_not_extend_the_join_deadline(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        client = await raw(join=False)
        assert (await client.request({"type": "chat", "text": "hi"}))["code"] == "not_joined"
        code, _ = await client.closed(timeout=2)
        assert code == 4408


class TestOfferTimeout:
    @pytest.fixture
    def classroom_limits(self) -> dict[str, Any]:
        return {"offer_timeout_s": 1.0}

    async def test_an_unanswered_offer_closes_with_4408(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        teacher = await classroom.client("t1", "teacher")
        await teacher.wait_message("welcome")
        assert (await teacher.publish(Source.CAMERA))["type"] == "answer"

        student = await classroom.client("s1", join=False)
        student.answer_offers = False
        await student.send({"type": "join", "token": classroom.token("s1")})
        await student.wait_message("offer")
        started = time.monotonic()
        assert await student.wait_closed(timeout=5) == 4408
        assert 0.5 <= time.monotonic() - started < 3.5
        left = await teacher.wait_message("left", participant="s1")
        assert left["reason"] == "network"
        assert not teacher.closed
        await wait_until(lambda: set(classroom.sfu.rooms["L1"].participants) == {"t1"})

    async def test_the_close_reason_of_an_unanswered_offer(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        teacher = await classroom.client("t1", "teacher")
        await teacher.wait_message("welcome")
        assert (await teacher.publish(Source.MICROPHONE))["type"] == "answer"
        student = await raw(token=token("s1"))  # a raw socket never answers
        await student.wait("offer")
        code, reason = await student.closed(timeout=5)
        assert (code, reason) == (4408, "no answer to the subscription offer")
        assert_no_token(reason, student.token)

    async def test_an_answered_offer_is_not_closed(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        teacher = await classroom.client("t1", "teacher")
        await teacher.wait_message("welcome")
        assert (await teacher.publish(Source.CAMERA))["type"] == "answer"
        student = await classroom.client("s1")
        await student.wait_message("offer")
        await asyncio.sleep(1.5)
        assert not student.closed
        assert (await student.request({"type": "hand", "raised": True}))["type"] == "ok"

    async def test_a_failed_answer_does_not_stop_the_offer_clock(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        teacher = await classroom.client("t1", "teacher")
        await teacher.wait_message("welcome")
        assert (await teacher.publish(Source.CAMERA))["type"] == "answer"
        student = await raw(token=token("s1"))
        await student.wait("offer")
        reply = await student.request({"type": "subscriber_answer", "sdp": "garbage"})
        assert reply["code"] == "negotiation_failed"
        code, _ = await student.closed(timeout=2.5)
        assert code == 4408


class TestHeartbeat:
    HEARTBEAT = 0.5

    @pytest.fixture
    def classroom_limits(self) -> dict[str, Any]:
        return {"heartbeat_s": self.HEARTBEAT}

    async def test_a_client_that_stops_answering_pings_leaves_with_network(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        teacher = await classroom.client("t1", "teacher")
        await teacher.wait_message("welcome")
        # autoping=False and no more reading: the pings are never answered
        silent = await raw(token=token("s1"), autoping=False)
        await teacher.wait_message("joined")
        started = time.monotonic()
        left = await teacher.wait_message("left", timeout=self.HEARTBEAT * 2 + 1, participant="s1")
        assert left["reason"] == "network"
        assert time.monotonic() - started <= self.HEARTBEAT * 2 + 1
        # the server dropped the connection without a close frame (it was not answering)
        assert (await silent.closed())[0] == 1006
        # a client that answers pings (aiohttp autoping) stays
        await asyncio.sleep(self.HEARTBEAT * 3)
        assert not teacher.closed
        assert (await teacher.request({"type": "chat", "text": "still here"}))["type"] == "ok"
        await wait_until(lambda: set(classroom.sfu.rooms["L1"].participants) == {"t1"})

    async def test_a_silent_client_before_join_is_also_dropped(
        self, classroom: ClassroomServer, raw: OpenSocket
    ) -> None:
        await classroom.lesson()
        silent = await raw(join=False, autoping=False)
        await asyncio.sleep(self.HEARTBEAT * 2 + 0.5)
        assert (await silent.closed())[0] == 1006
        await assert_server_alive(classroom)
