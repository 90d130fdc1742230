"""Interval arithmetic for attendance: half-open ``(start, end)`` pairs of seconds or datetimes.

Every function is pure and works on either ``float`` seconds or timezone-aware
``datetime`` pairs (never a mix). An interval with ``end <= start`` is empty and
dropped. Functions that return intervals return them *canonical*: sorted,
non-empty, and with no two overlapping or touching, so ``merge`` is idempotent
and the total length of a canonical list is the measure of its union.

Intervals are half-open, ``[start, end)``: a leave at 10:00 and a join at 10:00
touch and merge into one stay (a reconnect loses no time and adds none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

__all__ = [
    "Span",
    "clip",
    "intersect",
    "merge",
    "normalise",
    "pair_toggles",
    "subtract",
    "total",
]

T = TypeVar("T", float, datetime)

Span = tuple[T, T]
"""One interval, ``(start, end)``; generic in the time type (float or datetime)."""


def normalise(intervals: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """The non-empty intervals, sorted by start then end (overlaps are kept)."""
    return sorted((start, end) for start, end in intervals if end > start)


def merge(intervals: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """The canonical form: overlapping or touching intervals joined into one."""
    merged: list[tuple[T, T]] = []
    for start, end in normalise(intervals):
        if merged and start <= merged[-1][1]:
            # Sorted by start, so only the last merged interval can reach this one.
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def clip(intervals: Iterable[tuple[T, T]], start: T, end: T) -> list[tuple[T, T]]:
    """The canonical parts of ``intervals`` inside the window ``[start, end)``."""
    return merge((max(s, start), min(e, end)) for s, e in intervals)


def total(intervals: Iterable[tuple[T, T]]) -> float:
    """The summed length of the non-empty intervals, in seconds.

    Overlaps count twice; ``total(merge(x))`` is the measure of the union.
    """
    seconds = 0.0
    for start, end in intervals:
        if end > start:
            length = end - start
            # float - float is a float; datetime - datetime is a timedelta.
            seconds += length if isinstance(length, float | int) else length.total_seconds()
    return seconds


def intersect(a: Iterable[tuple[T, T]], b: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """The canonical intersection of two interval lists (linear after the sort)."""
    left, right = merge(a), merge(b)
    out: list[tuple[T, T]] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if end > start:
            out.append((start, end))
        # The one that ends first cannot meet anything further on the other side.
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[tuple[T, T]], b: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """The canonical parts of ``a`` that are not in ``b``."""
    cut = merge(b)
    out: list[tuple[T, T]] = []
    j = 0
    for start, end in merge(a):
        cursor = start
        # Skip the holes that end before this interval begins; they end before every later one.
        while j < len(cut) and cut[j][1] <= cursor:
            j += 1
        k = j
        while k < len(cut) and cut[k][0] < end:
            if cut[k][0] > cursor:
                out.append((cursor, cut[k][0]))
            cursor = max(cursor, cut[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def pair_toggles(
    toggles: Sequence[tuple[T, bool]], end: T, *, start: T | None = None
) -> list[tuple[T, T]]:
    """Intervals from ``(time, on)`` toggles in time order, such as joins and leaves.

    A repeated ``on`` while already on keeps the first (a join seen twice does
    not restart the stay); an ``off`` while off is ignored (nothing to close). An
    interval still open after the last toggle lasts until ``end``. With ``start``
    given, an ``off`` before any ``on`` closes an interval open since ``start``
    (a state that was on when the record began). The result is canonical.
    """
    out: list[tuple[T, T]] = []
    opened: T | None = None
    seen_on = False
    for moment, on in toggles:
        if on:
            if opened is None:
                opened = moment
            seen_on = True
        elif opened is not None:
            out.append((opened, moment))
            opened = None
        elif start is not None and not seen_on:
            out.append((start, moment))
            seen_on = True
    if opened is not None:
        out.append((opened, max(opened, end)))
    return merge(out)
