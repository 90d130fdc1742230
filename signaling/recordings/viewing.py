"""What a viewer watched: the body of ``POST /api/recordings/{id}/viewed``, parsed and merged.

The page reports the stretches of the recording's timeline it played
(``{"intervals": [[from_s, to_s], ...]}``), seeks excluded. They become one
footprint event ``recording.viewed`` (docs/footprint.md), so the intervals are
checked strictly (:func:`parse_intervals` raises :class:`InvalidViewing`
naming the item) and then merged and rounded (:func:`merge_intervals`) so the
event is small and canonical: sorted, disjoint, 3 decimals.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "MAX_INTERVALS",
    "SLACK_S",
    "InvalidViewing",
    "ReportLimiter",
    "merge_intervals",
    "parse_intervals",
    "parse_viewed",
]

MAX_INTERVALS: Final = 500
"""Most intervals in one report; a page reports every 30 s, so a few are usual."""

SLACK_S: Final = 5.0
"""How far past the recording's duration an interval may end (players overshoot a little)."""

_DECIMALS: Final = 3

Interval = tuple[float, float]


class InvalidViewing(ValueError):
    """The report is refused; the message names the item, ``field`` the field, to blame."""

    def __init__(self, message: str, field: str = "intervals") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _number(value: object, where: str) -> float:
    # bool is an int to Python, never a time to us.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidViewing(f"{where} must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidViewing(f"{where} must be a finite number")
    return number


def parse_intervals(value: object, limit_s: float) -> list[Interval]:
    """``[[from_s, to_s], ...]`` with 0 ≤ from < to ≤ ``limit_s``, at most MAX_INTERVALS."""
    if not isinstance(value, list):
        raise InvalidViewing("intervals must be a list of [from_s, to_s] pairs")
    if len(value) > MAX_INTERVALS:
        raise InvalidViewing(f"intervals has {len(value)} items; at most {MAX_INTERVALS}")
    intervals: list[Interval] = []
    for index, item in enumerate(value):
        where = f"intervals[{index}]"
        if not isinstance(item, list) or len(item) != 2:
            raise InvalidViewing(f"{where} must be a pair [from_s, to_s]")
        start = _number(item[0], f"{where}[0]")
        end = _number(item[1], f"{where}[1]")
        if start < 0:
            raise InvalidViewing(f"{where} starts before the recording")
        if end <= start:
            raise InvalidViewing(f"{where} must end after it starts")
        if end > limit_s:
            raise InvalidViewing(f"{where} ends after the recording ({limit_s:.3f} s)")
        intervals.append((start, end))
    return intervals


def parse_viewed(body: Mapping[str, Any], duration_s: float) -> list[Interval]:
    """The intervals of a ``/viewed`` body, merged; ``duration_s`` is the recording's length."""
    unknown = sorted(str(key)[:64] for key in body if key != "intervals")
    if unknown:
        raise InvalidViewing(f"unknown field {unknown[0]!r}", unknown[0])
    if "intervals" not in body:
        raise InvalidViewing("intervals is required")
    return merge_intervals(parse_intervals(body["intervals"], duration_s + SLACK_S))


def merge_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    """Sorted, overlapping and touching ones joined, rounded to ms; empty ones dropped."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    rounded = [(round(a, _DECIMALS), round(b, _DECIMALS)) for a, b in merged]
    return [(a, b) for a, b in rounded if b > a]


class ReportLimiter:
    """A token bucket per viewer and recording: ``burst`` reports, then one per ``every_s``.

    The page reports every 30 s and when it is hidden or left; the ledger keeps every
    event forever, so a script posting in a loop must not be able to fill it.
    """

    __slots__ = ("_buckets", "_burst", "_clock", "_every_s", "_max_keys")

    def __init__(
        self,
        *,
        burst: int = 10,
        every_s: float = 3.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._every_s = every_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens, when counted); least recently used first, so the oldest go first.
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def allow(self, viewer: str, recording: str) -> bool:
        """Takes a token for this viewer and recording; False when there is none left."""
        now = self._clock()
        key = (viewer, recording)
        tokens, since = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - since) / self._every_s)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > self._max_keys:
            # A forgotten viewer starts again with a full bucket: a bound, not a loophole
            # worth more than `burst` extra reports.
            self._buckets.popitem(last=False)
        return allowed
