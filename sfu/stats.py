"""Receive statistics of one RTP stream (RFC 3550 A.1, A.3, A.8).

Feeds the receiver reports the SFU sends its publishers and the quality
samples it gives the control plane. Updated once per incoming packet, so it
does arithmetic only.
"""

from __future__ import annotations

__all__ = ["ReceiveStats"]

_SEQ_MOD = 1 << 16
# RFC 3550 A.1: a jump of more than 3000 sequence numbers is a restart, not loss.
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100


class ReceiveStats:
    """Extended sequence numbers, loss and interarrival jitter of one stream."""

    __slots__ = (
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_last_transit",
        "_max_seq",
        "_received_prior",
        "bytes",
        "clock_rate",
        "received",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._max_seq = -1
        self._base_seq = 0
        self._cycles = 0
        self.received = 0
        self.bytes = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_transit: float | None = None

    def update(self, seq: int, timestamp: int, arrival: float, size: int) -> int:
        """Account one packet; returns its extended sequence number."""
        self.received += 1
        self.bytes += size
        if self._max_seq < 0:
            self._max_seq = seq
            self._base_seq = seq
            extended = seq
        else:
            delta = (seq - self._max_seq) % _SEQ_MOD
            if delta < _MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
                extended = self._cycles + seq
            elif delta > _SEQ_MOD - _MAX_MISORDER:
                # Late or retransmitted packet from just before the maximum.
                extended = self._cycles + seq - (_SEQ_MOD if seq > self._max_seq else 0)
            else:
                # A jump: the sender restarted its sequence. Start over.
                self._max_seq = seq
                self._base_seq = seq
                self._cycles = 0
                self.received = 1
                self._expected_prior = self._received_prior = 0
                extended = seq
        # Interarrival jitter in RTP clock units (RFC 3550 A.8).
        transit = arrival * self.clock_rate - timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < self.clock_rate * 10:  # ignore timestamp jumps of a restarted stream
                self._jitter += (d - self._jitter) / 16.0
        self._last_transit = transit
        return extended

    @property
    def highest_extended(self) -> int:
        """The highest extended sequence number seen (-1 before any packet)."""
        return self._cycles + self._max_seq if self._max_seq >= 0 else -1

    @property
    def expected(self) -> int:
        return self.highest_extended - self._base_seq + 1 if self._max_seq >= 0 else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (may be negative with duplicates, as in RFC 3550)."""
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        """Interarrival jitter in RTP timestamp units."""
        return int(self._jitter)

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    def take_fraction_lost(self) -> float:
        """Loss fraction since the previous call (for one receiver report)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            return 0.0
        return lost_interval / expected_interval
