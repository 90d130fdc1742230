"""`GET /metrics`: a real classroom server's figures, who may read them, and the dashboard.

The functional tests drive `signaling.app` as browsers do (a teacher
publishes, students join, a bad token is tried), scrape ``/metrics`` over
HTTP and parse the exposition with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from sfu import Source
from signaling.app import LEDGER_KEY, create_app
from signaling.identity import mint
from signaling.metrics import MetricsAccess
from signaling.settings import MetricsSettings, Settings, SettingsError, load_settings
from tests.conftest import AUDIENCE, ISSUER, ClassroomServer, classroom_settings, free_port
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "sabaq-dashboard.json"
TOKEN = "metrics-token-for-tests-0123456789"

# The issue's list: every one must be in every scrape, with or without a lesson.
REQUIRED = (
    "sabaq_rooms",
    "sabaq_participants",
    "sabaq_tracks",
    "sabaq_rtp_packets_forwarded_total",
    "sabaq_rtp_bytes_forwarded_total",
    "sabaq_rtp_packets_dropped_total",
    "sabaq_forwarding_delay_seconds_bucket",
    "sabaq_forwarding_delay_seconds_count",
    "sabaq_forwarding_delay_seconds_sum",
    "sabaq_nacks_received_total",
    "sabaq_nacks_sent_total",
    "sabaq_plis_received_total",
    "sabaq_plis_sent_total",
    "sabaq_join_duration_seconds_bucket",
    "sabaq_join_duration_seconds_count",
    "sabaq_websocket_connections",
    "sabaq_auth_failures_total",
    "sabaq_footprint_events_appended_total",
    "sabaq_footprint_append_latency_seconds_bucket",
    "sabaq_recordings_active",
    "sabaq_recorder_bytes_written_total",
    "sabaq_recorder_errors_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_info",
)


class Scrape:
    """One parsed exposition: samples by name, with their labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        assert name in self.samples, f"{name} is not exposed"
        return sum(
            value
            for sample_labels, value in self.samples[name]
            if all(sample_labels.get(k) == v for k, v in labels.items())
        )


async def fetch(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def scrape(classroom: ClassroomServer) -> Scrape:
    status, content_type, text = await fetch(f"{classroom.url}/metrics")
    assert status == 200, text
    assert content_type.startswith("text/plain")
    return Scrape(text)


async def scraped_until(classroom: ClassroomServer, check: Any, timeout: float = 15.0) -> Scrape:
    """Scrape until `check(scrape)` holds; the last scrape."""
    last: list[Scrape] = []

    async def holds() -> bool:
        last[:] = [await scrape(classroom)]
        return bool(check(last[0]))

    async with asyncio.timeout(timeout):
        while not await holds():
            await asyncio.sleep(0.2)
    return last[0]


# --- a lesson, end to end -------------------------------------------------------------------


async def test_a_lesson_shows_in_the_metrics(classroom: ClassroomServer) -> None:
    empty = await scrape(classroom)
    for name in REQUIRED:
        assert name in empty.samples, name
    assert empty.value("sabaq_rooms") == 0
    assert empty.value("sabaq_participants", role="student") == 0
    assert empty.value("sabaq_tracks", kind="video") == 0
    assert empty.types["sabaq_rtp_packets_forwarded"] == "counter"
    assert empty.types["sabaq_forwarding_delay_seconds"] == "histogram"

    await classroom.lesson()
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    assert (await teacher.publish(Source.CAMERA, Source.MICROPHONE))["type"] == "answer"
    students = []
    for sub in ("s1", "s2"):
        student = await classroom.client(sub)
        await student.wait_message("welcome")
        students.append(student)
    # Signed with another secret, and not a JWT at all: refused with 4401, counted by reason.
    forged = mint(
        secret="another-secret-0123456789abcdef-0123456789",
        issuer=ISSUER,
        audience=AUDIENCE,
        sub="s3",
        name="Forger",
        role="student",
        lesson="L1",
        course=None,
    )
    for token in (forged, "not-a-jwt"):
        intruder = await classroom.client(None, token=token)
        assert await intruder.wait_closed() == 4401
    for student in students:
        await wait_until(
            lambda s=student: (
                len(s.packets_from("t1", Source.CAMERA)) > 20
                and len(s.packets_from("t1", Source.MICROPHONE)) > 20
            ),
            timeout=15,
        )

    first = await scraped_until(
        classroom,
        lambda s: (
            s.value("sabaq_join_duration_seconds_count") >= 2
            and s.value("sabaq_forwarding_delay_seconds_count") > 0
            and s.value("sabaq_websocket_connections") == 3
        ),
    )
    assert first.value("sabaq_rooms") == 1
    assert first.value("sabaq_participants", role="teacher") == 1
    assert first.value("sabaq_participants", role="student") == 2
    assert first.value("sabaq_participants", role="observer") == 0
    assert first.value("sabaq_tracks", kind="video") == 1
    assert first.value("sabaq_tracks", kind="audio") == 1
    assert first.value("sabaq_auth_failures_total", reason="bad_signature") == 1
    assert first.value("sabaq_auth_failures_total", reason="malformed") == 1
    assert first.value("sabaq_auth_failures_total") == 2
    assert first.value("sabaq_rtp_packets_forwarded_total") > 0
    assert first.value("sabaq_rtp_bytes_forwarded_total") > first.value(
        "sabaq_rtp_packets_forwarded_total"
    )
    # Every student asked for the teacher's camera: a keyframe request went upstream.
    assert first.value("sabaq_plis_sent_total") >= 1
    # Joins reach the ledger; each committed append was timed.
    await classroom.app[LEDGER_KEY].flush()
    ledger = await scrape(classroom)
    assert ledger.value("sabaq_footprint_events_appended_total") >= 3
    assert ledger.value("sabaq_footprint_append_latency_seconds_count") >= 3
    # A join takes a few seconds at most on loopback; none lands in the +Inf bucket only.
    joins = ledger.value("sabaq_join_duration_seconds_count")
    assert ledger.value("sabaq_join_duration_seconds_bucket", le="30.0") == joins

    # Media flows: the counters grow between scrapes.
    second = await scraped_until(
        classroom,
        lambda s: (
            s.value("sabaq_rtp_packets_forwarded_total")
            > first.value("sabaq_rtp_packets_forwarded_total") + 50
        ),
    )
    assert second.value("sabaq_rtp_bytes_forwarded_total") > first.value(
        "sabaq_rtp_bytes_forwarded_total"
    )

    # The teacher leaves: the tracks end, and what they forwarded stays counted.
    await teacher.close()
    third = await scraped_until(classroom, lambda s: s.value("sabaq_tracks") == 0)
    assert third.value("sabaq_participants", role="teacher") == 0
    assert third.value("sabaq_participants", role="student") == 2
    for name in ("sabaq_rtp_packets_forwarded_total", "sabaq_rtp_bytes_forwarded_total"):
        assert third.value(name) >= second.value(name), name
    assert third.value("sabaq_plis_sent_total") >= first.value("sabaq_plis_sent_total")


async def test_a_recording_shows_in_the_metrics(classroom: ClassroomServer) -> None:
    await classroom.lesson(recording_policy="manual")
    teacher = await classroom.client("t1", "teacher")
    await teacher.wait_message("welcome")
    reply = await teacher.publish(Source.CAMERA, Source.MICROPHONE, keyframe_interval_s=0.5)
    assert reply["type"] == "answer"
    assert (await teacher.request({"type": "record", "active": True}))["type"] == "ok"
    recording = await scraped_until(
        classroom,
        lambda s: (
            s.value("sabaq_recordings_active") == 1
            and s.value("sabaq_recorder_bytes_written_total") > 10_000
        ),
    )
    assert (await teacher.request({"type": "record", "active": False}))["type"] == "ok"
    stopped = await scraped_until(classroom, lambda s: s.value("sabaq_recordings_active") == 0)
    written = stopped.value("sabaq_recorder_bytes_written_total")
    assert written >= recording.value("sabaq_recorder_bytes_written_total")
    assert stopped.value("sabaq_recorder_errors_total") == 0


# --- who may read them ------------------------------------------------------------------------


async def test_other_addresses_are_refused_and_the_token_is_accepted(tmp_path: Path) -> None:
    port = free_port()
    settings = dataclasses.replace(
        classroom_settings(tmp_path, port),
        # Loopback is not in the list: the test client must show the token.
        metrics=MetricsSettings(allowed_networks=("10.0.0.0/8",), token=TOKEN),
    )
    app = await create_app(settings)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert (await fetch(url))[0] == 403
        assert (await fetch(url, {"Authorization": "Bearer wrong-token-0123456789"}))[0] == 403
        assert (await fetch(url, {"Authorization": f"Basic {TOKEN}"}))[0] == 403
        status, _, text = await fetch(url, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert "sabaq_rooms 0.0" in text
        # The rest of the server does not take the metrics token.
        assert (await fetch(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    finally:
        await server.close()


async def test_a_request_through_a_proxy_is_not_admitted_by_address(
    classroom: ClassroomServer,
) -> None:
    url = f"{classroom.url}/metrics"
    assert (await fetch(url))[0] == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert (await fetch(url, {header: "203.0.113.7"}))[0] == 403, header


ACCESS: list[tuple[str | None, dict[str, str], bool]] = [
    ("127.0.0.1", {}, True),
    ("127.8.9.10", {}, True),
    ("::1", {}, True),
    ("::ffff:127.0.0.1", {}, True),  # IPv4 on a dual-stack socket
    ("10.1.2.3", {}, True),
    ("10.1.2.3", {"X-Forwarded-For": "10.1.2.3"}, False),
    ("192.168.1.5", {}, False),
    ("fd00::5", {}, False),
    (None, {}, False),
    ("", {}, False),
    ("192.168.1.5", {"Authorization": f"Bearer {TOKEN}"}, True),
    ("192.168.1.5", {"authorization": f"bearer  {TOKEN} "}, True),
    ("192.168.1.5", {"Authorization": f"Bearer {TOKEN}x"}, False),
    ("192.168.1.5", {"Authorization": f"Bearer {TOKEN[:-1]}"}, False),
    ("192.168.1.5", {"Authorization": "Bearer"}, False),
    ("192.168.1.5", {"Authorization": TOKEN}, False),
    ("192.168.1.5", {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "1.2.3.4"}, True),
]


@pytest.mark.parametrize(("remote", "headers", "allowed"), ACCESS)
def test_access_by_network_or_token(
    remote: str | None, headers: dict[str, str], allowed: bool
) -> None:
    access = MetricsAccess(
        MetricsSettings(allowed_networks=("127.0.0.0/8", "::1/128", "10.0.0.0/8"), token=TOKEN)
    )
    assert access.allows(remote, CIMultiDict(headers)) is allowed


def test_without_a_token_only_the_networks_admit() -> None:
    access = MetricsAccess(MetricsSettings())
    assert access.allows("127.0.0.1", CIMultiDict())
    assert not access.allows("10.0.0.1", CIMultiDict({"Authorization": "Bearer "}))
    nobody = MetricsAccess(MetricsSettings(allowed_networks=()))
    assert not nobody.allows("127.0.0.1", CIMultiDict())


def test_metrics_settings_from_the_environment() -> None:
    assert Settings().metrics == MetricsSettings(("127.0.0.0/8", "::1/128"), None)
    settings = load_settings(
        env={"SABAQ_METRICS_TOKEN": TOKEN, "SABAQ_METRICS_ALLOWED_NETWORKS": "10.1.2.3/8, ::1"}
    )
    assert settings.metrics.token == TOKEN
    assert settings.metrics.allowed_networks == ("10.0.0.0/8", "::1/128")
    # An empty list admits no address: the token only.
    assert load_settings(env={"SABAQ_METRICS_ALLOWED_NETWORKS": ""}).metrics.allowed_networks == ()
    assert "token" not in repr(settings.metrics)


@pytest.mark.parametrize("token", ["short", "sixteen chars ok", "tab\tin-the-token-0123", "é" * 20])
def test_a_bad_metrics_token_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env={"SABAQ_METRICS_TOKEN": token})
    assert str(caught.value).startswith("SABAQ_METRICS_TOKEN: must be at least 16")
    assert token not in str(caught.value)


def test_a_bad_metrics_network_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^\[metrics\] allowed_networks: 'nowhere' is not"):
        MetricsSettings(allowed_networks=("nowhere",))


# --- the Grafana dashboard ----------------------------------------------------------------------


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in _expressions(value)]
    return []


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


async def test_the_dashboard_queries_only_metrics_that_exist(classroom: ClassroomServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]

    exposed = (await scrape(classroom)).samples
    expressions = _expressions(dashboard["panels"])
    used = {
        name
        for expr in expressions
        for name in re.findall(r"\b(?:sabaq|process|python)_[a-z0-9_]+\b", expr)
    }
    assert used, "no queries"
    assert sorted(used - set(exposed)) == []
    for expr in expressions:
        for name in re.findall(r"\b(?:sabaq|process)_[a-z0-9_]+_(?:total|bucket)\b", expr):
            # Counters only as rates; histograms only as quantiles of bucket rates.
            assert re.search(rf"(?:rate|increase)\(\s*{name}\b", expr), expr
            if name.endswith("_bucket"):
                assert "histogram_quantile(" in expr, expr
    # Every metric of the issue has a panel.
    families = {re.sub(r"_(?:bucket|count|sum)$", "", name) for name in used}
    for name in REQUIRED:
        base = re.sub(r"_(?:bucket|count|sum)$", "", name)
        assert base in families or name in used, name
