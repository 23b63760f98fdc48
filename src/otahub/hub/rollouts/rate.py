"""The start rate: a token bucket holding at most one second's worth of starts.

``--rate 1000/min`` refills 16.7 tokens a second and holds at most that many
(at least one, so that slow rates still start someone), so no more than a
second's worth of devices ever start at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, per_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.per_s = per_s
        self._tokens = self.capacity
        self._at = clock()

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_s)

    def set_rate(self, per_s: float) -> None:
        """A new rate (the ramp); tokens already earned stay, up to the new capacity."""
        self._refill()
        self.per_s = per_s
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now

    def available(self) -> int:
        """Whole starts allowed now."""
        self._refill()
        return int(self._tokens)

    def take(self, n: int) -> None:
        self._refill()
        self._tokens -= n

    def wait_s(self) -> float:
        """Seconds until the next whole token."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.per_s)
