"""How long a course's attendance report takes over a million footprint events.

    python -m loadtests.bench_reports [--events 1000000] [--students 60] [--repeat 3]
                                      [--no-ledger] [--dir DIR] [--output file.json]

One course, lessons of 90 minutes on consecutive days, each with a teacher and
``--students`` students (plus a guest now and then), generated with a fixed
seed until ``--events`` are reached: joins and leaves with network reconnects,
late joiners and early leavers, cameras and microphones published and muted,
speaking, chat, hands, and a ``quality.sample`` every 30 s per connected
session (most of the volume, as in a real lesson).

Measured, best of ``--repeat``:

* ``course_report`` over every event in memory (the events built directly as
  ``Event`` objects: the report's own cost, no ledger);
* with a real ``Ledger`` (unless ``--no-ledger``): the events bulk-appended to a
  fresh ledger file, then what ``GET /api/courses/{course}/report`` does: read
  the course's presence events (``participant.joined/left``,
  ``lesson.started/ended``) in pages of 1000, then ``course_report``; and one
  lesson's full report (every event type the lesson report reads).

Target (issue "attendance reports"): a course report from the ledger in at most 2 s
for 1 M events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from signaling.footprint.attendance import DETAIL_TYPES, PRESENCE_TYPES, Thresholds
from signaling.footprint.reports import course_report, lesson_report
from signaling.footprint.roster import RosterEntry
from signaling.lessons import Lesson, LessonKind, LessonStatus, RecordingPolicy

TARGET_SECONDS = 2.0
COURSE = "MATH-101"
FIRST_DAY = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
QUALITY_PERIOD = 30.0


@dataclass(frozen=True, slots=True)
class BenchEvent:
    """The fields of signaling.footprint.Event, when the ledger cannot be imported."""

    seq: int
    at: datetime
    lesson: str
    course: str
    actor: str
    type: str
    data: dict[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type}


def event_class() -> Callable[..., Any]:
    try:
        from signaling.footprint import Event
    except ImportError:
        return BenchEvent
    return Event


# --- generation --------------------------------------------------------------------------------


class LessonScript:
    """One lesson's events as (seconds from 09:00, actor, type, data)."""

    def __init__(self, rng: random.Random, lesson: str) -> None:
        self.rng = rng
        self.lesson = lesson
        self.rows: list[tuple[float, str, str, dict[str, Any]]] = []
        self.sessions = 0

    def add(self, t: float, actor: str, kind: str, **data: Any) -> None:
        self.rows.append((t, actor, kind, data))

    def session(self) -> str:
        self.sessions += 1
        return f"{self.lesson}-s{self.sessions}"

    def stay(self, user: str, role: str, join: float, leave: float, media: bool) -> None:
        """One connected session: join, media, speaking, quality every 30 s, leave."""
        rng = self.rng
        session = self.session()
        self.add(join, user, "participant.joined", session=session, role=role, name=user)
        if media:
            self.add(join + 2, user, "media.published", session=session, source="camera")
            self.add(join + 2, user, "media.published", session=session, source="microphone")
            t = join + rng.uniform(20, 120)
            while t < leave - 30:  # the microphone muted now and then
                self.add(t, user, "media.muted", session=session, source="microphone")
                t += rng.uniform(10, 120)
                self.add(
                    min(t, leave - 1), user, "media.unmuted", session=session, source="microphone"
                )
                t += rng.uniform(60, 600)
            talk = 0.6 if role == "teacher" else 0.03  # share of the time spent talking
            t = join + rng.uniform(5, 60)
            while t < leave - 10:
                length = rng.uniform(3, 30)
                self.add(t, user, "speaking.started", session=session)
                self.add(min(t + length, leave - 1), user, "speaking.stopped", session=session)
                t += length / talk * rng.uniform(0.5, 1.5)
        t = join + rng.uniform(0, QUALITY_PERIOD)
        while t < leave:
            self.add(
                t,
                user,
                "quality.sample",
                session=session,
                loss_up=round(rng.expovariate(100), 4),
                loss_down=round(rng.expovariate(80), 4),
                rtt_ms=round(rng.uniform(20, 180), 1),
                bitrate_bps=rng.randrange(300_000, 2_500_000),
            )
            t += QUALITY_PERIOD
        reason = "left" if leave < self.end else "ended"
        self.add(leave, user, "participant.left", session=session, reason=reason)

    def build(self, students: int, day: int) -> None:
        rng = self.rng
        start = rng.uniform(-60, 300)
        self.end = end = 5400 + rng.uniform(-180, 480)  # some lessons overrun the schedule
        self.stay("teacher", "teacher", start - 120, end, media=True)
        self.add(start, "teacher", "lesson.started", title=f"Lecture {day}", teachers=["teacher"])
        for n in range(students + (1 if rng.random() < 0.2 else 0)):
            user = f"s-{n:03d}" if n < students else f"guest-{day}"
            if rng.random() < 0.08:
                continue  # absent
            join = start + min(rng.expovariate(1 / 180), 3000)
            leave = end if rng.random() < 0.85 else rng.uniform(join + 60, end)
            media = rng.random() < 0.3
            while rng.random() < 0.3 and leave - join > 600:  # a network drop and a rejoin
                drop = rng.uniform(join + 60, leave - 300)
                self.stay(user, "student", join, drop, media)
                join = drop + rng.uniform(5, 60)
            self.stay(user, "student", join, leave, media)
            for _ in range(rng.randrange(0, 4)):
                t = rng.uniform(join, leave)
                self.add(t, user, "chat.sent", session="chat", message=len(self.rows), text="ok")
            if rng.random() < 0.3:
                self.add(rng.uniform(join, leave), user, "hand.raised", session="hand")
        self.add(end, "teacher", "lesson.ended", reason="teacher")


def generate(target: int, students: int, seed: int) -> tuple[list[Lesson], list[Any]]:
    """Lessons, one a day, until ``target`` events; the events in seq (= time) order."""
    rng = random.Random(seed)
    make = event_class()
    lessons: list[Lesson] = []
    events: list[Any] = []
    day = 0
    while len(events) < target:
        lesson_id = f"L{day:03d}"
        nine = FIRST_DAY + timedelta(days=day)
        script = LessonScript(rng, lesson_id)
        script.build(students, day)
        script.rows.sort(key=lambda row: row[0])
        for t, actor, kind, data in script.rows:
            moment = nine + timedelta(seconds=round(t, 3))
            seq = len(events) + 1
            events.append(
                make(seq, moment, lesson_id, COURSE, actor, kind, data, "0" * 64, "0" * 64)
            )
        lessons.append(
            Lesson(
                id=lesson_id,
                course=COURSE,
                title=f"Lecture {day}",
                kind=LessonKind.LECTURE,
                teacher_ids=("teacher",),
                scheduled_start=nine,
                scheduled_end=nine + timedelta(minutes=90),
                lobby=False,
                recording_policy=RecordingPolicy.MANUAL,
                status=LessonStatus.ENDED,
                created_at=FIRST_DAY,
                updated_at=FIRST_DAY,
            )
        )
        day += 1
    return lessons, events


# --- measuring ---------------------------------------------------------------------------------


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - began)
    return best, result


async def best_of_async(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = await run()
        best = min(best, time.perf_counter() - began)
    return best, result


async def read_all(ledger: Any, types: Iterable[str], **filters: Any) -> list[Any]:
    """As signaling.footprint.api does: pages of 1000 until a short one."""
    events: list[Any] = []
    after = 0
    while True:
        page = await ledger.query(**filters, types=sorted(types), after_seq=after, limit=1000)
        events.extend(page)
        if len(page) < 1000:
            return events
        after = page[-1].seq


async def through_ledger(
    directory: Path,
    lessons: Sequence[Lesson],
    events: Sequence[Any],
    roster: Sequence[RosterEntry],
    repeat: int,
    now: datetime,
) -> list[dict[str, Any]]:
    from signaling.footprint import Ledger

    clock = [events[0].at]
    ledger = await Ledger.open(
        directory / "footprint.db", signing_key=directory / "key.pem", clock=lambda: clock[0]
    )
    rows: list[dict[str, Any]] = []
    try:
        began = time.perf_counter()
        for index, event in enumerate(events, 1):
            clock[0] = event.at
            ledger.append(event.lesson, event.course, event.actor, event.type, event.data)
            if index % 50_000 == 0:  # stay well under the ledger's queue limit
                await ledger.flush()
                print(f"  appended {index:,}", file=sys.stderr)
        await ledger.flush()
        append_s = time.perf_counter() - began
        rows.append(row("bulk append to a real ledger (setup)", len(events), append_s))
        thresholds = Thresholds()

        async def query_course() -> list[Any]:
            return await read_all(ledger, PRESENCE_TYPES, course=COURSE)

        query_s, presence = await best_of_async(repeat, query_course)
        rows.append(
            row("ledger query: the course's presence events, pages of 1000", len(presence), query_s)
        )

        async def course_from_ledger() -> Any:
            found = await query_course()
            return course_report(COURSE, lessons, found, roster, thresholds, now)

        total_s, report = await best_of_async(repeat, course_from_ledger)
        rows.append(
            row(
                "course_report from the ledger (query + report)",
                len(presence),
                total_s,
                target=True,
            )
        )
        one = lessons[len(lessons) // 2]

        async def lesson_from_ledger() -> Any:
            found = await read_all(ledger, DETAIL_TYPES, lesson=one.id)
            return lesson_report(one, found, roster, thresholds, now), len(found)

        lesson_s, (_, count) = await best_of_async(repeat, lesson_from_ledger)
        rows.append(
            row("lesson_report of one lesson from the ledger (query + report)", count, lesson_s)
        )
        print(f"  academic hours held: {report.to_json()['academic_hours']}", file=sys.stderr)
    finally:
        await ledger.close()
    return rows


def row(stage: str, events: int, seconds: float, *, target: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"stage": stage, "events": events, "seconds": round(seconds, 3)}
    if target:
        result["target_seconds"] = TARGET_SECONDS
        result["meets_target"] = seconds <= TARGET_SECONDS
    return result


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| stage | events | seconds | target |", "|---|---:|---:|---|"]
    for r in rows:
        mark = ""
        if "meets_target" in r:
            mark = f"≤ {TARGET_SECONDS:g} s: {'yes' if r['meets_target'] else 'NO'}"
        lines.append(f"| {r['stage']} | {r['events']:,} | {r['seconds']:.3f} | {mark} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    lessons, events = generate(args.events, args.students, args.seed)
    rows = [row("generate events (setup)", len(events), time.perf_counter() - began)]
    roster = [RosterEntry(f"s-{n:03d}", f"Student {n}") for n in range(args.students)]
    thresholds = Thresholds()
    now = FIRST_DAY + timedelta(days=len(lessons) + 1)
    seconds, _ = best_of(
        args.repeat, lambda: course_report(COURSE, lessons, events, roster, thresholds, now)
    )
    rows.append(row("course_report over every event in memory (no ledger)", len(events), seconds))
    presence = [e for e in events if e.type in PRESENCE_TYPES]
    seconds, _ = best_of(
        args.repeat, lambda: course_report(COURSE, lessons, presence, roster, thresholds, now)
    )
    rows.append(row("course_report over the presence events only", len(presence), seconds))
    if not args.no_ledger:
        try:
            import signaling.footprint.ledger  # noqa: F401
        except ImportError:
            print("signaling.footprint.ledger is missing: ledger stages skipped", file=sys.stderr)
        else:
            with tempfile.TemporaryDirectory(dir=args.dir) as directory:
                rows += await through_ledger(
                    Path(directory), lessons, events, roster, args.repeat, now
                )
    return {
        "benchmark": "reports",
        "events": len(events),
        "lessons": len(lessons),
        "students": args.students,
        "repeat": args.repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--students", type=int, default=60, help="students on the roster")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage (best kept)")
    parser.add_argument("--seed", type=int, default=137)
    parser.add_argument("--no-ledger", action="store_true", help="skip the real-ledger stages")
    parser.add_argument("--dir", help="where the temporary ledger goes")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    print(table(results["results"]))
    print(
        f"\n{results['events']:,} events, {results['lessons']} lessons, "
        f"{results['students']} students; {results['machine']['cpus']} CPUs"
    )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
