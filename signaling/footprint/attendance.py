"""Who attended one lesson, and how: the numbers every attendance report is built from.

Pure functions of a lesson, its footprint events (docs/footprint.md) and the
course roster. Times are seconds from the lesson's *origin*: its first actual
start (its scheduled start if it was never held). The lesson was *held* during
its segments, each from a ``lesson.started`` to the next ``lesson.ended``; a
lesson that ended and went live again (a teacher rejoined) has several. The last
segment, if not ended, lasts until ``now`` while the lesson is live, else until
the last event seen of the lesson (the ledger closes it at the next start after
a crash, so this is only a fallback), and never ends before it started.

A person's presence is the union of their sessions' join/leave intervals (so a
reconnect, or a second tab, neither loses nor doubles time), intersected with
the held segments. Camera and microphone count while published and not muted
*and* present; talk counts speaking intervals while present.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from signaling.footprint.intervals import intersect, merge, pair_toggles, total
from signaling.lessons import Lesson, LessonStatus

if TYPE_CHECKING:
    from signaling.footprint.roster import RosterEntry

__all__ = [
    "DETAIL_TYPES",
    "PRESENCE_TYPES",
    "Attendance",
    "EventLike",
    "LessonAttendance",
    "QualitySummary",
    "Status",
    "Thresholds",
    "attend",
    "classify",
]

Spans = tuple[tuple[float, float], ...]

PRESENCE_TYPES: Final = frozenset(
    {"lesson.started", "lesson.ended", "participant.joined", "participant.left"}
)
"""The event types that presence and statuses need (course and teacher reports)."""

DETAIL_TYPES: Final = PRESENCE_TYPES | frozenset(
    {
        "media.published",
        "media.unpublished",
        "media.muted",
        "media.unmuted",
        "speaking.started",
        "speaking.stopped",
        "chat.sent",
        "hand.raised",
        "quality.sample",
    }
)
"""The event types a lesson report reads."""

# How a media event changes a (session, source)'s state: (published, muted), None = unchanged.
# Publishing or unpublishing resets the mute: a new track starts unmuted.
_MEDIA: Final[Mapping[str, tuple[bool | None, bool]]] = {
    "media.published": (True, False),
    "media.unpublished": (False, False),
    "media.muted": (None, True),
    "media.unmuted": (None, False),
}
_SOURCES: Final = ("camera", "microphone")


class EventLike(Protocol):
    """What the reports read of a footprint event (``signaling.footprint.Event`` fits)."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def lesson(self) -> str: ...
    @property
    def course(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    def to_json(self) -> dict[str, Any]: ...


class Status(StrEnum):
    """A person's attendance of one held lesson (see :func:`classify`)."""

    PRESENT = "present"
    LATE = "late"
    PARTIAL = "partial"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The university's ``[attendance]`` settings."""

    late_after_min: float = 10.0
    present_min_share: float = 0.75
    partial_min_share: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.late_after_min) and self.late_after_min >= 0):
            raise ValueError("late_after_min must be a non-negative number of minutes")
        if not 0 <= self.partial_min_share <= self.present_min_share <= 1:
            raise ValueError("need 0 <= partial_min_share <= present_min_share <= 1")

    def to_json(self) -> dict[str, float]:
        """The thresholds, as every report repeats them."""
        return {
            "late_after_min": self.late_after_min,
            "present_min_share": self.present_min_share,
            "partial_min_share": self.partial_min_share,
        }


def classify(present_s: float, share: float, late_s: float, thresholds: Thresholds) -> Status:
    """The status of one person in one held lesson.

    - ``present``: share >= present_min_share and lateness <= late_after_min;
    - ``late``: share >= present_min_share but lateness > late_after_min;
    - ``partial``: any presence with share >= partial_min_share that is neither;
    - ``absent``: no presence at all, or share < partial_min_share (a few
      minutes of a lecture is not attending it; set partial_min_share to 0 to
      count any presence as partial).
    """
    if present_s <= 0 or share < thresholds.partial_min_share:
        return Status.ABSENT
    if share >= thresholds.present_min_share:
        return Status.LATE if late_s > thresholds.late_after_min * 60 else Status.PRESENT
    return Status.PARTIAL


@dataclass(frozen=True, slots=True)
class QualitySummary:
    """A person's ``quality.sample``s: loss is the worse direction, a fraction 0 to 1."""

    samples: int = 0
    loss_mean: float | None = None
    loss_worst: float | None = None
    rtt_mean_ms: float | None = None
    rtt_p95_ms: float | None = None

    @classmethod
    def of(cls, losses: Sequence[float], rtts: Sequence[float], samples: int) -> QualitySummary:
        """Means, worst loss and nearest-rank 95th percentile RTT (None without values)."""
        ranked = sorted(rtts)
        return cls(
            samples=samples,
            loss_mean=sum(losses) / len(losses) if losses else None,
            loss_worst=max(losses) if losses else None,
            rtt_mean_ms=sum(ranked) / len(ranked) if ranked else None,
            rtt_p95_ms=ranked[math.ceil(0.95 * len(ranked)) - 1] if ranked else None,
        )


@dataclass(frozen=True, slots=True)
class Attendance:
    """One person in one lesson; intervals are seconds from the lesson's origin."""

    user_id: str
    name: str
    role: str
    in_roster: bool
    status: Status
    present_s: float
    share: float
    late_s: float
    sessions: int
    presence: Spans
    camera: Spans = ()
    microphone: Spans = ()
    speaking: Spans = ()
    chat_messages: int = 0
    hands_raised: int = 0
    quality: QualitySummary = QualitySummary()


@dataclass(frozen=True, slots=True)
class LessonAttendance:
    """When a lesson was held, and everyone's attendance of it."""

    lesson: Lesson
    origin: datetime
    segments: Spans
    live: bool
    people: tuple[Attendance, ...]

    @property
    def held(self) -> bool:
        """Whether the lesson ever started."""
        return bool(self.segments)

    @property
    def duration_s(self) -> float:
        """Seconds the lesson was held (gaps between segments excluded)."""
        return total(self.segments)

    def moment(self, seconds: float) -> datetime:
        """The absolute time of ``seconds`` from the origin."""
        # timedelta, not timestamp() arithmetic: a float epoch loses the microseconds.
        return self.origin + timedelta(seconds=seconds)


@dataclass(slots=True)
class _Person:
    """What is collected of one person while reading the events."""

    name: str = ""
    role: str = "student"
    in_roster: bool = False
    sessions: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    media: dict[tuple[str, str], list[tuple[float, bool]]] = field(default_factory=dict)
    media_state: dict[tuple[str, str], tuple[bool, bool]] = field(default_factory=dict)
    speaking: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    chat: int = 0
    hands: int = 0
    samples: int = 0
    losses: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _read(person: _Person, kind: str, data: Mapping[str, Any], t: float) -> None:
    """Applies one detail event (not a join or leave) to ``person``."""
    session = str(data.get("session", ""))
    if kind in _MEDIA:
        source = data.get("source")
        if source not in _SOURCES:
            return
        key = (session, str(source))
        published, muted = person.media_state.get(key, (False, False))
        change, muted = _MEDIA[kind]
        published = published if change is None else change
        person.media_state[key] = (published, muted)
        person.media.setdefault(key, []).append((t, published and not muted))
    elif kind in ("speaking.started", "speaking.stopped"):
        person.speaking.setdefault(session, []).append((t, kind == "speaking.started"))
    elif kind == "chat.sent":
        person.chat += 1
    elif kind == "hand.raised":
        person.hands += 1
    elif kind == "quality.sample":
        person.samples += 1
        losses = [
            x for x in map(_number, (data.get("loss_up"), data.get("loss_down"))) if x is not None
        ]
        if losses:
            person.losses.append(max(losses))
        rtt = _number(data.get("rtt_ms"))
        if rtt is not None:
            person.rtts.append(rtt)


def _union(toggles: Iterable[list[tuple[float, bool]]], end: float) -> list[tuple[float, float]]:
    return merge(span for each in toggles for span in pair_toggles(each, end))


def _media_while(
    person: _Person, source: str, end: float, presence: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """When ``source`` was on (published, not muted) in any session, while present."""
    toggles = (each for (_, of), each in person.media.items() if of == source)
    return intersect(_union(toggles, end), presence)


def attend(
    lesson: Lesson,
    events: Iterable[EventLike],
    roster: Sequence[RosterEntry],
    thresholds: Thresholds,
    now: datetime,
    *,
    detail: bool = True,
    only: str | None = None,
) -> LessonAttendance:
    """Everyone's attendance of ``lesson`` from its events (others' events are skipped).

    People are the roster's students, in roster order (absentees included), then
    everyone else who joined, by first join. ``detail=False`` reads presence only
    (the course report's need); ``only`` limits the people to one user id.
    """
    wanted = DETAIL_TYPES if detail else PRESENCE_TYPES
    mine = sorted(
        (e for e in events if e.lesson == lesson.id and e.type in wanted),
        key=lambda e: (e.at, e.seq),
    )
    held_toggles = [
        (e.at, e.type == "lesson.started") for e in mine if e.type.startswith("lesson.")
    ]
    origin = next((at for at, on in held_toggles if on), lesson.scheduled_start)
    # Live: the classroom says so and the last segment is still open.
    live = lesson.status is LessonStatus.LIVE and bool(held_toggles) and held_toggles[-1][1]
    open_until = now if live else (mine[-1].at if mine else origin)
    segments = merge(
        ((s - origin).total_seconds(), (e - origin).total_seconds())
        for s, e in pair_toggles(held_toggles, open_until)
    )
    # An open session lasts until the lesson's end; intersecting with segments clips it.
    end = segments[-1][1] if segments else 0.0
    people: dict[str, _Person] = {}
    for entry in roster:
        if only is None or entry.user_id == only:
            people[entry.user_id] = _Person(name=entry.name, in_roster=True)
    for event in mine:
        if not event.actor or (only is not None and event.actor != only):
            continue
        t = (event.at - origin).total_seconds()
        kind, data = event.type, event.data
        if kind == "participant.joined":
            person = people.setdefault(event.actor, _Person())
            person.role = str(data.get("role", person.role))
            if not person.in_roster:
                person.name = str(data.get("name", "")) or event.actor
            person.sessions.setdefault(str(data.get("session", "")), []).append((t, True))
            continue
        person_or_none = people.get(event.actor)
        if person_or_none is None:
            continue  # not joined (yet): a leave or sample without a join has no stay to change
        if kind == "participant.left":
            person_or_none.sessions.setdefault(str(data.get("session", "")), []).append((t, False))
        elif detail and not kind.startswith("lesson."):
            _read(person_or_none, kind, data, t)
    duration = total(segments)
    reference = max(0.0, (lesson.scheduled_start - origin).total_seconds())
    result = []
    for user_id, person in people.items():
        presence = intersect(_union(person.sessions.values(), end), segments)
        present_s = total(presence)
        share = present_s / duration if duration > 0 else 0.0
        late_s = max(0.0, presence[0][0] - reference) if presence else 0.0
        camera = _media_while(person, "camera", end, presence)
        microphone = _media_while(person, "microphone", end, presence)
        result.append(
            Attendance(
                user_id=user_id,
                name=person.name or user_id,
                role=person.role,
                in_roster=person.in_roster,
                status=classify(present_s, share, late_s, thresholds),
                present_s=present_s,
                share=share,
                late_s=late_s,
                sessions=sum(1 for toggles in person.sessions.values() for _, on in toggles if on),
                presence=tuple(presence),
                camera=tuple(camera),
                microphone=tuple(microphone),
                speaking=tuple(intersect(_union(person.speaking.values(), end), presence)),
                chat_messages=person.chat,
                hands_raised=person.hands,
                quality=QualitySummary.of(person.losses, person.rtts, person.samples),
            )
        )
    return LessonAttendance(lesson, origin, tuple(segments), live, tuple(result))
