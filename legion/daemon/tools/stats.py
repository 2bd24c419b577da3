"""Tool statistics: calls, failures, rolling latency percentiles and a verdict.

Kept in memory (every tool call records here) and flushed to `tool_stats`
every few seconds and at shutdown: a kill -9 loses at most that much, and no
tool call waits on a write. A call with bad arguments is the caller's
mistake, not the tool's: it counts as a misuse, not a failure.

Verdict, over the recent window (`tools.stats_window` calls):
- `degraded`: at least 3 calls and half or more failed;
- `watch`: at least 3 calls and a fifth or more failed, or p95 latency above
  80% of the tool's timeout (it is close to being cut off);
- `healthy`: otherwise.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.daemon.events import now_iso
from legion.daemon.store.database import Store
from legion.errors import LegionError

log = structlog.get_logger("legion.tools")
FLUSH_INTERVAL = 5.0
MIN_CALLS = 3


@dataclass
class ToolStat:
    name: str
    window: int
    calls: int = 0
    failures: int = 0
    misuses: int = 0
    recent: deque[tuple[float, bool]] = field(default_factory=deque)
    last_error: str | None = None
    last_used: str | None = None
    note: str | None = None

    def record(self, ms: float, ok: bool, misuse: bool, error: str | None) -> None:
        self.calls += 1
        self.last_used = now_iso()
        if misuse:
            self.misuses += 1
            return
        if not ok:
            self.failures += 1
            self.last_error = (error or "")[:300]
        self.recent.append((ms, ok))
        while len(self.recent) > self.window:
            self.recent.popleft()

    def summary(self, timeout: float | None = None) -> dict[str, Any]:
        lat = sorted(ms for ms, _ in self.recent)
        failed = sum(1 for _, ok in self.recent if not ok)
        n = len(self.recent)
        rate = failed / n if n else 0.0
        p95 = _pct(lat, 95)
        verdict, why = "healthy", ""
        if n >= MIN_CALLS and rate >= 0.5:
            verdict, why = "degraded", f"{failed} of the last {n} calls failed"
        elif n >= MIN_CALLS and rate >= 0.2:
            verdict, why = "watch", f"{failed} of the last {n} calls failed"
        elif timeout and p95 is not None and n >= MIN_CALLS and p95 > 0.8 * timeout * 1000:
            verdict, why = "watch", f"p95 latency {p95:.0f} ms is close to the {timeout:g}s timeout"
        return {
            "name": self.name,
            "calls": self.calls,
            "failures": self.failures,
            "misuses": self.misuses,
            "window": n,
            "failure_rate": round(rate, 3),
            "p50_ms": _pct(lat, 50),
            "p95_ms": p95,
            "p99_ms": _pct(lat, 99),
            "max_ms": round(lat[-1], 2) if lat else None,
            "verdict": verdict,
            "why": why,
            "last_error": self.last_error,
            "last_used": self.last_used,
            "note": self.note,
        }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return round(values[k], 2)


class Stats:
    def __init__(self, store: Store, window: int) -> None:
        self.store = store
        self.window = window
        self.tools: dict[str, ToolStat] = {}
        self._dirty: set[str] = set()

    async def load(self) -> None:
        for r in await self.store.fetchall("SELECT * FROM tool_stats"):
            s = self.get(r["name"])
            s.calls, s.failures, s.misuses = r["calls"], r["failures"], r["misuses"]
            s.recent.extend((float(ms), bool(ok)) for ms, ok in json.loads(r["recent"]))
            s.last_error, s.last_used, s.note = r["last_error"], r["last_used"], r["verdict_note"]

    def get(self, name: str) -> ToolStat:
        s = self.tools.get(name)
        if s is None:
            s = self.tools[name] = ToolStat(name, self.window)
        return s

    def record(
        self, name: str, ms: float, ok: bool, misuse: bool = False, error: str | None = None
    ) -> None:
        self.get(name).record(ms, ok, misuse, error)
        self._dirty.add(name)

    def summary(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """A tool's figures; a tool never called gets zeros (and is not stored)."""
        s = self.tools.get(name) or ToolStat(name, self.window)
        return s.summary(timeout)

    def annotate(self, name: str, note: str) -> None:
        """A person's or a reflection's note on a tool, shown with its verdict."""
        self.get(name).note = note[:500]
        self._dirty.add(name)

    def forget(self, name: str) -> None:
        self.tools.pop(name, None)
        self._dirty.add(name)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.load()
        task_status.started()
        try:
            while True:
                await anyio.sleep(FLUSH_INTERVAL)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self.flush()

    async def flush(self) -> None:
        if not self._dirty:
            return
        names, self._dirty = self._dirty, set()
        rows = []
        gone = []
        for n in names:
            s = self.tools.get(n)
            if s is None:
                gone.append(n)
                continue
            rows.append(
                (
                    n,
                    s.calls,
                    s.failures,
                    s.misuses,
                    json.dumps([[round(ms, 2), int(ok)] for ms, ok in s.recent]),
                    s.last_error,
                    s.last_used,
                    s.note,
                )
            )

        def job(db: Any) -> None:
            db.executemany("DELETE FROM tool_stats WHERE name = ?", [(n,) for n in gone])
            db.executemany(
                "INSERT INTO tool_stats (name, calls, failures, misuses, recent, last_error,"
                " last_used, verdict_note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET calls = excluded.calls,"
                " failures = excluded.failures, misuses = excluded.misuses,"
                " recent = excluded.recent, last_error = excluded.last_error,"
                " last_used = excluded.last_used, verdict_note = excluded.verdict_note",
                rows,
            )

        try:
            await self.store.writer.run(job)
        except LegionError as exc:
            self._dirty |= names
            log.warning("tool statistics not saved; will retry", error=exc.message)
