"""Which upstream packets to ask the publisher to retransmit (RFC 4585 NACK).

The SFU notices gaps in a publisher's sequence numbers and asks for them
again, so that every student does not send its own NACK for the same loss.
"""

from __future__ import annotations

__all__ = ["NackTracker"]

# A gap larger than this is not loss worth repairing: the stream jumped, or
# so much is lost that a keyframe is the cheaper repair.
MAX_GAP = 256
# Packets older than this cannot arrive in time to be played.
MAX_AGE = 1.0
# Each missing packet is asked for at most this many times.
MAX_TRIES = 3


class NackTracker:
    """Missing extended sequence numbers of one stream, and when to ask for them."""

    __slots__ = ("_highest", "_missing", "retry_interval")

    def __init__(self, retry_interval: float = 0.05) -> None:
        # 50 ms between tries: about one round trip on a national network;
        # asking sooner only duplicates retransmissions already on their way.
        self.retry_interval = retry_interval
        self._highest = -1
        # extended seq -> [first_missed_at, next_ask_at, tries]
        self._missing: dict[int, list[float]] = {}

    def __len__(self) -> int:
        return len(self._missing)

    def on_packet(self, extended_seq: int, now: float) -> bool:
        """Account a received packet; returns True when the gap is too big to repair."""
        if self._highest < 0:
            self._highest = extended_seq
            return False
        if extended_seq <= self._highest:
            self._missing.pop(extended_seq, None)
            return False
        gap = extended_seq - self._highest - 1
        self._highest = extended_seq
        if gap > MAX_GAP:
            self._missing.clear()
            return True
        for seq in range(extended_seq - gap, extended_seq):
            self._missing[seq] = [now, now, 0.0]
        return False

    def due(self, now: float) -> list[int]:
        """Sequence numbers (16-bit) to NACK now; forgets hopeless ones."""
        if not self._missing:
            return []
        result = []
        for seq, entry in list(self._missing.items()):
            first, next_at, tries = entry
            if now - first > MAX_AGE or tries >= MAX_TRIES:
                del self._missing[seq]
            elif next_at <= now:
                entry[1] = now + self.retry_interval
                entry[2] = tries + 1
                result.append(seq & 0xFFFF)
        return result

    def reset(self) -> None:
        """Forget everything (the publisher restarted its stream)."""
        self._highest = -1
        self._missing.clear()
