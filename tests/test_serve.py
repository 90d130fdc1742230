"""`sabaq serve --demo` as `make run` starts it: a real process, its links, a clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.classroom_client import ClassroomClient

pytestmark = pytest.mark.timeout(60)

SABAQ = Path(sys.executable).with_name("sabaq")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start(tmp_path: Path, *extra: str, **env: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(SABAQ),
        "serve",
        "--demo",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SABAQ_")},
            "SABAQ_SERVER_PORT": str(port),
            "SABAQ_SERVER_DATA_DIR": str(tmp_path / "data"),
            "SABAQ_MEDIA_HOST_ADDRESSES": "127.0.0.1",
            **env,
        },
    )
    return process, port


async def read_until(process: asyncio.subprocess.Process, marker: str) -> str:
    assert process.stdout is not None
    text = ""
    async with asyncio.timeout(30):
        while marker not in text:
            line = await process.stdout.readline()
            if not line:
                raise AssertionError(f"sabaq serve exited early:\n{text}")
            text += line.decode()
    return text


async def stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    rest = (await process.stdout.read()).decode()
    assert await process.wait() == 0
    return rest


async def test_demo_prints_links_that_sign_people_in(tmp_path: Path) -> None:
    process, port = await start(tmp_path)
    try:
        output = await read_until(process, "Running on")
        links = dict(re.findall(r"^\s+(teacher|student 1|student 2)\s+(\S+)$", output, re.M))
        assert set(links) == {"teacher", "student 1", "student 2"}
        for link in links.values():
            assert link.startswith(f"http://localhost:{port}/l/demo#token=")
        teacher = ClassroomClient(
            f"http://127.0.0.1:{port}", "demo", links["teacher"].split("#token=")[1]
        )
        student = ClassroomClient(
            f"http://127.0.0.1:{port}", "demo", links["student 1"].split("#token=")[1]
        )
        try:
            await teacher.connect()
            welcome = await teacher.wait_message("welcome")
            assert welcome["you"]["role"] == "teacher"
            await student.connect()
            welcome = await student.wait_message("welcome")
            assert welcome["you"]["id"] == "demo-student-1"
            assert {p["id"] for p in welcome["participants"]} == {"demo-teacher", "demo-student-1"}
        finally:
            await teacher.close()
            await student.close()
    finally:
        rest = await stop(process)
    assert "Traceback" not in output + rest
    # the token never reaches the log (it travels in the link's fragment)
    token = links["teacher"].split("#token=")[1]
    assert token not in rest


async def test_demo_restarts_on_the_same_data(tmp_path: Path) -> None:
    for _ in range(2):
        process, _ = await start(tmp_path)
        try:
            await read_until(process, "Running on")
        finally:
            await stop(process)
    secret = tmp_path / "data" / "dev-jwt-secret"
    assert secret.stat().st_mode & 0o777 == 0o600


async def test_self_signed_https(tmp_path: Path) -> None:
    process, port = await start(tmp_path, SABAQ_TLS_MODE="self-signed")
    try:
        output = await read_until(process, "Running on")
        assert "SHA-256 fingerprint" in output
        assert f"https://localhost:{port}/l/demo#token=" in output
    finally:
        await stop(process)


async def test_bad_settings_exit_2_with_the_reason(tmp_path: Path) -> None:
    process, _ = await start(tmp_path, SABAQ_SERVER_PORT="70000")
    assert process.stdout is not None
    output = (await process.stdout.read()).decode()
    assert await process.wait() == 2
    assert "SABAQ_SERVER_PORT" in output and "Traceback" not in output
