"""Recording lessons in embedded mode: the recorder, the catalogue and the composite job.

`RecordingService` is the classroom's `RecordingHook`. Starting creates a
catalogue entry and a `recorder.LessonRecorder` on the lesson's SFU room (a
subscriber like any student); the SFU's `TrackPublished` events reach it,
so a teacher who republishes after a reconnect is recorded in a new part.
Stopping closes the files, copies the manifest's parts into the catalogue
and queues the single-file composite job, which runs in a child process at
the lowest priority. At startup, recordings a crash left open are finalized
(never deleted) and composite jobs that did not finish are run again; the
job resumes from its last finished chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from recorder.compose import ComposeJob, InputPart, run_job_process
from recorder.finalize import finalize_orphans
from recorder.manifest import MANIFEST_NAME, read_manifest
from recorder.recording import LessonRecorder
from sfu import MediaEvent, Sfu

from .lessons import LessonNotFound, LessonStore
from .recordings.catalogue import Catalogue
from .recordings.model import CatalogueError, Recording, RecordingNotFound

if TYPE_CHECKING:
    from .classroom import Classroom

__all__ = ["RecordingService"]

logger = logging.getLogger(__name__)

# How often a composite job's progress file is read into the catalogue.
PROGRESS_PERIOD: Final = 2.0
COMPOSITE_NAME: Final = "lesson.mp4"
_PLAYABLE: Final = frozenset({"complete", "truncated", "recovered"})


class RecordingService:
    """Starts, stops, recovers and composes the recordings of this process."""

    def __init__(
        self, sfu: Sfu, catalogue: Catalogue, lessons: LessonStore, media_root: Path
    ) -> None:
        self.sfu = sfu
        self.catalogue = catalogue
        self.lessons = lessons
        self.media_root = media_root
        self._active: dict[str, tuple[str, LessonRecorder, asyncio.Task[None]]] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        # Display names of the people recorded (the manifest keeps only their ids).
        self._names: dict[str, str] = {}
        # Recorders whose files may still grow, and what the stopped ones wrote (metrics).
        self._writing: set[LessonRecorder] = set()
        self._stopped_bytes = 0
        self._stopped_errors = 0
        sfu.add_listener(self._on_event)

    # --- figures for metrics ------------------------------------------------------

    @property
    def active(self) -> int:
        """Recordings running now."""
        return len(self._active)

    def bytes_written(self) -> int:
        """Frame bytes every recording of this process has written since it started."""
        return self._stopped_bytes + sum(r.bytes_written for r in self._writing)

    def errors(self) -> int:
        """Write errors of every recording since the process started (see LessonRecorder)."""
        return self._stopped_errors + sum(r.errors for r in self._writing)

    def _stopped(self, recorder: LessonRecorder) -> None:
        """The recorder's files are closed: its figures are final."""
        if recorder in self._writing:
            self._writing.remove(recorder)
            self._stopped_bytes += recorder.bytes_written
            self._stopped_errors += recorder.errors

    def _on_event(self, event: MediaEvent) -> None:
        active = self._active.get(event.room_id)
        if active is not None:
            active[1].on_event(event)

    # --- the classroom's hook ---------------------------------------------------

    async def start(self, classroom: Classroom) -> str:
        """Start recording the classroom's room; the recording's id."""
        lesson = classroom.lesson
        self._remember_names(classroom)
        recording = await self.catalogue.create(lesson.id, lesson.course, datetime.now(UTC))
        directory = self.media_root / recording.id
        failed = asyncio.Event()
        recorder = LessonRecorder(
            self.sfu.room(classroom.room_id), directory, on_failure=lambda _: failed.set()
        )
        self._writing.add(recorder)
        await recorder.start()
        if recorder.status == "failed":
            self._stopped(recorder)
            await self.catalogue.set_status(recording.id, "failed", recorder.failure or "failed")
            raise RuntimeError(f"the recording could not start: {recorder.failure}")
        watch = asyncio.get_running_loop().create_task(self._watch(classroom, recorder, failed))
        self._active[classroom.room_id] = (recording.id, recorder, watch)
        return recording.id

    async def stop(self, classroom: Classroom) -> None:
        """Stop the classroom's recording, catalogue its parts, queue the composite."""
        active = self._active.pop(classroom.room_id, None)
        if active is None:
            return
        recording_id, recorder, watch = active
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        self._remember_names(classroom)
        await self.catalogue.set_status(recording_id, "finalizing")
        await recorder.stop()
        self._stopped(recorder)
        await self._catalogue_parts(recording_id)
        if recorder.failure:
            await self.catalogue.set_status(recording_id, "failed", recorder.failure)
        else:
            await self.catalogue.set_status(recording_id, "ready")
            self.compose_later(recording_id)

    def _remember_names(self, classroom: Classroom) -> None:
        for member in classroom.members.values():
            self._names[member.id] = member.identity.name

    async def _watch(
        self, classroom: Classroom, recorder: LessonRecorder, failed: asyncio.Event
    ) -> None:
        """A recording that fails on its own (disk full) turns the badge off at once."""
        await failed.wait()
        logger.error("lesson %s: recording failed: %s", classroom.lesson.id, recorder.failure)
        active = self._active.pop(classroom.room_id, None)
        if active is None:
            return
        recording_id = active[0]
        await recorder.stop()
        self._stopped(recorder)
        await self._catalogue_parts(recording_id)
        await self.catalogue.set_status(recording_id, "failed", recorder.failure or "failed")
        classroom.set_recording(False, "", recording_id)

    # --- catalogue ---------------------------------------------------------------

    async def _catalogue_parts(self, recording_id: str) -> None:
        """Copy the manifest's parts (files, offsets, durations, sizes) into the catalogue."""
        directory = self.media_root / recording_id
        manifest_path = directory / MANIFEST_NAME
        if not manifest_path.exists():
            return
        manifest = await asyncio.to_thread(read_manifest, manifest_path)
        recording = await self.catalogue.get(recording_id)
        known = {p.path for p in recording.parts}
        for part in manifest.parts.values():
            status = str(part.get("status", "recording"))
            name = str(part.get("file", ""))
            if status not in _PLAYABLE or not name:
                continue
            path = f"{recording_id}/{name}"
            if path in known:
                continue
            start = float(part.get("start", 0.0))
            end = float(part.get("end", start))
            codec = str(part.get("codec", ""))
            participant = str(part.get("participant", ""))
            try:
                entry = await self.catalogue.add_part(
                    recording_id,
                    participant_id=participant,
                    participant_name=self._names.get(participant, participant),
                    source=str(part.get("source", "")),
                    kind="audio" if codec.lower().startswith("audio/") else "video",
                    codec=codec,
                    path=path,
                    start_offset_s=start,
                )
            except CatalogueError as exc:  # a manifest line a crash cut short
                logger.warning("recording %s: part %s not catalogued: %s", recording_id, name, exc)
                continue
            file = directory / name
            size = file.stat().st_size if file.exists() else 0
            await self.catalogue.update_part(
                entry.id,
                duration_s=max(0.0, end - start),
                size_bytes=size,
                # A part a full disk cut short plays up to its last cluster, like one
                # recovered after a crash.
                status="complete" if status == "complete" else "recovered",
            )

    # --- after a restart -------------------------------------------------------------

    async def recover(self) -> None:
        """Finalize what a crash left open, catalogue it, and compose what is missing."""
        recovered = await asyncio.to_thread(finalize_orphans, self.media_root)
        for directory in recovered:
            logger.warning("recording %s was recovered after a crash", directory.name)
        for directory in sorted(p for p in self.media_root.iterdir() if p.is_dir()):
            try:
                recording = await self.catalogue.get(directory.name)
            except RecordingNotFound:
                continue
            if recording.status in ("recording", "finalizing"):
                await self._catalogue_parts(recording.id)
                await self.catalogue.set_status(recording.id, "ready")
                recording = await self.catalogue.get(recording.id)
            if recording.status == "ready" and recording.composite_status in (
                "pending",
                "running",
            ):
                self.compose_later(recording.id)

    # --- the single file ---------------------------------------------------------------

    def compose_later(self, recording_id: str) -> None:
        """Queue the composite job of a recording (one at a time per recording)."""
        if recording_id in self._jobs:
            return
        task = asyncio.get_running_loop().create_task(self._compose(recording_id))
        self._jobs[recording_id] = task
        task.add_done_callback(lambda _: self._jobs.pop(recording_id, None))

    async def _compose(self, recording_id: str) -> None:
        recording = await self.catalogue.get(recording_id)
        parts = await self._composite_parts(recording)
        if not parts:
            await self.catalogue.set_composite(
                recording_id, status="failed", reason="no camera, screen or microphone recorded"
            )
            return
        duration = max(p.start_offset_s + (p.duration_s or 0.0) for p in recording.parts)
        directory = self.media_root / recording_id
        job = ComposeJob(
            parts=parts,
            output=directory / COMPOSITE_NAME,
            work_dir=directory / "composite-work",
            duration_s=duration,
        )
        await self.catalogue.set_composite(recording_id, status="running", progress=0.0)
        process = await run_job_process(job)
        try:
            while process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), PROGRESS_PERIOD)
                progress = await asyncio.to_thread(_read_progress, job.work_dir)
                done = progress.get("progress")
                if process.returncode is None and isinstance(done, int | float):
                    await self.catalogue.set_composite(
                        recording_id, status="running", progress=float(done)
                    )
        except asyncio.CancelledError:
            # Shutdown: the job stops here and resumes from its last chunk at the next start.
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()
            raise
        if process.returncode == 0 and job.output.exists():
            await self.catalogue.set_composite(
                recording_id, status="ready", path=f"{recording_id}/{COMPOSITE_NAME}"
            )
        else:
            progress = await asyncio.to_thread(_read_progress, job.work_dir)
            reason = str(progress.get("reason") or f"the job exited with {process.returncode}")
            await self.catalogue.set_composite(recording_id, status="failed", reason=reason)

    async def _composite_parts(self, recording: Recording) -> tuple[InputPart, ...]:
        """The teachers' camera, screen and microphone; anyone's when no teacher was recorded."""
        try:
            teachers = set((await self.lessons.get(recording.lesson_id)).teacher_ids)
        except LessonNotFound:
            teachers = set()
        usable = [p for p in recording.parts if p.source in ("camera", "screen", "microphone")]
        chosen = [p for p in usable if p.participant_id in teachers] or usable
        return tuple(
            InputPart(self.media_root / p.path, p.source, p.start_offset_s) for p in chosen
        )

    async def close(self) -> None:
        """Stop every recording (files closed) and the job watchers (jobs resume later)."""
        for room_id in list(self._active):
            recording_id, recorder, watch = self._active.pop(room_id)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await recorder.stop()
            self._stopped(recorder)
            await self._catalogue_parts(recording_id)
            await self.catalogue.set_status(
                recording_id, "failed" if recorder.failure else "ready", recorder.failure
            )
        for task in list(self._jobs.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _read_progress(work_dir: Path) -> dict[str, object]:
    """The composite job's progress file, or {} while it has none (or a half-written one)."""
    try:
        value = json.loads((work_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
