"""Shared fixtures: an SFU on loopback with an event log."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
