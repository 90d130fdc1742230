"""What the recordings catalogue holds: recordings, their parts, states, and their checks.

A recording moves ``recording`` → ``finalizing`` → ``ready`` (or straight to
``ready``), or to ``failed`` with a reason from ``recording`` or
``finalizing``; the composite (the single MP4) moves among ``pending``,
``running``, ``ready`` and ``failed``. A part's states are the recorder's
manifest words (``recorder/manifest.py``). The validators raise
:class:`CatalogueError` naming the value; paths must stay inside the
recordings folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Final

from signaling.footprint.canonical import format_time

__all__ = [
    "COMPOSITE_STATUSES",
    "PART_STATUSES",
    "PLAYABLE_PART_STATUSES",
    "RECORDING_STATUSES",
    "CatalogueError",
    "Part",
    "Recording",
    "RecordingNotFound",
]

RECORDING_STATUSES: Final = ("recording", "finalizing", "ready", "failed")
"""A recording's states, in the order it normally passes through them."""

COMPOSITE_STATUSES: Final = ("pending", "running", "ready", "failed")
"""The composite MP4's states."""

PART_STATUSES: Final = ("recording", "complete", "recovered", "broken")
"""A part's states: the recorder's manifest words (recorder/manifest.py)."""

PLAYABLE_PART_STATUSES: Final = frozenset({"complete", "recovered"})
"""Parts whose file is closed and can be served."""

_SOURCES: Final = ("camera", "microphone", "screen")
_KINDS: Final = ("audio", "video")
_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    # Straight to ready: a recording closed at shutdown, or recovered after a crash,
    # has nothing left to finalize.
    "recording": frozenset({"finalizing", "ready", "failed"}),
    "finalizing": frozenset({"ready", "failed"}),
    "ready": frozenset(),
    "failed": frozenset(),
}
_MAX_TEXT: Final = 200  # participant ids and names, codecs
_MAX_PATH: Final = 512
_MAX_REASON: Final = 500


class CatalogueError(ValueError):
    """A catalogue change was refused: a bad value or a transition that is not allowed."""


class RecordingNotFound(LookupError):
    """No recording (or part) has this id."""


def _text(name: str, value: object, longest: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise CatalogueError(f"{name} must be a string of 1 to {longest} characters")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CatalogueError(f"{name} must be a finite number")
    if value < 0:
        raise CatalogueError(f"{name} must not be negative")
    return float(value)


def _relative_path(name: str, value: object) -> str:
    """A path inside the recordings folder: relative, no ``..``, no backslash or NUL."""
    text = _text(name, value, _MAX_PATH)
    parts = text.split("/")
    if (
        text.startswith("/")
        or "\\" in text
        or "\0" in text
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise CatalogueError(f"{name} must be a relative path inside the recordings folder")
    return text


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise CatalogueError(f"{name} must be one of: {', '.join(allowed)}")
    return str(value)


def _reason(status: str, reason: str | None, failed: str = "failed") -> str | None:
    """The reason of a failure, cut to _MAX_REASON characters (an encoder's stderr can be long)."""
    if status == failed:
        if not isinstance(reason, str) or not reason.strip():
            raise CatalogueError("a failure needs a reason")
        text = reason.strip()
        return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
    if reason is not None:
        raise CatalogueError(f"a reason goes only with the status {failed!r}")
    return None


def _json_time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


@dataclass(frozen=True, slots=True)
class Part:
    """One track file of a recording, placed on the recording's timeline."""

    id: str
    recording_id: str
    participant_id: str
    participant_name: str
    source: str
    kind: str
    codec: str
    path: str
    start_offset_s: float
    duration_s: float | None
    size_bytes: int | None
    status: str

    @property
    def playable(self) -> bool:
        """Whether the file is closed and may be served."""
        return self.status in PLAYABLE_PART_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The part as the API shows it (never its path on disk)."""
        return {
            "id": self.id,
            "participant_id": self.participant_id,
            "participant_name": self.participant_name,
            "source": self.source,
            "kind": self.kind,
            "codec": self.codec,
            # The container, from the file's suffix ("webm", "ogg", "mkv"): for file names.
            "format": PurePosixPath(self.path).suffix.lstrip(".").lower(),
            "start_offset_s": self.start_offset_s,
            "duration_s": self.duration_s,
            "size_bytes": self.size_bytes,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording of a lesson, with its parts in the order they were added."""

    id: str
    lesson_id: str
    course: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    reason: str | None
    composite_status: str
    composite_progress: float
    composite_path: str | None
    composite_reason: str | None
    parts: tuple[Part, ...]

    @property
    def duration_s(self) -> float | None:
        """Where the last part with a known duration ends on the timeline; None if none is known."""
        ends = [p.start_offset_s + p.duration_s for p in self.parts if p.duration_s is not None]
        return round(max(ends), 3) if ends else None

    @property
    def size_bytes(self) -> int:
        """The parts' files together (the composite not counted)."""
        return sum(p.size_bytes or 0 for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        """The recording as the API lists it (no paths on disk, no media URLs)."""
        return {
            "id": self.id,
            "lesson_id": self.lesson_id,
            "course": self.course,
            "started_at": format_time(self.started_at),
            "ended_at": _json_time(self.ended_at),
            "status": self.status,
            "reason": self.reason,
            "duration_s": self.duration_s,
            "size_bytes": self.size_bytes,
            "composite": {
                "status": self.composite_status,
                "progress": self.composite_progress,
                "reason": self.composite_reason,
            },
            "parts": [part.to_json() for part in self.parts],
            "player_path": f"/r/{self.id}",
        }
