"""The event bus: every action is an event, persisted, then streamed.

An event is written through the store's writer (batched with whatever else is
being written) and fanned out to subscribers only after its commit, in id
order. So a client never sees an event that a crash could take back, and ids
seen live are always ids that `events` can list later.

Subscribers get bounded queues. A subscriber that falls behind is never
waited for: the events it cannot hold are dropped for it alone and replaced by
one `Lagged` marker saying how many it missed, so the daemon cannot be slowed
down by a slow reader.

Event data is always valid JSON, here and only here: a non-finite float
(`inf` from a `Retry-After: Infinity`, a NaN from some division) becomes
`null` before the event is stored or delivered, since `json.dumps` would
write `Infinity`, which no strict JSON reader accepts.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import structlog

from legion.daemon.store.writer import Writer
from legion.redact import active as active_redactor

log = structlog.get_logger("legion.events")


class Event(msgspec.Struct, frozen=True):
    id: int
    ts: str
    agent: str | None
    kind: str
    data: dict[str, Any]
    caused_by: int | None = None
    source: str = ""


class Lagged(msgspec.Struct):
    missed: int
    # The id of the last event this subscriber received before the gap.
    after_id: int


def now_iso() -> str:
    """UTC timestamps as sortable text, millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (deep in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def encode(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Event data as strict JSON text, and the data that text stands for."""
    try:
        # The common case costs one dumps: only a payload that has Infinity/NaN is walked.
        return json.dumps(data, separators=(",", ":"), allow_nan=False), data
    except ValueError:
        clean: dict[str, Any] = _finite(data)
        return json.dumps(clean, separators=(",", ":"), allow_nan=False), clean


def _no_constant(name: str) -> None:
    # Rows written before events were kept strict may hold Infinity/NaN.
    return None


def insert(
    db: Any,
    agent: str | None,
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    caused_by: int | None = None,
    source: str = "",
) -> Event:
    """Write one event inside the caller's write job and return it with its id."""
    ts = now_iso()
    # Secrets never reach the log or a subscriber, whatever put them in the payload.
    text, payload = encode(active_redactor().value(data or {}))
    cur = db.execute(
        "INSERT INTO events (ts, agent_id, kind, data, caused_by, source) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (ts, agent, kind, text, caused_by, source),
    )
    return Event(cur.lastrowid, ts, agent, kind, payload, caused_by, source)


def from_row(row: Any) -> Event:
    return Event(
        row["id"],
        row["ts"],
        row["agent_id"],
        row["kind"],
        json.loads(row["data"], parse_constant=_no_constant),
        row["caused_by"],
        row["source"],
    )


def kind_matches(kind: str, patterns: Iterable[str] | None) -> bool:
    """Kinds filter by exact name or glob (`agent.*`), the same rule SQL's GLOB applies."""
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(kind, p) for p in patterns)


class Subscription:
    _ids = itertools.count(1)

    def __init__(self, agent: str | None, kinds: list[str] | None, maxsize: int) -> None:
        self.id = next(self._ids)
        self.agent = agent
        self.kinds = kinds
        self.maxsize = maxsize
        self.delivered_total = 0
        self.missed_total = 0
        self._items: deque[Event | Lagged] = deque()
        self._wake = anyio.Event()
        self._closed = False
        # Id of the newest event queued: where a gap would begin.
        self._tail_id = 0

    def wants(self, ev: Event) -> bool:
        return (self.agent is None or ev.agent == self.agent) and kind_matches(ev.kind, self.kinds)

    def put(self, ev: Event) -> None:
        if self._closed:
            return
        if len(self._items) >= self.maxsize:
            self.missed_total += 1
            tail = self._items[-1] if self._items else None
            if isinstance(tail, Lagged):
                tail.missed += 1
            else:
                # The marker may take the queue one past maxsize; it stays bounded.
                self._items.append(Lagged(1, self._tail_id))
        else:
            self._items.append(ev)
            self._tail_id = ev.id
        self._wake.set()

    async def get(self) -> Event | Lagged | None:
        """The next item, or None once the subscription is closed."""
        while not self._items:
            if self._closed:
                return None
            # A fresh event per wait: nothing can be put between the look and this
            # line (no await), and `put` sets whichever event is current.
            self._wake = anyio.Event()
            await self._wake.wait()
        item = self._items.popleft()
        if isinstance(item, Event):
            self.delivered_total += 1
        return item

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._items)


Listener = Callable[[Event], None]


class EventBus:
    """Committed events, fanned out two ways.

    Subscriptions are queues for readers that may fall behind (RPC streams,
    the lifecycle loop): a full queue drops its oldest and says so (Lagged).
    Listeners are synchronous callbacks by kind for in-process reactions that
    must never be lost, such as waking an agent when a message was stored:
    every committed event goes through `deliver`, so no writer can forget to
    notify, and a listener costs no task. A listener must be quick and must
    not await; one that raises is logged and the others still run."""

    def __init__(self, writer: Writer, *, queue_size: int = 1000) -> None:
        self._writer = writer
        self._queue_size = queue_size
        self._subs: dict[int, Subscription] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self.published = 0
        self.last_id = 0

    async def emit(
        self,
        agent: str | None,
        kind: str,
        data: dict[str, Any] | None = None,
        *,
        caused_by: int | None = None,
        source: str = "daemon",
    ) -> Event:
        """Persist one event and fan it out once committed."""

        def job(db: Any) -> Event:
            return insert(db, agent, kind, data, caused_by=caused_by, source=source)

        return await self._writer.run(job, on_commit=self.deliver)

    def deliver(self, events: Event | list[Event] | tuple[Any, ...] | None) -> None:
        """Fan committed events out (used as a writer `on_commit` callback).

        Accepts an event, a list of events, or a tuple whose events are taken
        (write jobs often return `(result, event)`).
        """
        if events is None:
            return
        items: Iterable[Any] = events if isinstance(events, list | tuple) else [events]
        for ev in items:
            if not isinstance(ev, Event):
                continue
            self.published += 1
            self.last_id = max(self.last_id, ev.id)
            for listener in self._listeners.get(ev.kind, ()):
                try:
                    listener(ev)
                except Exception:
                    log.exception("an event listener failed", kind=ev.kind, event=ev.id)
            for sub in self._subs.values():
                if sub.wants(ev):
                    sub.put(ev)

    def listen(self, kinds: Iterable[str], listener: Listener) -> None:
        """Call `listener(event)` for every committed event of these exact kinds."""
        for kind in kinds:
            self._listeners.setdefault(kind, []).append(listener)

    def subscribe(
        self, agent: str | None = None, kinds: list[str] | None = None, maxsize: int | None = None
    ) -> Subscription:
        sub = Subscription(agent, kinds, maxsize or self._queue_size)
        self._subs[sub.id] = sub
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        self._subs.pop(sub.id, None)

    def statistics(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "last_id": self.last_id,
            "subscribers": len(self._subs),
            "lagging": sum(1 for s in self._subs.values() if s.missed_total),
        }
