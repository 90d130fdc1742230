"""The floor the SFU is compared with: copy + header rewrite + SRTP protect + ``sendto`` alone.

    python -m loadtests.floor receive --count N
    python -m loadtests.floor send --ports P1,P2,... --rate TICKS_PER_S
                                   [--video-bytes B] [--audio-bytes B] [--video-share F]

``receive`` binds N UDP sockets on 127.0.0.1 (4 MiB buffers), prints ``{"ports": [...]}``
and counts every datagram they get with a non-blocking ``recv_into`` loop (one reader
callback per socket, each draining its socket); ``stats`` drains every socket first, then
answers, so that its counts include everything already delivered.

``send`` is a bare sender under uvloop with one UDP socket (a uvloop datagram transport,
4 MiB buffers) and one real `pylibsrtp.Session` (AEAD_AES_128_GCM outbound,
``allow_repeat_tx``) per destination, as the SFU has one ICE socket and one SRTP session
per student. ``--rate`` times a second (the SFU's incoming packet rate) it takes one
"incoming" packet (video or audio, in the SFU's proportion, of the SFU's average plaintext
sizes) and fans it out to every destination back to back, doing per destination exactly
what the SFU's fan-out does at the least:

    struct.pack_into(seq, timestamp, ssrc) into the packet's bytearray (copied from a
    template once per incoming packet), bytes() of it (the per-destination copy),
    Session.protect, transport.sendto.

Both print nothing but their JSON lines; both exit on ``quit``, end of stdin, SIGTERM,
their deadline, or when the parent dies (`common.run_child`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from loadtests import common

PROFILE = "AEAD_AES_128_GCM"
SRTP_TAG_BYTES = 16  # what AEAD_AES_128_GCM appends to each RTP packet
_KEY_BYTES = 16 + 12  # master key + salt
_MASK32 = 0xFFFFFFFF
_pack_seq_ts_ssrc = struct.Struct("!HII").pack_into
VIDEO_PT = 96
AUDIO_PT = 111
MIN_PACKET = 12 + 1  # an RTP header and one payload byte


# --- receive ----------------------------------------------------------------------


async def receive(count: int) -> None:
    loop = asyncio.get_running_loop()
    tally = [0, 0]  # packets, bytes
    scratch = bytearray(2048)
    view = memoryview(scratch)
    sockets: list[socket.socket] = []

    def drain(sock: socket.socket) -> None:
        recv_into = sock.recv_into
        packets = size = 0
        while True:
            try:
                got = recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            packets += 1
            size += got
        tally[0] += packets
        tally[1] += size

    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setblocking(False)
            common.enlarge_socket_buffers(sock)
            sock.bind(("127.0.0.1", 0))
            loop.add_reader(sock.fileno(), drain, sock)
        common.send({"ports": [s.getsockname()[1] for s in sockets], "pid": os.getpid()})

        async def handle(command: str) -> dict[str, Any] | None:
            if command != "stats":
                return {"error": f"unknown command {command!r}"}
            for sock in sockets:
                drain(sock)
            return {"packets": tally[0], "bytes": tally[1]}

        await common.serve_commands(handle)
    finally:
        for sock in sockets:
            with contextlib.suppress(Exception):
                loop.remove_reader(sock.fileno())
            sock.close()


# --- send -------------------------------------------------------------------------


class _Errors(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def error_received(self, exc: Exception) -> None:
        self.count += 1


def outbound_session() -> Session:
    """A real SRTP session as aiortc sets one up for sending: any outbound SSRC."""
    policy = Policy(
        key=os.urandom(_KEY_BYTES),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    )
    policy.allow_repeat_tx = True
    return Session(policy)


def template(payload_type: int, size: int) -> bytes:
    """An RTP packet of `size` bytes (header with zero seq/timestamp/SSRC, random payload)."""
    size = max(MIN_PACKET, size)
    return bytes([0x80, payload_type]) + bytes(10) + os.urandom(size - 12)


async def send(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ports = [int(p) for p in args.ports.split(",") if p]
    # (sendto, protect, address, ssrc, seq offset, timestamp offset) per destination
    dests: list[tuple[Callable[..., Any], Callable[[bytes], bytes], Any, int, int, int]] = []
    transports: list[asyncio.DatagramTransport] = []
    protocols: list[_Errors] = []
    stats = {"ticks": 0, "sent": 0, "send_errors": 0, "late_ticks": 0}
    try:
        for i, port in enumerate(ports):
            transport, protocol = await loop.create_datagram_endpoint(
                _Errors, local_addr=("127.0.0.1", 0)
            )
            transports.append(transport)
            protocols.append(protocol)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                common.enlarge_socket_buffers(sock)
            session = outbound_session()
            ssrc = (0x5AB0_0000 + i * 7919) & _MASK32
            dests.append(
                (
                    transport.sendto,
                    session.protect,
                    ("127.0.0.1", port),
                    ssrc,
                    (i * 977) & 0xFFFF,
                    (i * 104_729) & _MASK32,
                )
            )
        video = template(VIDEO_PT, args.video_bytes)
        audio = template(AUDIO_PT, args.audio_bytes)
        share = min(1.0, max(0.0, args.video_share))
        period = 1.0 / args.rate

        def burst(tick: int, packet: bytes) -> None:
            """One incoming packet fanned out to every destination, back to back."""
            buf = bytearray(packet)
            seq = tick & 0xFFFF
            timestamp = (tick * 960) & _MASK32
            sent = errors = 0
            for sendto, protect, addr, ssrc, seq_offset, ts_offset in dests:
                _pack_seq_ts_ssrc(
                    buf, 2, (seq + seq_offset) & 0xFFFF, (timestamp + ts_offset) & _MASK32, ssrc
                )
                try:
                    sendto(protect(bytes(buf)), addr)
                except (SrtpError, ValueError, OSError):
                    errors += 1
                    continue
                sent += 1
            stats["sent"] += sent
            stats["send_errors"] += errors

        async def pace() -> None:
            tick = 0
            owed = 0.0  # Bresenham: video or audio in the requested proportion
            start = loop.time()
            while True:
                tick += 1
                delay = start + tick * period - loop.time()
                if delay < -period:
                    stats["late_ticks"] += 1
                await asyncio.sleep(max(0.0, delay))
                owed += share
                if owed >= 1.0:
                    owed -= 1.0
                    burst(tick, video)
                else:
                    burst(tick, audio)
                stats["ticks"] = tick

        pacer = loop.create_task(pace())
        common.send(
            {
                "started": len(dests),
                "pid": os.getpid(),
                "video_bytes": len(video),
                "audio_bytes": len(audio),
                "profile": PROFILE,
            }
        )

        async def handle(command: str) -> dict[str, Any] | None:
            if command != "stats":
                return {"error": f"unknown command {command!r}"}
            if pacer.done():
                exc = pacer.exception()
                return {"error": f"pacer stopped: {type(exc).__name__}: {exc}"}
            return {
                **stats,
                "error_received": sum(p.count for p in protocols),
                "buffered": sum(
                    getattr(t, "get_write_buffer_size", lambda: 0)() for t in transports
                ),
            }

        try:
            await common.serve_commands(handle)
        finally:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pacer
    finally:
        for transport in transports:
            transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--deadline", type=float, default=120.0)
    modes = parser.add_subparsers(dest="mode", required=True)
    rx = modes.add_parser("receive", help="N sockets that count what they get")
    rx.add_argument("--count", type=int, required=True)
    rx.add_argument("--deadline", type=float, default=argparse.SUPPRESS)
    tx = modes.add_parser("send", help="the paced bare fan-out")
    tx.add_argument("--ports", required=True, help="comma-separated UDP ports on 127.0.0.1")
    tx.add_argument("--rate", type=float, required=True, help="incoming packets per second")
    tx.add_argument("--video-bytes", type=int, default=1000, help="plaintext RTP bytes")
    tx.add_argument("--audio-bytes", type=int, default=1000, help="plaintext RTP bytes")
    tx.add_argument("--video-share", type=float, default=1.0, help="video fraction of packets")
    tx.add_argument("--deadline", type=float, default=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "receive":
        common.run_child(lambda: receive(args.count), args.deadline)
    else:
        if args.rate <= 0:
            parser.error("--rate must be positive")
        common.run_child(lambda: send(args), args.deadline)


if __name__ == "__main__":
    main()
