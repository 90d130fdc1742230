"""One part file: a single-track WebM or Matroska muxer in copy mode, fsynced on demand.

PyAV writes the file itself (FFmpeg's file protocol); with ``flush_packets``
each finished cluster reaches the kernel at once, and ``cluster_time_limit``
bounds a cluster to under a second, so what a killed process leaves behind is
every cluster but the open one. ``sync`` fsyncs through a second descriptor
of the same file.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

__all__ = ["PartFile", "container_format"]

_MS = Fraction(1, 1000)  # Matroska block timestamps are milliseconds
_STREAM_CODEC = {"video/vp8": "vp8", "video/h264": "h264"}


def container_format(mime_type: str) -> str:
    """WebM for VP8 and Opus, Matroska for H.264 (WebM does not allow it)."""
    return "matroska" if mime_type.lower() == "video/h264" else "webm"


class PartFile:
    """A muxer for one track part; timestamps are ms from the part's start."""

    def __init__(
        self,
        path: Path,
        part_id: str,
        mime_type: str,
        start: float,
        size: tuple[int, int] | None,
        channels: int,
        cluster_ms: int,
    ) -> None:
        self.path = path
        self.id = part_id
        self.start = start  # seconds from the recording's t0
        self.size = size
        self.frames = 0
        self.bytes = 0
        self.last_pts = -1
        self.last_duration = 0
        self._fd: int | None = None
        self._dirty = False
        options = {
            "cluster_time_limit": str(cluster_ms),
            # Hand every finished cluster to the kernel now, not when 32 KiB have queued.
            "flush_packets": "1",
        }
        self._container: Any = av.open(
            str(path), "w", format=container_format(mime_type), options=options
        )
        try:
            codec = mime_type.lower()
            if codec in _STREAM_CODEC:
                width, height = size or (0, 0)
                stream = self._container.add_mux_stream(
                    _STREAM_CODEC[codec], width=width, height=height
                )
            else:
                # PyAV 18 cannot set extradata or a channel count on a codec-less stream,
                # and WebM wants both for Opus (CodecPrivate "OpusHead", Channels >= 1).
                # An Opus codec context provides them; it is opened when the header is
                # written (never fed a frame) and its OpusHead declares a pre-skip of 312
                # samples, libopus's lookahead, which browsers' encoders have too.
                stream = self._container.add_stream("libopus", rate=48000)
                stream.layout = "mono" if channels == 1 else "stereo"
            stream.time_base = _MS
        except BaseException:
            self._container.close()
            raise
        self._stream = stream

    @property
    def end(self) -> float:
        """Seconds from t0 to the end of the last frame written."""
        return self.start + max(0, self.last_pts + self.last_duration) / 1000

    def write(self, data: bytes, start: float, keyframe: bool, duration_ms: int) -> None:
        """Mux one frame that starts `start` seconds after t0."""
        pts = round((start - self.start) * 1000)
        if pts <= self.last_pts:
            # Matroska needs increasing timestamps; a sender report that moves the
            # clock back by a millisecond or two must not cost a frame.
            pts = self.last_pts + 1
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = _MS
        packet.is_keyframe = keyframe
        if duration_ms:
            packet.duration = duration_ms
        packet.stream = self._stream
        self._container.mux_one(packet)
        self.last_pts = pts
        self.last_duration = duration_ms
        self.frames += 1
        self.bytes += len(data)
        self._dirty = True
        if self._fd is None:
            # The muxer creates the file with the header, at the first packet (H.264: at
            # the first one with SPS and PPS, which PyAV waits for to write CodecPrivate).
            with contextlib.suppress(FileNotFoundError):
                self._fd = os.open(self.path, os.O_RDONLY)

    def sync(self) -> None:
        """fsync what the muxer has handed to the kernel, if anything is new."""
        if self._dirty and self._fd is not None:
            self._dirty = False
            os.fsync(self._fd)

    def close(self) -> None:
        """Write the trailer (duration, cues) and fsync; raises what the muxer raises."""
        container, self._container = self._container, None
        if container is not None:
            container.close()
            self._dirty = True
            self.sync()

    def release(self) -> None:
        """Free the muxer and the descriptor whatever state they are in; idempotent."""
        container, self._container = self._container, None
        if container is not None:
            # Already failing (disk full): the file stays as the muxer left it.
            with contextlib.suppress(Exception):
                container.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
