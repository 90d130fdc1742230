"""The aiohttp application of embedded mode: pages, REST API, classroom sockets, SFU.

`create_app(settings)` wires one process: the SFU (media plane) and the
classrooms on one event loop, lessons and chat in SQLite under
``data_dir``, the files of ``web/`` as static pages. The WebSocket endpoint
checks ``Origin`` before upgrading (a page on another site must not drive a
student's session with their cookies or tokens) and then hands the socket
to a `Session`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from sfu import Sfu

from .db import Database
from .footprint.api import setup_footprint_api
from .footprint.attendance import Thresholds
from .footprint.ledger import Ledger
from .footprint.roster import RosterStore
from .footprint.verify import VerifyResult, verify_ledger
from .hub import Classrooms
from .identity import Verifier
from .lessons import ChatStore, LessonStore
from .metrics import Metrics, setup_metrics
from .openapi import OPENAPI_WITH_FOOTPRINT
from .protocol import CloseCode
from .recording_service import RecordingService
from .recordings import Catalogue, setup_recordings
from .rest import setup_rest
from .session import SUBPROTOCOL, Session, token_from_subprotocols
from .settings import Settings

__all__ = [
    "CHAT_KEY",
    "CLASSROOMS_KEY",
    "LEDGER_KEY",
    "LESSONS_KEY",
    "METRICS_KEY",
    "SETTINGS_KEY",
    "SFU_KEY",
    "create_app",
]

logger = logging.getLogger(__name__)

SETTINGS_KEY: Final = web.AppKey("settings", Settings)
SFU_KEY: Final = web.AppKey("sfu", Sfu)
LESSONS_KEY: Final = web.AppKey("lessons", LessonStore)
CHAT_KEY: Final = web.AppKey("chat", ChatStore)
CLASSROOMS_KEY: Final = web.AppKey("classrooms", Classrooms)
LEDGER_KEY: Final = web.AppKey("ledger", Ledger)
METRICS_KEY: Final = web.AppKey("metrics", Metrics)

# Seconds sessions get at shutdown to leave their classrooms cleanly.
SHUTDOWN_GRACE: Final = 5.0

# Pages load only what this server serves: no CDN, fonts or analytics can be
# added by accident, and another site cannot frame the classroom.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "style-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault(
            "Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"
        )
    return response


async def create_app(
    settings: Settings,
    *,
    verifier: Verifier | None = None,
    database_path: Path | str | None = None,
) -> web.Application:
    """The embedded-mode application, its database open and its SFU started.

    `database_path` ":memory:" serves tests. Closing happens in the app's
    cleanup (``web.run_app`` and aiohttp's test server both run it).
    """
    app = web.Application(
        middlewares=[_security_headers], client_max_size=settings.limits.max_message_bytes
    )
    app[SETTINGS_KEY] = settings
    verifier = verifier or settings.auth.build_verifier()
    web_dir = settings.server.web_root
    origins = settings.origins()
    db_path = database_path or settings.server.data_dir / "sabaq.db"

    db = await Database.open(db_path)
    data_dir = settings.server.data_dir
    ledger_path = data_dir / "footprint.db"
    ledger = await Ledger.open(
        ledger_path,
        signing_key=data_dir / "footprint-signing-key.pem",
        checkpoint_every=settings.footprint.checkpoint_every,
    )
    # After a crash, sessions left open are closed now, so joins and leaves pair.
    closed = await ledger.close_open_sessions("server_restart")
    if closed:
        logger.warning("footprint: closed %d sessions and lessons left open by a restart", closed)
    app[LEDGER_KEY] = ledger
    sfu = Sfu(settings.media.build_sfu_config())
    await sfu.start()
    app[SFU_KEY] = sfu
    app[LESSONS_KEY] = lessons = LessonStore(db)
    app[CHAT_KEY] = chat = ChatStore(db)
    media_root = data_dir / "recordings"
    media_root.mkdir(parents=True, exist_ok=True)
    roster = RosterStore(db)
    recordings = RecordingService(sfu, Catalogue(db), lessons, media_root)
    # What a crash left open is finalized (never deleted); unfinished single files resume.
    await recordings.recover()
    app[CLASSROOMS_KEY] = classrooms = Classrooms(
        sfu,
        lessons,
        chat,
        ice_servers=settings.media.ice_servers_json(),
        max_participants=settings.limits.max_participants_per_lesson,
        ledger=ledger,
        recording=recordings,
    )
    sessions: dict[Session, asyncio.Task[None]] = {}
    # Before any track is published: the SFU hands its delay probe to each new track.
    app[METRICS_KEY] = metrics = Metrics(
        sfu=sfu,
        classrooms=classrooms,
        ledger=ledger,
        recordings=recordings,
        websockets=lambda: len(sessions),
    )

    async def on_shutdown(_: web.Application) -> None:
        # Sessions close with 1001 so browsers reconnect to the restarted server.
        for session in list(sessions):
            session.close(CloseCode.GOING_AWAY, "the server is restarting")

    async def on_cleanup(_: web.Application) -> None:
        if sessions:
            await asyncio.wait(list(sessions.values()), timeout=SHUTDOWN_GRACE)
        # Recordings still running are closed properly (a restart would recover them).
        await recordings.close()
        await sfu.close()
        # Last: the sessions' leave events above must reach the ledger.
        await ledger.close()
        await db.close()

    async def lesson_socket(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in origins:
            logger.info("refused a WebSocket from origin %r", origin[:100])
            return web.Response(status=403, text="origin not allowed")
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            heartbeat=settings.limits.heartbeat_s,
            # aiohttp refuses sizes >= max_msg_size; the protocol allows "at most".
            max_msg_size=settings.limits.max_message_bytes + 1,
        )
        await ws.prepare(request)
        if ws.ws_protocol != SUBPROTOCOL:
            await ws.close(
                code=CloseCode.PROTOCOL_ERROR, message=b"the subprotocol sabaq.v1 is required"
            )
            return ws
        session = Session(
            ws,
            request.match_info["lesson_id"],
            classrooms,
            verifier,
            settings.limits,
            token_from_subprotocols(request.headers.get("Sec-WebSocket-Protocol", "")),
            on_joined=metrics.join_duration.observe,
        )
        # The session runs in a task of its own: aiohttp cancels the handler
        # when the TCP connection drops, and leaving the classroom (closing
        # peer connections, telling the others) must not be cut short by that.
        task = asyncio.get_running_loop().create_task(session.run())
        sessions[session] = task
        task.add_done_callback(lambda _: sessions.pop(session, None))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            session.close(CloseCode.GOING_AWAY, "the connection was lost")
            raise
        return ws

    async def verify() -> VerifyResult:
        # The public key is the ledger's own; the registrar verifies with the
        # copy they were given (`sabaq footprint verify --public-key`).
        await ledger.flush()
        return await asyncio.to_thread(
            verify_ledger, ledger_path, public_key_pem=ledger.public_key_pem
        )

    def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_: web.Request) -> web.StreamResponse:
            response = web.FileResponse(web_dir / name)
            response.headers["Cache-Control"] = "no-cache"
            return response

        return handler

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/l/{lesson_id}", page("lesson.html"))
    app.router.add_get("/admin", page("admin.html"))
    app.router.add_get("/r/{recording_id}", page("recording.html"))
    app.router.add_get("/recordings", page("recordings.html"))
    app.router.add_get("/healthz", health)
    setup_metrics(app, metrics, settings.metrics)
    app.router.add_get("/ws/lessons/{lesson_id}", lesson_socket)
    app.router.add_static("/static/", web_dir, follow_symlinks=False, append_version=False)
    setup_rest(app, lessons=lessons, chat=chat, verifier=verifier, openapi=OPENAPI_WITH_FOOTPRINT)
    attendance = settings.attendance
    setup_footprint_api(
        app,
        ledger=ledger,
        lessons=lessons,
        roster=roster,
        verifier=verifier,
        thresholds=Thresholds(
            late_after_min=attendance.late_after_min,
            present_min_share=attendance.present_min_share,
            partial_min_share=attendance.partial_min_share,
        ),
        verify=verify,
    )
    setup_recordings(
        app,
        catalogue=recordings.catalogue,
        lessons=lessons,
        roster=roster,
        ledger=ledger,
        verifier=verifier,
        media_root=media_root,
        url_secret_file=data_dir / "recordings-url-secret",
        retention_days=settings.recordings.retention_days or None,
        chat=chat,
    )
    return app
