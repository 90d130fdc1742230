"""A participant's two peer connections: one to publish, one to subscribe.

The publishing connection is offered by the client and answered here; the
subscribing connection is offered here and renegotiated as tracks come and
go (the layout LiveKit uses). aiortc does ICE, DTLS and SDP for both; every
media packet goes through `sfu.track` instead of aiortc's media layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import candidate_from_sdp

from . import rtcp
from ._aiortc import (
    MediaTransport,
    create_peer_connection,
    drop_receive_estimator,
    filter_sdp_candidates,
    silence_sender,
)
from .errors import NegotiationError, NotAllowed, UnknownEntity
from .events import ConnectionStateChanged, Source, SpeakingChanged, SubscriberOffer
from .rtp import RtpError, parse_rtp, unwrap_rtx
from .speaking import SpeakingDetector
from .track import Codec, DownTrack, InboundTrack

if TYPE_CHECKING:
    from .room import Room

__all__ = ["Participant", "SubscribedTrack"]

logger = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# Seconds a closing participant lets an offer in progress finish (gathering
# on host addresses takes milliseconds).
NEGOTIATION_GRACE = 2.0
# SDP is small; a bigger "offer" is an attack on the parser.
MAX_SDP_BYTES = 64 * 1024


def _random32() -> int:
    return random.getrandbits(32) or 1


class SubscribedTrack:
    """What a subscriber's m-line carries, for the client to label its tracks."""

    __slots__ = ("downtrack", "mid", "resume_from", "track", "transceiver")

    def __init__(self, track: InboundTrack, transceiver: Any) -> None:
        self.track = track
        self.transceiver = transceiver
        self.downtrack: DownTrack | None = None
        # the previous downtrack of a reused m-line, whose numbering we continue
        self.resume_from: DownTrack | None = None
        self.mid: str | None = None


class Participant:
    """Someone in a room: publishes allowed sources, receives the others' tracks."""

    def __init__(
        self,
        room: Room,
        participant_id: str,
        allowed_sources: frozenset[Source],
        auto_subscribe: bool,
    ) -> None:
        self.room = room
        self.id = participant_id
        self.allowed_sources = allowed_sources
        self.auto_subscribe = auto_subscribe
        self.closed = False
        self.rtcp_ssrc = _random32()
        self._sfu = room.sfu
        # publishing side
        self.publisher_pc: Any = None
        self.publisher_transport: MediaTransport | None = None
        self.tracks: dict[str, InboundTrack] = {}
        self._track_by_mid: dict[str, InboundTrack] = {}
        self._routes: dict[int, tuple[InboundTrack, bool]] = {}
        self._mid_ext_id = 0
        self._publish_lock = asyncio.Lock()
        self._speaking: dict[str, SpeakingDetector] = {}
        # subscribing side
        self.subscriber_pc: Any = None
        self.subscriber_transport: MediaTransport | None = None
        self.subscriptions: dict[str, SubscribedTrack] = {}
        self._by_ssrc: dict[int, DownTrack] = {}
        self._free: dict[str, list[tuple[Any, DownTrack | None]]] = {"audio": [], "video": []}
        # m-lines going inactive: reusable once an answer has confirmed it
        self._detaching: list[SubscribedTrack] = []
        self._detached_in_offer: list[SubscribedTrack] = []
        self._negotiation_needed = False
        self._offer_pending = False
        self._negotiation: asyncio.Task[None] | None = None
        # bytes received and sent at the last quality sample (for bitrates)
        self.quality_bytes = (0, 0)

    # --- permissions -------------------------------------------------------

    def set_allowed_sources(self, sources: frozenset[Source]) -> list[str]:
        """Change what may be published; revoked tracks stop at once. Returns their ids."""
        self.allowed_sources = frozenset(sources)
        revoked = [t for t in self.tracks.values() if t.source not in self.allowed_sources]
        for track in revoked:
            self._end_track(track, "revoked")
        return [t.id for t in revoked]

    # --- publishing ----------------------------------------------------------

    async def publish(self, offer: str, sources: Mapping[str, Source | str]) -> str:
        """Answer the client's publishing offer; `sources` maps each sending mid to its source."""
        if self.closed:
            raise UnknownEntity(f"participant {self.id} has left")
        if not isinstance(offer, str) or not offer.strip():
            raise NegotiationError("offer must be a non-empty SDP string")
        if len(offer) > MAX_SDP_BYTES:
            raise NegotiationError(f"offer is larger than {MAX_SDP_BYTES} bytes")
        async with self._publish_lock:
            declared = self._check_offer(offer, sources)
            created = self.publisher_pc is None
            pc = self.publisher_pc or create_peer_connection(self._sfu.config.ice)
            try:
                await pc.setRemoteDescription(
                    RTCSessionDescription(
                        filter_sdp_candidates(offer, self._sfu.config.ice), "offer"
                    )
                )
                chosen = self._restrict_codecs(pc, declared)
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            except NegotiationError:
                if created:
                    await pc.close()
                raise
            except Exception as exc:
                if created:
                    await pc.close()
                raise NegotiationError(
                    f"cannot answer the offer: {exc or type(exc).__name__}"
                ) from exc
            if self.closed:
                await pc.close()
                raise UnknownEntity(f"participant {self.id} has left")
            if created:
                self.publisher_pc = pc
                self._watch(pc, "publish")
            self._attach_publisher_transport(pc)
            self._sync_tracks(offer, declared, chosen, pc)
            return str(pc.localDescription.sdp)

    def _check_offer(self, offer: str, sources: Mapping[str, Source | str]) -> dict[str, Source]:
        try:
            parsed = aiortc_sdp.SessionDescription.parse(offer)
        except Exception as exc:
            raise NegotiationError(f"malformed SDP offer: {exc or type(exc).__name__}") from exc
        media = [m for m in parsed.media if m.kind in ("audio", "video")]
        if not media:
            raise NegotiationError("offer has no audio or video m-line")
        for m in media:
            if m.dtls is None or not m.dtls.fingerprints:
                raise NegotiationError(f"m-line mid={m.rtp.muxId!r}: DTLS fingerprint is missing")
            if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
                raise NegotiationError(
                    f"m-line mid={m.rtp.muxId!r}: ICE ufrag or password is missing"
                )
        declared: dict[str, Source] = {}
        for m in media:
            if m.direction not in ("sendrecv", "sendonly"):
                continue
            mid = m.rtp.muxId
            if mid not in sources:
                raise NegotiationError(
                    f"m-line mid={mid!r} ({m.kind}) sends media but no source is declared for it"
                )
            try:
                source = Source(sources[mid])
            except ValueError as exc:
                raise NegotiationError(f"unknown source {sources[mid]!r} for mid={mid!r}") from exc
            if source.kind != m.kind:
                raise NegotiationError(
                    f"source {source} must be {source.kind}, mid={mid!r} is {m.kind}"
                )
            if source not in self.allowed_sources:
                raise NotAllowed(f"participant {self.id} may not publish {source}")
            offered = {c.mimeType.lower() for c in m.rtp.codecs}
            acceptable = self._sfu.config.codecs(m.kind)
            if not offered & {c.lower() for c in acceptable}:
                raise NegotiationError(
                    f"mid={mid!r}: the offer has none of the codecs {', '.join(acceptable)}"
                )
            if source in declared.values():
                raise NegotiationError(f"source {source} is declared twice")
            existing = next((t for t in self.tracks.values() if t.source == source), None)
            if existing is not None and self._mid_of(existing) != mid:
                raise NegotiationError(f"{source} is already published on another m-line")
            declared[mid] = source
        return declared

    def _mid_of(self, track: InboundTrack) -> str | None:
        return next((mid for mid, t in self._track_by_mid.items() if t is track), None)

    def _restrict_codecs(self, pc: Any, declared: dict[str, Source]) -> dict[str, Codec]:
        """Answer one codec per m-line (the operator's first choice) plus its RTX."""
        chosen: dict[str, Codec] = {}
        for transceiver in pc.getTransceivers():
            drop_receive_estimator(transceiver)
            mid = transceiver.mid
            if mid not in declared:
                transceiver.direction = "inactive"
                continue
            transceiver.direction = "recvonly"
            codecs: list[RTCRtpCodecParameters] = list(transceiver._codecs)
            primary = None
            for wanted in self._sfu.config.codecs(transceiver.kind):
                primary = next((c for c in codecs if c.mimeType.lower() == wanted.lower()), None)
                if primary is not None:
                    break
            if primary is None:
                names = ", ".join(self._sfu.config.codecs(transceiver.kind))
                raise NegotiationError(f"mid={mid!r}: the offer has none of the codecs {names}")
            rtx = next(
                (
                    c
                    for c in codecs
                    if c.mimeType.lower().endswith("/rtx")
                    and c.parameters.get("apt") == primary.payloadType
                ),
                None,
            )
            transceiver._codecs = [primary] + ([rtx] if rtx is not None else [])
            feedback = frozenset(
                f"{fb.type} {fb.parameter}" if fb.parameter else fb.type
                for fb in primary.rtcpFeedback
            )
            chosen[mid] = Codec(
                mime_type=primary.mimeType,
                clock_rate=primary.clockRate,
                channels=primary.channels,
                payload_type=primary.payloadType or 0,
                rtx_payload_type=rtx.payloadType if rtx is not None else None,
                parameters=tuple(sorted((str(k), str(v)) for k, v in primary.parameters.items())),
                feedback=feedback,
            )
        return chosen

    def _attach_publisher_transport(self, pc: Any) -> None:
        if self.publisher_transport is not None:
            return
        dtls = pc.getTransceivers()[0].receiver.transport
        self.publisher_transport = MediaTransport(
            dtls, self._sfu.config.ice, self._on_publisher_rtp, self._on_publisher_rtcp
        )

    def _sync_tracks(
        self, offer: str, declared: dict[str, Source], chosen: dict[str, Codec], pc: Any
    ) -> None:
        parsed = aiortc_sdp.SessionDescription.parse(offer)
        for mid, track in list(self._track_by_mid.items()):
            if mid not in declared and not track.closed:
                self._end_track(track, "unpublished")
        for m in parsed.media:
            mid = m.rtp.muxId
            if mid not in declared:
                continue
            transceiver = next(t for t in pc.getTransceivers() if t.mid == mid)
            ext_ids = {e.uri: e.id for e in transceiver._headerExtensions}
            self._mid_ext_id = ext_ids.get(MID_URI, self._mid_ext_id)
            current = self._track_by_mid.get(mid)
            if current is not None and not current.closed:
                continue
            ssrc, rtx_ssrc = _ssrcs_of(m)
            codec = chosen[mid]
            track = InboundTrack(
                track_id=uuid.uuid4().hex[:12],
                participant_id=self.id,
                source=declared[mid],
                codec=codec,
                ssrc=ssrc,
                rtx_ssrc=rtx_ssrc,
                audio_level_id=ext_ids.get(AUDIO_LEVEL_URI, 0),
                request_upstream=self._send_upstream,
                rtcp_ssrc=self.rtcp_ssrc,
            )
            if track.kind == "audio":
                self._watch_speaking(track)
            self.tracks[track.id] = track
            self._track_by_mid[mid] = track
            for old_ssrc in [s for s, (t, _) in self._routes.items() if t is current]:
                del self._routes[old_ssrc]
            if ssrc is not None:
                self._routes[ssrc] = (track, False)
            if rtx_ssrc is not None:
                self._routes[rtx_ssrc] = (track, True)
            self.room._track_published(track)

    def _watch_speaking(self, track: InboundTrack) -> None:
        detector = SpeakingDetector(**self._sfu.config.speaking)
        self._speaking[track.id] = detector
        room_id = self.room.id

        def on_level(level: int, now: float) -> None:
            edge = detector.observe(level, now)
            if edge is not None:
                self._sfu.emit(SpeakingChanged(room_id, self.id, track.id, edge))

        track.on_audio_level = on_level

    def tick_speaking(self, now: float) -> None:
        """Close speaking spells whose packets stopped (Opus DTX sends none in silence)."""
        for track_id, detector in self._speaking.items():
            if detector.tick(now) is False:
                self._sfu.emit(SpeakingChanged(self.room.id, self.id, track_id, False))

    async def unpublish(self, source: Source | str) -> None:
        """Stop forwarding the track of this source (the client renegotiates to drop it)."""
        source = Source(source)
        for track in list(self.tracks.values()):
            if track.source == source:
                self._end_track(track, "unpublished")

    def _end_track(self, track: InboundTrack, reason: str) -> None:
        if track.closed:
            return
        self.tracks.pop(track.id, None)
        detector = self._speaking.pop(track.id, None)
        if detector is not None and detector.speaking:
            self._sfu.emit(SpeakingChanged(self.room.id, self.id, track.id, False))
        self.room._track_ended(track, reason)

    def set_muted(self, source: Source | str, muted: bool) -> None:
        """Pause or resume forwarding of one source's track to everyone."""
        source = Source(source)
        track = next((t for t in self.tracks.values() if t.source == source), None)
        if track is None:
            raise UnknownEntity(f"participant {self.id} publishes no {source}")
        if track.muted != muted:
            track.set_muted(muted)
            self.room._track_muted(track, muted)

    def _send_upstream(self, packet: bytes) -> bool:
        transport = self.publisher_transport
        return transport is not None and transport.send_rtcp(packet)

    # --- the publisher's incoming packets ----------------------------------

    def _on_publisher_rtp(self, data: bytes) -> None:
        counters = self._sfu.counters
        try:
            header = parse_rtp(data)
        except RtpError as exc:
            counters.malformed_rtp += 1
            logger.debug("participant %s: dropped RTP: %s", self.id, exc)
            return
        route = self._routes.get(header.ssrc)
        if route is None:
            route = self._learn_ssrc(header.ssrc, header.extensions, header.payload_type)
            if route is None:
                counters.unknown_ssrc += 1
                return
        track, repaired = route
        if repaired:
            if header.payload_end - header.payload_start < 2:
                return  # padding-only probe: nothing to forward
            try:
                seq, body = unwrap_rtx(data, header)
            except RtpError:
                counters.malformed_rtp += 1
                return
        else:
            seq = header.sequence_number
            body = data[header.payload_start : header.payload_end]
        level_id = track.audio_level_id
        level = header.extensions.get(level_id) if level_id else None
        track.on_packet(seq, header.timestamp, header.marker, body, level, time.time())

    def _learn_ssrc(
        self, ssrc: int, extensions: dict[int, bytes], payload_type: int
    ) -> tuple[InboundTrack, bool] | None:
        """Bind an SSRC the offer did not list, by its MID header extension."""
        if not self._mid_ext_id or self._mid_ext_id not in extensions:
            return None
        mid = extensions[self._mid_ext_id].decode("ascii", "replace")
        track = self._track_by_mid.get(mid)
        if track is None:
            return None
        repaired = payload_type == track.codec.rtx_payload_type
        if repaired:
            track.rtx_ssrc = ssrc
        else:
            track.ssrc = ssrc
        self._routes[ssrc] = (track, repaired)
        return self._routes[ssrc]

    def _on_publisher_rtcp(self, data: bytes) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError as exc:
            self._sfu.counters.malformed_rtcp += 1
            logger.debug("participant %s: dropped RTCP: %s", self.id, exc)
            return
        now = time.time()
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                route = self._routes.get(packet.ssrc)
                if route is not None and not route[1]:
                    route[0].on_sender_report(packet, now)

    # --- subscribing ---------------------------------------------------------

    def subscribe(self, track: InboundTrack) -> None:
        """Receive `track` (renegotiates the subscribing connection)."""
        if self.closed or track.closed or track.participant_id == self.id:
            return
        if track.id in self.subscriptions:
            return
        self.subscriptions[track.id] = SubscribedTrack(track, None)
        self._renegotiate()

    def unsubscribe(self, track_id: str) -> None:
        """Stop receiving a track; its m-line goes inactive and is reused later."""
        entry = self.subscriptions.pop(track_id, None)
        if entry is None:
            return
        downtrack = entry.downtrack
        if downtrack is not None:
            entry.track.remove(downtrack)
            self._by_ssrc.pop(downtrack.ssrc, None)
            if self.subscriber_transport is not None:
                ssrcs = [downtrack.ssrc]
                if downtrack.rtx_ssrc is not None:
                    ssrcs.append(downtrack.rtx_ssrc)
                self.subscriber_transport.send_rtcp(rtcp.build_bye(ssrcs))
            downtrack.pause(time.time())
        if entry.transceiver is not None:
            entry.transceiver.direction = "inactive"
            self._detaching.append(entry)
        self._renegotiate()

    def _renegotiate(self) -> None:
        self._negotiation_needed = True
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.get_running_loop().create_task(self._negotiate())

    async def _negotiate(self) -> None:
        try:
            while self._negotiation_needed and not self._offer_pending and not self.closed:
                self._negotiation_needed = False
                await self._make_offer()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("participant %s: subscriber negotiation failed", self.id)

    async def _make_offer(self) -> None:
        pc = self.subscriber_pc
        if pc is None:
            if not self.subscriptions:
                return
            pc = self.subscriber_pc = create_peer_connection(self._sfu.config.ice)
            self._watch(pc, "subscribe")
        self._detached_in_offer.extend(self._detaching)
        self._detaching.clear()
        for entry in self.subscriptions.values():
            if entry.transceiver is None:
                self._bind_transceiver(pc, entry)
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        if self.closed:
            return
        if self.subscriber_transport is None:
            dtls = pc.getTransceivers()[0].receiver.transport
            self.subscriber_transport = MediaTransport(
                dtls, self._sfu.config.ice, self._on_subscriber_rtp, self._on_subscriber_rtcp
            )
        # Subscriptions added while this offer was being made have no m-line
        # yet: they go into the next offer, after this one is answered.
        offered = [e for e in self.subscriptions.values() if e.transceiver is not None]
        for entry in offered:
            entry.mid = entry.transceiver.mid
        self._offer_pending = True
        tracks = tuple(
            (e.mid or "", e.track.id, e.track.participant_id, str(e.track.source)) for e in offered
        )
        self._sfu.emit(SubscriberOffer(self.room.id, self.id, str(pc.localDescription.sdp), tracks))

    def _bind_transceiver(self, pc: Any, entry: SubscribedTrack) -> None:
        track = entry.track
        free = self._free[track.kind]
        previous: DownTrack | None = None
        if free:
            transceiver, previous = free.pop(0)
            transceiver.direction = "sendonly"
        else:
            transceiver = pc.addTransceiver(track.kind, direction="sendonly")
            silence_sender(transceiver.sender)
            drop_receive_estimator(transceiver)
        sender = transceiver.sender
        sender._stream_id = track.participant_id
        sender._track_id = track.id
        transceiver.setCodecPreferences(_capabilities_for(track.codec))
        entry.transceiver = transceiver
        entry.resume_from = previous

    async def set_subscriber_answer(self, answer: str) -> None:
        """Apply the client's answer to the latest subscriber offer."""
        if self.closed:
            raise UnknownEntity(f"participant {self.id} has left")
        if not self._offer_pending or self.subscriber_pc is None:
            raise NegotiationError("no subscriber offer is waiting for an answer")
        if not isinstance(answer, str) or len(answer) > MAX_SDP_BYTES:
            raise NegotiationError("answer must be an SDP string of at most 64 KiB")
        try:
            await self.subscriber_pc.setRemoteDescription(
                RTCSessionDescription(filter_sdp_candidates(answer, self._sfu.config.ice), "answer")
            )
        except Exception as exc:
            raise NegotiationError(f"cannot apply the answer: {exc or type(exc).__name__}") from exc
        self._offer_pending = False
        for entry in self._detached_in_offer:
            self._free[entry.track.kind].append((entry.transceiver, entry.downtrack))
        self._detached_in_offer.clear()
        for entry in self.subscriptions.values():
            self._configure_downtrack(entry)
        if self._negotiation_needed:
            self._renegotiate()

    def _configure_downtrack(self, entry: SubscribedTrack) -> None:
        transceiver = entry.transceiver
        if transceiver is None or entry.downtrack is not None:
            return
        previous, entry.resume_from = entry.resume_from, None
        codecs = list(transceiver._codecs)
        if not codecs or transceiver.currentDirection not in ("sendonly", "sendrecv"):
            logger.info("participant %s rejected track %s", self.id, entry.track.id)
            return
        primary = codecs[0]
        rtx = next((c for c in codecs if c.mimeType.lower().endswith("/rtx")), None)
        ext_ids = {e.uri: e.id for e in transceiver._headerExtensions}
        sender: RTCRtpSender = transceiver.sender
        downtrack = DownTrack(
            track=entry.track,
            sink=self.subscriber_transport,  # type: ignore[arg-type]
            ssrc=sender._ssrc,
            payload_type=primary.payloadType,
            rtx_ssrc=sender._rtx_ssrc if rtx is not None else None,
            rtx_payload_type=rtx.payloadType if rtx is not None else None,
            audio_level_id=ext_ids.get(AUDIO_LEVEL_URI, 0),
            abs_send_time_id=ext_ids.get(ABS_SEND_TIME_URI, 0),
            cname=self._sdp_cname(),
        )
        if previous is not None:
            # Same m-line, same SSRC: continue its numbering so the browser sees no jump.
            downtrack.next_seq = previous.next_seq
            downtrack.next_ts = previous.next_ts
            downtrack.paused_at = previous.paused_at
            downtrack.rtx_seq = previous.rtx_seq
            downtrack.sr_packets_before = previous.sr_packets_before + previous.packets_sent
            downtrack.sr_octets_before = previous.sr_octets_before + previous.octets_sent
        entry.downtrack = downtrack
        self._by_ssrc[downtrack.ssrc] = downtrack
        if downtrack.rtx_ssrc is not None:
            self._by_ssrc[downtrack.rtx_ssrc] = downtrack
        if self.subscriber_pc is not None and self.subscriber_pc.connectionState == "connected":
            entry.track.add(downtrack)

    def _sdp_cname(self) -> str:
        pc = self.subscriber_pc
        return str(getattr(pc, "_RTCPeerConnection__cname", "")) if pc is not None else ""

    def _attach_downtracks(self) -> None:
        for entry in self.subscriptions.values():
            downtrack = entry.downtrack
            if downtrack is not None and downtrack not in entry.track.downtracks:
                entry.track.add(downtrack)

    def _on_subscriber_rtp(self, data: bytes) -> None:
        self._sfu.counters.unexpected_rtp += 1

    def _on_subscriber_rtcp(self, data: bytes) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
        except rtcp.RtcpError as exc:
            self._sfu.counters.malformed_rtcp += 1
            logger.debug("participant %s: dropped RTCP: %s", self.id, exc)
            return
        now = time.time()
        by_ssrc = self._by_ssrc
        for packet in packets:
            if isinstance(packet, rtcp.ReceiverReport | rtcp.SenderReport):
                for block in packet.reports:
                    downtrack = by_ssrc.get(block.ssrc)
                    if downtrack is not None and block.ssrc == downtrack.ssrc:
                        downtrack.on_report(block, now)
            elif isinstance(packet, rtcp.Nack):
                downtrack = by_ssrc.get(packet.media_ssrc)
                if downtrack is not None:
                    self._sfu.counters.nacks_received += 1
                    downtrack.retransmit(packet.lost)
            elif isinstance(packet, rtcp.Pli):
                downtrack = by_ssrc.get(packet.media_ssrc)
                if downtrack is not None:
                    self._sfu.counters.plis_received += 1
                    downtrack.track.request_keyframe()
            elif isinstance(packet, rtcp.Fir):
                for ssrc, _ in packet.entries:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        self._sfu.counters.plis_received += 1
                        downtrack.track.request_keyframe()
            elif isinstance(packet, rtcp.Remb):
                for ssrc in packet.ssrcs:
                    downtrack = by_ssrc.get(ssrc)
                    if downtrack is not None:
                        downtrack.remb = packet.bitrate

    # --- both connections ------------------------------------------------

    def _watch(self, pc: Any, direction: str) -> None:
        def on_state() -> None:
            state = pc.connectionState
            if direction == "subscribe" and state == "connected":
                self._attach_downtracks()
            self._sfu.emit(ConnectionStateChanged(self.room.id, self.id, direction, state))

        pc.on("connectionstatechange", on_state)

    async def add_ice_candidate(
        self, direction: str, candidate: str, sdp_mid: str | None = None
    ) -> None:
        """Add a trickled remote candidate (an `a=candidate:` value) to one connection."""
        pc = self.publisher_pc if direction == "publish" else self.subscriber_pc
        if pc is None:
            raise NegotiationError(f"no {direction} connection to add a candidate to")
        if not isinstance(candidate, str) or len(candidate) > 1024:
            raise NegotiationError("ICE candidate must be a string of at most 1 KiB")
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:
            raise NegotiationError(f"malformed ICE candidate: {exc or type(exc).__name__}") from exc
        if not self._sfu.config.ice.allows(parsed.ip):
            return
        parsed.sdpMid = sdp_mid if sdp_mid is not None else pc.getTransceivers()[0].mid
        await pc.addIceCandidate(parsed)

    async def close(self) -> None:
        """Leave: end published tracks, drop subscriptions, close both connections."""
        if self.closed:
            return
        self.closed = True
        negotiation = self._negotiation
        if negotiation is not None and not negotiation.done():
            # Cancelled inside setLocalDescription, aioice would leak the sockets
            # it is gathering on; the loop stops by itself once `closed` is set.
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(negotiation), NEGOTIATION_GRACE)
            negotiation.cancel()
        for track in list(self.tracks.values()):
            self._end_track(track, "left")
        for track_id in list(self.subscriptions):
            entry = self.subscriptions.pop(track_id)
            if entry.downtrack is not None:
                entry.track.remove(entry.downtrack)
        for transport in (self.publisher_transport, self.subscriber_transport):
            if transport is not None:
                transport.close()
        for pc in (self.publisher_pc, self.subscriber_pc):
            if pc is not None:
                await pc.close()
        if self._negotiation is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._negotiation


def _ssrcs_of(media: Any) -> tuple[int | None, int | None]:
    """The primary and RTX SSRC an offer's m-line announces (FID group first)."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) >= 2:
            return int(group.items[0]), int(group.items[1])
    if media.ssrc:
        return int(media.ssrc[0].ssrc), None
    return None, None


def _capabilities_for(codec: Codec) -> list[Any]:
    """The aiortc codec capabilities that forward `codec` as is (plus RTX for video)."""
    wanted = RTCRtpCodecParameters(
        mimeType=codec.mime_type,
        clockRate=codec.clock_rate,
        channels=codec.channels,
        payloadType=codec.payload_type,
        parameters=dict(codec.parameters),
    )
    capabilities = RTCRtpSender.getCapabilities(codec.kind).codecs
    chosen = [
        c
        for c in capabilities
        if not c.mimeType.lower().endswith("/rtx")
        and is_codec_compatible(
            RTCRtpCodecParameters(
                mimeType=c.mimeType,
                clockRate=c.clockRate,
                channels=c.channels,
                payloadType=0,
                parameters=dict(c.parameters),
            ),
            wanted,
        )
    ][:1]
    if not chosen:
        raise NegotiationError(f"cannot forward {codec.mime_type} {dict(codec.parameters)}")
    if codec.kind == "video":
        chosen += [c for c in capabilities if c.mimeType.lower().endswith("/rtx")][:1]
    return chosen
