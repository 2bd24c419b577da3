"""A per-provider circuit breaker.

Closed: calls go through. After `failures` consecutive failures it opens: calls
are refused at once (the fallback chain moves on) for a cool-down. Then it is
half-open: one trial call goes through; success closes it, failure opens it
again with the cool-down doubled, up to `cooldown_max`. So a dead local server
costs one fast refusal per call instead of a stalled agent.

Every admitted call holds a `Permit` and must end it, whatever happens: with a
verdict (`success`, `failure`) or without one (`release`, for a call that was
cancelled: an interrupted session says nothing about the provider). A trial
that ended without a verdict frees the half-open slot for the next call; were
it kept, the breaker would stay half-open with its one trial taken, and the
provider would never be asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit:
    """One admitted call. `trial`: it is the half-open trial."""

    __slots__ = ("ended", "trial")

    def __init__(self, trial: bool) -> None:
        self.trial = trial
        self.ended = False


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown: float,
        cooldown_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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

    @property
    def trial_running(self) -> bool:
        return self._trial

    def admit(self) -> Permit | None:
        """A permit for one call now, or None. In half-open, one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(trial=False)
        if state is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return Permit(trial=True)
        return None

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, float(self.opened_at + self.cooldown - self._clock()))

    def success(self, permit: Permit) -> None:
        if permit.ended:
            return
        permit.ended = True
        self.consecutive = 0
        self.opened_at = None
        self.cooldown = self.base
        self._trial = False

    def failure(self, permit: Permit, error: str = "") -> None:
        if permit.ended:
            return
        permit.ended = True
        self.last_error = error
        self.consecutive += 1
        if permit.trial:
            self._trial = False
            if self.opened_at is not None:
                # The half-open trial failed: open again, for longer.
                self.cooldown = min(self.cooldown * 2, self.cap)
                self.opened_at = self._clock()
                return
        # A call admitted before the circuit opened (or a trial overtaken by
        # another call's success) counts as an ordinary failure.
        if self.opened_at is None and self.consecutive >= self.threshold:
            self.opened_at = self._clock()

    def release(self, permit: Permit) -> None:
        """End a call without a verdict (cancelled). A no-op after `success`/`failure`."""
        if permit.ended:
            return
        permit.ended = True
        if permit.trial:
            # Still half-open (its cool-down is over): the next call is the trial.
            self._trial = False

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive,
            "retry_in_s": round(self.retry_in(), 3),
            "last_error": self.last_error,
            "trial_running": self._trial,
        }
