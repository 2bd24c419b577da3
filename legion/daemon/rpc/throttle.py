"""A bound on how often one kind of log line is written.

A hostile or broken client can make the daemon refuse, shed or time out
connections thousands of times a second; one log line each would let it
fill the journal (and the disk) at will. Each kind of line is written at
most once per interval; the next one says how many were held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        # kind -> (when its last line was written, lines held back since)
        self._kinds: dict[str, tuple[float, int]] = {}

    def allow(self, kind: str) -> int | None:
        """None to hold this line back; else how many were held back before it."""
        now = self.clock()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self.every:
            self._kinds[kind] = (last[0], last[1] + 1)
            return None
        self._kinds[kind] = (now, 0)
        return last[1] if last is not None else 0
