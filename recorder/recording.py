"""A lesson's recording: every selected track of a room, subscribed like a student.

The owner (the signaling service) creates a `LessonRecorder` for a room and
a fresh directory, awaits `start()`, forwards the SFU's `TrackPublished`
events to it (`on_event`, or `on_track_published` with the track), and
awaits `stop()` at the end. A write error (a full disk above all) stops the
recording on its own: `status` becomes ``failed``, `failure` says why (the
manifest too), every subscription is closed, and nothing is raised into the
SFU, whose students carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

from sfu import InboundTrack, LocalSubscription, MediaEvent, Room, TrackPublished, UnknownEntity

from .manifest import MANIFEST_NAME
from .track import PublisherClock, TrackRecorder
from .writer import RecordingWriter, TrackInfo, failure_reason

__all__ = ["SUPPORTED_CODECS", "LessonRecorder"]

logger = logging.getLogger(__name__)

SUPPORTED_CODECS = frozenset(("video/vp8", "video/h264", "audio/opus"))


def _everything(track: InboundTrack) -> bool:
    return True


class LessonRecorder:
    """Records the tracks of one room that `select` accepts, into `directory`."""

    def __init__(
        self,
        room: Room,
        directory: Path,
        select: Callable[[InboundTrack], bool] = _everything,
        *,
        writer: RecordingWriter | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.room = room
        self.directory = Path(directory)
        self.select = select
        self.status = "idle"  # -> starting -> recording -> stopping -> ready | failed
        self.failure: str | None = None
        self.t0 = 0.0
        self.recorders: list[TrackRecorder] = []  # every track recorded, ended ones too
        self.skipped: list[str] = []  # tracks not recorded, with the reason
        self.on_failure = on_failure  # called on the loop once the recording has failed
        self._writer = writer or RecordingWriter(self.directory)
        self._writer.on_failure = self._failed_from_writer
        self._active: dict[str, tuple[TrackRecorder, LocalSubscription, str]] = {}
        self._clocks: dict[str, PublisherClock] = {}
        self._keys = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_errors = 0

    @property
    def manifest_path(self) -> Path:
        """The recording's manifest.jsonl."""
        return self.directory / MANIFEST_NAME

    @property
    def bytes_written(self) -> int:
        """Frame bytes handed to the part files so far (container overhead excluded)."""
        return self._writer.bytes_written

    @property
    def errors(self) -> int:
        """Write errors so far: the one that failed the recording (or its start), lost parts."""
        return self._writer.errors + self._start_errors

    async def start(self) -> None:
        """Create the recording and subscribe to every matching track; never raises OSError."""
        if self.status != "idle":
            return
        self._loop = asyncio.get_running_loop()
        self.t0 = time.time()
        header = {
            "t0": self.t0,
            "started_at": dt.datetime.fromtimestamp(self.t0, dt.UTC).isoformat(),
            "room": self.room.id,
        }
        self.status = "starting"
        try:
            await asyncio.to_thread(self._writer.open, header)
        except OSError as exc:
            self.status, self.failure = "failed", failure_reason(exc)
            self._start_errors = 1
            logger.error("recording %s could not start: %s", self.directory, self.failure)
            return
        if self.status != "starting":  # stop() was called meanwhile: finish what opened
            await asyncio.to_thread(self._writer.close)
            return
        self.status = "recording"
        for track in list(self.room.tracks.values()):
            self.on_track_published(track)

    def on_event(self, event: MediaEvent) -> None:
        """A media event listener (`Sfu.add_listener`): records tracks published later."""
        if isinstance(event, TrackPublished) and event.room_id == self.room.id:
            room = self._room_with(event.track_id)
            if room is not None:
                self.on_track_published(room.tracks[event.track_id])

    def on_track_published(self, track: InboundTrack) -> None:
        """Record `track` if it matches; a keyframe is requested for video at once."""
        if self.status != "recording" or track.closed or track.id in self._active:
            return
        room = self._room_with(track.id)
        if room is None or room.tracks.get(track.id) is not track:
            return
        try:
            if not self.select(track):
                return
        except Exception:
            logger.exception("recording selector failed on track %s", track.id)
            return
        codec = track.codec
        if codec.mime_type.lower() not in SUPPORTED_CODECS:
            self.skipped.append(f"{track.id}: {codec.mime_type} is not recorded")
            logger.warning("not recording track %s: codec %s", track.id, codec.mime_type)
            return
        key = next(self._keys)
        clock = self._clocks.setdefault(track.participant_id, PublisherClock())
        recorder = TrackRecorder(
            key, codec.mime_type, codec.clock_rate, self._writer, clock, self.t0,
            on_end=self._track_ended,
        )  # fmt: skip
        info = TrackInfo(
            key, track.participant_id, str(track.source), track.id, codec.mime_type,
            codec.channels or 2,
        )  # fmt: skip
        self._writer.add_track(info)
        try:
            subscription = self.room.add_consumer(track.id, recorder)
        except UnknownEntity:
            self._writer.end_track(key, "unpublished")
            return
        recorder.request_keyframe = subscription.request_keyframe
        self.recorders.append(recorder)
        self._active[track.id] = (recorder, subscription, track.participant_id)
        if track.kind == "video":
            # DownTrack already asked when it was added; a request within the SFU's
            # 500 ms limit is deferred, not lost, so asking again costs nothing.
            subscription.request_keyframe()

    async def stop(self) -> None:
        """Close every part (duration and cues written) and mark the recording ready."""
        if self.status in ("ready", "failed", "stopping"):
            if self.status == "failed":
                await asyncio.to_thread(self._writer.close)
            return
        if self.status in ("idle", "starting"):
            self.status = "ready"  # start() closes the writer when its open() returns
            return
        self.status = "stopping"
        self._unsubscribe("recording stopped")
        await asyncio.to_thread(self._writer.close)
        self.failure = self.failure or self._writer.failure
        self.status = "failed" if self.failure else "ready"

    # --- internals ---------------------------------------------------------

    def _room_with(self, track_id: str) -> Room | None:
        if track_id in self.room.tracks:
            return self.room
        current = self.room.sfu.rooms.get(self.room.id)
        if current is not None and track_id in current.tracks:
            # The SFU forgets a room when its last participant leaves and makes a new one
            # when somebody joins again (a teacher who reconnects): same lesson, follow it.
            self.room = current
            return current
        return None

    def _unsubscribe(self, reason: str) -> None:
        for _, subscription, _ in list(self._active.values()):
            subscription.close(reason)  # calls the recorder's on_ended -> _track_ended

    def _track_ended(self, recorder: TrackRecorder, reason: str) -> None:
        for track_id, (active, _, participant_id) in list(self._active.items()):
            if active is recorder:
                del self._active[track_id]
                if all(p != participant_id for _, _, p in self._active.values()):
                    # A publisher who comes back may have a different clock: measure anew.
                    self._clocks.pop(participant_id, None)

    def _failed_from_writer(self, reason: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(self._failed, reason)

    def _failed(self, reason: str) -> None:
        if self.status in ("ready", "failed"):
            return
        self.failure = reason
        self.status = "failed"
        self._unsubscribe("recording failed")
        if self.on_failure is not None:
            try:
                self.on_failure(reason)
            except Exception:  # the owner's bug must not reach the SFU's loop callbacks
                logger.exception("recording failure callback failed")
