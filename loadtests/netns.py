"""A throwaway Linux network namespace for benchmarks that cannot run on loopback.

Janus gathers no ICE candidate on a loopback interface, so a benchmark with Janus needs a
real interface, and the machine's own network address is off limits to load tests. A
`Namespace` gives one that leads nowhere: ``sabaq-bench-<pid>`` with ``lo`` up and a veth
pair, 10.231.0.1/24 on the root side and 10.231.0.2/24 inside, no default route. Processes
started with ``ns.argv(cmd)`` (``ip netns exec``) see only ``lo`` and 10.231.0.2. Should
another benchmark's namespace hold 10.231.0.0/24 already (two test runs on one machine),
the next free 10.231.K.0/24 is used instead: read ``ns.address``, not the constant.

    python -m loadtests.netns check     # exit 0, or 1 with the reason namespaces won't work
    python -m loadtests.netns cleanup   # remove namespaces whose creator is dead

Cleanup never depends on one path alone: `Namespace.close` (also the context manager's
exit), an atexit hook (SIGTERM is turned into SystemExit while a namespace is open, so it
runs then too), and, for a creator that was SIGKILLed, `remove_stale` at the next creation,
which deletes every ``sabaq-bench-<pid>`` whose creator process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

from loadtests import common

PREFIX = "sabaq-bench-"
ROOT_ADDRESS = "10.231.0.1"
NS_ADDRESS = "10.231.0.2"
PREFIX_LENGTH = 24
SUBNETS = 256  # 10.231.K.0/24, K = 0..255: all inside common.BENCH_NETWORKS
LOCK_FILE = "/run/sabaq-bench-netns.lock"  # serialises creation across processes
IP_TIMEOUT_S = 10.0
KILL_GRACE_S = 2.0
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")
_VETH = re.compile(r"^sbq(\d+)r$")

_open: dict[str, Namespace] = {}
_lock = threading.Lock()
_previous_sigterm: Any = None


class NamespaceError(RuntimeError):
    """A namespace could not be created or removed; the message says why."""


def veth_names(pid: int) -> tuple[str, str]:
    """(root side, namespace side) veth names of the namespace created by `pid`: at most
    11 characters, within IFNAMSIZ (15) for any Linux pid (up to 4194304)."""
    return f"sbq{pid}r", f"sbq{pid}n"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (bounded); NamespaceError with ip's own message when it fails."""
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"ip {' '.join(args)}: {exc}") from exc
    if check and done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise NamespaceError(f"ip {' '.join(args)}: {message}")
    return done


def namespaces() -> list[str]:
    """Names of the network namespaces `ip netns` knows (``ip netns list`` adds ids)."""
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line]


def pids_in(name: str) -> list[int]:
    """Processes running in a named namespace."""
    done = _ip("netns", "pids", name, check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


# --- whether a creator is still there ------------------------------------------------


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _started_at(pid: int) -> float | None:
    """When a process started (epoch seconds), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return _boot_time() + int(fields[19]) / common.CLK_TCK


def _creator_alive(pid: int, name: str) -> bool:
    """Whether the process that created `name` still runs: pid `pid` exists and started
    before the namespace did (a later start means the pid was reused)."""
    started = _started_at(pid)
    if started is None:
        return False
    try:
        created = os.stat(f"/run/netns/{name}").st_mtime
    except OSError:
        return True  # cannot tell: leave it alone
    return started <= created + 1.0


def _stop_processes(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL after a grace period: what still runs in a namespace that goes.
    These are the benchmark's own children (nothing else enters a sabaq-bench namespace)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + KILL_GRACE_S
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _started_at(p) is not None and not _zombie(p)]
            time.sleep(0.05)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _remove(name: str, root_veth: str) -> None:
    """Delete a namespace and its veth pair, stopping what runs inside first: `ip netns
    delete` only drops the name, and the namespace (with its veth) lives on while any
    process is in it."""
    if name in namespaces():
        _stop_processes(pids_in(name))
    _ip("link", "del", root_veth, check=False)  # takes the namespace side with it
    _ip("netns", "delete", name, check=False)
    if name in namespaces():
        raise NamespaceError(f"could not delete network namespace {name}")


def remove_stale() -> list[str]:
    """Delete the sabaq-bench namespaces (and orphan veths) whose creator is gone."""
    removed = []
    for name in namespaces():
        match = _NAME.match(name)
        if match and name not in _open and not _creator_alive(int(match[1]), name):
            _remove(name, veth_names(int(match[1]))[0])
            removed.append(name)
    links = _ip("-o", "link", "show", "type", "veth", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        veth = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        match = _VETH.match(veth)
        if match and _started_at(int(match[1])) is None:
            _ip("link", "del", veth, check=False)
            removed.append(veth)
    return removed


def subnet_addresses(k: int) -> tuple[str, str]:
    """(root side, namespace side) addresses of subnet 10.231.K.0/24."""
    return f"10.231.{k}.1", f"10.231.{k}.2"


def _free_subnet() -> int:
    """The first K whose 10.231.K.0/24 no interface of the root namespace uses."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show", check=False).stdout.splitlines():
        parts = line.split()
        octets = parts[3].split("/")[0].split(".") if len(parts) >= 4 else []
        if octets[:2] == ["10", "231"]:
            used.add(int(octets[2]))
    for k in range(SUBNETS):
        if k not in used:
            return k
    raise NamespaceError("every 10.231.K.0/24 is in use: remove stale benchmark namespaces")


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One creation at a time on this machine (stale cleanup, choosing a free subnet and
    assigning it), between processes as well as threads."""
    with _lock, contextlib.ExitStack() as stack:
        try:
            lock = stack.enter_context(open(LOCK_FILE, "a"))
        except OSError as exc:
            raise NamespaceError(f"cannot open {LOCK_FILE}: {exc}") from exc
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


# --- cleanup on exit -------------------------------------------------------------------


def _close_all() -> None:
    for namespace in list(_open.values()):
        with contextlib.suppress(NamespaceError):
            namespace.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM's default kills without running atexit; exiting normally removes the
    namespaces on the way out."""
    raise SystemExit(128 + signum)


def _watch_signals() -> None:
    """Route SIGTERM through SystemExit while a namespace is open (main thread only, and
    only where nobody installed a handler of their own)."""
    global _previous_sigterm  # noqa: PLW0603 - one process-wide handler
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


def _unwatch_signals() -> None:
    global _previous_sigterm  # noqa: PLW0603 - one process-wide handler
    if _previous_sigterm is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _previous_sigterm)
    _previous_sigterm = None


atexit.register(_close_all)


# --- the namespace -------------------------------------------------------------------


class Namespace:
    """``sabaq-bench-<pid>``: lo up, veth 10.231.0.1/24 (root) <-> 10.231.0.2/24 (inside),
    or the next free 10.231.K.0/24 (`address`, `root_address`). One per process at a time.

    Created on construction (NamespaceError with the reason when it cannot be); `close` or
    leaving the ``with`` block removes it, its veth pair and whatever still runs in it."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{PREFIX}{os.getpid()}"
        self.root_veth, self.veth = veth_names(os.getpid())
        self.root_address, self.address = ROOT_ADDRESS, NS_ADDRESS
        self.closed = False
        reason = _precondition()
        if reason:
            raise NamespaceError(reason)
        if _open:
            raise NamespaceError(f"this process already has {next(iter(_open))} open")
        with _machine_lock():
            remove_stale()
            if self.name in namespaces():
                raise NamespaceError(f"network namespace {self.name} already exists")
            self.root_address, self.address = subnet_addresses(_free_subnet())
            _ip("netns", "add", self.name)
            _open[self.name] = self
            _watch_signals()
            try:
                self._wire()
            except BaseException:
                with contextlib.suppress(NamespaceError):
                    self.close()
                raise

    def _wire(self) -> None:
        """lo up and the veth pair, IPv4 only: no IPv6 link-local chatter, nothing but the
        two /24 addresses."""
        inside = ("-n", self.name)
        _ip("link", "add", self.root_veth, "type", "veth", "peer", "name", self.veth)
        _ip("link", "set", self.veth, "netns", self.name)
        _ip("link", "set", "dev", self.root_veth, "addrgenmode", "none", check=False)
        _ip(*inside, "link", "set", "dev", self.veth, "addrgenmode", "none", check=False)
        _ip("addr", "add", f"{self.root_address}/{PREFIX_LENGTH}", "dev", self.root_veth)
        _ip(*inside, "addr", "add", f"{self.address}/{PREFIX_LENGTH}", "dev", self.veth)
        _ip("link", "set", self.root_veth, "up")
        _ip(*inside, "link", "set", self.veth, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def argv(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose benchmark processes use the namespace's address for ICE."""
        return {**(os.environ if base is None else base), common.ADDRESS_ENV: self.address}

    def pids(self) -> list[int]:
        """Processes running inside."""
        return [] if self.closed else pids_in(self.name)

    def udp_snmp(self) -> dict[str, int]:
        """The namespace's Udp counters (``/proc/net/snmp`` as seen from inside)."""
        return snmp_udp(self)

    def exists(self) -> bool:
        return self.name in namespaces()

    def close(self) -> None:
        """Remove the namespace, its veth pair and what still runs inside (idempotent;
        NamespaceError when `ip` could not delete it)."""
        if self.closed:
            return
        _remove(self.name, self.root_veth)  # on failure it stays open: atexit tries again
        self.closed = True
        _open.pop(self.name, None)
        if not _open:
            _unwatch_signals()

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, {self.address}, closed={self.closed})"


# --- UDP counters of other namespaces --------------------------------------------------


def udp_snmp_of(pid: int) -> dict[str, int]:
    """The Udp counters of the network namespace process `pid` is in: /proc/PID/net/snmp
    (same keys as `common.udp_snmp`, which reads this process's own namespace)."""
    return common.udp_snmp(f"/proc/{pid}/net/snmp")


def snmp_udp(ns: Namespace | str) -> dict[str, int]:
    """The Udp counters inside a namespace: through a process already in it when there is
    one (no fork), else from ``cat /proc/net/snmp`` run inside."""
    name = ns.name if isinstance(ns, Namespace) else ns
    for pid in pids_in(name):
        with contextlib.suppress(OSError):
            return udp_snmp_of(pid)
    done = subprocess.run(
        ["ip", "netns", "exec", name, "cat", "/proc/net/snmp"],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_S,
        check=False,
    )
    return common.udp_counters(done.stdout)


# --- can we? ---------------------------------------------------------------------------


def _precondition() -> str | None:
    """What rules namespaces out before trying anything."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            "network namespaces need root: creating one and its veth pair takes "
            "CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root, e.g. in CI)"
        )
    if shutil.which("ip") is None:
        return "the `ip` command is missing: apt-get install iproute2"
    return None


@functools.cache
def available() -> str | None:
    """None when benchmark namespaces work here, else a human reason why not: not Linux,
    not root, no ``ip``, or creating one failed (e.g. a container without CAP_SYS_ADMIN).
    Tries a real namespace once per process (about 0.2 s)."""
    reason = _precondition()
    if reason or _open:  # one is open: they work
        return reason
    try:
        Namespace().close()
    except NamespaceError as exc:
        return f"cannot create a network namespace: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``check``: say whether namespaces work (exit 1 with the reason); ``cleanup``: remove
    stale ones."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "check"
    if command == "check":
        reason = available()
        print(reason or "network namespaces are available", file=sys.stderr)
        return 1 if reason else 0
    if command == "cleanup":
        reason = _precondition()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        for removed in remove_stale():
            print(f"removed {removed}", file=sys.stderr)
        return 0
    print(f"usage: python -m loadtests.netns [check|cleanup] (not {command!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
