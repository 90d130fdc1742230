"""The seam between Sabaq's packet path and aiortc.

aiortc gives us ICE, DTLS-SRTP and SDP. Its media layer (jitter buffers,
decoders, encoders, its own RTCP) must never touch a forwarded packet, so for
every peer connection the SFU:

- replaces the DTLS transport's RTP/RTCP handlers with its own, so incoming
  packets are SRTP-unprotected once by aiortc and then handed to Sabaq's
  parser; aiortc's parser (which raises ``struct.error`` on a bad header
  extension and closes the transport) never sees them;
- silences aiortc's senders and receivers: their RTP loops never run and
  whatever RTCP they produce is dropped, since Sabaq writes its own reports;
- sends synchronously: SRTP-protect, then ``sendto`` on the nominated ICE
  pair's socket, with no ``await`` per packet.

The private attributes used here are those of aiortc 1.16 and aioice 0.13;
pyproject.toml pins the aiortc minor version and the functional tests exercise
every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpsender import RTCRtpSender
from pylibsrtp import _binding as _srtp_binding

__all__ = [
    "IcePolicy",
    "MediaTransport",
    "create_peer_connection",
    "drop_receive_estimator",
    "filter_sdp_candidates",
    "silence_sender",
]

logger = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# 4 MiB per socket: one keyframe of a 2.5 Mbps screen share is ~200 packets,
# which arrive back to back; the kernel default (~200 KiB) drops such bursts
# whenever the event loop is busy for a few milliseconds.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: list[str] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _host_addresses is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in _host_addresses if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]


aioice.ice.get_host_addresses = _get_host_addresses


class IcePolicy:
    """Which local addresses to gather and which remote ones to talk to.

    aioice gathers every interface except loopback; a server wants the
    interfaces its operator names (and tests want exactly 127.0.0.1).
    Remote candidates outside `allowed_networks` are dropped from SDP and
    trickle, and datagrams from them are ignored, so the SFU never answers
    an address it was not meant to reach.
    """

    def __init__(
        self,
        host_addresses: Iterable[str] | None = None,
        allowed_networks: Iterable[str] | None = None,
        ice_servers: Iterable[str] = (),
    ) -> None:
        self.host_addresses = list(host_addresses) if host_addresses is not None else None
        self.allowed_networks: tuple[IpNetwork, ...] | None = (
            tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
            if allowed_networks is not None
            else None
        )
        # No STUN or TURN unless configured: aiortc's default is a public
        # STUN server, which Sabaq must never contact on its own.
        self.ice_servers = [RTCIceServer(urls=u) for u in ice_servers]

    def apply(self) -> None:
        """Make aioice gather on the configured host addresses (process-wide)."""
        global _host_addresses  # noqa: PLW0603 - aioice reads a module-level function
        _host_addresses = self.host_addresses

    def allows(self, host: str) -> bool:
        """Whether a remote address may be used."""
        if self.allowed_networks is None:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # mDNS ".local" names and garbage: cannot be checked
        return any(address in network for network in self.allowed_networks)


def create_peer_connection(policy: IcePolicy) -> RTCPeerConnection:
    """A peer connection with the policy's ICE servers (none by default), bundled."""
    policy.apply()
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=list(policy.ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
    )


def filter_sdp_candidates(sdp: str, policy: IcePolicy) -> str:
    """Remove `a=candidate` lines whose address the policy does not allow."""
    if policy.allowed_networks is None:
        return sdp
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 8 or not policy.allows(parts[4]):
                continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def silence_sender(sender: RTCRtpSender) -> None:
    """Stop aiortc's sender from ever producing RTP or RTCP of its own.

    Its RTP loop would poll a missing track 50 times a second and its RTCP
    loop would send sender reports with zero counters, which break the
    receivers' audio/video sync. Both are replaced by coroutines that only
    honour the started/exited events that ``RTCRtpSender.stop()`` waits for.
    """
    prefix = "_RTCRtpSender__"

    def idle(started: str, exited: str) -> Callable[..., Any]:
        async def run(*_args: object) -> None:
            getattr(sender, prefix + started).set()
            try:
                await asyncio.Event().wait()
            finally:
                getattr(sender, prefix + exited).set()

        return run

    sender._run_rtp = idle("rtp_started", "rtp_exited")  # type: ignore[method-assign]
    sender._run_rtcp = idle("rtcp_started", "rtcp_exited")  # type: ignore[method-assign]


def drop_receive_estimator(transceiver: Any) -> None:
    """Free the ~90 KiB bandwidth estimator aiortc gives every video receiver.

    Sabaq's transports bypass aiortc's receivers, so it is never used; at 200
    students it was about a third of the memory per student.
    """
    transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator = None


RtpHandler = Callable[[bytes], None]


def _fast_protect(session: Any) -> Callable[[bytes | bytearray], bytes]:
    """`Session.protect` without its per-call allocation and checks (0.8 µs of 3.3 here).

    Uses pylibsrtp 1.0's session internals; falls back to the public method
    if they are not there.
    """
    try:
        srtp = session._srtp[0]
        cdata = session._cdata
        buffer = session._buffer
    except AttributeError:
        return lambda packet: session.protect(bytes(packet))
    protect = _srtp_binding.lib.srtp_protect
    length = _srtp_binding.ffi.new("int *")
    # 1500-byte buffer, and libsrtp appends at most a 16-byte tag.
    limit = len(buffer) - 16

    def fast(packet: bytes | bytearray) -> bytes:
        size = len(packet)
        if size > limit:
            raise ValueError("packet is too long")
        buffer[0:size] = packet
        length[0] = size
        if protect(srtp, cdata, length):
            raise pylibsrtp.Error("srtp_protect failed")
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    return fast


class MediaTransport:
    """The SRTP/UDP path of one bundled DTLS transport, driven by Sabaq.

    `on_rtp` and `on_rtcp` receive unprotected packets; `send_rtp` and
    `send_rtcp` protect and send synchronously and return False when the
    transport cannot send (not connected yet, or closed).
    """

    def __init__(self, dtls: Any, policy: IcePolicy, on_rtp: RtpHandler, on_rtcp: RtpHandler):
        self._dtls = dtls
        self._ice = dtls.transport._connection
        self._policy = policy
        self._pair: Any = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._protect: Callable[[bytes | bytearray], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        self._addr: tuple[str, int] = ("", 0)
        self._closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_errors = 0

        async def handle_rtp(data: bytes, arrival_time_ms: int = 0) -> None:
            self.bytes_received += len(data)
            on_rtp(data)
            # aiortc's receive loop does not yield while its queue holds packets,
            # and a keyframe is ~50 of them, each fanned out to every student
            # (2.5 ms at 200): yield after each so that ICE consent checks and
            # other lessons' packets are served between them, not after 100+ ms.
            await asyncio.sleep(0)

        async def handle_rtcp(data: bytes) -> None:
            self.bytes_received += len(data)
            on_rtcp(data)

        async def drop(data: bytes) -> None:
            # aiortc's own senders and receivers: their RTCP is replaced by ours.
            return None

        dtls._handle_rtp_data = handle_rtp
        dtls._handle_rtcp_data = handle_rtcp
        dtls._send_rtp = drop
        self._harden_sockets()

    def _harden_sockets(self) -> None:
        for protocol in list(self._ice._protocols):
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                for option, force in (
                    (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None)),
                    (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)),
                ):
                    try:  # the *FORCE variants pass net.core.rmem_max when privileged
                        sock.setsockopt(socket.SOL_SOCKET, force or option, SOCKET_BUFFER_BYTES)
                    except (OSError, TypeError):
                        with contextlib.suppress(OSError, TypeError):
                            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            if self._policy.allowed_networks is not None:
                self._filter_sources(protocol)

    def _filter_sources(self, protocol: Any) -> None:
        receive = protocol.datagram_received
        allows = self._policy.allows
        allowed: dict[str, bool] = {}

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            host = addr[0]
            ok = allowed.get(host)
            if ok is None:
                ok = allowed[host] = allows(host)
            if ok:
                receive(data, addr)

        protocol.datagram_received = datagram_received

    @property
    def connected(self) -> bool:
        """Whether DTLS is up and an ICE pair is nominated."""
        return self._dtls._tx_srtp is not None and self._dtls.state == "connected"

    def close(self) -> None:
        """Stop sending; packets offered afterwards are refused."""
        self._closed = True
        self._pair = None

    def _route(self) -> bool:
        """Follow the nominated ICE pair (it changes after an ICE restart)."""
        pair = self._ice._nominated.get(1)
        srtp = self._dtls._tx_srtp
        if self._closed or pair is None or srtp is None or self._dtls.state != "connected":
            self._pair = None
            return False
        self._pair = pair
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        self._protect = _fast_protect(srtp)
        self._protect_rtcp = srtp.protect_rtcp
        return True

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        """SRTP-protect and send one RTP packet now."""
        pair = self._pair
        if (pair is None or self._ice._nominated.get(1) is not pair) and not self._route():
            return False
        try:
            data = self._protect(packet)  # type: ignore[misc]
            self._sendto(data, self._addr)  # type: ignore[misc]
        except (pylibsrtp.Error, ValueError, OSError):
            self.send_errors += 1
            return False
        self.bytes_sent += len(data)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        """SRTCP-protect and send one (compound) RTCP packet now."""
        pair = self._pair
        if (pair is None or self._ice._nominated.get(1) is not pair) and not self._route():
            return False
        try:
            data = self._protect_rtcp(packet)  # type: ignore[misc]
            self._sendto(data, self._addr)  # type: ignore[misc]
        except (pylibsrtp.Error, ValueError, OSError):
            self.send_errors += 1
            return False
        self.bytes_sent += len(data)
        return True
