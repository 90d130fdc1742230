"""Janus next to Sabaq: the benchmark's own teacher and students against both servers.

Janus gathers no ICE candidate on a loopback interface, so these runs happen inside a
throwaway network namespace (`loadtests.netns`, 10.231.0.2), which needs root. The
configuration test needs neither root nor Janus.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loadtests import janus_server, netns

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60  # every child ends by itself after this, whatever happens
STUDENTS = 2
TEACHERS = 2
BENCH_SUBNET = ipaddress.ip_network("10.231.0.0/24")


# --- the generated configuration ---------------------------------------------------------


def jcfg_settings(text: str) -> dict[str, dict[str, str]]:
    """``section: { key = value }`` of a generated .jcfg, values unquoted."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith(": {"):
            current = sections.setdefault(line[:-3], {})
        elif line == "}":
            current = None
        else:
            assert current is not None, f"setting outside a section: {line!r}"
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = value.strip('"')
    return sections


def fake_libraries(root: Path) -> Path:
    """A Janus library tree with a few plugins, transports, loggers and event handlers."""
    names = {
        "plugins": ["libjanus_videoroom.so", "libjanus_echotest.so", "libjanus_sip.so"],
        "transports": ["libjanus_http.so", "libjanus_websockets.so", "libjanus_mqtt.so"],
        "loggers": ["libjanus_jsonlog.so"],
        "events": ["libjanus_sampleevh.so", "libjanus_wsevh.so"],
    }
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            (root / folder / name).write_bytes(b"")
            (root / folder / f"{name}.1").write_bytes(b"")  # Janus loads only *.so
    return root


def library_trees(tmp_path: Path) -> list[Path]:
    trees = [fake_libraries(tmp_path / "fake")]
    installed = janus_server.library_dir()
    if installed is not None:
        trees.append(installed)
    return trees


def test_generated_configuration_binds_only_the_namespace_address(tmp_path: Path) -> None:
    for number, libraries in enumerate(library_trees(tmp_path)):
        config = janus_server.JanusConfig(
            address=netns.NS_ADDRESS, http_port=18088, admin_port=17088, libraries=libraries
        )
        directory = tmp_path / f"config{number}"
        janus_server.write_config(directory, config)
        texts = {p.name: p.read_text() for p in directory.glob("*.jcfg")}
        assert set(texts) == {
            "janus.jcfg",
            "janus.transport.http.jcfg",
            "janus.plugin.videoroom.jcfg",
        }
        everything = "\n".join(texts.values())
        addresses = re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", everything)
        assert addresses, "the configuration names no address at all"
        assert all(ipaddress.ip_address(a) in BENCH_SUBNET for a in addresses), addresses
        settings = {name: jcfg_settings(text) for name, text in texts.items()}
        keys = {key for parsed in settings.values() for s in parsed.values() for key in s}
        assert not {k for k in keys if re.search(r"stun|turn|nat_1_1|public", k)}, keys
        values = [v for parsed in settings.values() for s in parsed.values() for v in s.values()]
        outside = [
            v
            for v in values
            if "://" in v or re.search(r"[a-z0-9-]+\.(?:com|org|net|it|io)\b", v, re.I)
        ]
        assert not outside, outside

        core = settings["janus.jcfg"]
        assert core["nat"]["ice_enforce_list"] == netns.NS_ADDRESS
        assert core["nat"]["ice_lite"] == "false"
        assert core["general"]["configs_folder"] == str(directory)
        assert core["general"]["plugins_folder"] == str(libraries / "plugins")
        assert int(core["general"]["debug_level"]) <= 4
        assert core["general"]["admin_secret"] == config.admin_secret
        assert core["events"]["broadcast"] == "false"
        for section, folder, kept in (
            ("plugins", "plugins", "libjanus_videoroom.so"),
            ("transports", "transports", "libjanus_http.so"),
            ("loggers", "loggers", None),
            ("events", "events", None),
        ):
            disabled = set(filter(None, core[section]["disable"].split(",")))
            expected = {p.name for p in (libraries / folder).glob("*.so")} - {kept}
            assert disabled == expected, section

        http = settings["janus.transport.http.jcfg"]
        assert http["general"]["ip"] == netns.NS_ADDRESS
        assert http["general"]["port"] == "18088"
        assert http["general"]["https"] == "false"
        assert http["admin"]["admin_ip"] == netns.NS_ADDRESS
        assert http["admin"]["admin_port"] == "17088"
        assert not any(k.startswith("room-") for k in settings["janus.plugin.videoroom.jcfg"])


# --- the namespace's own cleanup -----------------------------------------------------------

HOLD_NAMESPACE = """
import sys, time
from loadtests import netns
ns = netns.Namespace()
print(ns.name, ns.root_veth, flush=True)
time.sleep(30)
"""


def namespace_holder() -> tuple[subprocess.Popen[str], str, str]:
    """A process that creates a namespace and sleeps: (process, namespace, root veth)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_NAMESPACE], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    name, veth = proc.stdout.readline().split()
    proc.stdout.close()
    return proc, name, veth


def veth_exists(name: str) -> bool:
    shown = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
    return shown.returncode == 0


@pytest.mark.timeout(30)
def test_sigterm_and_sigkill_leave_no_namespace_behind() -> None:
    namespace_or_skip()
    proc, name, veth = namespace_holder()
    proc.send_signal(signal.SIGTERM)  # atexit runs: SIGTERM becomes SystemExit
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert name not in netns.namespaces()
    assert not veth_exists(veth)

    proc, name, veth = namespace_holder()
    proc.kill()  # nothing runs in the creator: the namespace stays behind...
    proc.wait(10)
    assert name in netns.namespaces()
    netns.remove_stale()  # ...until the next benchmark looks
    assert name not in netns.namespaces()
    assert not veth_exists(veth)


# --- end to end inside a namespace ---------------------------------------------------------


class Child:
    """A benchmark process inside the namespace, talking JSON lines over stdin/stdout."""

    def __init__(self, ns: netns.Namespace, logs: Path, name: str, module: str, *args: str):
        self.name = name
        self.log = logs / f"{name}.log"
        env = ns.env({**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        cmd = [sys.executable, "-m", module, *args, "--deadline", str(DEADLINE_S)]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                ns.argv(cmd),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                env=env,
                text=True,
                start_new_session=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def message(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next JSON object the process prints."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.name}: no reply in {timeout:.0f} s\n{self.log_tail()}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data

    def ask(self, command: str, timeout: float = 15.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        reply = self.message(timeout)
        assert "error" not in reply, f"{self.name}: {reply}\n{self.log_tail()}"
        return reply

    def stop(self) -> None:
        """quit, then SIGTERM, then SIGKILL to its process group; each bounded."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        for sig, wait in ((None, 6.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                break
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever it left in its group
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_until_all_receive(students: Child, teachers: int, timeout: float) -> dict[str, Any]:
    """The students' stats once each has counted video frames, audio packets, and the
    streams (SSRCs) of every teacher: a video and an audio one each."""
    deadline = time.monotonic() + timeout
    while True:
        stats = students.ask("stats")
        rows = stats["per_student"]  # [packets, video frames, audio packets, streams, ...]
        if len(rows) == STUDENTS and all(
            r[1] > 0 and r[2] > 0 and r[3] >= 2 * teachers for r in rows
        ):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"students did not all receive: {stats}\n{students.log_tail()}")
        time.sleep(0.3)


def run_lesson(ns: netns.Namespace, logs: Path, module: str) -> dict[str, Any]:
    """Server, then one students process with two students, then two teachers, all in `ns`:
    the students join first and must be held until a teacher's media is up, and the
    second teacher comes up after they subscribed (a seminar). Returns the hello line and
    the server's and students' stats once every student receives both teachers."""
    children: list[Child] = []

    def start(name: str, module: str, *args: str) -> Child:
        children.append(Child(ns, logs, name, module, *args))
        return children[-1]

    try:
        server = start("server", module, "--host", ns.address)
        hello = server.message(30)
        url = f"http://{hello['host']}:{int(hello['port'])}"
        students = start(
            "students", "loadtests.students", "--server", url,
            "--count", str(STUDENTS), "--prefix", "s-",
        )  # fmt: skip
        assert students.message(20).get("started") == STUDENTS
        for i in range(TEACHERS):
            name = f"teacher{i}"
            teacher = start(name, "loadtests.teacher", "--server", url, "--participant", name)
            assert teacher.message(60).get("published")  # the first run encodes the clip
        student_stats = wait_until_all_receive(students, TEACHERS, 25)
        time.sleep(1.0)  # a second of steady forwarding
        server_stats = server.ask("stats")
        measured = int(hello.get("measured_pid") or server.proc.pid)
        return {
            "hello": hello,
            "server": server_stats,
            "students": student_stats,
            "measured_alive": _alive(measured),
            "children": children,
        }
    finally:
        for child in reversed(children):
            child.stop()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def namespace_or_skip() -> None:
    reason = netns.available()
    if reason:
        pytest.skip(f"no benchmark network namespace: {reason}")


def assert_everyone_received(result: dict[str, Any]) -> None:
    students = result["students"]
    for packets, video_frames, audio_packets, *_ in students["per_student"]:
        assert packets > 0
        assert video_frames > 0
        assert audio_packets > 0
    assert students["errors"] == 0, students["first_error"]
    server = result["server"]
    assert server["received"] > 0, server
    assert server["forwarded"] > 0, server
    assert server["subscribers_connected"] == STUDENTS, server


@pytest.mark.timeout(90)
def test_janus_forwards_the_teacher_to_the_students(tmp_path: Path) -> None:
    reason = janus_server.missing()
    if reason:
        pytest.skip(reason)
    namespace_or_skip()
    with netns.Namespace() as ns:
        result = run_lesson(ns, tmp_path, "loadtests.janus_control")
    hello = result["hello"]
    assert hello["design"] == "janus"
    assert hello["host"] == ns.address
    janus_pid = int(hello["measured_pid"])
    assert janus_pid != hello["pid"]
    assert result["measured_alive"], "Janus was not running while measured"
    assert_everyone_received(result)
    server = result["server"]
    assert server["pid"] == janus_pid
    assert server["cpu_s"] > 0
    assert server["rss_kib"] > 0
    assert server["participants"] == TEACHERS + STUDENTS
    tracks = server["tracks"]
    assert sorted(t["kind"] for t in tracks) == ["audio", "audio", "video", "video"]
    assert all(t["received"] > 0 and t["forwarded"] > 0 for t in tracks), tracks
    assert all(t["downtracks"] == STUDENTS for t in tracks), tracks
    assert not ns.exists()
    assert not _alive(janus_pid), "Janus outlived the benchmark"
    assert all(c.proc.returncode is not None for c in result["children"])


@pytest.mark.timeout(90)
def test_sabaq_runs_in_the_same_namespace_harness(tmp_path: Path) -> None:
    namespace_or_skip()
    with netns.Namespace() as ns:
        result = run_lesson(ns, tmp_path, "loadtests.control")
    hello = result["hello"]
    assert hello["design"] == "sfu"
    assert hello["host"] == ns.address
    assert_everyone_received(result)
    assert not ns.exists()
    assert all(c.proc.returncode is not None for c in result["children"])
