"""A ring of recent packets of one track, indexed by RTP sequence number.

Subscribers' NACKs are answered from here. 1024 slots hold about 1 s of 8 Mbps
video in 1 KB packets, or several seconds of a 1 Mbps camera: enough for any
retransmission that can still arrive in time to be played.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["PacketCache"]

T = TypeVar("T")


class PacketCache(Generic[T]):
    """Fixed-size store of (sequence number -> packet) for the newest packets."""

    __slots__ = ("_mask", "_packets", "_seqs")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._packets: list[T | None] = [None] * size

    def store(self, seq: int, packet: T) -> None:
        """Keep `packet`, overwriting whatever was 1 cache-size ago."""
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._packets[slot] = packet

    def get(self, seq: int) -> T | None:
        """The packet with this sequence number, if it is still cached."""
        slot = seq & self._mask
        if self._seqs[slot] != seq:
            return None
        return self._packets[slot]

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self._seqs[seq & self._mask] == seq

    def clear(self) -> None:
        """Forget every packet (after the publisher restarts its stream)."""
        size = self._mask + 1
        self._seqs = [-1] * size
        self._packets = [None] * size
