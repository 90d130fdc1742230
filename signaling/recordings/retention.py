"""Retention: recordings older than the operator's limit are deleted, files first.

The university decides how long recordings are kept (``retention_days``; none or
0 keeps them forever). :func:`purge_expired` removes each expired recording's
files (parts, composite, the recording's own folder) and then its catalogue
rows: in that order, a crash in between leaves a row whose files are gone
(served as 404, removed at the next run) rather than files that nothing points
to any more. :class:`RetentionTask` runs it once an hour in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from .catalogue import Catalogue
from .model import Recording

__all__ = ["PURGE_INTERVAL_S", "RetentionTask", "purge_expired", "recording_files"]

_log = logging.getLogger(__name__)

PURGE_INTERVAL_S: Final = 3600.0
"""Seconds between two retention runs; a recording outlives its limit by at most this."""


def recording_files(recording: Recording, media_root: Path) -> list[Path]:
    """The files of a recording (parts, then the composite) that lie inside ``media_root``.

    Paths that resolve outside the folder (a symlink, a row edited by hand) are
    left out: retention must never delete anything else.
    """
    root = media_root.resolve()
    relative = [part.path for part in recording.parts]
    if recording.composite_path is not None:
        relative.append(recording.composite_path)
    files: list[Path] = []
    for name in relative:
        path = (root / name).resolve()
        if path.is_relative_to(root) and path != root:
            files.append(path)
        else:
            _log.warning("recording %s: %r is outside the recordings folder", recording.id, name)
    return files


def _remove_recording(recording: Recording, media_root: Path) -> int:
    """Deletes the recording's files and folder; returns how many catalogued files there were.

    ``media_root/<recording id>/`` is the recording's own folder (docs/configuration.md:
    its parts, the recorder's manifest, the composite and its work files); named by a
    128-bit random id, it holds nothing else, so it goes as a whole. Files catalogued
    elsewhere go one by one, with the folders they leave empty.
    """
    root = media_root.resolve()
    files = recording_files(recording, media_root)
    _remove(files, root)
    own = root / recording.id
    # Not through a symlink: only a real folder of that name inside the root is ours.
    if own.is_dir() and not own.is_symlink():
        shutil.rmtree(own, ignore_errors=True)
    return len(files)


def _remove(files: list[Path], root: Path) -> None:
    """Deletes the files, then their folders that became empty (up to, not including, root)."""
    folders: set[Path] = set()
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        folders.update(p for p in path.parents if p.is_relative_to(root) and p != root)
    # Deepest first, so that a parent is tried after its children.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty (the recorder's manifest), or gone
            folder.rmdir()


async def purge_expired(
    catalogue: Catalogue,
    media_root: Path,
    retention_days: int | None,
    now: datetime,
) -> int:
    """Deletes the recordings that ended more than ``retention_days`` before ``now``.

    Returns how many were deleted; None or 0 days keeps everything. Recordings
    still being recorded or finalized are never deleted.
    """
    if not retention_days:
        return 0
    if retention_days < 0:
        raise ValueError("retention_days must not be negative")
    expired = await catalogue.expired(now.astimezone(UTC) - timedelta(days=retention_days))
    for recording in expired:
        # In a thread: resolving and unlinking touch the disk (maybe a network share).
        count = await asyncio.to_thread(_remove_recording, recording, media_root)
        await catalogue.delete(recording.id)
        _log.info(
            "recording %s of lesson %s deleted after %d days (%d files)",
            recording.id,
            recording.lesson_id,
            retention_days,
            count,
        )
    return len(expired)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RetentionTask:
    """Runs :func:`purge_expired` at start and then every ``interval_s`` seconds."""

    __slots__ = ("_catalogue", "_clock", "_interval_s", "_media_root", "_retention_days", "_task")

    def __init__(
        self,
        catalogue: Catalogue,
        media_root: Path,
        retention_days: int | None,
        *,
        interval_s: float = PURGE_INTERVAL_S,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._catalogue = catalogue
        self._media_root = media_root
        self._retention_days = retention_days
        self._interval_s = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the periodic runs (nothing when recordings are kept forever)."""
        if self._task is None and self._retention_days:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancels the runs and waits for the task to end; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait(), not `await task`: the task's CancelledError stays inside it, while a
        # cancellation of stop() itself still reaches the caller.
        await asyncio.wait([task])

    async def _run(self) -> None:
        while True:
            try:
                await purge_expired(
                    self._catalogue, self._media_root, self._retention_days, self._clock()
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                # A full disk or a locked database this hour may be gone the next.
                _log.exception("recordings retention failed; retrying in %.0f s", self._interval_s)
            await asyncio.sleep(self._interval_s)
