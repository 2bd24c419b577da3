"""A per-provider circuit breaker.

Closed: calls go through. After `failures` consecutive failures it opens: calls
are refused at once (the fallback chain moves on) for a cool-down. Then it is
half-open: one trial call goes through; success closes it, failure opens it
again with the cool-down doubled, up to `cooldown_max`. So a dead local server
costs one fast refusal per call instead of a stalled agent.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(self, name: str, *, failures: int, cooldown: float, cooldown_max: float,
                 clock: Any = time.monotonic) -> None:
        self.name = name
        self.threshold = failures
        self.base = cooldown
        self.cap = cooldown_max
        self._clock = clock
        self.consecutive = 0
        self.cooldown = cooldown
        self.opened_at: float | None = None
        self._trial = False
        self.last_error = ""

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, float(self.opened_at + self.cooldown - self._clock()))

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.cooldown = self.base
        self._trial = False

    def failure(self, error: str = "") -> None:
        self.last_error = error
        self.consecutive += 1
        if self._trial:
            # The half-open trial failed: open again, for longer.
            self._trial = False
            self.cooldown = min(self.cooldown * 2, self.cap)
            self.opened_at = self._clock()
        elif self.opened_at is None and self.consecutive >= self.threshold:
            self.opened_at = self._clock()

    def describe(self) -> dict[str, Any]:
        return {"state": self.state.value, "consecutive_failures": self.consecutive,
                "retry_in_s": round(self.retry_in(), 3), "last_error": self.last_error}
