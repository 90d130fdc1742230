"""The recording's manifest: an append-only JSON-lines file, fsynced on every change.

Each line is one record; the state of a recording is the fold of its lines
(later fields win), so a crash can at worst cut the last line, which the
reader skips. Records:

* ``{"type": "recording", "version": 1, "status": "recording", "t0": …, "room": …}``
  first, once; ``t0`` is the wall clock (Unix seconds) every ``start`` counts from;
* ``{"type": "part", "id": "p001", "file": …, "participant": …, "source": …,
  "track_id": …, "codec": …, "start": …, "status": "recording", …}`` when a part file
  is created, and again with ``status`` ``complete`` (closed cleanly), ``truncated``
  (a write error, e.g. a full disk, left it without its trailer: it plays up to its
  last cluster, without cues), ``recovered`` (finalized after a crash; ``file`` then
  names the clean copy and ``original`` the file as the crash left it) or ``broken``
  (nothing could be read back);
* ``{"type": "status", "status": "ready" | "failed", "failure": …, "note": …}``.

``start`` and ``end`` are seconds since ``t0``; a part's own timestamps start at 0.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestWriter", "fsync_directory", "read_manifest"]

MANIFEST_NAME = "manifest.jsonl"
VERSION = 1
# A manifest line is a few hundred bytes; a longer one is not ours.
_MAX_LINE = 64 * 1024


def fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (POSIX needs the directory fsynced)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ManifestWriter:
    """Appends records to a manifest; each append is one write() and one fsync().

    The writer holds an exclusive `flock` on the file while it is open, which the
    kernel drops when the process dies: a manifest that can be locked has no live
    recorder, one that cannot (`BlockingIOError`) is being recorded right now.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        existed = path.exists()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise
        if existed and path.stat().st_size:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a crash cut the last line: end it, or ours joins it
                    os.write(self._fd, b"\n")
        if not existed:
            fsync_directory(path.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably; raises OSError (ENOSPC included) if it cannot."""
        if self._fd is None:
            raise ValueError(f"manifest {self.path} is closed")
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        os.write(self._fd, line.encode())
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@dataclass
class Manifest:
    """A manifest folded into its current state."""

    recording: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by part id, in order
    status: str = "recording"
    failure: str | None = None
    note: str | None = None
    skipped_lines: int = 0

    @property
    def finished(self) -> bool:
        """Whether the recorder (or a finalizer) closed this recording."""
        return self.status in ("ready", "failed")


def read_manifest(path: Path) -> Manifest:
    """Fold a manifest's records; unreadable lines (a cut last line) are skipped."""
    manifest = Manifest()
    with path.open("rb") as f:
        for raw in f:
            if len(raw) > _MAX_LINE:
                manifest.skipped_lines += 1
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                manifest.skipped_lines += 1
                continue
            if not isinstance(record, dict):
                manifest.skipped_lines += 1
                continue
            kind = record.get("type")
            if kind == "recording":
                manifest.recording.update(record)
                manifest.status = str(record.get("status", manifest.status))
            elif kind == "part" and isinstance(record.get("id"), str):
                manifest.parts.setdefault(record["id"], {}).update(record)
            elif kind == "status":
                manifest.status = str(record.get("status", manifest.status))
                manifest.failure = record.get("failure", manifest.failure)
                manifest.note = record.get("note", manifest.note)
            else:
                manifest.skipped_lines += 1
    return manifest
