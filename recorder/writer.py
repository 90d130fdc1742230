"""Muxing frames to disk on a thread of its own: part files, fsync, manifest, disk full.

One :class:`RecordingWriter` per recording. The event loop only queues
commands (`add_track`, `frame`, `end_track`: a ``SimpleQueue.put`` each); the
writer thread muxes them with PyAV in copy mode (``av.Packet`` in, never a
decoder or an encoder call), fsyncs every open part at least once a second
and appends every change to the manifest. One file per track part: a track
that ends closes its part, a new track of the same participant starts a new
part with its own start offset, and a video keyframe with a new picture size
starts a new part too (a Matroska track has one size; players that honour a
mid-stream change are the exception).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bitstream import h264_dimensions, opus_samples, vp8_dimensions
from .depacketize import DepacketizeError
from .manifest import MANIFEST_NAME, VERSION, ManifestWriter, fsync_directory
from .part import PartFile

__all__ = ["RESERVE_NAME", "RecordingWriter", "TrackInfo", "failure_reason"]

logger = logging.getLogger(__name__)

RESERVE_NAME = ".space-reserve"
# Freed when the disk is full so that the other parts' trailers and the manifest's
# "failed" record still fit. A trailer flushes the open cluster: 0.8 s of a 2.5 Mbit/s
# screen share is 250 KB; an hour of cues is ~50 KB.
RESERVE_BYTES = 1 << 20
# fsync at least once a second: with clusters of at most 0.8 s, a power cut loses under 2 s.
FSYNC_INTERVAL = 1.0
CLUSTER_MS = 800


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What the writer needs to know about a recorded track."""

    key: int
    participant_id: str
    source: str
    track_id: str
    mime_type: str  # "video/VP8", "video/H264", "audio/opus"
    channels: int = 2


def failure_reason(exc: BaseException) -> str:
    """The manifest's words for a write error, e.g. ``disk_full: No space left on device``."""
    code = getattr(exc, "errno", None)
    text = getattr(exc, "strerror", None) or str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"disk_full: {text}"
    return f"write_error: {text}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40] or "_"


class _Track:
    __slots__ = ("info", "part", "parts")

    def __init__(self, info: TrackInfo) -> None:
        self.info = info
        self.part: PartFile | None = None
        self.parts = 0


class RecordingWriter:
    """Owns a recording directory; its thread alone touches the files."""

    def __init__(
        self,
        directory: Path,
        on_failure: Callable[[str], None] | None = None,
        *,
        cluster_ms: int = CLUSTER_MS,
        fsync_interval: float = FSYNC_INTERVAL,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        self.directory = directory
        self.on_failure = on_failure
        self.cluster_ms = cluster_ms
        self.fsync_interval = fsync_interval
        self.reserve_bytes = reserve_bytes
        self.failure: str | None = None
        self.queued_bytes = 0  # written by the loop thread only
        self.done_bytes = 0  # written by the writer thread only
        self.parts_opened = 0
        # Written by the writer thread only, read for metrics: frame bytes the muxer
        # took, and errors (the one that stops the recording, frames or parts lost).
        self.bytes_written = 0
        self.errors = 0
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._manifest: ManifestWriter | None = None
        self._tracks: dict[int, _Track] = {}
        self._accepting = False
        self._closing = False

    @property
    def backlog_bytes(self) -> int:
        """Frame bytes queued but not yet muxed."""
        return self.queued_bytes - self.done_bytes

    # --- called on the event loop (cheap, never touch the disk) -------------

    def add_track(self, info: TrackInfo) -> None:
        """Announce a track; its first frame opens its first part."""
        if self._accepting:
            self._queue.put(("add", info))

    def frame(self, key: int, data: bytes, start: float, keyframe: bool) -> None:
        """Queue one frame; `start` is seconds since the recording's t0."""
        if self._accepting:
            self.queued_bytes += len(data)
            self._queue.put(("frame", key, data, start, keyframe))

    def end_track(self, key: int, reason: str) -> None:
        """Close the track's part (the publisher left, or the recording stops)."""
        if self._accepting:
            self._queue.put(("end", key, reason))

    # --- blocking calls: run them in a thread (asyncio.to_thread) ----------

    def open(self, header: dict[str, Any]) -> None:
        """Create the directory, the space reserve and the manifest; start the thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.directory / MANIFEST_NAME).exists():
            raise FileExistsError(f"{self.directory} already holds a recording")
        if self.reserve_bytes:
            with (self.directory / RESERVE_NAME).open("wb") as f:
                f.write(bytes(self.reserve_bytes))
                f.flush()
                os.fsync(f.fileno())
        self._manifest = ManifestWriter(self.directory / MANIFEST_NAME)
        self._manifest.append(
            {"type": "recording", "version": VERSION, "status": "recording", **header}
        )
        self._accepting = True
        self._thread = threading.Thread(
            target=self._run, name=f"recorder:{self.directory.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Close every part, write the final status and wait for the thread; idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._accepting = False
        if not self._closing:
            self._closing = True
            self._queue.put(("stop",))
        thread.join()
        self._thread = None

    # --- the writer thread --------------------------------------------------

    def _run(self) -> None:
        next_sync = time.monotonic() + self.fsync_interval
        try:
            while True:
                try:
                    command = self._queue.get(timeout=max(0.0, next_sync - time.monotonic()))
                except queue.Empty:
                    command = None
                if command is not None:
                    if command[0] == "stop":
                        break
                    self._guarded(self._handle, command)
                if self.failure is not None:
                    break  # parts closed and failure recorded: nothing more to do
                if time.monotonic() >= next_sync:
                    self._guarded(self._sync)
                    next_sync = time.monotonic() + self.fsync_interval
        except Exception:  # a bug must not leave the thread dead with the queue growing
            logger.exception("recorder writer for %s failed", self.directory)
            self._fail("write_error: internal error")
        finally:
            self._finish()

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except OSError as exc:
            self._fail(failure_reason(exc))

    def _handle(self, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "frame":
            _, key, data, start, keyframe = command
            try:
                self._write(key, data, start, keyframe)
            finally:
                self.done_bytes += len(data)
        elif kind == "add":
            info: TrackInfo = command[1]
            self._tracks[info.key] = _Track(info)
        elif kind == "end":
            track = self._tracks.pop(command[1], None)
            if track is not None and track.part is not None:
                self._close_part(track, command[2])

    def _write(self, key: int, data: bytes, start: float, keyframe: bool) -> None:
        track = self._tracks.get(key)
        if track is None:
            return
        info = track.info
        size: tuple[int, int] | None = None
        if keyframe and info.mime_type.lower() != "audio/opus":
            try:
                size = (
                    vp8_dimensions(data)
                    if info.mime_type.lower() == "video/vp8"
                    else h264_dimensions(data)
                )
            except DepacketizeError:
                logger.debug("keyframe of %s without a readable picture size", info.track_id)
        part = track.part
        if part is not None and size is not None and size != part.size:
            self._close_part(track, "resolution change")
            part = None
        if part is None:
            if info.mime_type.lower() != "audio/opus" and size is None:
                return  # a video part must start on a keyframe whose size we know
            part = self._open_part(track, start, size)
        duration = 0
        if info.mime_type.lower() == "audio/opus":
            try:
                duration = opus_samples(data) // 48  # ms at 48 kHz
            except DepacketizeError:
                return
        try:
            part.write(data, start, keyframe, duration)
        except OSError:
            raise
        except Exception as exc:  # the muxer refused this packet: end the part, not the recording
            logger.warning("muxing %s failed: %s", part.path.name, exc)
            self.errors += 1
            self._close_part(track, f"mux error: {exc}")
        else:
            self.bytes_written += len(data)

    def _open_part(self, track: _Track, start: float, size: tuple[int, int] | None) -> PartFile:
        info = track.info
        track.parts += 1
        self.parts_opened += 1
        number = self.parts_opened
        suffix = ".mkv" if info.mime_type.lower() == "video/h264" else ".webm"
        name = f"{number:03d}-{_safe(info.participant_id)}-{_safe(info.source)}{suffix}"
        part = PartFile(
            self.directory / name, f"p{number:03d}", info.mime_type, start, size,
            info.channels, self.cluster_ms,
        )  # fmt: skip
        track.part = part
        record: dict[str, Any] = {
            "type": "part",
            "id": part.id,
            "file": name,
            "participant": info.participant_id,
            "source": info.source,
            "track_id": info.track_id,
            "codec": info.mime_type,
            "start": round(start, 3),
            "status": "recording",
        }
        if size is not None:
            record["width"], record["height"] = size
        assert self._manifest is not None
        self._manifest.append(record)
        fsync_directory(self.directory)
        return part

    def _close_part(self, track: _Track, reason: str) -> None:
        part, track.part = track.part, None
        if part is None:
            return
        status, error = "complete", None
        try:
            part.close()
        except OSError as exc:
            # FFmpeg's I/O context stays failed after a write error: no trailer, no cues,
            # but every cluster written before the error still plays.
            status, error = "truncated", exc
        except Exception as exc:
            logger.warning("closing %s failed: %s", part.path.name, exc)
            self.errors += 1
            status = "broken"
        finally:
            part.release()
        assert self._manifest is not None
        self._manifest.append(
            {
                "type": "part",
                "id": part.id,
                "status": status,
                "end": round(part.end, 3),
                "frames": part.frames,
                "bytes": part.bytes,
                "reason": reason,
            }
        )
        if error is not None:
            raise error

    def _sync(self) -> None:
        for track in self._tracks.values():
            if track.part is not None:
                track.part.sync()

    def _fail(self, reason: str) -> None:
        if self.failure is not None:
            return
        self.failure = reason
        self.errors += 1
        self._accepting = False
        logger.error("recording %s stopped: %s", self.directory, reason)
        # Give back the reserve first: the trailers and the manifest line need the space.
        (self.directory / RESERVE_NAME).unlink(missing_ok=True)
        for track in list(self._tracks.values()):
            try:
                self._close_part(track, reason)
            except OSError as exc:  # the part that hit the error, most likely
                logger.warning("part of %s left truncated: %s", self.directory, exc)
        self._tracks.clear()
        try:
            if self._manifest is not None:
                self._manifest.append({"type": "status", "status": "failed", "failure": reason})
        except OSError as exc:
            logger.error("could not record %r in the manifest: %s", reason, exc)
        if self.on_failure is not None:
            self.on_failure(reason)

    def _finish(self) -> None:
        try:
            if self.failure is None:
                for track in list(self._tracks.values()):
                    self._close_part(track, "stopped")
                self._tracks.clear()
                if self._manifest is not None:
                    self._manifest.append({"type": "status", "status": "ready"})
                (self.directory / RESERVE_NAME).unlink(missing_ok=True)
        except OSError as exc:
            self._fail(failure_reason(exc))
        finally:
            for track in self._tracks.values():
                if track.part is not None:
                    track.part.release()
            if self._manifest is not None:
                self._manifest.close()
