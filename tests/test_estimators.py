"""Table-driven tests of the SFU's small estimators."""

from __future__ import annotations

import pytest

from sfu.bwe import LossBasedEstimator
from sfu.nack import MAX_GAP, MAX_TRIES, NackTracker
from sfu.packet_cache import PacketCache
from sfu.speaking import SpeakingDetector
from sfu.stats import ReceiveStats


@pytest.mark.parametrize(
    ("seqs", "expected_lost", "highest"),
    [
        ([1, 2, 3, 4], 0, 4),
        ([1, 2, 4, 5], 1, 5),
        ([65534, 65535, 0, 1], 0, 65536 + 1),
        ([65534, 0, 1], 1, 65536 + 1),
        ([10, 12, 11, 13], 0, 13),  # reordered: late packet fills the gap
        ([10, 11, 11, 12], -1, 12),  # duplicate counts as received (RFC 3550)
    ],
)
def test_receive_stats_loss_and_extended_sequence(
    seqs: list[int], expected_lost: int, highest: int
) -> None:
    stats = ReceiveStats(90000)
    for i, seq in enumerate(seqs):
        stats.update(seq, i * 3000, i / 30, 100)
    assert stats.lost == expected_lost
    assert stats.highest_extended == highest


def test_receive_stats_fraction_lost_is_per_interval_and_restart_resets() -> None:
    stats = ReceiveStats(48000)
    for seq in (1, 2, 4, 5):
        stats.update(seq, seq * 960, seq * 0.02, 80)
    assert stats.take_fraction_lost() == pytest.approx(1 / 5)
    for seq in (6, 7):
        stats.update(seq, seq * 960, seq * 0.02, 80)
    assert stats.take_fraction_lost() == 0.0
    stats.update(30000, 0, 1.0, 80)  # a jump: the sender restarted
    assert stats.lost == 0 and stats.highest_extended == 30000


def test_jitter_grows_with_irregular_arrival() -> None:
    steady, jittery = ReceiveStats(90000), ReceiveStats(90000)
    for i in range(100):
        steady.update(i, i * 3000, i / 30, 100)
        jittery.update(i, i * 3000, i / 30 + (0.02 if i % 2 else 0.0), 100)
    assert steady.jitter == 0
    assert jittery.jitter_ms > 5


def test_nack_tracker_asks_retries_and_gives_up() -> None:
    nack = NackTracker(retry_interval=0.05)
    nack.on_packet(100, 0.0)
    nack.on_packet(104, 0.0)
    assert nack.due(0.0) == [101, 102, 103]
    assert nack.due(0.01) == []  # not again before the retry interval
    nack.on_packet(102, 0.02)  # arrived late
    assert nack.due(0.06) == [101, 103]
    for t in range(2, MAX_TRIES + 2):
        nack.due(0.06 * t)
    assert len(nack) == 0


def test_nack_tracker_forgets_old_losses_and_reports_huge_gaps() -> None:
    nack = NackTracker()
    nack.on_packet(0, 0.0)
    nack.on_packet(2, 0.0)
    assert nack.due(2.0) == []  # older than a second: too late to be played
    assert nack.on_packet(2 + MAX_GAP + 2, 2.0) is True
    assert len(nack) == 0


@pytest.mark.parametrize(
    ("levels", "edges"),
    [
        ([20] * 10, [True]),  # loud speech
        ([20] * 4, []),  # a click: shorter than the attack
        ([90] * 10, []),  # quiet room
        ([20] * 10 + [90] * 40, [True, False]),  # speech then silence past the hangover
        ([20] * 10 + [90] * 20 + [20] * 10, [True]),  # a pause between words
    ],
)
def test_speaking_detector(levels: list[int], edges: list[bool]) -> None:
    detector = SpeakingDetector()
    seen = []
    for i, level in enumerate(levels):
        edge = detector.observe(level, i * 0.02)
        if edge is not None:
            seen.append(edge)
    assert seen == edges


def test_speaking_stops_when_packets_stop() -> None:
    detector = SpeakingDetector()
    for i in range(10):
        detector.observe(20, i * 0.02)
    assert detector.tick(0.5) is None
    assert detector.tick(1.0) is False


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([0.0] * 5, 1_000_000),  # capped at the maximum
        ([0.5], 750_000),
        ([0.5, 0.5, 0.5], 421_875),
        ([0.5, 0.05], 750_000),  # between 2% and 10%: hold
        ([0.5, 0.0], 810_000),
        ([1.0] * 20, 150_000),  # never below the floor
    ],
)
def test_loss_based_estimator(losses: list[float], expected: int) -> None:
    estimator = LossBasedEstimator(1_000_000)
    for loss in losses:
        estimator.update(loss)
    assert estimator.bitrate == expected


def test_packet_cache_keeps_the_newest_and_rejects_bad_sizes() -> None:
    cache: PacketCache[str] = PacketCache(4)
    for seq in range(10):
        cache.store(seq, f"p{seq}")
    assert cache.get(9) == "p9" and 6 in cache
    assert cache.get(5) is None and 5 not in cache
    cache.clear()
    assert cache.get(9) is None
    with pytest.raises(ValueError, match="power of two"):
        PacketCache(1000)
