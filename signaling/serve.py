"""`sabaq serve`: run embedded mode, optionally with a demo lesson and its links.

The demo (``--demo``, what ``make run`` uses) needs nothing configured: it
makes a development HS256 secret under ``data_dir`` when none is set, creates
the lesson ``demo`` and prints a teacher link and two student links. Tokens
travel in the links' fragment (``#token=…``), which browsers never send to a
server, so they reach neither access logs nor proxies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import ssl
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

import uvloop
from aiohttp import web

from .app import LESSONS_KEY, create_app
from .identity import MIN_HS256_SECRET_BYTES, Role, mint
from .lessons import LessonNotFound, LessonStatus, LessonStore
from .settings import Settings, describe
from .tls import certificate_fingerprint, server_ssl_context

__all__ = ["DEMO_LESSON", "demo_links", "ensure_demo_lesson", "serve"]

logger = logging.getLogger("sabaq")

DEMO_LESSON: Final = "demo"
DEMO_COURSE: Final = "DEMO-101"
DEMO_TTL: Final = timedelta(hours=12)
DEMO_PEOPLE: Final = (
    ("teacher", Role.TEACHER, "demo-teacher", "Асқар Нұрланұлы (teacher)"),
    ("student 1", Role.STUDENT, "demo-student-1", "Айгерім Сейітқызы"),
    ("student 2", Role.STUDENT, "demo-student-2", "Данияр Ахметов"),
)


def demo_secret(settings: Settings) -> Settings:
    """Settings with a development HS256 secret kept in data_dir, when no key is set."""
    auth = settings.auth
    if auth.hs256_secret or auth.public_key_file or auth.jwks_file:
        return settings
    path = settings.server.data_dir / "dev-jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_HS256_SECRET_BYTES:
        raise SystemExit(f"sabaq serve: {path} holds a secret that is too short; delete it")
    return dataclasses.replace(settings, auth=dataclasses.replace(auth, hs256_secret=secret))


async def ensure_demo_lesson(lessons: LessonStore) -> None:
    """Create the demo lesson, or reopen it for today when it exists."""
    now = datetime.now(UTC).replace(microsecond=0)
    schedule = {
        "scheduled_start": now.isoformat(),
        "scheduled_end": (now + timedelta(hours=2)).isoformat(),
    }
    try:
        lesson = await lessons.get(DEMO_LESSON)
    except LessonNotFound:
        await lessons.create(
            {
                "id": DEMO_LESSON,
                "course": DEMO_COURSE,
                "title": "Sabaq demo lesson",
                "kind": "lecture",
                "teacher_ids": ["demo-teacher"],
                "lobby": False,
                "recording_policy": "manual",
                **schedule,
            }
        )
        return
    if lesson.status is not LessonStatus.SCHEDULED:
        await lessons.set_status(DEMO_LESSON, LessonStatus.SCHEDULED)
    await lessons.update(DEMO_LESSON, schedule)


def base_url(settings: Settings) -> str:
    """Where people open Sabaq: `Settings.base_url`, with a loopback address as localhost.

    Browsers allow cameras on http://localhost (a secure context) everywhere;
    not every one treats http://127.0.0.1 the same way.
    """
    url = settings.base_url()
    if settings.server.public_url is None and settings.server.host in ("127.0.0.1", "::1"):
        parts = urlsplit(url)
        url = parts._replace(
            netloc=f"localhost:{parts.port}" if parts.port else "localhost"
        ).geturl()
    return url


def demo_links(settings: Settings) -> list[tuple[str, str]]:
    """(label, link) for the demo's teacher and two students."""
    secret = settings.auth.hs256_secret
    assert secret is not None
    links = []
    for label, role, user_id, name in DEMO_PEOPLE:
        token = mint(
            secret=secret,
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            sub=user_id,
            name=name,
            role=role,
            lesson=DEMO_LESSON,
            ttl=int(DEMO_TTL.total_seconds()),
        )
        links.append((label, f"{base_url(settings)}/l/{DEMO_LESSON}#token={token}"))
    return links


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    files = settings.tls_files()  # makes or renews the self-signed pair when asked to
    if files is None:
        return None
    cert, key = files
    if settings.tls.mode == "self-signed":
        print(f"self-signed certificate {cert}")
        print(f"  SHA-256 fingerprint {certificate_fingerprint(cert)}")
        print("  browsers will warn once; compare the fingerprint before accepting it")
    return server_ssl_context(cert, key)


def serve(settings: Settings, *, demo: bool) -> int:
    """Run until interrupted; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if demo:
        settings = demo_secret(settings)
    context = _ssl_context(settings)
    print(describe(settings))

    async def start() -> web.Application:
        app = await create_app(settings)
        if demo:
            await ensure_demo_lesson(app[LESSONS_KEY])
            print("\nDemo lesson ready. Open these links in a browser on this machine:")
            for label, link in demo_links(settings):
                print(f"  {label:<10} {link}")
            print("(each link signs its holder in; they expire in 12 hours)\n")
        return app

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        web.run_app(
            start(),
            host=settings.server.host,
            port=settings.server.port,
            ssl_context=context,
            loop=loop,
            print=lambda text: print(text.splitlines()[0]),
            shutdown_timeout=5.0,
        )
    finally:
        asyncio.set_event_loop(None)
    return 0
