"""Plumbing shared by the benchmark's processes: one-address ICE, uvloop, socket
buffers, a line-based command channel with the parent, and /proc readings.

Every process of the benchmark (SFU, relay or Janus server, teacher, students) talks only
to one address: 127.0.0.1 by default, or ``$SABAQ_BENCH_ADDRESS`` when the processes run
inside a benchmark network namespace (`loadtests.netns`: Janus gathers no candidate on a
loopback interface, so it needs the namespace's veth address). ICE gathers on that address
alone (`bench_policy`), peer connections have no STUN/TURN server (`peer_connection`), and
each process exits on its own when its parent goes away (`die_with_parent`), when stdin
closes, or at its deadline (`run_child`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection

from sfu import IcePolicy

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


ADDRESS_ENV = "SABAQ_BENCH_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1"
# Where benchmark traffic may go: loopback, or the namespaces `loadtests.netns` creates.
# Anything else (the machine's own network address above all) is refused.
BENCH_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.231.0.0/16"))


def bench_address() -> str:
    """The one address ICE uses: ``$SABAQ_BENCH_ADDRESS``, else 127.0.0.1.

    Raises ValueError for an address outside `BENCH_NETWORKS`, so that a typo cannot point a
    load test at a real network."""
    text = os.environ.get(ADDRESS_ENV, "").strip() or DEFAULT_ADDRESS
    return checked_address(text, f"{ADDRESS_ENV}={text}")


def checked_address(text: str, what: str) -> str:
    """`text` as an address inside `BENCH_NETWORKS`; ValueError naming `what` otherwise."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{what} is not an IP address") from None
    if not any(address in network for network in BENCH_NETWORKS):
        allowed = ", ".join(str(n) for n in BENCH_NETWORKS)
        raise ValueError(f"{what} is outside the benchmark networks ({allowed})")
    return str(address)


def bench_network(address: str) -> str:
    """The peers ICE may talk to: all of 127.0.0.0/8 for loopback, else the address's /24
    (the veth subnet of a benchmark namespace)."""
    if ipaddress.ip_address(address).is_loopback:
        return "127.0.0.0/8"
    return str(ipaddress.ip_network(f"{address}/24", strict=False))


def bench_policy() -> IcePolicy:
    """ICE on the benchmark address only; applied process-wide (aioice skips loopback
    interfaces otherwise, and would gather on every other interface)."""
    address = bench_address()
    policy = IcePolicy(host_addresses=[address], allowed_networks=[bench_network(address)])
    policy.apply()
    return policy


loopback_policy = bench_policy  # the historical name, still used by the teacher and students


def peer_connection() -> RTCPeerConnection:
    """A peer connection without ICE servers: aiortc's default is a public STUN server."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def enlarge_socket_buffers(sock: Any, size: int = SOCKET_BUFFER_BYTES) -> int:
    """SO_RCVBUF/SO_SNDBUF of `size` (the *FORCE variants first: they pass rmem_max as root).

    Returns the receive buffer the kernel granted (it doubles the requested value)."""
    for option, force in (
        (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None)),
        (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)),
    ):
        for opt in (force, option):
            if opt is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
                break
            except (OSError, TypeError):
                continue
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except (OSError, TypeError):
        return 0


def ice_protocols(pc: RTCPeerConnection) -> list[Any]:
    """The aioice `StunProtocol`s (one UDP socket each) of a gathered peer connection."""
    seen: list[Any] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None:
            continue
        for protocol in dtls.transport._connection._protocols:
            if all(protocol is not p for p in seen):
                seen.append(protocol)
    return seen


def enlarge_pc_buffers(pc: RTCPeerConnection) -> list[int]:
    """Large socket buffers on every UDP socket of a gathered peer connection."""
    granted = []
    for protocol in ice_protocols(pc):
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            granted.append(enlarge_socket_buffers(sock))
    return granted


# --- process lifetime --------------------------------------------------------------


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies (and exit now if it already has)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent or parent == 1:
        os._exit(1)


def send(message: dict[str, Any]) -> None:
    """One JSON line to the parent (stdout is the reply channel; logs go to stderr)."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def command_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream: the parent's commands, one per line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_commands(handle: Callable[[str], Awaitable[dict[str, Any] | None]]) -> None:
    """Answer the parent's commands until "quit" or end of stdin (the parent went away)."""
    reader = await command_lines()
    while True:
        line = await reader.readline()
        if not line:
            return
        command = line.decode().strip()
        if command == "quit":
            return
        if not command:
            continue
        try:
            reply = await handle(command)
        except Exception as exc:  # reported, never fatal: the parent decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if reply is not None:
            send(reply)


def run_child(main: Callable[[], Awaitable[None]], deadline_s: float) -> None:
    """Run `main` under uvloop; the process ends by itself after `deadline_s` whatever happens."""
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    async def bounded() -> None:
        try:
            async with asyncio.timeout(deadline_s):
                await main()
        except TimeoutError:
            print(f"deadline of {deadline_s:.0f} s reached, exiting", file=sys.stderr)

    code = 0
    try:
        uvloop.run(bounded())
    except SystemExit as exc:  # a refusal already explained on stderr: no traceback
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # aiortc's decoder/encoder threads and half-closed transports must not keep us alive
        os._exit(code)


class LoopLag:
    """How late the event loop runs a 50 ms timer: the longest delay, and how many exceeded
    0.5 s (aioice's consent check gives up after 0.5 s; six misses in a row close the pair)."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.max_ms = 0.0
        self.over_500ms = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            late = max(0.0, loop.time() - due) * 1000.0
            self.max_ms = max(self.max_ms, late)
            self.over_500ms += late > 500.0

    def as_dict(self) -> dict[str, float]:
        return {"max_ms": round(self.max_ms, 1), "over_500ms": self.over_500ms}


# --- /proc ------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), in seconds: fields 14 and 15 of
    /proc/PID/stat. stime includes the kernel work done in the process's context, such as
    delivering a loopback datagram to the receiving socket during `sendto` (softirq)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    user, system = cpu_times(pid)
    return user + system


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def udp_snmp(path: str = "/proc/net/snmp") -> dict[str, int]:
    """The Udp counters of /proc/net/snmp (InDatagrams, RcvbufErrors, ...): those of this
    process's network namespace; /proc/PID/net/snmp gives those of PID's."""
    with open(path) as f:
        return udp_counters(f.read())


def udp_counters(snmp: str) -> dict[str, int]:
    """The Udp counters of the text of a /proc/net/snmp (a header line, then values)."""
    lines = [line.split() for line in snmp.splitlines() if line.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=False)}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                target = os.readlink(f"{fd_dir}/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _net_dirs(pids: Iterable[int]) -> list[str]:
    """One /proc/PID/net per network namespace among these processes: a process's socket
    table is that of its own namespace, which /proc/net (ours) may not be."""
    dirs: dict[str, str] = {}
    for pid in pids:
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        dirs.setdefault(namespace, f"/proc/{pid}/net")
    return list(dirs.values())


def udp_socket_drops(pids: Iterable[int]) -> dict[str, int]:
    """Datagrams the kernel dropped on the UDP sockets of these processes
    (/proc/net/udp "drops": receive buffer full), and how many sockets they have."""
    pids = list(pids)
    inodes: set[str] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    drops = sockets = 0
    tables = [f"{d}/{name}" for d in _net_dirs(pids) for name in ("udp", "udp6")]
    for table in tables:
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) >= 13 and parts[9] in inodes:
                    sockets += 1
                    drops += int(parts[-1])
    return {"drops": drops, "sockets": sockets}
