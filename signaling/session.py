"""One browser connection: the WebSocket's reader, its writer and its limits.

The handler's coroutine is the connection's only owner (STYLE.md §5): it
reads frames, parses them (`signaling.protocol`), and carries them out on the
classroom one at a time. Others reach the connection only through `send`
and `close`, which queue for the writer task; the writer gives every frame a
send deadline, so a student on a stalled connection cannot hold up a
lesson. Dead peers are found by aiohttp's ping heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from sfu import NegotiationError, NotAllowed, SfuError, UnknownEntity

from .classroom import Classroom, Member, participant_of
from .hub import Classrooms, Refused
from .identity import AuthError, Verifier
from .protocol import (
    Admit,
    Chat,
    ClientMessage,
    CloseCode,
    Deny,
    End,
    Floor,
    Hand,
    Ice,
    Join,
    Leave,
    LowerHand,
    Media,
    Mute,
    ProtocolError,
    Publish,
    Record,
    Remove,
    RequestError,
    SubscriberAnswer,
    Unpublish,
    parse_message,
)
from .settings import LimitsSettings

__all__ = ["SUBPROTOCOL", "Session", "TokenBucket"]

logger = logging.getLogger(__name__)

SUBPROTOCOL: Final = "sabaq.v1"
TOKEN_SUBPROTOCOL_PREFIX: Final = "sabaq.token."
# A frame that cannot be written in 10 s means the client is gone or hopeless.
SEND_DEADLINE: Final = 10.0
# Queued frames beyond this mean the client does not read: better to drop it
# (it reconnects) than to hold megabytes of presence updates for it.
MAX_QUEUED: Final = 1024


class TokenBucket:
    """`rate` events per second with bursts of `burst`."""

    __slots__ = ("_level", "_rate", "_stamp", "burst")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self.burst = burst
        self._level = burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self._level = min(self.burst, self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False


def token_from_subprotocols(header: str) -> str | None:
    """The token a client put in `Sec-WebSocket-Protocol`, if any."""
    for item in header.split(","):
        protocol = item.strip()
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return None


class Session:
    """A participant's WebSocket, from `join` to close."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        lesson_id: str,
        classrooms: Classrooms,
        verifier: Verifier,
        limits: LimitsSettings,
        header_token: str | None,
        *,
        on_joined: Callable[[float], None] | None = None,
    ) -> None:
        # The WebSocket has just opened (the handshake is done).
        self.opened = time.monotonic()
        self.ws = ws
        self.lesson_id = lesson_id
        self.classrooms = classrooms
        self.verifier = verifier
        self.limits = limits
        self._header_token = header_token
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._closing: tuple[int, str] | None = None
        self._messages = TokenBucket(limits.messages_per_second, limits.message_burst)
        self._chats = TokenBucket(limits.chat_per_10s / 10.0, limits.chat_per_10s)
        self._refused_in_a_row = 0
        self._offer_timer: asyncio.TimerHandle | None = None
        self.classroom: Classroom | None = None
        self.member: Member | None = None
        self.leave_reason = "network"
        self._on_joined = on_joined

    # --- the Peer interface (called by the classroom) ------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message for the writer."""
        if self._closing is not None:
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self.close(CloseCode.TIMEOUT, "the connection is too slow to keep up")
            return
        self._queue.put_nowait(message)

    def close(self, code: CloseCode, reason: str) -> None:
        """Close after the queued messages; the first reason wins."""
        if self._closing is not None:
            return
        self._closing = (int(code), reason)
        self.leave_reason = _LEAVE_REASONS.get(code, "network")
        self._queue.put_nowait(None)

    def expect_answer(self) -> None:
        """Start the clock for `subscriber_answer`."""
        if self._offer_timer is None:
            self._offer_timer = asyncio.get_running_loop().call_later(
                self.limits.offer_timeout_s,
                self.close,
                CloseCode.TIMEOUT,
                "no answer to the subscription offer",
            )

    def media_connected(self) -> None:
        """Report the join's duration, WebSocket open to media flowing, to `on_joined`."""
        if self._on_joined is not None:
            self._on_joined(time.monotonic() - self.opened)

    def _answered(self) -> None:
        if self._offer_timer is not None:
            self._offer_timer.cancel()
            self._offer_timer = None

    # --- running --------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; always leaves the classroom."""
        writer = asyncio.get_running_loop().create_task(self._write())
        try:
            await self._read()
        except asyncio.CancelledError:
            self.close(CloseCode.GOING_AWAY, "the server is shutting down")
            raise
        except Exception:
            logger.exception("session of lesson %s failed", self.lesson_id)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._answered()
            if self.classroom is not None and self.member is not None:
                await self.classroom.leave(self.member, self.leave_reason)
            if self._closing is None:
                self.close(CloseCode.GOING_AWAY, "closing")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), SEND_DEADLINE)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not self.ws.closed:
                await self.ws.close(code=WSCloseCode.GOING_AWAY)

    async def _write(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None:
                break
            try:
                await asyncio.wait_for(self.ws.send_str(json.dumps(message)), SEND_DEADLINE)
            except (TimeoutError, ConnectionError, RuntimeError):
                self.close(CloseCode.TIMEOUT, "could not write to the connection")
                break
        if self._closing is not None and not self.ws.closed:
            code, reason = self._closing
            with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    self.ws.close(code=code, message=reason.encode()[:123]), SEND_DEADLINE
                )

    async def _read(self) -> None:
        # Until a join succeeds, every frame counts against one deadline: an
        # unauthenticated socket must not live on by sending anything else.
        deadline = asyncio.get_running_loop().time() + self.limits.join_timeout_s
        while self._closing is None:
            if self.member is None:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    frame = await asyncio.wait_for(self.ws.receive(), max(remaining, 0.0))
                except TimeoutError:
                    self.close(CloseCode.TIMEOUT, "no join message within the join timeout")
                    return
            else:
                frame = await self.ws.receive()
            if not await self._frame(frame):
                return

    async def _frame(self, frame: Any) -> bool:
        """Handle one frame; False when the connection is over."""
        if frame.type is WSMsgType.TEXT:
            pass
        elif frame.type is WSMsgType.BINARY:
            self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not part of the protocol")
            return False
        elif frame.type is WSMsgType.CLOSE:
            if self._closing is None:  # the client closed: 1000/1001 is leaving on purpose
                self.leave_reason = "left" if frame.data in (1000, 1001) else "network"
            return False
        else:  # ERROR (too big, heartbeat), CLOSING, CLOSED
            if self._closing is None:
                self.leave_reason = "network"
            return False
        if not self._messages.take():
            self._refused_in_a_row += 1
            if self._refused_in_a_row >= self.limits.refused_before_close:
                self.close(CloseCode.RATE_LIMITED, "too many messages")
                return False
            refusal = RequestError(
                "rate_limited", "too many messages; slow down", _id_of(frame.data)
            )
            self.send(refusal.to_json())
            return True
        self._refused_in_a_row = 0
        try:
            message = parse_message(frame.data)
            await self._handle(message)
        except ProtocolError as exc:
            self.close(CloseCode.PROTOCOL_ERROR, str(exc))
            return False
        except RequestError as exc:
            self.send(exc.to_json())
        return self._closing is None

    # --- messages ---------------------------------------------------------------

    async def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, Join):
            await self._join(message)
            return
        member, classroom = self.member, self.classroom
        if member is None or classroom is None:
            raise RequestError("not_joined", "send 'join' first", message.id)
        if isinstance(message, Leave):
            self.leave_reason = "left"
            self.close(CloseCode.LEFT, "you left the lesson")
            return
        if not member.admitted:
            raise RequestError("in_lobby", "wait until a teacher admits you", message.id)
        try:
            await self._dispatch(classroom, member, message)
        except NotAllowed as exc:
            raise RequestError("forbidden", str(exc), message.id) from None
        except NegotiationError as exc:
            raise RequestError("negotiation_failed", str(exc), message.id) from None
        except UnknownEntity as exc:
            raise RequestError("not_found", str(exc), message.id) from None
        except SfuError as exc:
            raise RequestError("bad_request", str(exc), message.id) from None

    async def _dispatch(self, classroom: Classroom, member: Member, message: ClientMessage) -> None:
        rid = message.id
        match message:
            case Publish(sdp=sdp, sources=sources):
                classroom.check_publish(member, sources.values(), rid)
                answer = await participant_of(member, rid).publish(sdp, sources)
                self.send({"type": "answer", "id": rid, "sdp": answer})
                return
            case Unpublish(source=source):
                await participant_of(member, rid).unpublish(source)
            case Media(source=source, muted=muted):
                if not muted:
                    classroom.check_publish(member, (source,), rid)
                participant_of(member, rid).set_muted(source, muted)
            case SubscriberAnswer(sdp=sdp):
                await participant_of(member, rid).set_subscriber_answer(sdp)
                # Only an answer that applied stops the clock: a client whose
                # answer fails receives nothing and must reconnect.
                self._answered()
            case Ice(direction=direction, candidate=candidate, mid=mid):
                if candidate:
                    await participant_of(member, rid).add_ice_candidate(direction, candidate, mid)
            case Chat(text=text):
                if not self._chats.take():
                    raise RequestError(
                        "rate_limited", "too many chat messages; wait a few seconds", rid
                    )
                await classroom.chat(member, text, rid)
            case Hand(raised=raised):
                await _recorded(classroom.hand(member, raised, rid))
            case Admit(participant=target):
                await classroom.admit(member, target, rid)
            case Deny(participant=target):
                await _recorded(classroom.deny(member, target, rid))
            case Floor(participant=target, sources=sources):
                await _recorded(classroom.set_floor(member, target, sources, rid))
            case LowerHand(participant=target):
                await _recorded(classroom.lower_hand(member, target, rid))
            case Mute(participant=target, source=source):
                classroom.mute(member, target, source, rid)
            case Remove(participant=target):
                classroom.remove(member, target, rid)
            case End():
                await classroom.end(member, rid)
            case Record(active=active):
                await classroom.record(member, active, rid)
            case _:
                raise RequestError("bad_request", "unexpected message", rid)
        if rid is not None:
            self.send({"type": "ok", "id": rid})

    async def _join(self, message: Join) -> None:
        if self.member is not None:
            raise RequestError("already_joined", "this connection has already joined", message.id)
        token = message.token or self._header_token
        try:
            if not token:
                raise AuthError("missing")
            identity = self.verifier.verify(token)
        except AuthError as exc:
            self.classrooms.auth_failures[exc.reason] += 1
            logger.info("lesson %s: token refused (%s)", self.lesson_id, exc.reason)
            self.close(CloseCode.UNAUTHORISED, str(exc))
            return
        try:
            self.classroom, self.member = await self.classrooms.enter(
                identity, self.lesson_id, self
            )
        except Refused as exc:
            self.close(exc.code, exc.reason)
            return
        logger.info(
            "lesson %s: %s (%s) joined", self.lesson_id, identity.user_id, identity.role.value
        )


def _id_of(text: str) -> int | None:
    """The request id of a frame that is refused unread (for the reply), if any."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None


async def _recorded(future: asyncio.Future[Any] | None) -> None:
    """Wait until the action's footprint event is durable, so `ok` means recorded.

    A failed append is logged by the trail (the ledger is then broken for
    every lesson, an operator's alarm); the action itself has happened.
    """
    if future is not None:
        with contextlib.suppress(Exception):
            await future


_LEAVE_REASONS: Final[dict[int, str]] = {
    CloseCode.LEFT: "left",
    CloseCode.REMOVED: "removed",
    CloseCode.REPLACED: "replaced",
    CloseCode.FORBIDDEN: "denied",
    CloseCode.LESSON_ENDED: "ended",
}
