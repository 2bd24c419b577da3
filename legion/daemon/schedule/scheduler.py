"""Cron entries, intervals, one-shot times and heartbeats.

Triggers are APScheduler's (cron, interval and date arithmetic); timing is
ours: one clock task in the scheduler's task group (inside the daemon's task
tree, cancelled and awaited on shutdown) keeps every armed entry's next
planned time in a heap, sleeps until the soonest, and fires what is due,
each fire a task of the same group. A fire that runs late is still run,
never skipped: the next planned time is computed from the last one, not
from the clock. What was planned and handled is ours too: each entry keeps
`last_fire`, the last planned time it handled, in the database. When the
daemon starts, and when a stopped agent is resumed, the runs planned since
then are computed from the entry's trigger and handled by its missed-run
policy:

- `skip`: none is run;
- `run_once`: one run stands for all of them;
- `run_all`: each is run, up to `missed_cap`, the rest skipped.

Every missed run is recorded as a `schedule.missed` event (one per run, the
first 20, then one summary), so a skipped run is never silent. A fire, its
`last_fire` and its inbox message are one write: a crash cannot run a
planned time twice or lose it.

Heartbeats do not call the model when nothing is new for the agent since
the last heartbeat (no message, no task change on its board, no watcher
fire, no task newly due): they are recorded as `heartbeat.skipped` with the
reason. When something is new, a short prompt lists it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.llm.client import ModelClient
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.errors import InvalidParams, NotFound

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

log = structlog.get_logger("legion.schedule")

MISSED_EVENTS = 20
PLAN_LIMIT = 10_000
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
CRON_HINT = (
    "a cron expression has 5 fields (minute hour day month weekday; weekday 0 or 7 "
    "is Sunday, or use mon-fri) or 6 (second first): '*/5 * * * *' is every 5 "
    "minutes, '0 9 * * 1-5' is 9:00 on weekdays, '*/10 * * * * *' is every 10 seconds"
)
QUIET_SENDERS = ("heartbeat",)
INTERESTING = (
    "message.received",
    "task.created",
    "task.assigned",
    "task.unblocked",
    "task.noted",
    "task.status",
    "watch.fired",
)


def parse_duration(text: str | float, what: str = "interval") -> float:
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = DURATION.match(str(text))
        if not m:
            raise InvalidParams(
                f"{what} {text!r} is not a duration",
                hint="write 30s, 5m, 2h, 1d (or a number of seconds)",
            )
        seconds = float(m.group(1)) * UNITS[m.group(2)]
    if seconds < 1:
        raise InvalidParams(f"{what} must be at least 1 second", hint="e.g. 30s or 5m")
    return seconds


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_weekdays(field: str) -> str:
    """Standard cron numbers weekdays from Sunday (0 or 7); APScheduler 3 from Monday.
    Numbers become names, which both read the same way ("1-5" -> "mon-fri")."""
    return re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: WEEKDAYS[int(m.group(1))], field)


def make_trigger(kind: str, spec: str, created: datetime) -> BaseTrigger:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if kind == "cron":
        fields = spec.split()
        names = (["second"] if len(fields) == 6 else []) + [
            "minute",
            "hour",
            "day",
            "month",
            "day_of_week",
        ]
        if len(fields) not in (5, 6):
            raise InvalidParams(
                f"invalid cron expression {spec!r}: {len(fields)} fields",
                hint=CRON_HINT,
                kind="invalid_cron",
            )
        fields[-1] = cron_weekdays(fields[-1])
        try:
            return CronTrigger(timezone=UTC, **dict(zip(names, fields, strict=True)))
        except ValueError as exc:
            raise InvalidParams(
                f"invalid cron expression {spec!r}: {exc}", hint=CRON_HINT, kind="invalid_cron"
            ) from None
    if kind in ("interval", "heartbeat"):
        return IntervalTrigger(seconds=parse_duration(spec), start_date=created, timezone=UTC)
    if kind == "once":
        try:
            at = datetime.fromisoformat(spec.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidParams(
                f"invalid time {spec!r}", hint="use ISO 8601, e.g. 2026-12-01T09:00:00Z"
            ) from None
        return DateTrigger(run_date=at if at.tzinfo else at.replace(tzinfo=UTC), timezone=UTC)
    raise InvalidParams(f"unknown schedule kind {kind!r}", hint="use cron, interval or once")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DueTasks(Protocol):
    """The task board as a heartbeat reads it: tasks newly due."""

    async def due_between(self, owner: str, after: str, until: str) -> list[Any]: ...


class Scheduler:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        agents: Supervisor,
        models: ModelClient,
        inbox: Inbox,
        tasks: DueTasks,
    ) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        self.models = models
        self.inbox = inbox
        self.tasks = tasks
        self._tg: TaskGroup | None = None
        # Armed entries: each one's generation and trigger, its next planned time,
        # and one heap of (planned, generation, id) that a single clock task sleeps
        # on. Disarming drops the entry; its heap item goes stale (a generation
        # that no longer matches) and is skipped, or swept when stale items
        # outnumber live ones.
        self._armed: dict[int, tuple[int, BaseTrigger]] = {}
        self._next: dict[int, datetime] = {}
        self._heap: list[tuple[datetime, int, int]] = []
        self._generations = itertools.count(1)
        self._soonest = anyio.Event()
        self._changes: Any = None
        self._marks: dict[str, int] = {}
        self.fired = 0
        self.lateness_ms: list[float] = []
        # agent -> its heartbeat schedule id (for `ps`'s next heartbeat)
        self._hb_of: dict[str, int] = {}
        # agent -> when the heartbeat last looked for newly due tasks
        self._last_look: dict[str, str] = {}

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        start_mark = await event_log.last_id(self.store)
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1_000_000
        )
        self._changes = send
        async with anyio.create_task_group() as tg, receive:
            self._tg = tg
            tg.start_soon(self._clock)
            for row in await self.store.fetchall("SELECT * FROM schedules ORDER BY id"):
                self._marks.setdefault(row["agent_id"], start_mark)
                rec = self.agents.agents.get(row["agent_id"])
                if rec is not None and rec.state is not State.STOPPED:
                    await self._arm(row)
            self.agents.listeners.append(self._on_change)
            task_status.started()
            async for action, agent_id in receive:
                await self._apply(action, agent_id)

    def _on_change(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        if action in ("stop", "resume", "destroy"):
            self._changes.send_nowait((action, agent_id))

    async def _apply(self, action: str, agent_id: str) -> None:
        rows = await self.store.fetchall(
            "SELECT * FROM schedules WHERE agent_id = ? ORDER BY id", (agent_id,)
        )
        for row in rows:
            self._disarm(row["id"])
            if action == "resume":
                await self._arm(row)
        if action == "destroy":
            await self.store.writer.run(
                lambda db: db.execute("DELETE FROM schedules WHERE agent_id = ?", (agent_id,))
            )

    def _disarm(self, sid: int) -> None:
        self._armed.pop(sid, None)
        self._next.pop(sid, None)

    def _plan(self, sid: int, generation: int, planned: datetime) -> None:
        self._next[sid] = planned
        heapq.heappush(self._heap, (planned, generation, sid))
        if self._heap[0][2] == sid:
            self._soonest.set()  # the clock sleeps until an earlier time now
        if len(self._heap) > 2 * len(self._armed) + 64:
            # Stale items (disarmed, re-armed) outnumber the live ones: rebuild.
            self._heap = [
                (self._next[i], g, i) for i, (g, _t) in self._armed.items() if i in self._next
            ]
            heapq.heapify(self._heap)

    async def _arm(self, row: Any, *, fresh: bool = False) -> None:
        """Handle what was missed since `last_fire`, then plan the next runs.
        A `fresh` schedule (just added) has missed nothing: a tick between its
        insert and this call (a busy writer) is not a run the daemon lost."""
        trigger = make_trigger(row["kind"], row["spec"], _dt(row["created_at"]))
        now = datetime.now(UTC)
        since = now if fresh else _dt(row["last_fire"] or row["created_at"])
        missed: list[datetime] = []
        previous: datetime | None = None
        cursor = since + timedelta(microseconds=1)
        while len(missed) < PLAN_LIMIT:
            t = trigger.get_next_fire_time(previous, cursor)
            if t is None or t > now:
                break
            if t > since:
                missed.append(t)
            previous = t
            cursor = t + timedelta(microseconds=1)
        if missed:
            await self._handle_missed(row, missed)
        if row["kind"] == "once" and (row["last_fire"] or missed):
            return  # a one-shot that already ran (or was handled) is done
        if row["kind"] == "heartbeat":
            self._hb_of[row["agent_id"]] = row["id"]
        sid = row["id"]
        self._disarm(sid)
        first = trigger.get_next_fire_time(previous, now)
        if first is None:
            return
        generation = next(self._generations)
        self._armed[sid] = (generation, trigger)
        # Known at once: `add` answers with the next fire.
        self._plan(sid, generation, first)

    async def _clock(self) -> None:
        """One task for every armed entry: sleep until the soonest planned time, start
        a fire for each entry due (a task of the scheduler's group), and sleep again.
        Each fire plans its entry's next time once it has fired, from the time it
        handled, not from the clock: a late fire is followed by the next one, never
        drops it; and a burst of entries due together all start at once."""
        assert self._tg is not None
        while True:
            self._soonest = anyio.Event()
            now = datetime.now(UTC)
            while self._heap and self._heap[0][0] <= now:
                planned, generation, sid = heapq.heappop(self._heap)
                armed = self._armed.get(sid)
                if armed is None or armed[0] != generation:
                    continue  # disarmed or re-armed since
                # In flight: no next time until the fire plans it (a sweep of the
                # heap rebuilds only entries that have one).
                self._next.pop(sid, None)
                self._tg.start_soon(self._fire_one, sid, generation, armed[1], planned)
            wait = (self._heap[0][0] - now).total_seconds() if self._heap else math.inf
            with anyio.move_on_after(wait):
                await self._soonest.wait()

    async def _fire_one(
        self, sid: int, generation: int, trigger: BaseTrigger, planned: datetime
    ) -> None:
        try:
            await self._fire(sid, planned)
        except Exception:
            # One bad fire (a full disk, say) must not stop the entry or the others.
            log.exception("a schedule fire failed", schedule=sid)
        armed = self._armed.get(sid)
        if armed is None or armed[0] != generation:
            return  # disarmed (or re-armed) while it fired
        following = trigger.get_next_fire_time(planned, planned + timedelta(microseconds=1))
        if following is None:
            self._disarm(sid)  # a one-shot: done
        else:
            self._plan(sid, generation, following)

    async def _handle_missed(self, row: Any, missed: list[datetime]) -> None:
        policy = row["missed"]
        if row["kind"] == "heartbeat":
            policy = "skip"  # a heartbeat's only job is "now"; missed ones are just recorded
        run: list[datetime] = []
        if policy == "run_once":
            run = [missed[-1]]
        elif policy == "run_all":
            run = missed[: row["missed_cap"]]
        skipped = [t for t in missed if t not in run]
        reason = "the daemon was down or the agent was stopped"

        def job(db: Any) -> list[Event]:
            events = []
            for t in skipped[:MISSED_EVENTS]:
                events.append(
                    insert(
                        db,
                        row["agent_id"],
                        "schedule.missed",
                        {
                            "schedule": row["id"],
                            "kind": row["kind"],
                            "planned": _iso(t),
                            "action": "skipped",
                            "policy": policy,
                            "reason": reason,
                        },
                        source="scheduler",
                    )
                )
            if len(skipped) > MISSED_EVENTS:
                events.append(
                    insert(
                        db,
                        row["agent_id"],
                        "schedule.missed",
                        {
                            "schedule": row["id"],
                            "kind": row["kind"],
                            "action": "skipped",
                            "count": len(skipped) - MISSED_EVENTS,
                            "first": _iso(skipped[MISSED_EVENTS]),
                            "last": _iso(skipped[-1]),
                            "policy": policy,
                            "reason": reason,
                        },
                        source="scheduler",
                    )
                )
            for t in run:
                events.append(
                    insert(
                        db,
                        row["agent_id"],
                        "schedule.missed",
                        {
                            "schedule": row["id"],
                            "kind": row["kind"],
                            "planned": _iso(t),
                            "action": "run late",
                            "policy": policy,
                            "missed_total": len(missed),
                            "reason": reason,
                        },
                        source="scheduler",
                    )
                )
            db.execute(
                "UPDATE schedules SET last_fire = ? WHERE id = ?", (_iso(missed[-1]), row["id"])
            )
            return events

        await self.store.writer.run(job, on_commit=self.bus.deliver)
        for t in run:
            note = (
                f" ({len(missed)} planned runs were missed; this one stands for all of them)"
                if policy == "run_once" and len(missed) > 1
                else " (run late)"
            )
            await self._deliver(row, t, note, update_last=False)

    async def _fire(self, sid: int, planned: datetime) -> None:
        row = await self.store.fetchone("SELECT * FROM schedules WHERE id = ?", (sid,))
        if row is None:
            self._disarm(sid)
            return
        lateness = (datetime.now(UTC) - planned).total_seconds() * 1000
        self.fired += 1
        self.lateness_ms.append(lateness)
        del self.lateness_ms[:-10_000]
        if row["kind"] == "heartbeat":
            await self._heartbeat(row, planned, lateness)
        else:
            await self._deliver(row, planned, "", lateness=lateness)

    async def _deliver(
        self,
        row: Any,
        planned: datetime,
        note: str,
        *,
        lateness: float | None = None,
        update_last: bool = True,
        text: str | None = None,
        sender: str | None = None,
    ) -> None:
        agent = row["agent_id"]
        body = text or (
            f"[cron {row['id']}] {row['prompt'] or 'scheduled run'} (planned {_iso(planned)}{note})"
        )
        who = sender or f"cron:{row['id']}"
        enqueue = self.inbox.automatic_job(agent, who, body, source="scheduler", model=row["model"])

        def job(db: Any) -> tuple[Any, list[Event]]:
            msg, ev = enqueue(db)
            events = [
                ev,
                insert(
                    db,
                    agent,
                    "schedule.fired",
                    {
                        "schedule": row["id"],
                        "kind": row["kind"],
                        "planned": _iso(planned),
                        "lateness_ms": round(lateness, 2) if lateness is not None else None,
                        "delivered": msg is not None,
                    },
                    caused_by=ev.id,
                    source="scheduler",
                ),
            ]
            if update_last:
                db.execute(
                    "UPDATE schedules SET last_fire = ? WHERE id = ?", (_iso(planned), row["id"])
                )
            return msg, events

        await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))

    async def _heartbeat(self, row: Any, planned: datetime, lateness: float) -> None:
        agent = row["agent_id"]
        rec = self.agents.agents.get(agent)
        if rec is None:
            return
        news = await self._news(agent)
        if not news:

            def skip(db: Any) -> Event:
                db.execute(
                    "UPDATE schedules SET last_fire = ? WHERE id = ?", (_iso(planned), row["id"])
                )
                return insert(
                    db,
                    agent,
                    "heartbeat.skipped",
                    {
                        "reason": "nothing new since the last heartbeat",
                        "planned": _iso(planned),
                        "lateness_ms": round(lateness, 2),
                    },
                    source="scheduler",
                )

            await self.store.writer.run(skip, on_commit=self.bus.deliver)
            return
        body = (
            "[heartbeat] Since your last heartbeat: "
            + "; ".join(news[:5])
            + (f"; and {len(news) - 5} more" if len(news) > 5 else "")
            + ". Check whether anything needs doing; answer IDLE if nothing does."
        )
        await self._deliver(row, planned, "", lateness=lateness, text=body, sender="heartbeat")

    async def _news(self, agent: str) -> list[str]:
        """What happened for this agent since the last heartbeat looked (cheap: SQL only)."""
        mark = self._marks.get(agent, 0)
        rows = await event_log.of_agent_since(self.store, agent, mark, INTERESTING, 200)
        self._marks[agent] = await event_log.last_id(self.store) or mark
        import json

        news: list[str] = []
        for r in rows:
            data = json.loads(r["data"])
            if r["kind"] == "message.received":
                if data.get("sender") in QUIET_SENDERS:
                    continue
                news.append(f"a message from {data.get('sender')}")
            elif r["kind"] == "watch.fired":
                news.append(f"watcher {data.get('watcher')} fired")
            elif r["source"] != f"agent:{agent}":  # its own task changes are not news
                news.append(f"{r['kind'].replace('task.', 'task ')} {data.get('task', '')}")
        due = await self.tasks.due_between(agent, self._last_look.get(agent, now_iso()), now_iso())
        self._last_look[agent] = now_iso()
        news += [f"task {d['num']} ({d['title']}) is now due" for d in due]
        return news

    # -- the API --------------------------------------------------------------------------

    async def add(
        self,
        agent: str,
        kind: str,
        spec: str,
        *,
        prompt: str = "",
        model: str | None = None,
        missed: str = "run_once",
        missed_cap: int = 10,
        source: str = "rpc",
    ) -> dict[str, Any]:
        rec = self.agents.get(agent)
        if not 1 <= missed_cap <= 1000:
            raise InvalidParams(
                f"missed_cap {missed_cap} is out of range",
                hint="give 1 to 1000 (late runs to deliver with run_all)",
            )
        if missed not in ("skip", "run_once", "run_all"):
            raise InvalidParams(
                f"invalid missed-run policy {missed!r}", hint="use skip, run_once or run_all"
            )
        if model is not None:
            self.models.resolve(model)
        created = datetime.now(UTC)
        trigger = make_trigger(kind, spec, created)
        if kind == "once" and trigger.run_date <= created:
            raise InvalidParams(f"{spec} is in the past", hint="give a future time")

        def job(db: Any) -> tuple[int, Event]:
            sid = db.execute(
                "INSERT INTO schedules (agent_id, kind, spec, prompt, model, missed, missed_cap, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (agent, kind, spec, prompt, model, missed, missed_cap, _iso(created)),
            ).lastrowid
            return sid, insert(
                db,
                agent,
                "schedule.added",
                {"schedule": sid, "kind": kind, "spec": spec, "missed": missed},
                source=source,
            )

        sid, _ev = await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))
        row = await self.store.fetchone("SELECT * FROM schedules WHERE id = ?", (sid,))
        if rec.state is not State.STOPPED:
            await self._arm(row, fresh=True)
        return self.describe(row)

    async def remove(self, agent: str, sid: int, source: str = "rpc") -> dict[str, Any]:
        row = await self._own(agent, sid)
        self._disarm(sid)

        def job(db: Any) -> Event:
            db.execute("DELETE FROM schedules WHERE id = ?", (sid,))
            return insert(
                db, agent, "schedule.removed", {"schedule": sid, "kind": row["kind"]}, source=source
            )

        await self.store.writer.run(job, on_commit=self.bus.deliver)
        return {"removed": sid}

    async def listing(self, agent: str, heartbeat: bool = False) -> list[dict[str, Any]]:
        self.agents.get(agent)
        op = "=" if heartbeat else "!="
        rows = await self.store.fetchall(
            f"SELECT * FROM schedules WHERE agent_id = ? AND kind {op} 'heartbeat' ORDER BY id",
            (agent,),
        )
        return [self.describe(r) for r in rows]

    async def run_now(self, agent: str, sid: int) -> dict[str, Any]:
        row = await self._own(agent, sid)
        await self._deliver(row, datetime.now(UTC), " (run now by hand)", update_last=False)
        return {"ran": sid}

    async def set_heartbeat(
        self, agent: str, every: str | None, source: str = "rpc"
    ) -> dict[str, Any]:
        self.agents.get(agent)
        seconds = None if every is None else parse_duration(every, "heartbeat")  # before any change
        for row in await self.listing(agent, heartbeat=True):
            self._disarm(row["schedule"])

            def drop(db: Any, sid: int = row["schedule"]) -> None:
                db.execute("DELETE FROM schedules WHERE id = ?", (sid,))

            await self.store.writer.run(drop)
        if every is None:
            await self.bus.emit(agent, "heartbeat.set", {"every": None}, source=source)
            return {"agent": agent, "heartbeat": None}
        assert seconds is not None
        # News is counted from now: a first heartbeat does not replay old history.
        self._marks[agent] = await event_log.last_id(self.store)
        result = await self.add(agent, "heartbeat", f"{seconds:g}", missed="skip", source=source)
        await self.bus.emit(agent, "heartbeat.set", {"every_s": seconds}, source=source)
        return {"agent": agent, "heartbeat": result}

    async def heartbeat(self, agent: str) -> dict[str, Any] | None:
        rows = await self.listing(agent, heartbeat=True)
        return rows[0] if rows else None

    def next_heartbeat(self, agent: str) -> str | None:
        """Constant time: `ps` asks for every agent, and a scan of all jobs per agent
        blocked the loop for 0.7 s with 10,000 schedules."""
        sid = self._hb_of.get(agent)
        planned = self._next.get(sid) if sid else None
        return _iso(planned) if planned is not None else None

    async def _own(self, agent: str, sid: int) -> Any:
        # The heartbeat is managed with `heartbeat`, not as a cron entry.
        row = await self.store.fetchone(
            "SELECT * FROM schedules WHERE id = ? AND agent_id = ? AND kind != 'heartbeat'",
            (sid, agent),
        )
        if row is None:
            ids = [r["schedule"] for r in await self.listing(agent)]
            raise NotFound(
                f"{agent} has no schedule {sid}",
                hint=f"its schedules: {', '.join(map(str, ids)) or 'none'}",
                candidates=[str(i) for i in ids],
                kind="unknown_schedule",
            )
        return row

    def describe(self, row: Any) -> dict[str, Any]:
        planned = self._next.get(row["id"])
        return {
            "schedule": row["id"],
            "agent": row["agent_id"],
            "kind": row["kind"],
            "spec": row["spec"],
            "prompt": row["prompt"],
            "model": row["model"],
            "missed": row["missed"],
            "missed_cap": row["missed_cap"],
            "last_fire": row["last_fire"],
            "next_fire": _iso(planned) if planned is not None else None,
        }

    def statistics(self) -> dict[str, Any]:
        ordered = sorted(self.lateness_ms)

        def pct(q: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else None
            )

        return {
            "jobs": len(self._armed),
            "fired": self.fired,
            "lateness_ms": {
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": ordered[-1] if ordered else None,
            },
        }
