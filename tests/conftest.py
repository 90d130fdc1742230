"""Shared fixtures: an SFU on loopback with an event log."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sfu import IcePolicy, Sfu, SfuConfig
from tests.peers import LOOPBACK_ONLY, EventLog


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
async def sfu(log: EventLog) -> AsyncIterator[Sfu]:
    server = Sfu(SfuConfig(ice=IcePolicy(**LOOPBACK_ONLY), quality_interval=1.0), on_event=log)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# --- the classroom server (signaling + SFU in one process, as `sabaq serve`) ---

JWT_SECRET = "classroom-tests-secret-0123456789abcdef"
ISSUER, AUDIENCE = "sabaq-tests", "sabaq"


@dataclass
class ClassroomServer:
    """A running embedded-mode server on 127.0.0.1 and helpers to populate it."""

    url: str
    app: Any
    settings: Any
    clients: list[Any] = field(default_factory=list)

    @property
    def lessons(self) -> Any:
        from signaling.app import LESSONS_KEY

        return self.app[LESSONS_KEY]

    @property
    def sfu(self) -> Sfu:
        from signaling.app import SFU_KEY

        return self.app[SFU_KEY]

    async def lesson(self, lesson_id: str = "L1", **fields: Any) -> Any:
        start = datetime.now(UTC).replace(microsecond=0)
        data = {
            "id": lesson_id,
            "course": "CS101",
            "title": f"Lesson {lesson_id}",
            "kind": "lecture",
            "teacher_ids": ["t1"],
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
            **fields,
        }
        return await self.lessons.create(data)

    def token(
        self,
        sub: str,
        role: str = "student",
        lesson: str | None = "L1",
        course: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> str:
        from signaling.identity import mint

        return mint(
            secret=JWT_SECRET,
            issuer=ISSUER,
            audience=AUDIENCE,
            sub=sub,
            name=name or f"User {sub}",
            role=role,
            lesson=lesson,
            course=course,
            **kwargs,
        )

    async def client(
        self,
        sub: str | None,
        role: str = "student",
        lesson: str = "L1",
        *,
        join: bool = True,
        token: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """A connected ClassroomClient (joined unless join=False)."""
        from tests.classroom_client import ClassroomClient

        if token is None and sub is not None:
            token = self.token(sub, role, lesson)
        client = ClassroomClient(self.url, lesson, token, **kwargs)
        self.clients.append(client)
        await client.connect(send_join=join)
        return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def classroom_settings(tmp_path: Path, port: int = 8080, **limits: Any) -> Any:
    from signaling.settings import (
        AuthSettings,
        LimitsSettings,
        MediaSettings,
        ServerSettings,
        Settings,
    )

    return Settings(
        server=ServerSettings(
            port=port, data_dir=tmp_path, allowed_origins=("https://lms.example.edu",)
        ),
        auth=AuthSettings(issuer=ISSUER, audience=AUDIENCE, hs256_secret=JWT_SECRET),
        media=MediaSettings(
            host_addresses=tuple(LOOPBACK_ONLY["host_addresses"]),
            allowed_networks=tuple(LOOPBACK_ONLY["allowed_networks"]),
        ),
        limits=LimitsSettings(**limits),
    )


@pytest.fixture
def classroom_limits() -> dict[str, Any]:
    """Override in a test module to change the server's limits."""
    return {}


@pytest.fixture
async def classroom(
    tmp_path: Path, classroom_limits: dict[str, Any]
) -> AsyncIterator[ClassroomServer]:
    from aiohttp.test_utils import TestServer

    from signaling.app import create_app

    # The server knows its own port, so that its pages' Origin is allowed.
    port = free_port()
    settings = classroom_settings(tmp_path, port, **classroom_limits)
    app = await create_app(settings)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    state = ClassroomServer(f"http://127.0.0.1:{server.port}", app, settings)
    try:
        yield state
    finally:
        for client in state.clients:
            await client.close()
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium for one test (tests/chromium.py has the flags)."""
    from playwright.async_api import async_playwright

    from tests.chromium import ARGS, CHROMIUM

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()
