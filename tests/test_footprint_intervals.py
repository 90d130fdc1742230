"""Interval arithmetic of attendance: tables of known cases and Hypothesis properties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.footprint.intervals import (
    clip,
    intersect,
    merge,
    normalise,
    pair_toggles,
    subtract,
    total,
)

Spans = list[tuple[float, float]]

# --- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ([], []),
        ([(5, 5), (7, 3)], []),  # empty and reversed intervals are dropped
        ([(3, 4), (1, 2)], [(1, 2), (3, 4)]),
        ([(1, 5), (1, 3)], [(1, 3), (1, 5)]),  # overlaps are kept, sorted by start then end
    ],
)
def test_normalise(given_: Spans, expected: Spans) -> None:
    assert normalise(given_) == expected


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ([], []),
        ([(0, 10), (5, 15)], [(0, 15)]),  # overlapping
        ([(0, 10), (10, 20)], [(0, 20)]),  # touching: a leave and a join at the same second
        ([(0, 10), (10.001, 20)], [(0, 10), (10.001, 20)]),  # a millisecond apart stays apart
        ([(0, 30), (5, 10), (12, 14)], [(0, 30)]),  # contained
        ([(20, 30), (0, 5), (4, 8)], [(0, 8), (20, 30)]),  # unsorted
        ([(1, 1), (2, 3)], [(2, 3)]),
    ],
)
def test_merge(given_: Spans, expected: Spans) -> None:
    assert merge(given_) == expected


@pytest.mark.parametrize(
    ("given_", "window", "expected"),
    [
        ([(0, 100)], (10, 20), [(10, 20)]),
        ([(0, 10)], (10, 20), []),  # ends exactly at the window's start: nothing inside
        ([(20, 30)], (10, 20), []),  # starts exactly at the window's end
        ([(5, 15), (18, 40)], (10, 20), [(10, 15), (18, 20)]),
        ([(12, 14)], (10, 20), [(12, 14)]),
    ],
)
def test_clip(given_: Spans, window: tuple[float, float], expected: Spans) -> None:
    assert clip(given_, *window) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([(0, 10)], [(5, 20)], [(5, 10)]),
        ([(0, 10)], [(10, 20)], []),  # touching is not overlapping
        ([(0, 10), (20, 30)], [(5, 25)], [(5, 10), (20, 25)]),
        ([(0, 100)], [(10, 20), (30, 40)], [(10, 20), (30, 40)]),
        ([], [(0, 1)], []),
    ],
)
def test_intersect(a: Spans, b: Spans, expected: Spans) -> None:
    assert intersect(a, b) == expected
    assert intersect(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([(0, 10)], [(3, 5)], [(0, 3), (5, 10)]),
        ([(0, 10)], [(0, 10)], []),
        ([(0, 10), (20, 30)], [(5, 25)], [(0, 5), (25, 30)]),
        ([(0, 10)], [], [(0, 10)]),
        ([(0, 10)], [(-5, 2), (8, 50)], [(2, 8)]),
    ],
)
def test_subtract(a: Spans, b: Spans, expected: Spans) -> None:
    assert subtract(a, b) == expected


@pytest.mark.parametrize(
    ("toggles", "end", "expected"),
    [
        ([], 100, []),
        ([(10, True), (20, False)], 100, [(10, 20)]),
        ([(10, True)], 100, [(10, 100)]),  # no leave: open until the end
        ([(10, True), (15, True), (20, False)], 100, [(10, 20)]),  # a repeated join keeps the first
        ([(10, False), (20, True), (30, False)], 100, [(20, 30)]),  # a leave with no join
        ([(10, True), (20, False), (20, True), (40, False)], 100, [(10, 40)]),  # reconnect
        (
            [(10, True), (20, False), (25, True), (40, False)],
            100,
            [(10, 20), (25, 40)],
        ),  # join, leave, join, leave: two stays
        ([(120, True)], 100, []),  # opened after the end: never before it started
    ],
)
def test_pair_toggles(toggles: list[tuple[float, bool]], end: float, expected: Spans) -> None:
    assert pair_toggles(toggles, end) == expected


def test_pair_toggles_with_a_start_closes_an_interval_open_before_the_record() -> None:
    assert pair_toggles([(30, False), (40, True)], 100, start=0) == [(0, 30), (40, 100)]
    # Only a first off counts so: after an on, an off while off is ignored as usual.
    assert pair_toggles([(10, True), (20, False), (30, False)], 100, start=0) == [(10, 20)]


def test_total_counts_overlaps_twice_until_merged() -> None:
    assert total([(0, 10), (5, 15)]) == 20
    assert total(merge([(0, 10), (5, 15)])) == 15
    assert total([(5, 1)]) == 0


def test_datetimes_work_like_seconds() -> None:
    t0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    stays = pair_toggles([(at(0), True), (at(30), False), (at(30), True)], at(95))
    assert stays == [(at(0), at(95))]
    lesson = clip(stays, at(5), at(90))  # a lesson that ran 5 minutes late, 85 minutes long
    assert lesson == [(at(5), at(90))] and total(lesson) == 85 * 60
    assert intersect(lesson, [(at(80), at(100))]) == [(at(80), at(90))]
    assert subtract(lesson, [(at(10), at(20))]) == [(at(5), at(10)), (at(20), at(90))]


# --- properties --------------------------------------------------------------------------------

_small = st.integers(min_value=0, max_value=40)
_spans = st.lists(st.tuples(_small, _small), max_size=12)


def _millis(spans: Spans) -> set[int]:
    """The milliseconds covered (brute force: half-open [start, end))."""
    return {ms for start, end in spans for ms in range(int(start * 1000), int(end * 1000))}


@given(_spans)
def test_merge_is_idempotent_and_canonical(spans: Spans) -> None:
    merged = merge(spans)
    assert merge(merged) == merged
    assert all(start < end for start, end in merged)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))  # apart, not touching


@given(_spans)
def test_total_of_the_merge_is_the_measure_of_the_union(spans: Spans) -> None:
    assert total(merge(spans)) * 1000 == len(_millis(spans))
    assert total(merge(spans)) <= total(spans)


@given(_spans, _small, _small)
def test_clip_stays_in_the_window(spans: Spans, a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    clipped = clip(spans, start, end)
    assert total(clipped) <= end - start
    assert all(start <= s < e <= end for s, e in clipped)
    assert _millis(clipped) == _millis(spans) & set(range(start * 1000, end * 1000))


@given(_spans, _spans)
def test_intersect_and_subtract_match_sets(a: Spans, b: Spans) -> None:
    assert _millis(intersect(a, b)) == _millis(a) & _millis(b)
    assert _millis(subtract(a, b)) == _millis(a) - _millis(b)
    assert total(intersect(a, b)) + total(subtract(a, b)) == total(merge(a))


@given(st.lists(st.tuples(_small, st.booleans()), max_size=12), _small)
def test_pair_toggles_is_within_the_first_on_and_the_end(
    raw: list[tuple[int, bool]], end: int
) -> None:
    toggles = sorted(raw, key=lambda toggle: toggle[0])
    spans = pair_toggles(toggles, end)
    assert merge(spans) == spans
    ons = [t for t, on in toggles if on]
    if not ons:
        assert spans == []
    else:
        last = max(end, *(t for t, _ in toggles))
        assert all(min(ons) <= s and e <= last for s, e in spans)
