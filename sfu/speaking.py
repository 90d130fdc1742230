"""Speaking detection from RFC 6464 audio levels, without decoding audio.

Browsers put the level of every audio packet (0 = 0 dBov, loudest; 127 =
silence) in a header extension. A participant starts "speaking" after a
short run of loud packets and stops after a hangover of quiet, so that the
pauses between words do not make the indicator flicker.
"""

from __future__ import annotations

__all__ = ["SpeakingDetector"]


class SpeakingDetector:
    """Turns a stream of (time, level) observations into speaking on/off edges."""

    __slots__ = ("_last_loud", "_score", "attack", "hangover", "speaking", "threshold")

    def __init__(
        self,
        threshold: int = 50,
        attack: int = 5,
        hangover: float = 0.6,
    ) -> None:
        # -50 dBov: normal speech at a laptop microphone sits around -20 to
        # -40 dBov, a quiet room with a fan around -60 dBov and below.
        self.threshold = threshold
        # 5 loud packets of 20 ms (100 ms) before "speaking": a cough or a
        # click is shorter than that.
        self.attack = attack
        # 600 ms of quiet before "stopped": longer than a pause between words.
        self.hangover = hangover
        self.speaking = False
        self._score = 0
        self._last_loud = 0.0

    def observe(self, level: int, now: float) -> bool | None:
        """Account one packet's level; returns the new state when it changes."""
        if level <= self.threshold:
            self._last_loud = now
            if self._score < self.attack:
                self._score += 1
            if not self.speaking and self._score >= self.attack:
                self.speaking = True
                return True
            return None
        if self._score > 0:
            self._score -= 1
        return self.tick(now)

    def tick(self, now: float) -> bool | None:
        """Check the hangover (also when packets stop, e.g. Opus DTX); returns False on an edge."""
        if self.speaking and now - self._last_loud > self.hangover:
            self.speaking = False
            self._score = 0
            return False
        return None
