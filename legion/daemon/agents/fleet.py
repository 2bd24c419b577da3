"""The fleet: sub-agents, their caps and their tree, and how agents end.

Runaway fan-out and runaway conversations must be impossible by construction:
- every spawn (by a person or an agent) passes four caps: agents in the
  daemon, depth of the tree, children per agent, spawns per minute; a refusal
  names the cap and its value. The caps are checked and a place reserved in
  one synchronous step (`reserve`), before the first await of the spawn, so
  spawns racing from one model turn, one RPC batch or many clients cannot pass
  a cap together; a spawn that fails gives its place back;
- messages between agents (a spawn's first message excepted) and topics are
  messaging.py's, under the loop guard and the conversation bound.

Lifecycle: a `ttl`, `terminate_on` conditions (a task done, a number of
sessions) and `agent_self_destruct` end an agent at a session boundary (a ttl
interrupts). Ending archives the agent to the graveyard, or purges it
(`agents.on_terminate`), cascades to its children first, and tells the parent
with an `agent.child_terminated` event and a message that wakes it.

Stopping or destroying an agent cascades to its descendants, whoever asks.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from legion.config import AgentsConfig
from legion.daemon.agents import inbox, ledger
from legion.daemon.agents.activity import Activity
from legion.daemon.agents.conversation import Conversations, sender_agent
from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.messaging import MAX_TEXT
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, Lagged, insert
from legion.daemon.llm.client import ModelClient
from legion.daemon.store.database import Store
from legion.errors import Conflict, InvalidParams, LegionError, PermissionDenied

log = structlog.get_logger("legion.fleet")

RATE_WINDOW = 60.0


class TerminateOn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When a sub-agent retires by itself (any one condition is enough)."""

    # A task reference, read from the spawner's board: "3" (its own) or "3@bob".
    task_done: str | None = None
    # After this many sessions of the child.
    sessions: int | None = None


class TaskLookup(Protocol):
    """The task board as the fleet reads it, for `terminate_on.task_done`."""

    def parse_ref(self, viewer: str, ref: str | int) -> tuple[str, int]: ...

    async def status_of(self, owner: str, num: int) -> str | None: ...


class Reservation:
    """A place held for one spawn between the cap check and its commit. Until it is
    released, the caps count it as if the agent existed."""

    def __init__(
        self, fleet: Fleet, agent_id: str, parent: str | None, stamp: float | None
    ) -> None:
        self.fleet = fleet
        self.agent_id = agent_id
        self.parent = parent
        self.stamp = stamp
        self.kept = False

    def keep(self) -> None:
        """The spawn committed: the agent now counts by itself, and so does its spawn
        against the parent's rate."""
        self.kept = True
        self.release()

    def release(self) -> None:
        f = self.fleet
        if f._pending.get(self.agent_id) is self:
            del f._pending[self.agent_id]
        # A spawn cancelled while its write was queued may still have committed.
        kept = self.kept or self.agent_id in f.agents.agents
        if not kept and self.parent is not None and self.stamp is not None:
            recent = f._spawns.get(self.parent)
            if recent is not None:
                with contextlib.suppress(ValueError):
                    recent.remove(self.stamp)


class Fleet:
    """The fleet's rules. It interrupts and asks about running sessions through
    `Activity`, not the runtime: the runtime is built after the fleet."""

    def __init__(
        self,
        cfg: AgentsConfig,
        home: Path,
        store: Store,
        bus: EventBus,
        agents: Supervisor,
        models: ModelClient,
        tasks: TaskLookup,
        inbox: Inbox,
        activity: Activity,
        conversations: Conversations,
    ) -> None:
        self.cfg = cfg
        self.home = home
        self.store = store
        self.bus = bus
        self.agents = agents
        self.models = models
        self.tasks = tasks
        self.inbox = inbox
        self.activity = activity
        self._spawns: dict[str, deque[float]] = {}
        # Spawns between their cap check and their commit, by agent id.
        self._pending: dict[str, Reservation] = {}
        # A spawn's first message from an agent counts in the pair's conversation.
        self.conversations = conversations
        # Agents that asked to end (self-destruct), ended after their session.
        self._ending: dict[str, tuple[str, int | None]] = {}
        self._changed = anyio.Event()

    # -- the tree ---------------------------------------------------------------------

    def children(self, agent: str) -> list[AgentRecord]:
        return [a for a in self.agents.agents.values() if a.parent == agent]

    def descendants(self, agent: str) -> list[str]:
        """Every agent below this one, deepest first (the order they are ended in)."""
        out: list[str] = []

        def walk(a: str) -> None:
            for c in self.children(a):
                walk(c.id)
                out.append(c.id)

        walk(agent)
        return out

    def depth(self, agent: str) -> int:
        d, seen = 0, set()
        rec = self.agents.agents.get(agent)
        while rec is not None and rec.parent and rec.parent not in seen:
            seen.add(rec.parent)
            d += 1
            rec = self.agents.agents.get(rec.parent)
        return d

    def tree(self) -> list[dict[str, Any]]:
        """Every agent with its depth, in tree order (parents before children)."""
        out: list[dict[str, Any]] = []
        agents = self.agents.agents
        # One pass to index children: the walk is then linear in the fleet's size.
        kids: dict[str, list[AgentRecord]] = {}
        roots = []
        for rec in sorted(agents.values(), key=lambda a: (a.created_at, a.id)):
            if rec.parent and rec.parent in agents:
                kids.setdefault(rec.parent, []).append(rec)
            else:
                roots.append(rec)
        stack = [(r, 0) for r in reversed(roots)]
        while stack:
            rec, depth = stack.pop()
            out.append({"id": rec.id, "depth": depth})
            stack.extend((c, depth + 1) for c in reversed(kids.get(rec.id, [])))
        return out

    # -- spawning ---------------------------------------------------------------------

    def reserve(self, agent_id: str, parent: str | None) -> Reservation:
        """Check every cap and hold a place for this spawn, in one step: nothing awaits
        between the check and the reservation, so concurrent spawns see each other.
        Release the reservation if the spawn fails; keep it once it committed."""
        if agent_id in self._pending:
            raise Conflict(
                f"agent '{agent_id}' is being spawned by another request",
                hint=f"pick another id, or wait and `legion ps` to see {agent_id}",
                kind="agent_exists",
                data={"agent": agent_id},
            )
        self.check_spawn(parent)
        stamp = None
        if parent is not None:
            stamp = time.monotonic()
            self._spawns.setdefault(parent, deque()).append(stamp)
        res = Reservation(self, agent_id, parent, stamp)
        self._pending[agent_id] = res
        return res

    def check_spawn(self, parent: str | None) -> None:
        """Refuse a spawn past any cap, naming the cap and its value (spawns still in
        flight count as done)."""
        c = self.cfg
        agents = self.agents.agents
        total = len(agents) + sum(1 for a in self._pending if a not in agents)
        if total >= c.max_agents:
            raise Conflict(
                f"spawn refused: the daemon already hosts {total} agents "
                f"(agents.max_agents = {c.max_agents})",
                hint="destroy agents that finished their work, or ask a person to raise "
                "agents.max_agents",
                kind="cap_total",
                data={"cap": "agents.max_agents", "value": c.max_agents},
            )
        if parent is None:
            return
        depth = self.depth(parent) + 1
        if depth > c.max_depth:
            raise Conflict(
                f"spawn refused: a child of {parent} would be at depth {depth}; "
                f"agents.max_depth is {c.max_depth}",
                hint="do the work yourself, or ask your parent to spawn the helper",
                kind="cap_depth",
                data={"cap": "agents.max_depth", "value": c.max_depth},
            )
        kids = len(self.children(parent)) + sum(
            1 for r in self._pending.values() if r.parent == parent and r.agent_id not in agents
        )
        if kids >= c.max_children:
            raise Conflict(
                f"spawn refused: {parent} already has {kids} children "
                f"(agents.max_children = {c.max_children})",
                hint="give more work to an existing child (agent_message), or destroy one "
                "that is done (agent_destroy)",
                kind="cap_children",
                data={"cap": "agents.max_children", "value": c.max_children},
            )
        recent = self._spawns.setdefault(parent, deque())
        now = time.monotonic()
        while recent and now - recent[0] > RATE_WINDOW:
            recent.popleft()
        if len(recent) >= c.spawn_rate:
            wait = RATE_WINDOW - (now - recent[0])
            raise Conflict(
                f"spawn refused: {parent} spawned {len(recent)} agents in the last minute "
                f"(agents.spawn_rate = {c.spawn_rate} per minute)",
                hint=f"wait {wait:.0f}s, or reuse the children you have",
                kind="cap_rate",
                data={"cap": "agents.spawn_rate", "value": c.spawn_rate},
            )

    async def spawn(
        self,
        agent_id: str,
        *,
        parent: str | None,
        system: str = "",
        model: str | None = None,
        ttl: str | float | None = None,
        terminate_on: TerminateOn | None = None,
        message: str | None = None,
        settings: dict[str, Any] | None = None,
        source: str,
        caused_by: int | None = None,
        sender: str = "user",
    ) -> tuple[AgentRecord, Event]:
        if parent is not None:
            self.agents.get(parent)
        reservation = self.reserve(agent_id, parent)
        try:
            rec, ev = await self._spawn(
                agent_id,
                parent=parent,
                system=system,
                model=model,
                ttl=ttl,
                terminate_on=terminate_on,
                message=message,
                settings=settings,
                source=source,
            )
            reservation.keep()
        finally:
            reservation.release()
        self._changed.set()
        if message:
            # From an agent (its reply goes back to it) or from a person.
            from_agent = sender_agent(sender)
            if from_agent is not None:
                self.conversations.count_message(from_agent, agent_id)
            await self.inbox.deliver(
                agent_id,
                sender,
                message,
                hops=1 if from_agent is not None else 0,
                source=source,
                caused_by=ev.id,
            )
        return rec, ev

    async def _spawn(
        self,
        agent_id: str,
        *,
        parent: str | None,
        system: str,
        model: str | None,
        ttl: str | float | None,
        terminate_on: TerminateOn | None,
        message: str | None,
        settings: dict[str, Any] | None,
        source: str,
    ) -> tuple[AgentRecord, Event]:
        """The spawn itself, under a reservation: validate, then write the agent."""
        from legion.daemon.schedule.scheduler import parse_duration

        self.models.resolve(model or self.agents.default_model)
        settings = dict(settings or {})
        if ttl is not None:
            seconds = parse_duration(ttl, "ttl")
            settings["expires_at"] = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(
                timespec="seconds"
            )
        if terminate_on is not None:
            cond: dict[str, Any] = {}
            if terminate_on.task_done is not None:
                viewer = parent or agent_id
                owner, num = self.tasks.parse_ref(viewer, terminate_on.task_done)
                status = await self.tasks.status_of(owner, num)
                if status is None:
                    raise InvalidParams(
                        f"terminate_on: there is no task {num}@{owner}",
                        hint="create the task first (task_create), then spawn "
                        "the agent that works on it",
                    )
                if status == "done":
                    raise InvalidParams(
                        f"terminate_on: task {num}@{owner} is already done",
                        hint="name a task that is still open",
                    )
                cond["task_done"] = f"{num}@{owner}"
            if terminate_on.sessions is not None:
                if terminate_on.sessions < 1:
                    raise InvalidParams(
                        "terminate_on.sessions must be at least 1", hint='e.g. {"sessions": 3}'
                    )
                cond["sessions"] = terminate_on.sessions
            if not cond:
                raise InvalidParams(
                    "terminate_on names no condition",
                    hint='e.g. {"task_done": "3"} or {"sessions": 5}',
                )
            settings["terminate_on"] = cond
        if message is not None and len(message) > MAX_TEXT:
            raise InvalidParams(
                f"the first message is {len(message)} characters; the limit is {MAX_TEXT}",
                hint="put long material in shared memory",
            )
        return await self.agents.spawn(
            agent_id,
            model=model,
            system_prompt=system,
            parent=parent,
            settings=settings,
            source=source,
        )

    # -- stopping and ending ------------------------------------------------------------

    def check_child(self, agent: str, child: str) -> AgentRecord:
        rec = self.agents.get(child)
        if rec.parent != agent:
            raise PermissionDenied(
                f"{child} is not your child"
                + (f" (its parent is {rec.parent})" if rec.parent else ""),
                hint="agent_list shows your children; you may stop or destroy only them",
                kind="not_your_child",
            )
        return rec

    async def stop(
        self, agent: str, *, reason: str = "", source: str, caused_by: int | None = None
    ) -> list[Event]:
        """Stop an agent and, first, every agent below it: their `agent.stopped` events."""
        stopped = []
        for a in [*self.descendants(agent), agent]:
            rec = self.agents.agents.get(a)
            if rec is None or rec.state not in (State.RUNNING, State.PAUSED):
                continue
            why = (
                reason if a == agent else f"{agent} was stopped" + (f": {reason}" if reason else "")
            )
            _rec, ev = await self.agents.transition(
                a, "stop", reason=why, source=source, caused_by=caused_by
            )
            stopped.append(ev)
        return stopped

    async def destroy(
        self,
        agent: str,
        *,
        purge: bool = False,
        reason: str = "",
        source: str,
        caused_by: int | None = None,
        notify_parent: bool = True,
    ) -> list[Event]:
        """Destroy an agent and its descendants (deepest first); tell the parent."""
        self.agents.get(agent)
        ending = [*self.descendants(agent), agent]
        events = []
        for a in ending:
            rec = self.agents.agents.get(a)
            if rec is None:
                continue
            why = reason if a == agent else f"{agent} was ended" + (f": {reason}" if reason else "")
            ev = await self.agents.destroy(a, purge=purge, reason=why, source=source)
            events.append(ev)
            if purge:
                # Nothing of a purged agent stays: its sandbox working directory goes too.
                workdir = self.home / "work" / a
                await anyio.to_thread.run_sync(partial(shutil.rmtree, workdir, ignore_errors=True))
            self._ending.pop(a, None)
            if a == agent and notify_parent and rec.parent and rec.parent not in ending:
                await self._tell_parent(rec.parent, a, why, ev, caused_by)
        self._changed.set()
        return events

    async def terminate(
        self, agent: str, reason: str, caused_by: int | None = None, *, now: bool = False
    ) -> None:
        """End an agent by its own lifecycle (ttl, terminate_on, self-destruct). Unless
        `now` (a ttl), a running session is let finish first: its answer is kept."""
        if agent not in self.agents.agents:
            return
        if not now and self.activity.busy(agent):
            self._ending[agent] = (reason, caused_by)
            return
        log.info("agent ends", agent=agent, reason=reason)
        await self.destroy(
            agent,
            purge=self.cfg.on_terminate == "purge",
            reason=reason,
            source="legion:lifecycle",
            caused_by=caused_by,
        )

    async def _tell_parent(
        self, parent: str, child: str, reason: str, destroyed: Event, caused_by: int | None
    ) -> None:
        if parent not in self.agents.agents:
            return
        data = {
            "child": child,
            "reason": reason,
            "archive_id": destroyed.data.get("archive_id"),
            "purged": destroyed.data.get("purged"),
        }
        text = f"[legion] Your child agent {child} has ended ({reason}). " + (
            f"Its record and events are in the graveyard (legion graveyard show {child})."
            if not data["purged"]
            else "It was purged."
        )
        wake = self.inbox.automatic_job  # within the parent's cap, like any trigger

        def job(db: Any) -> tuple[inbox.Message | None, list[Event]]:
            # The event and the wake-up message are one write: one is never seen
            # without the other.
            ev = insert(
                db,
                parent,
                "agent.child_terminated",
                data,
                caused_by=caused_by or destroyed.id,
                source="legion:lifecycle",
            )
            msg, received = wake(
                parent, "legion:lifecycle", text, source="legion:lifecycle", caused_by=ev.id
            )(db)
            return msg, [ev, received]

        await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))

    async def request_end(self, agent: str, reason: str, caused_by: int | None) -> None:
        """agent_self_destruct: end the agent once its current session is over. The
        request is saved with the agent, so a restart in between does not lose it."""
        rec = self.agents.get(agent)
        await self.agents.update(
            agent, settings={**rec.settings, "ending": reason}, source=f"agent:{agent}"
        )
        self._ending[agent] = (f"self-destructed: {reason}", caused_by)
        self._changed.set()

    # -- the lifecycle loop ---------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        sub = self.bus.subscribe(kinds=["session.ended", "task.status"], maxsize=10_000)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._timers)
                task_status.started()
                await self.check_all()
                while True:
                    ev = await sub.get()
                    if ev is None:
                        return
                    try:
                        if isinstance(ev, Lagged):
                            await self.check_all()
                        elif ev.kind == "session.ended" and ev.agent:
                            await self.after_session(ev.agent, ev.id)
                        elif ev.kind == "task.status" and ev.data.get("to") == "done":
                            await self.task_done(str(ev.data.get("task")), ev.id)
                    except LegionError as exc:
                        log.warning("lifecycle check failed", error=exc.message)
        finally:
            self.bus.unsubscribe(sub)

    async def after_session(self, agent: str, caused_by: int) -> None:
        if agent in self._ending:
            reason, cause = self._ending.pop(agent)
            await self.terminate(agent, reason, cause or caused_by or None, now=True)
            return
        rec = self.agents.agents.get(agent)
        cond = (rec.settings.get("terminate_on") or {}) if rec else {}
        # A session just ended: this is the boundary.
        if cond.get("sessions") and await ledger.ended_count(self.store, agent) >= cond["sessions"]:
            await self.terminate(
                agent, f"terminate_on: after {cond['sessions']} sessions", caused_by, now=True
            )

    async def task_done(self, task: str, caused_by: int) -> None:
        for rec in list(self.agents.agents.values()):
            if (rec.settings.get("terminate_on") or {}).get("task_done") == task:
                await self.terminate(rec.id, f"terminate_on: task {task} is done", caused_by)

    async def check_all(self) -> None:
        """Conditions that may have come true while nobody was looking (at start,
        or after the event stream lagged)."""
        for rec in list(self.agents.agents.values()):
            if rec.settings.get("ending") and rec.id not in self._ending:
                self._ending[rec.id] = (f"self-destructed: {rec.settings['ending']}", None)
        for agent in list(self._ending):
            if not self.activity.busy(agent):
                await self.after_session(agent, 0)
        for rec in list(self.agents.agents.values()):
            if (rec.settings.get("terminate_on") or {}).get("sessions"):
                await self.after_session(rec.id, 0)
        for rec in list(self.agents.agents.values()):
            task = (rec.settings.get("terminate_on") or {}).get("task_done")
            if task:
                owner, num = task.split("@", 1)[1], int(task.split("@", 1)[0])
                if await self.tasks.status_of(owner, num) == "done":
                    await self.terminate(rec.id, f"terminate_on: task {task} is done", None)

    async def _timers(self) -> None:
        """ttl expiry: sleep until the next agent is due (or the set changes)."""
        while True:
            self._changed = anyio.Event()
            now = datetime.now(UTC)
            due: list[str] = []
            nearest: float | None = None
            for rec in list(self.agents.agents.values()):
                expires = rec.settings.get("expires_at")
                if not expires:
                    continue
                left = (datetime.fromisoformat(expires) - now).total_seconds()
                if left <= 0:
                    due.append(rec.id)
                else:
                    nearest = left if nearest is None else min(nearest, left)
            for agent in due:
                # A ttl interrupts: the agent's time is up, mid-session or not.
                self.activity.interrupt(agent, "its ttl expired")
                try:
                    await self.terminate(agent, "ttl expired", now=True)
                except LegionError as exc:
                    log.warning("could not end an expired agent", agent=agent, error=exc.message)
            if due:
                continue
            with anyio.move_on_after(nearest if nearest is not None else 3600):
                await self._changed.wait()
