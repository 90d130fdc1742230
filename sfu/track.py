"""Published tracks and their forwarding to subscribers: the per-packet path.

An `InboundTrack` is one published audio or video stream. Each incoming
packet is parsed once, cached once and turned into one egress template per
group of subscribers that negotiated the same payload type and header
extension ids; for each subscriber only sequence number, timestamp and SSRC
are patched before SRTP protection and ``sendto``. There is no ``await`` on
this path, so a packet reaches all students before the next one is read.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from . import rtcp
from .codecs import is_keyframe
from .events import Source
from .nack import NackTracker
from .packet_cache import PacketCache
from .rtp import abs_send_time, build_extension_block, build_rtp_header
from .stats import ReceiveStats

__all__ = [
    "Codec",
    "DownTrack",
    "InboundTrack",
    "IngressPacket",
    "RtpSink",
    "TrackCounters",
]

logger = logging.getLogger(__name__)

_pack_seq_ts_ssrc = struct.Struct("!HII").pack_into
_MASK32 = 0xFFFFFFFF

# At most one keyframe request per track per 500 ms: every extra one makes the
# publisher send another large keyframe, which congests every student's link.
KEYFRAME_INTERVAL = 0.5
# A subscriber NACK may name at most this many packets; more is either a
# broken client or an attack, and a keyframe repairs it better.
MAX_NACKED_PER_MESSAGE = 64
# One packet in 64 (received count & mask == 0) has its forwarding delay timed:
# a clock read per packet would cost more than the measurement is worth, and a
# camera at ~300 packets/s still gives ~5 samples a second (a microphone, ~1).
DELAY_SAMPLE_MASK = 63


@dataclass(frozen=True, slots=True)
class Codec:
    """The one codec a published track was negotiated with."""

    mime_type: str  # e.g. "video/VP8"
    clock_rate: int
    channels: int | None
    payload_type: int
    rtx_payload_type: int | None
    parameters: tuple[tuple[str, str], ...] = ()
    feedback: frozenset[str] = frozenset()  # "nack", "nack pli", "ccm fir", "goog-remb"

    @property
    def kind(self) -> str:
        return self.mime_type.split("/", 1)[0].lower()

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1]


class IngressPacket(NamedTuple):
    """A received media packet, reduced to what forwarding needs."""

    seq: int
    timestamp: int
    marker: bool
    body: bytes  # payload without RTP padding
    audio_level: bytes | None  # the RFC 6464 element, copied to subscribers
    keyframe: bool


class RtpSink(Protocol):
    """Where a subscriber's packets go: a peer's SRTP transport or an in-process consumer."""

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        """Send now; the caller may reuse `packet` once this returns."""
        ...

    def send_rtcp(self, packet: bytes) -> bool: ...


@dataclass(slots=True)
class TrackCounters:
    """Why packets of one track were not forwarded, and how many were."""

    received: int = 0
    forwarded: int = 0
    duplicates: int = 0
    dropped_muted: int = 0
    retransmitted: int = 0
    keyframe_requests: int = 0


@dataclass(eq=False, slots=True)
class DownTrack:
    """One subscriber's copy of one track: its SSRC, payload types and offsets."""

    track: InboundTrack
    sink: RtpSink
    ssrc: int
    payload_type: int
    rtx_ssrc: int | None = None
    rtx_payload_type: int | None = None
    audio_level_id: int = 0
    abs_send_time_id: int = 0
    cname: str = ""
    seq_offset: int = 0
    ts_offset: int = 0
    waiting: bool = True  # until the first packet (video: the first keyframe)
    next_seq: int = field(default_factory=lambda: random.getrandbits(16))
    next_ts: int = field(default_factory=lambda: random.getrandbits(32))
    paused_at: float = 0.0
    rtx_seq: int = field(default_factory=lambda: random.getrandbits(16))
    packets_sent: int = 0
    octets_sent: int = 0
    # What this SSRC sent before its m-line was reused: SR counts are per SSRC.
    sr_packets_before: int = 0
    sr_octets_before: int = 0
    sr_sent: dict[int, float] = field(default_factory=dict)  # LSR -> time sent
    fraction_lost: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    remb: int | None = None

    @property
    def group_key(self) -> tuple[int, int, int]:
        return (self.payload_type, self.audio_level_id, self.abs_send_time_id)

    def start(self, packet: IngressPacket, now: float) -> None:
        """Map the track's numbering onto ours so that ours continues without a gap."""
        if self.paused_at:
            elapsed = int((now - self.paused_at) * self.track.codec.clock_rate)
            self.next_ts = (self.next_ts + max(elapsed, 1)) & _MASK32
        self.seq_offset = (self.next_seq - packet.seq) & 0xFFFF
        self.ts_offset = (self.next_ts - packet.timestamp) & _MASK32
        self.waiting = False

    def pause(self, now: float) -> None:
        """Stop until `start`; remembers where our numbering stands."""
        if not self.waiting:
            track = self.track
            self.next_seq = (track.last_seq + self.seq_offset + 1) & 0xFFFF
            self.next_ts = (track.last_timestamp + self.ts_offset) & _MASK32
            self.paused_at = now
            self.waiting = True

    def sender_report(self, now: float) -> bytes | None:
        """An RTCP SR (+SDES) mapping our timestamps to the publisher's clock."""
        track = self.track
        if track.sr_ntp is None or self.waiting or self.packets_sent == 0:
            return None
        elapsed = now - track.sr_arrival
        ntp = track.sr_ntp + int(elapsed * (1 << 32))
        rtp_ts = (track.sr_rtp + int(elapsed * track.codec.clock_rate) + self.ts_offset) & _MASK32
        lsr = rtcp.middle_32(ntp)
        self.sr_sent[lsr] = now
        if len(self.sr_sent) > 8:
            del self.sr_sent[next(iter(self.sr_sent))]
        packet = rtcp.build_sender_report(
            self.ssrc,
            ntp,
            rtp_ts,
            (self.sr_packets_before + self.packets_sent) & _MASK32,
            (self.sr_octets_before + self.octets_sent) & _MASK32,
        )
        if self.cname:
            packet += rtcp.build_sdes_cname(self.ssrc, self.cname)
        return packet

    def on_report(self, block: rtcp.ReportBlock, now: float) -> None:
        """Account a subscriber's receiver report about this stream."""
        self.fraction_lost = block.fraction_lost / 256.0
        self.jitter_ms = block.jitter * 1000.0 / self.track.codec.clock_rate
        sent = self.sr_sent.get(block.lsr)
        if block.lsr and sent is not None:
            self.rtt_ms = max(0.0, (now - sent - block.dlsr / 65536.0) * 1000.0)

    def retransmit(self, lost: tuple[int, ...]) -> int:
        """Answer a subscriber's NACK from the track's cache; returns packets resent."""
        track = self.track
        sent = 0
        ast = abs_send_time(time.time()) if self.abs_send_time_id else b""
        for out_seq in lost[:MAX_NACKED_PER_MESSAGE]:
            packet = track.cache.get((out_seq - self.seq_offset) & 0xFFFF)
            if packet is None or self.waiting:
                continue
            out_ts = (packet.timestamp + self.ts_offset) & _MASK32
            ext = track.extension_block(packet, self.audio_level_id, self.abs_send_time_id, ast)
            if self.rtx_payload_type is not None and self.rtx_ssrc is not None:
                header = build_rtp_header(
                    payload_type=self.rtx_payload_type,
                    marker=packet.marker,
                    sequence_number=self.rtx_seq,
                    timestamp=out_ts,
                    ssrc=self.rtx_ssrc,
                    extension_block=ext,
                )
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                data = header + struct.pack("!H", out_seq) + packet.body
            else:
                header = build_rtp_header(
                    payload_type=self.payload_type,
                    marker=packet.marker,
                    sequence_number=out_seq,
                    timestamp=out_ts,
                    ssrc=self.ssrc,
                    extension_block=ext,
                )
                data = header + packet.body
            if self.sink.send_rtp(data):
                sent += 1
        track.counters.retransmitted += sent
        return sent


class InboundTrack:
    """One published stream and everything subscribed to it."""

    def __init__(
        self,
        track_id: str,
        participant_id: str,
        source: Source,
        codec: Codec,
        ssrc: int | None,
        rtx_ssrc: int | None,
        audio_level_id: int,
        request_upstream: Callable[[bytes], bool],
        rtcp_ssrc: int,
    ) -> None:
        self.id = track_id
        self.participant_id = participant_id
        self.source = source
        self.codec = codec
        self.kind = codec.kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.audio_level_id = audio_level_id
        self.rtcp_ssrc = rtcp_ssrc
        self._send_upstream = request_upstream
        self._mime = codec.mime_type
        self._video = self.kind == "video"
        self.cache: PacketCache[IngressPacket] = PacketCache()
        self.stats = ReceiveStats(codec.clock_rate)
        self.nack = NackTracker() if self._video and "nack" in codec.feedback else None
        self.counters = TrackCounters()
        self.downtracks: list[DownTrack] = []
        self._groups: dict[tuple[int, int, int], list[DownTrack]] = {}
        self._waiting = 0  # downtracks waiting for their first packet
        self.muted = False
        self.closed = False
        self.last_seq = -1  # the newest sequence number forwarded, -1 before any
        self.last_timestamp = 0
        self.sr_ntp: int | None = None
        self.sr_rtp = 0
        self.sr_arrival = 0.0
        self._sr_lsr = 0
        self._sr_lsr_time = 0.0
        self.last_fraction_lost = 0.0
        self._last_keyframe_request = -KEYFRAME_INTERVAL
        self.keyframe_pending = False
        self._fir_seq = 0
        self.on_audio_level: Callable[[int, float], None] | None = None
        # Seconds from a sampled packet's arrival to the end of its fan-out (metrics).
        self.on_forwarding_delay: Callable[[float], None] | None = None
        # Payload bytes sent to subscribers that have since been detached.
        self._detached_octets = 0

    # --- subscribers -----------------------------------------------------

    def add(self, downtrack: DownTrack) -> None:
        """Start forwarding to a subscriber (from the next keyframe for video)."""
        self.downtracks.append(downtrack)
        self._regroup()
        if self._video:
            self.request_keyframe()

    def remove(self, downtrack: DownTrack) -> None:
        """Stop forwarding to a subscriber."""
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)
            self._detached_octets += downtrack.octets_sent
            self._regroup()

    @property
    def octets_forwarded(self) -> int:
        """Payload bytes forwarded to subscribers so far (RTP headers and resends excluded).

        Summed from the subscribers' own counters when asked, so the per-packet
        path pays nothing for it.
        """
        return self._detached_octets + sum(d.octets_sent for d in self.downtracks)

    def _regroup(self) -> None:
        groups: dict[tuple[int, int, int], list[DownTrack]] = {}
        for downtrack in self.downtracks:
            groups.setdefault(downtrack.group_key, []).append(downtrack)
        self._groups = groups
        self._waiting = sum(1 for d in self.downtracks if d.waiting)

    def set_muted(self, muted: bool) -> None:
        """Stop or resume forwarding to everyone (the packets are still counted)."""
        if muted == self.muted:
            return
        self.muted = muted
        now = time.time()
        for downtrack in self.downtracks:
            downtrack.pause(now)
        self._waiting = len(self.downtracks)
        if not muted and self._video:
            self.request_keyframe(force=True)

    # --- upstream feedback -------------------------------------------------

    def request_keyframe(self, force: bool = False) -> bool:
        """Ask the publisher for a keyframe, at most once per KEYFRAME_INTERVAL.

        A request inside the interval is deferred, not dropped: the SFU's RTCP
        clock sends it when the interval has passed (`flush_keyframe_request`).
        """
        if not self._video or self.ssrc is None or self.closed:
            return False
        now = time.monotonic()
        if not force and now - self._last_keyframe_request < KEYFRAME_INTERVAL:
            self.keyframe_pending = True
            return False
        self.keyframe_pending = False
        self._last_keyframe_request = now
        self.counters.keyframe_requests += 1
        if "nack pli" in self.codec.feedback or "ccm fir" not in self.codec.feedback:
            packet = rtcp.build_pli(self.rtcp_ssrc, self.ssrc)
        else:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            packet = rtcp.build_fir(self.rtcp_ssrc, self.ssrc, self._fir_seq)
        return self._send_upstream(packet)

    def flush_keyframe_request(self) -> None:
        """Send a deferred keyframe request once the rate limit allows it."""
        if (
            self.keyframe_pending
            and time.monotonic() - self._last_keyframe_request >= KEYFRAME_INTERVAL
        ):
            self.request_keyframe()

    def on_sender_report(self, report: rtcp.SenderReport, now: float) -> None:
        """Keep the publisher's NTP/RTP mapping; subscribers' SRs derive from it."""
        if report.ntp_timestamp == 0:
            # aiortc sends an SR with NTP 0 before its first packet: no mapping at all,
            # and subscribers' lip sync would be derived from it.
            return
        self.sr_ntp = report.ntp_timestamp
        self.sr_rtp = report.rtp_timestamp
        self.sr_arrival = now
        self._sr_lsr = rtcp.middle_32(report.ntp_timestamp)
        self._sr_lsr_time = now

    def report_block(self, now: float) -> rtcp.ReportBlock | None:
        """The block of our receiver report to the publisher about this stream."""
        if self.ssrc is None or self.stats.highest_extended < 0:
            return None
        lsr = self._sr_lsr
        dlsr = int((now - self._sr_lsr_time) * 65536) if lsr else 0
        fraction = self.stats.take_fraction_lost()
        self.last_fraction_lost = fraction
        lost = max(-(1 << 23), min((1 << 23) - 1, self.stats.lost))
        return rtcp.ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(255, int(fraction * 256)),
            packets_lost=lost,
            highest_sequence=self.stats.highest_extended & _MASK32,
            jitter=self.stats.jitter,
            lsr=lsr,
            dlsr=dlsr & _MASK32,
        )

    # --- the per-packet path ---------------------------------------------

    def on_packet(
        self,
        seq: int,
        timestamp: int,
        marker: bool,
        body: bytes,
        level: bytes | None,
        now: float,
    ) -> None:
        """Account, cache and forward one media packet (a repaired one too)."""
        counters = self.counters
        counters.received += 1
        if seq in self.cache:
            counters.duplicates += 1
            return
        extended = self.stats.update(seq, timestamp, now, len(body))
        if self.nack is not None and self.nack.on_packet(extended, now):
            self.request_keyframe()
        if level is not None and self.on_audio_level is not None and level:
            self.on_audio_level(level[0] & 0x7F, now)
        keyframe = self._video and self._waiting > 0 and is_keyframe(self._mime, body)
        packet = IngressPacket(seq, timestamp, marker, body, level, keyframe)
        self.cache.store(seq, packet)
        if self.muted or self.closed or not body:
            counters.dropped_muted += self.muted
            return
        last = self.last_seq
        if last < 0 or ((seq - last) & 0xFFFF) < 0x8000:  # newest so far, wrap-aware
            self.last_seq = seq
            self.last_timestamp = timestamp
        self._fanout(packet, now)
        if not counters.received & DELAY_SAMPLE_MASK and self.on_forwarding_delay is not None:
            self.on_forwarding_delay(time.time() - now)

    def _fanout(self, packet: IngressPacket, now: float) -> None:
        ast = b""
        forwarded = 0
        size = len(packet.body)
        seq = packet.seq
        timestamp = packet.timestamp
        for (payload_type, level_id, ast_id), downtracks in self._groups.items():
            if ast_id and not ast:
                ast = abs_send_time(now)
            buf = bytearray(
                build_rtp_header(
                    payload_type=payload_type,
                    marker=packet.marker,
                    sequence_number=0,
                    timestamp=0,
                    ssrc=0,
                    extension_block=self.extension_block(packet, level_id, ast_id, ast),
                )
            )
            buf += packet.body
            for downtrack in downtracks:
                if downtrack.waiting:
                    if self._video and not packet.keyframe:
                        continue
                    downtrack.start(packet, now)
                    self._waiting -= 1
                _pack_seq_ts_ssrc(
                    buf,
                    2,
                    (seq + downtrack.seq_offset) & 0xFFFF,
                    (timestamp + downtrack.ts_offset) & _MASK32,
                    downtrack.ssrc,
                )
                if downtrack.sink.send_rtp(buf):
                    downtrack.packets_sent += 1
                    downtrack.octets_sent += size
                    forwarded += 1
        self.counters.forwarded += forwarded

    @staticmethod
    def extension_block(packet: IngressPacket, level_id: int, ast_id: int, ast: bytes) -> bytes:
        """The header extensions a subscriber negotiated, with its ids."""
        if level_id and packet.audio_level is not None:
            if ast_id:
                return build_extension_block([(level_id, packet.audio_level), (ast_id, ast)])
            return build_extension_block([(level_id, packet.audio_level)])
        if ast_id:
            return build_extension_block([(ast_id, ast)])
        return b""

    def close(self) -> list[DownTrack]:
        """Stop forwarding for good; returns the downtracks that were attached."""
        self.closed = True
        downtracks = self.downtracks
        self._detached_octets += sum(d.octets_sent for d in downtracks)
        self.downtracks = []
        self._groups = {}
        return downtracks
