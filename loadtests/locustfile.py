"""Locust against a running `sabaq serve`: the REST API, and the classroom join rate.

Two kinds of users, spread over ``-u`` by Locust as usual:

- ``ApiUser`` (an admin's token): a day's mix of REST calls: list lessons, read
  one, read its chat, its attendance report, create a lesson and read it back,
  and now and then the OpenAPI document. Requests are named by route
  (``/api/lessons/{id}``), so the statistics aggregate per route.
- ``JoinUser``: each iteration opens the classroom WebSocket
  (``/ws/lessons/{lesson}``), joins as a new student (a fresh token, a new
  ``sub`` every time), waits for ``welcome``, sends ``leave`` and waits for the
  server's close 1000. It reports two requests of type ``WS``: ``join``
  (from opening the TCP connection to ``welcome``; ``join (lobby)`` in a lesson
  with a lobby, where the answer is ``lobby``) and ``leave`` (from ``leave`` to
  the close). A close code, an ``error`` message or a timeout is a failure
  whose message says which. ``-r`` is therefore the rate at which joining
  students arrive, and ``-u`` how many join over and over at once.

Run it with the server's own secret (the demo makes one in ``data/``)::

    make run    # or: sabaq serve --demo, in another terminal
    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8080

``--host`` is the server's base URL (``https://`` works too: for a self-signed
certificate set ``REQUESTS_CA_BUNDLE`` and ``WEBSOCKET_CLIENT_CA_BUNDLE`` to
``data/tls/cert.pem``). The rest comes from environment variables:

``SABAQ_JWT_SECRET``
    the server's HS256 secret (the same variable the server reads); if unset,
``SABAQ_LOCUST_SECRET_FILE``
    a file holding it, by default ``data/dev-jwt-secret`` (what ``sabaq serve
    --demo`` makes in its data directory when no key is configured).
``SABAQ_AUTH_ISSUER``, ``SABAQ_AUTH_AUDIENCE``
    the ``iss`` and ``aud`` of the tokens; by default ``sabaq-dev`` and
    ``sabaq``, the server's defaults.
``SABAQ_LOCUST_LESSON``
    the lesson that students join and whose chat and report are read; by
    default ``demo``. It must exist and not be cancelled or ended.
``SABAQ_LOCUST_WAIT``
    ``MIN,MAX`` seconds each user waits between tasks (and a ``JoinUser``
    between joins); by default ``1,3``.
``SABAQ_LOCUST_TIMEOUT``
    seconds a WebSocket step may take before it counts as failed; by default 10.

Locust patches the standard library with gevent when it is imported: only
Locust itself imports this file (never pytest, never another loadtests module).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import websocket  # websocket-client, a dependency of Locust (python-socketio[client])
from locust import HttpUser, User, between, task

from signaling.identity import mint

# signaling.session.SUBPROTOCOL; not imported, so Locust does not load aiohttp and the SFU.
SUBPROTOCOL = "sabaq.v1"
# Tokens of an ApiUser outlive any run; a JoinUser mints one per join.
ADMIN_TTL = 24 * 3600
STUDENT_TTL = 600
CREATED_COURSE = "LOCUST-101"


@dataclass(frozen=True, slots=True)
class Config:
    secret: str
    issuer: str
    audience: str
    lesson: str
    wait: tuple[float, float]
    timeout: float

    @classmethod
    def from_env(cls) -> Config:
        secret = os.environ.get("SABAQ_JWT_SECRET", "").strip()
        if not secret:
            path = Path(os.environ.get("SABAQ_LOCUST_SECRET_FILE", "data/dev-jwt-secret"))
            try:
                secret = path.read_text().strip()
            except OSError as error:
                raise SystemExit(
                    f"locustfile: no JWT secret: set SABAQ_JWT_SECRET, or SABAQ_LOCUST_SECRET_FILE"
                    f" to the server's data/dev-jwt-secret ({path}: {error.strerror})"
                ) from None
        low, _, high = os.environ.get("SABAQ_LOCUST_WAIT", "1,3").partition(",")
        try:
            wait = (float(low), float(high or low))
            timeout = float(os.environ.get("SABAQ_LOCUST_TIMEOUT", "10"))
        except ValueError:
            raise SystemExit(
                "locustfile: SABAQ_LOCUST_WAIT is MIN,MAX seconds, SABAQ_LOCUST_TIMEOUT seconds"
            ) from None
        return cls(
            secret=secret,
            issuer=os.environ.get("SABAQ_AUTH_ISSUER", "sabaq-dev"),
            audience=os.environ.get("SABAQ_AUTH_AUDIENCE", "sabaq"),
            lesson=os.environ.get("SABAQ_LOCUST_LESSON", "demo"),
            wait=wait,
            timeout=timeout,
        )

    def token(self, sub: str, role: str, *, lesson: str | None, ttl: int) -> str:
        return mint(
            secret=self.secret,
            issuer=self.issuer,
            audience=self.audience,
            sub=sub,
            name=sub,
            role=role,
            lesson=lesson,
            ttl=ttl,
        )


CONFIG = Config.from_env()


class ApiUser(HttpUser):
    """An administrator's (or a dashboard's) REST calls, weighted like a working day."""

    wait_time = between(*CONFIG.wait)

    def on_start(self) -> None:
        token = CONFIG.token(
            f"locust-admin-{uuid.uuid4().hex[:8]}", "admin", lesson=None, ttl=ADMIN_TTL
        )
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.lesson_path = f"/api/lessons/{quote(CONFIG.lesson, safe='')}"

    def _get(self, path: str, name: str, **params: Any) -> None:
        with self.client.get(path, params=params, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(6)
    def get_lesson(self) -> None:
        self._get(self.lesson_path, "/api/lessons/{id}")

    @task(4)
    def list_lessons(self) -> None:
        self._get("/api/lessons", "/api/lessons", limit=50)

    @task(3)
    def lesson_chat(self) -> None:
        self._get(f"{self.lesson_path}/chat", "/api/lessons/{id}/chat")

    @task(2)
    def lesson_report(self) -> None:
        self._get(f"{self.lesson_path}/report", "/api/lessons/{id}/report")

    @task(1)
    def create_lesson(self) -> None:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        body = {
            "course": CREATED_COURSE,
            "title": f"Load test {uuid.uuid4().hex[:8]}",
            "kind": "lecture",
            "teacher_ids": ["locust-teacher"],
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(minutes=80)).isoformat(),
        }
        with self.client.post(
            "/api/lessons", json=body, name="/api/lessons", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            lesson_id = response.json()["id"]
        self._get(f"/api/lessons/{quote(lesson_id, safe='')}", "/api/lessons/{id}")

    @task(1)
    def openapi(self) -> None:
        self._get("/api/openapi.json", "/api/openapi.json")


class JoinFailed(Exception):
    """A join or leave that did not go as the protocol says; the message says how."""


def _close_payload(frame: websocket.ABNF) -> bytes:
    data = frame.data
    return data.encode() if isinstance(data, str) else data


def _close_text(frame: websocket.ABNF) -> str:
    data = _close_payload(frame)
    if len(data) < 2:
        return "closed without a code"
    code = int.from_bytes(data[:2], "big")
    reason = data[2:].decode(errors="replace")
    return f"closed {code}: {reason}" if reason else f"closed {code}"


def _close_code(frame: websocket.ABNF) -> int | None:
    data = _close_payload(frame)
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def _next(ws: websocket.WebSocket) -> tuple[dict[str, Any] | None, websocket.ABNF | None]:
    """The next message (a JSON object), or ``(None, close_frame)``; answers pings."""
    opcode, frame = ws.recv_data_frame()
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        return None, frame
    if opcode != websocket.ABNF.OPCODE_TEXT:
        raise JoinFailed(f"unexpected frame (opcode {opcode})")
    message = json.loads(frame.data)
    if not isinstance(message, dict):
        raise JoinFailed("a message that is not a JSON object")
    return message, None


class JoinUser(User):
    """A student who joins the lesson, is welcomed, and leaves; again and again."""

    wait_time = between(*CONFIG.wait)

    def on_start(self) -> None:
        parts = urlsplit(self.host or "")
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
        if scheme is None:
            raise ValueError(f"--host must be http:// or https://, not {self.host!r}")
        path = f"{parts.path.rstrip('/')}/ws/lessons/{quote(CONFIG.lesson, safe='')}"
        self.url = urlunsplit((scheme, parts.netloc, path, "", ""))

    def _report(
        self, name: str, started: float, length: int, error: Exception | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )

    @task
    def join_and_leave(self) -> None:
        sub = f"locust-{uuid.uuid4().hex[:16]}"
        token = CONFIG.token(sub, "student", lesson=CONFIG.lesson, ttl=STUDENT_TTL)
        ws: websocket.WebSocket | None = None
        try:
            started = time.perf_counter()
            try:
                # No Origin header: a non-browser client, which the server accepts.
                ws = websocket.create_connection(
                    self.url,
                    timeout=CONFIG.timeout,
                    subprotocols=[SUBPROTOCOL],
                    suppress_origin=True,
                    enable_multithread=False,
                )
                ws.send(json.dumps({"type": "join", "token": token, "client": "locust"}))
                answer = self._await_admission(ws)
            except (OSError, ValueError, websocket.WebSocketException, JoinFailed) as error:
                self._report("join", started, 0, JoinFailed(str(error) or type(error).__name__))
                return
            name = "join" if answer["type"] == "welcome" else "join (lobby)"
            self._report(name, started, len(json.dumps(answer)))

            started = time.perf_counter()
            try:
                ws.send(json.dumps({"type": "leave"}))
                self._await_close(ws)
            except (OSError, ValueError, websocket.WebSocketException, JoinFailed) as error:
                self._report("leave", started, 0, JoinFailed(str(error) or type(error).__name__))
                return
            self._report("leave", started, 0)
        finally:
            if ws is not None:
                ws.shutdown()  # no close handshake: it happened, or the join failed

    @staticmethod
    def _await_admission(ws: websocket.WebSocket) -> dict[str, Any]:
        while True:
            message, close = _next(ws)
            if close is not None:
                raise JoinFailed(_close_text(close))
            assert message is not None
            kind = message.get("type")
            if kind in ("welcome", "lobby"):
                return message
            if kind == "error":
                raise JoinFailed(f"error {message.get('code')}: {message.get('message')}")

    @staticmethod
    def _await_close(ws: websocket.WebSocket) -> None:
        while True:
            message, close = _next(ws)
            if close is not None:
                if _close_code(close) != 1000:
                    raise JoinFailed(_close_text(close))
                return
            assert message is not None
            if message.get("type") == "error":
                raise JoinFailed(f"error {message.get('code')}: {message.get('message')}")
