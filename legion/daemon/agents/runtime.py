"""The runtime: one runner task per agent, delivering its inbox to sessions.

A runner sleeps until it is woken (a message arrived, the agent resumed),
then takes the oldest queued message and runs a session on it, one at a time,
in order. Paused and stopped agents take nothing; their messages wait and are
handled on resume. `stop` and `interrupt` cancel a running session; `pause`
lets it finish. Budgets are counted here, per agent per UTC day.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from legion.daemon.agents import inbox
from legion.daemon.agents.inbox import Message
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.session import GuardOverrides, Guards, Session
from legion.daemon.events import Event
from legion.daemon.llm.types import Usage
from legion.errors import Conflict, LegionError, NotFound, Timeout

if TYPE_CHECKING:
    from legion.daemon.services import Services

log = structlog.get_logger("legion.runtime")


@dataclass
class AgentState:
    activity: str = "idle"
    wake: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    session_scope: anyio.CancelScope | None = None
    interrupt_reason: str = ""
    queued: int = 0
    # Messages told so far (never decreases): tells a claim may have raced.
    told: int = 0


@dataclass
class DailyUsage:
    day: str
    tokens: int = 0
    cost: float = 0.0


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


class Runtime:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.models = services.models
        self.states: dict[str, AgentState] = {}
        self.usage: dict[str, DailyUsage] = {}
        self._done: dict[int, anyio.Event] = {}
        self._tg: TaskGroup | None = None
        self._spawns: MemoryObjectSendStream[str]
        self.draining = False
        # Asked before a session ends: "does this agent still own work?" Each
        # returns a sentence naming the work, or None. The task board adds one.
        self.work_checks: list[Callable[[str], Awaitable[str | None]]] = []
        self.sessions_run = 0
        self._running = 0
        self._idle: anyio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        s = self.services
        events = await s.store.writer.run(inbox.requeue_interrupted_job())
        s.bus.deliver(events)
        await self._load_usage()
        queued = await inbox.queued_counts(s.store)
        # Agent changes are announced from commit callbacks, which run outside
        # any task: new runners are started from this stream, inside one.
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=1_000_000)
        self._spawns = send
        async with anyio.create_task_group() as tg, receive:
            self._tg = tg
            for agent_id in s.agents.agents:
                self._start(agent_id, queued.get(agent_id, 0))
            s.agents.listeners.append(self._on_change)
            task_status.started()
            async for agent_id in receive:
                if agent_id in s.agents.agents and agent_id not in self.states:
                    self._start(agent_id)

    def _start(self, agent_id: str, queued: int = 0) -> None:
        assert self._tg is not None
        state = AgentState(queued=queued)
        self.states[agent_id] = state
        self._tg.start_soon(self._runner, agent_id, state)

    def _on_change(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        if action == "spawn":
            self._spawns.send_nowait(agent_id)
        elif action == "destroy":
            state = self.states.pop(agent_id, None)
            if state and state.scope:
                state.scope.cancel()
        elif action == "stop":
            self.interrupt(agent_id, "the agent was stopped", quiet=True)
        elif action == "resume":
            self.wake(agent_id)

    def wake(self, agent_id: str) -> None:
        state = self.states.get(agent_id)
        if state is not None:
            state.wake.set()

    async def wait_idle(self) -> None:
        """Stop taking messages and wait for running sessions to end."""
        self.draining = True
        while self._running:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _runner(self, agent_id: str, state: AgentState) -> None:
        with anyio.CancelScope() as scope:
            state.scope = scope
            while True:
                state.wake = anyio.Event()  # fresh before looking: no wake-up is lost
                rec = self.services.agents.agents.get(agent_id)
                if rec is None:
                    return
                msg = None
                # `queued` counts what the inbox holds (loaded at start, kept by
                # tell and claim), so an empty inbox costs no write to look at.
                if rec.state is State.RUNNING and not self.draining and state.queued > 0:
                    told = state.told
                    msg = await self._claim(agent_id)
                    if msg is None and state.told == told:
                        # Nothing was queued after all, and no tell raced the look.
                        state.queued = 0
                if msg is None:
                    await state.wake.wait()
                    continue
                state.queued = max(0, state.queued - 1)
                state.interrupt_reason = ""
                self._running += 1
                try:
                    await Session(self, state, rec, msg).run()
                except Exception:
                    log.exception("session crashed", agent=agent_id, message=msg.id)
                finally:
                    self._running -= 1
                    self.sessions_run += 1
                    if not self._running and self._idle is not None:
                        self._idle.set()

    async def _claim(self, agent_id: str) -> Message | None:
        try:
            msg: Message | None
            msg, events = await self.services.store.writer.run(inbox.claim_job(agent_id))
        except LegionError as exc:
            log.error("cannot claim a message", agent=agent_id, error=exc.message)
            await anyio.sleep(1)
            return None
        self.services.bus.deliver(events)
        for ev in events:
            self._signal(ev.data["message_id"])
        return msg

    # -- messages -----------------------------------------------------------------

    async def tell(self, agent_id: str, text: str, *, sender: str = "user",
                   source: str = "rpc") -> tuple[Message, Event]:
        self.services.agents.get(agent_id)
        job = inbox.enqueue_job(agent_id, sender, text, source)

        def committed(result: tuple[Message, Event]) -> None:
            self.services.bus.deliver(result[1])
            self.delivered(agent_id)

        return await self.services.store.writer.run(job, on_commit=committed)

    def automatic_cap(self, agent_id: str) -> int:
        rec = self.services.agents.agents.get(agent_id)
        return self.guards(rec).max_concurrent_sessions if rec else 0

    async def deliver_automatic(self, agent_id: str, sender: str, text: str, *,
                                source: str, caused_by: int | None = None) -> Message | None:
        """Deliver an automatic trigger (heartbeat, cron, watcher), within the
        agent's in-flight cap; None when it was dropped (with a warning event)."""
        job = inbox.enqueue_automatic_job(agent_id, sender, text, source,
                                          self.automatic_cap(agent_id), caused_by)

        def committed(result: tuple[Message | None, Event]) -> None:
            msg, ev = result
            self.services.bus.deliver(ev)
            if msg is not None:
                self.delivered(agent_id)
            else:
                log.warning("automatic trigger dropped: too many in flight", agent=agent_id,
                            sender=sender, cap=ev.data["cap"])

        msg: Message | None
        msg, _ = await self.services.store.writer.run(job, on_commit=committed)
        return msg

    def delivered(self, agent_id: str) -> None:
        """A message was committed to this agent's inbox (by tell, or by another
        service in its own transaction): count it and wake the runner."""
        state = self.states.get(agent_id)
        if state is not None:
            state.queued += 1
            state.told += 1
            state.wake.set()

    async def wait(self, message_id: int, within: float) -> Message:
        # Register before reading: a session that ends between the read and the
        # wait still finds someone to wake.
        done = self._done.setdefault(message_id, anyio.Event())
        msg = await inbox.get(self.services.store, message_id)
        if msg is None or msg.final:
            if not done.is_set():
                self._done.pop(message_id, None)
            if msg is None:
                raise NotFound(f"no message {message_id}",
                               hint="message ids come from `legion tell`; old ones are pruned "
                               "with the events")
            return msg
        with anyio.move_on_after(within):
            await done.wait()
        msg = await inbox.get(self.services.store, message_id)
        assert msg is not None
        if not msg.final:
            raise Timeout(
                f"no reply to message {message_id} within {within:g}s; it is {msg.status} "
                "and will still be answered",
                hint=f"wait again (`legion wait {message_id}`), or follow it with "
                f"`legion attach {msg.agent}`",
                data={"message_id": message_id, "status": msg.status},
            )
        return msg

    def finished(self, message_id: int, events: list[Event]) -> None:
        """on_commit of a session's end: publish, and wake whoever waits."""
        self.services.bus.deliver(events)
        self._signal(message_id)

    def _signal(self, message_id: int) -> None:
        done = self._done.pop(message_id, None)
        if done is not None:
            done.set()

    def interrupt(self, agent_id: str, reason: str = "interrupted", *, quiet: bool = False
                  ) -> bool:
        state = self.states.get(agent_id)
        if state is None or state.session_scope is None:
            if not quiet and state is None:
                raise self.services.agents.not_found(agent_id)
            return False
        state.interrupt_reason = reason
        state.session_scope.cancel()
        return True

    async def owned_work(self, agent_id: str) -> str | None:
        for check in self.work_checks:
            found = await check(agent_id)
            if found:
                return found
        return None

    # -- guards and budgets ----------------------------------------------------------

    def guards(self, rec: AgentRecord) -> Guards:
        base = msgspec.structs.asdict(self.services.config.guards)
        overrides = msgspec.convert(rec.settings.get("guards", {}), GuardOverrides)
        base.update({k: v for k, v in msgspec.structs.asdict(overrides).items()
                     if v is not None})
        return Guards(**base)

    async def _load_usage(self) -> None:
        day = _today()
        rows = await self.services.store.fetchall(
            "SELECT agent_id, sum(prompt_tokens + completion_tokens) AS tokens, "
            "sum(cost) AS cost FROM sessions WHERE started_at >= ? GROUP BY agent_id", (day,))
        self.usage = {r["agent_id"]: DailyUsage(day, int(r["tokens"] or 0), float(r["cost"] or 0))
                      for r in rows}
        # Model calls outside sessions (reflections) are recorded only in their events.
        extra = await self.services.store.fetchall(
            "SELECT agent_id, sum(json_extract(data, '$.usage.total_tokens')) AS tokens, "
            "sum(json_extract(data, '$.usage.cost')) AS cost FROM events WHERE ts >= ? "
            "AND kind IN ('reflection.completed', 'reflection.failed') AND agent_id IS NOT NULL "
            "GROUP BY agent_id", (day,))
        for r in extra:
            u = self.usage.setdefault(r["agent_id"], DailyUsage(day))
            u.tokens += int(r["tokens"] or 0)
            u.cost += float(r["cost"] or 0)

    def _today_usage(self, agent_id: str) -> DailyUsage:
        day = _today()
        u = self.usage.get(agent_id)
        if u is None or u.day != day:
            u = self.usage[agent_id] = DailyUsage(day)
        return u

    def charge(self, agent_id: str, usage: Usage) -> None:
        u = self._today_usage(agent_id)
        u.tokens += usage.total
        u.cost += usage.cost

    def over_budget(self, agent_id: str, g: Guards) -> str | None:
        u = self._today_usage(agent_id)
        if g.daily_tokens and u.tokens >= g.daily_tokens:
            return (f"daily token budget reached: {u.tokens} of {g.daily_tokens} tokens used "
                    f"today (UTC)")
        if g.daily_cost and u.cost >= g.daily_cost:
            return f"daily cost budget reached: ${u.cost:.4f} of ${g.daily_cost:.4f} today (UTC)"
        return None

    def budget(self, agent_id: str) -> dict[str, Any]:
        rec = self.services.agents.get(agent_id)
        g = self.guards(rec)
        u = self._today_usage(agent_id)
        return {"day": u.day, "tokens_used": u.tokens, "tokens_limit": g.daily_tokens or None,
                "cost_used": round(u.cost, 6), "cost_limit": g.daily_cost or None}

    async def pause_for(self, agent_id: str, reason: str, caused_by: int | None = None) -> None:
        # Already paused or stopped by someone else: the guard event still says why.
        with contextlib.suppress(Conflict):
            await self.services.agents.transition(agent_id, "pause", reason=reason,
                                                  source="guard", caused_by=caused_by)

    def describe(self, agent_id: str) -> dict[str, Any]:
        state = self.states.get(agent_id)
        return {"activity": state.activity if state else "idle",
                "queued": state.queued if state else 0}
