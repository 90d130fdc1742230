"""SIGKILL in the middle of a lesson: after the restart nothing acknowledged is lost.

A real `sabaq serve` process runs a lesson; students keep joining, raising
hands and writing in the chat, and every `ok` they receive is noted. The
process is killed with SIGKILL at a random moment, started again on the same
data directory and stopped cleanly. Then the footprint must verify, hold
every acknowledged event, and pair every join with a leave (`server_restart`
for the sessions the kill left open).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from sfu import Source
from signaling.footprint.checkpoints import load_or_create_signing_key
from signaling.footprint.ledger import Ledger
from signaling.footprint.verify import verify_ledger
from signaling.identity import mint
from tests.classroom_client import ClassroomClient, Closed
from tests.test_serve import read_until, start

pytestmark = pytest.mark.timeout(120)


def token(secret: str, sub: str, role: str) -> str:
    return mint(
        secret=secret,
        issuer="sabaq-dev",
        audience="sabaq",
        sub=sub,
        name=f"Student {sub}",
        role=role,
        lesson="demo",
    )


async def student_life(
    url: str, secret: str, sub: str, acked: list[tuple[str, str, str]], clients: list
) -> None:
    """Join, raise a hand, chat until the server dies; note every acknowledgement."""
    client = ClassroomClient(url, "demo", token(secret, sub, "student"))
    clients.append(client)
    await client.connect()
    await client.wait_message("welcome")
    reply = await client.request({"type": "hand", "raised": True})
    if reply["type"] == "ok":
        acked.append(("hand.raised", sub, ""))
    for n in range(1000):
        text = f"{sub} message {n}"
        reply = await client.request({"type": "chat", "text": text})
        if reply["type"] == "ok":
            acked.append(("chat.sent", sub, text))
        await asyncio.sleep(0.15 + random.random() * 0.2)


@pytest.mark.parametrize("trial", range(2))
async def test_sigkill_during_a_lesson_loses_nothing_acknowledged(
    tmp_path: Path, trial: int
) -> None:
    process, port = await start(tmp_path)
    url = f"http://127.0.0.1:{port}"
    acked: list[tuple[str, str, str]] = []
    clients: list[ClassroomClient] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await read_until(process, "Running on")
        secret = (tmp_path / "data" / "dev-jwt-secret").read_text().strip()
        teacher = ClassroomClient(url, "demo", token(secret, "demo-teacher", "teacher"))
        clients.append(teacher)
        await teacher.connect()
        await teacher.wait_message("welcome")
        assert (await teacher.publish(Source.CAMERA))["type"] == "answer"
        for i in range(6):
            tasks.append(asyncio.create_task(student_life(url, secret, f"s{i}", acked, clients)))
            await asyncio.sleep(0.2 + random.random() * 0.3)
        await asyncio.sleep(0.5 + random.random() * 1.5)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Closed, Exception):
                await task
        for client in clients:
            await client.close()
    assert len(acked) > 6, "the lesson was too short to mean anything"

    # The restart closes what the kill left open; a clean stop flushes it.
    process, _ = await start(tmp_path)
    await read_until(process, "Running on")
    process.send_signal(signal.SIGINT)
    assert await process.wait() == 0

    data = tmp_path / "data"
    key = load_or_create_signing_key(data / "footprint-signing-key.pem")
    ledger = await Ledger.open(
        data / "footprint.db", signing_key=data / "footprint-signing-key.pem"
    )
    try:
        events = []
        after = 0
        while batch := await ledger.query(after_seq=after, limit=1000):
            events.extend(batch)
            after = batch[-1].seq
    finally:
        await ledger.close()
    result = verify_ledger(data / "footprint.db", public_key_pem=ledger.public_key_pem)
    assert result.ok, result.problem
    del key

    recorded = {
        (e.type, e.actor, e.data.get("text", "") if e.type == "chat.sent" else "") for e in events
    }
    missing = [a for a in acked if a not in recorded]
    assert not missing, f"acknowledged but not in the footprint: {missing[:5]}"

    joins = {e.data["session"] for e in events if e.type == "participant.joined"}
    leaves = Counter(e.data["session"] for e in events if e.type == "participant.left")
    assert joins and set(leaves) == joins and set(leaves.values()) == {1}
    restart = [e for e in events if e.type == "participant.left"]
    assert any(e.data["reason"] == "server_restart" for e in restart)
    started = sum(e.type == "lesson.started" for e in events)
    ended = sum(e.type == "lesson.ended" for e in events)
    assert started == ended >= 1
