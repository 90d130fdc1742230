"""Finalizing recordings a killed recorder left behind: remux, record, never delete.

A part file cut short by a crash holds every cluster written before it, but
no duration and no cues (seeking is slow or impossible). `finalize_orphans`
copies each such part's packets, up to the first one that cannot be read,
into a clean file beside it (``….recovered.webm``, written under a temporary
name and renamed into place), and appends to the manifest which file is now
the part's (``file``; the crash's is kept as ``original``), the recovered end,
and the recording's status ``ready`` with the note ``recovered after crash``.
Nothing is decoded by this code and no file is deleted, except the writer's
own space reserve, which holds no media.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import av

from .manifest import MANIFEST_NAME, ManifestWriter, fsync_directory, read_manifest
from .part import container_format
from .writer import RESERVE_NAME

__all__ = ["RECOVERED_NOTE", "finalize_orphans", "remux"]

logger = logging.getLogger(__name__)

RECOVERED_NOTE = "recovered after crash"


def remux(source: Path, target: Path, format_name: str) -> tuple[int, float]:
    """Copy `source`'s packets into a clean `target`: (packets, seconds covered).

    Stops at the first packet that cannot be read; raises av.FFmpegError or
    OSError when not even the header can be.
    """
    temporary = target.with_name(f".{target.name}.tmp")
    packets, first, end = 0, None, 0.0
    with av.open(str(source)) as inp:
        in_stream = inp.streams[0]
        with av.open(str(temporary), "w", format=format_name) as out:
            out_stream = out.add_stream_from_template(in_stream)
            demuxer = inp.demux(in_stream)
            while True:
                try:
                    packet = next(demuxer)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as exc:  # the crash cut this packet
                    logger.info("%s: reading stopped after %d packets: %s", source, packets, exc)
                    break
                if packet.dts is None or packet.pts is None or packet.time_base is None:
                    continue  # the demuxer's end-of-stream marker
                seconds = float(packet.pts * packet.time_base)
                first = seconds if first is None else min(first, seconds)
                end = max(end, seconds + float((packet.duration or 0) * packet.time_base))
                packet.stream = out_stream
                out.mux(packet)
                packets += 1
    if not packets:  # the muxer never wrote a header, so there is no file either
        raise ValueError(f"no packet of {source.name} could be read")
    with temporary.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, target)
    fsync_directory(target.parent)
    return packets, (end - first) if first is not None else 0.0


def _recovered_name(name: str) -> str:
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.recovered.{suffix}" if dot else f"{name}.recovered"


def _finalize(directory: Path) -> bool:
    path = directory / MANIFEST_NAME
    try:
        writer = ManifestWriter(path)  # ends a cut last line; holds the lock
    except BlockingIOError:
        logger.info("%s is being recorded right now: not finalized", directory)
        return False
    try:
        manifest = read_manifest(path)  # after the lock: nobody appends any more
        if manifest.finished:
            return False
        for part_id, part in manifest.parts.items():
            if part.get("status") != "recording":
                continue
            writer.append(_recover_part(directory, part_id, part))
        writer.append({"type": "status", "status": "ready", "note": RECOVERED_NOTE})
    finally:
        writer.close()
    (directory / RESERVE_NAME).unlink(missing_ok=True)
    logger.warning("recording %s was %s", directory, RECOVERED_NOTE)
    return True


def _recover_part(directory: Path, part_id: str, part: dict[str, Any]) -> dict[str, Any]:
    name = str(part.get("file", ""))
    source = directory / name
    record: dict[str, Any] = {"type": "part", "id": part_id}
    if not name or Path(name).name != name or not source.is_file():
        return {**record, "status": "broken", "reason": "part file missing"}
    target = directory / _recovered_name(name)
    try:
        packets, seconds = remux(source, target, container_format(str(part.get("codec", ""))))
    except Exception as exc:  # one unreadable part must not stop the others
        logger.warning("%s could not be recovered: %s", source, exc)
        return {**record, "status": "broken", "reason": f"unreadable: {exc}"}
    start = float(part.get("start", 0.0))
    return {
        **record,
        "status": "recovered",
        "file": target.name,
        "original": name,
        "frames": packets,
        "end": round(start + seconds, 3),
        "reason": RECOVERED_NOTE,
    }


def finalize_orphans(root: Path) -> list[Path]:
    """Finalize every unfinished recording under `root`; returns their directories.

    Call it when the service starts, before any recorder runs: a recording
    whose manifest is locked by a live recorder (another process) is left alone.
    """
    finalized: list[Path] = []
    if not root.is_dir():
        return finalized
    for path in sorted(root.rglob(MANIFEST_NAME)):
        directory = path.parent
        try:
            if read_manifest(path).finished:
                continue
            if _finalize(directory):
                finalized.append(directory)
        except OSError as exc:  # one unreadable recording must not stop the others
            logger.error("could not finalize %s: %s", directory, exc)
    return finalized
