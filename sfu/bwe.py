"""Upstream bitrate estimate sent to publishers as REMB.

Without transport-wide congestion control (aiortc does not negotiate it), the
SFU estimates from loss, as the loss-based half of Google Congestion Control
does: back off when more than 10% is lost, grow 8% per report while under 2%.
The cap is the operator's per-source bitrate, so one teacher's 4K screen
cannot take a campus uplink.
"""

from __future__ import annotations

__all__ = ["LossBasedEstimator"]


class LossBasedEstimator:
    """REMB value for one published video track."""

    __slots__ = ("bitrate", "maximum", "minimum")

    def __init__(self, maximum: int, minimum: int = 150_000) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.bitrate = maximum

    def update(self, fraction_lost: float) -> int:
        """Account one report interval's loss; returns the new estimate in bit/s."""
        if fraction_lost > 0.10:
            self.bitrate = int(self.bitrate * (1.0 - 0.5 * fraction_lost))
        elif fraction_lost < 0.02:
            self.bitrate = int(self.bitrate * 1.08)
        self.bitrate = max(self.minimum, min(self.maximum, self.bitrate))
        return self.bitrate
