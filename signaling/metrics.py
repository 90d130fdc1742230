"""Prometheus metrics of one embedded-mode process, served at ``GET /metrics``.

Most figures are read when Prometheus scrapes, from counters the modules keep
anyway: `sfu.Sfu.counters` and `sfu.Sfu.forwarding_totals` (per-track
`TrackCounters`, ended tracks included), the live classrooms and their
members, `Classrooms.auth_failures`, `Ledger.appended` and the recording
service. The per-packet path never calls into prometheus_client.

Three histograms are observed when their event happens:

- ``sabaq_forwarding_delay_seconds``: `InboundTrack.on_packet` times one
  packet in 64 (`sfu.track.DELAY_SAMPLE_MASK`), from its arrival (the clock
  read right after its RTP header is parsed) to the end of its fan-out to
  every subscriber, SRTP and ``sendto`` included;
- ``sabaq_join_duration_seconds``: from the WebSocket's opening to the first
  connected media connection, for each participant who found media to
  receive when they joined (`Session.media_connected`);
- ``sabaq_footprint_append_latency_seconds``: from `Ledger.append` to the
  answer of the transaction that committed it (fsync included).

Each application has its own `CollectorRegistry` (tests run several apps in
one process), with the standard process, platform and GC collectors on it.

Access (docs/configuration.md, ``[metrics]``): a client in ``allowed_networks``
or one that sends ``Authorization: Bearer <token>``; anyone else gets 403.
A request that came through a reverse proxy (``Forwarded``,
``X-Forwarded-For`` or ``X-Real-IP`` is set) is never admitted by address,
since the address is then the proxy's.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Final, get_args

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sfu import Sfu

from .footprint.ledger import Ledger
from .hub import Classrooms
from .identity import AuthErrorReason, Role
from .recording_service import RecordingService
from .settings import MetricsSettings

__all__ = ["Metrics", "MetricsAccess", "setup_metrics"]

# Forwarding costs about 10 µs per subscriber (docs/benchmarks.md): a packet for
# 200 students takes ~2 ms; 50 ms means the event loop stalled.
FORWARDING_DELAY_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
)  # fmt: skip
# ICE and DTLS on a LAN take well under a second; past 10 s people give up.
JOIN_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
# One fsync of the WAL: a millisecond on an SSD, tens on a busy disk.
APPEND_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

_PROXY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_TRACK_KINDS: Final = ("audio", "video")


class _SfuCollector:
    """Tracks, RTP packets and bytes, drops and feedback, read from the SFU's counters."""

    def __init__(self, sfu: Sfu) -> None:
        self._sfu = sfu

    def collect(self) -> Iterator[Metric]:
        sfu = self._sfu
        kinds = Counter(track.kind for room in sfu.rooms.values() for track in room.tracks.values())
        tracks = GaugeMetricFamily("sabaq_tracks", "Tracks being published.", labels=["kind"])
        for kind in sorted({*_TRACK_KINDS, *kinds}):
            tracks.add_metric([kind], kinds[kind])
        yield tracks

        totals = sfu.forwarding_totals()
        counters = sfu.counters
        yield _counter(
            "sabaq_rtp_packets_received_total",
            "RTP packets received from publishers (repaired ones included).",
            totals.received,
        )
        yield _counter(
            "sabaq_rtp_packets_forwarded_total",
            "RTP packets sent to subscribers (one per subscriber; resends excluded).",
            totals.forwarded,
        )
        yield _counter(
            "sabaq_rtp_bytes_forwarded_total",
            "RTP payload bytes sent to subscribers (headers and resends excluded).",
            totals.octets_forwarded,
        )
        yield _counter(
            "sabaq_rtp_packets_retransmitted_total",
            "RTP packets resent to subscribers from the cache after a NACK.",
            totals.retransmitted,
        )
        dropped = CounterMetricFamily(
            "sabaq_rtp_packets_dropped_total",
            "Packets received but not forwarded, by reason.",
            labels=["reason"],
        )
        for reason, value in (
            ("malformed_rtp", counters.malformed_rtp),
            ("malformed_rtcp", counters.malformed_rtcp),
            ("unknown_ssrc", counters.unknown_ssrc),
            ("unexpected_rtp", counters.unexpected_rtp),
            ("duplicate", totals.duplicates),
            ("muted", totals.dropped_muted),
        ):
            dropped.add_metric([reason], value)
        yield dropped
        yield _counter(
            "sabaq_nacks_received_total",
            "NACKs received from subscribers.",
            counters.nacks_received,
        )
        yield _counter("sabaq_nacks_sent_total", "NACKs sent to publishers.", counters.nacks_sent)
        yield _counter(
            "sabaq_plis_received_total",
            "Keyframe requests (PLI or FIR) received from subscribers.",
            counters.plis_received,
        )
        yield _counter(
            "sabaq_plis_sent_total",
            "Keyframe requests (PLI or FIR) sent to publishers.",
            totals.keyframe_requests,
        )


class _ClassroomCollector:
    """Live lessons, their participants, WebSockets and refused tokens."""

    def __init__(self, classrooms: Classrooms, websockets: Callable[[], int]) -> None:
        self._classrooms = classrooms
        self._websockets = websockets

    def collect(self) -> Iterator[Metric]:
        rooms = self._classrooms.rooms
        yield GaugeMetricFamily("sabaq_rooms", "Live lessons (classrooms).", value=len(rooms))
        roles = Counter(
            member.role.value for room in rooms.values() for member in room.members.values()
        )
        participants = GaugeMetricFamily(
            "sabaq_participants",
            "Participants admitted to a live lesson (the lobby excluded), by role.",
            labels=["role"],
        )
        for role in sorted({*(r.value for r in Role), *roles}):
            participants.add_metric([role], roles[role])
        yield participants
        yield GaugeMetricFamily(
            "sabaq_websocket_connections",
            "Open classroom WebSocket connections.",
            value=self._websockets(),
        )
        failures = self._classrooms.auth_failures
        refused = CounterMetricFamily(
            "sabaq_auth_failures_total",
            "Classroom joins refused because of the token, by reason.",
            labels=["reason"],
        )
        for reason in sorted({*get_args(AuthErrorReason), *failures}):
            refused.add_metric([reason], failures[reason])
        yield refused


class _StorageCollector:
    """The footprint ledger's appends and the recorder's files."""

    def __init__(self, ledger: Ledger, recordings: RecordingService) -> None:
        self._ledger = ledger
        self._recordings = recordings

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "sabaq_footprint_events_appended_total",
            "Footprint events committed to the ledger.",
            self._ledger.appended,
        )
        recordings = self._recordings
        yield GaugeMetricFamily(
            "sabaq_recordings_active", "Recordings running now.", value=recordings.active
        )
        yield _counter(
            "sabaq_recorder_bytes_written_total",
            "Media frame bytes written to recording files (container overhead excluded).",
            recordings.bytes_written(),
        )
        yield _counter(
            "sabaq_recorder_errors_total",
            "Recording write errors: recordings failed or not started, parts lost.",
            recordings.errors(),
        )


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class Metrics:
    """The registry of one application and the histograms observed at event time."""

    def __init__(
        self,
        *,
        sfu: Sfu,
        classrooms: Classrooms,
        ledger: Ledger,
        recordings: RecordingService,
        websockets: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.forwarding_delay = Histogram(
            "sabaq_forwarding_delay_seconds",
            "Arrival of an RTP packet to the end of its fan-out (1 packet in 64 sampled).",
            buckets=FORWARDING_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.join_duration = Histogram(
            "sabaq_join_duration_seconds",
            "WebSocket open to the first media connection, for joins with media to receive.",
            buckets=JOIN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.append_latency = Histogram(
            "sabaq_footprint_append_latency_seconds",
            "Footprint append to the commit of its transaction.",
            buckets=APPEND_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SfuCollector(sfu))
        self.registry.register(_ClassroomCollector(classrooms, websockets))
        self.registry.register(_StorageCollector(ledger, recordings))
        sfu.on_forwarding_delay = self.forwarding_delay.observe
        ledger.on_append_latency = self.append_latency.observe

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsAccess:
    """Who may read ``/metrics``: allowed networks, or the bearer token."""

    def __init__(self, settings: MetricsSettings) -> None:
        self._networks = tuple(ipaddress.ip_network(n) for n in settings.allowed_networks)
        self._token = settings.token.encode() if settings.token is not None else None

    def allows(self, remote: str | None, headers: Mapping[str, str]) -> bool:
        """Whether a request from `remote` with these headers may read the metrics."""
        if self._token is not None:
            scheme, _, given = headers.get("Authorization", "").partition(" ")
            # compare_digest: the time taken does not tell how much of a guess was right.
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self._token
            ):
                return True
        if any(name in headers for name in _PROXY_HEADERS):
            return False
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:  # a Unix socket, or no peer address at all
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def setup_metrics(app: web.Application, metrics: Metrics, settings: MetricsSettings) -> None:
    """Serve ``GET /metrics`` to the clients `settings` admits."""
    access = MetricsAccess(settings)

    async def handler(request: web.Request) -> web.Response:
        if not access.allows(request.remote, request.headers):
            return web.Response(status=403, text="metrics are not available to this client")
        return web.Response(
            body=metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    app.router.add_get("/metrics", handler)
