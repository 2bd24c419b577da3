"""The runtime: one runner task per agent, delivering its inbox to sessions.

A runner sleeps until it is woken (a message arrived, the agent resumed),
then takes the oldest queued message and runs a session on it, one at a time,
in order. Paused and stopped agents take nothing; their messages wait and are
handled on resume. `stop` and `interrupt` cancel a running session; `pause`
lets it finish.

Wake-ups come from the bus: the runtime listens for `message.received`, which
every committed delivery publishes, whoever wrote it (see inbox.py). The live
per-agent state is in `Activity`, shared with whoever asks what an agent is
doing; budgets are in `Budgets`.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from legion.daemon.agents import inbox
from legion.daemon.agents.activity import Activity, AgentState
from legion.daemon.agents.inbox import Message
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.session import Kit, Session
from legion.daemon.events import Event
from legion.errors import LegionError


class Runtime:
    def __init__(self, kit: Kit, activity: Activity) -> None:
        self.kit = kit
        self.store = kit.store
        self.bus = kit.bus
        self.agents = kit.agents
        self.activity = activity
        self._tg: TaskGroup | None = None
        self._spawns: MemoryObjectSendStream[str] | None = None
        self.draining = False
        self.sessions_run = 0
        self._running = 0
        self._idle: anyio.Event | None = None
        self.bus.listen(["message.received"], self._received)

    @property
    def states(self) -> dict[str, AgentState]:
        return self.activity.states

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        events = await self.store.writer.run(inbox.requeue_interrupted_job())
        self.bus.deliver(events)
        await self.kit.budgets.load()
        queued = await inbox.queued_counts(self.store)
        # Agent changes are announced from commit callbacks, which run outside
        # any task: new runners are started from this stream, inside one.
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=1_000_000)
        self._spawns = send
        async with anyio.create_task_group() as tg, receive:
            self._tg = tg
            for agent_id in self.agents.agents:
                self._start(agent_id, queued.get(agent_id, 0))
            self.agents.listeners.append(self._on_change)
            task_status.started()
            async for agent_id in receive:
                if agent_id in self.agents.agents and agent_id not in self.states:
                    self._start(agent_id)

    def _start(self, agent_id: str, queued: int = 0) -> None:
        assert self._tg is not None
        state = AgentState(queued=queued)
        self.states[agent_id] = state
        self._tg.start_soon(self._runner, agent_id, state)

    def _on_change(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        if action == "spawn" and self._spawns is not None:
            self._spawns.send_nowait(agent_id)
        elif action == "destroy":
            state = self.states.pop(agent_id, None)
            if state and state.scope:
                state.scope.cancel()
        elif action == "stop":
            self.activity.interrupt(agent_id, "the agent was stopped")
        elif action == "resume":
            self.activity.wake(agent_id)

    def _received(self, ev: Event) -> None:
        if ev.agent:
            self.activity.arrived(ev.agent)

    @property
    def running(self) -> int:
        return self._running

    async def shutdown(self) -> None:
        """The daemon is stopping: take no more messages, cut running sessions off at
        once (each records `session.ended` with status `shutdown`; its message is
        delivered again after the restart) and wait until they have."""
        self.draining = True
        for state in self.states.values():
            # Also marks a session that is still opening: it cuts itself off as soon
            # as its scope exists (session.py).
            state.shutdown = True
            if state.session_scope is not None:
                state.session_scope.cancel()
        await self.wait_idle()

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
                rec = self.agents.agents.get(agent_id)
                if rec is None:
                    return
                msg = None
                # `queued` counts what the inbox holds (loaded at start, kept by
                # deliveries and claims), so an empty inbox costs no write to look at.
                if rec.state is State.RUNNING and not self.draining and state.queued > 0:
                    told = state.told
                    msg = await self._claim(agent_id)
                    if msg is None and state.told == told:
                        # Nothing was queued after all, and no delivery raced the look.
                        state.queued = 0
                if msg is None:
                    await state.wake.wait()
                    continue
                state.queued = max(0, state.queued - 1)
                state.interrupt_reason = ""
                self._running += 1
                try:
                    await Session(self.kit, state, rec, msg).run()
                except Exception:
                    structlog.get_logger("legion.runtime").exception(
                        "session crashed", agent=agent_id, message=msg.id
                    )
                finally:
                    self._running -= 1
                    self.sessions_run += 1
                    if not self._running and self._idle is not None:
                        self._idle.set()

    async def _claim(self, agent_id: str) -> Message | None:
        try:
            msg: Message | None
            msg, events = await self.store.writer.run(inbox.claim_job(agent_id))
        except LegionError as exc:
            structlog.get_logger("legion.runtime").error(
                "cannot claim a message", agent=agent_id, error=exc.message
            )
            await anyio.sleep(1)
            return None
        self.bus.deliver(events)
        return msg

    def interrupt(self, agent_id: str, reason: str = "interrupted") -> bool:
        """A person's interrupt: cancel the running session (False when idle)."""
        if not self.activity.known(agent_id):
            raise self.agents.not_found(agent_id)
        return self.activity.interrupt(agent_id, reason)
