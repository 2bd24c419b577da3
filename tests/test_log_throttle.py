"""One kind of log line at most once per interval, with a count of those held back."""

from __future__ import annotations

from legion.daemon.rpc.throttle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_one_kind_is_one_line_per_interval_with_the_count() -> None:
    clock = Clock()
    throttle = LogThrottle(every=10, clock=clock)
    assert throttle.allow("refused") == 0
    assert [throttle.allow("refused") for _ in range(500)] == [None] * 500
    # Another kind is not held back by the first.
    assert throttle.allow("shed") == 0
    clock.now = 9.99
    assert throttle.allow("refused") is None
    clock.now = 10.0
    assert throttle.allow("refused") == 501
    assert throttle.allow("refused") is None
    clock.now = 30.0
    assert throttle.allow("refused") == 1
