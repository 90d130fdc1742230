"""loadtests/locustfile.py against a real `sabaq serve --demo`: every route and the join succeed.

Locust runs in a subprocess of its own: importing it patches the standard
library with gevent, which this process (asyncio, uvloop) must never see.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.test_serve import read_until, start

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"

# (Type, Name) of every request the locustfile makes, as in its CSV statistics.
REQUESTS = {
    ("GET", "/api/lessons"),
    ("POST", "/api/lessons"),
    ("GET", "/api/lessons/{id}"),
    ("GET", "/api/lessons/{id}/chat"),
    ("GET", "/api/lessons/{id}/report"),
    ("GET", "/api/openapi.json"),
    ("WS", "join"),
    ("WS", "leave"),
}


async def test_every_request_of_the_locustfile_succeeds(tmp_path: Path) -> None:
    server, port = await start(tmp_path)
    drain: asyncio.Task[bytes] | None = None
    locust: asyncio.subprocess.Process | None = None
    output = server_output = ""
    try:
        await read_until(server, "Running on")
        assert server.stdout is not None
        # The server logs every request: read on, or it blocks on a full pipe.
        drain = asyncio.create_task(server.stdout.read())
        locust = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            "5",
            "-r",
            "5",
            "-t",
            "8s",
            "--only-summary",
            "--csv",
            str(tmp_path / "stats"),
            "--exit-code-on-error",
            "1",
            "--host",
            f"http://127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("SABAQ_")},
                "SABAQ_LOCUST_SECRET_FILE": str(tmp_path / "data" / "dev-jwt-secret"),
                # Short waits, so that even the rarest task runs within 8 s.
                "SABAQ_LOCUST_WAIT": "0.05,0.2",
            },
        )
        async with asyncio.timeout(40):
            output = (await locust.communicate())[0].decode(errors="replace")
    finally:
        if locust is not None and locust.returncode is None:
            locust.kill()
            await locust.wait()
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(15):
                    await server.wait()
            except TimeoutError:
                server.kill()
                await server.wait()
        if drain is not None:
            server_output = (await drain).decode(errors="replace")

    assert locust is not None and locust.returncode == 0, output
    assert "Traceback" not in output, output
    assert "Traceback" not in server_output, server_output[-5000:]
    with (tmp_path / "stats_stats.csv").open(newline="") as file:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}
    assert rows.keys() >= REQUESTS, f"missing {REQUESTS - rows.keys()}\n{output}"
    for key in sorted(REQUESTS):
        assert int(rows[key]["Request Count"]) > 0, (key, output)
        assert int(rows[key]["Failure Count"]) == 0, (key, output)
