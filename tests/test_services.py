"""Services built alone, with fakes of their ports.

Each service's constructor lists what it uses, so a test can hand it small
fakes instead of building the world: the budgets with a fake fleet of agents
and a fake store, the inbox with fake agents and budgets over a real store,
and the tool calls with a fake registry and fake kernel services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from legion.config import GuardsConfig, StoreConfig
from legion.daemon.agents.activity import Activity, AgentState
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.events import EventBus
from legion.daemon.llm.types import Usage
from legion.daemon.store.database import Store
from legion.daemon.tools.context import Kernel, KernelContext, ToolCalls
from legion.errors import Conflict, InvalidParams, NotFound
from legion.tool import ToolCall, ToolContext, ToolResult

pytestmark = pytest.mark.anyio


def _record(agent_id: str, settings: dict[str, Any] | None = None) -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        model="mock/echo",
        state=State.RUNNING,
        settings=settings or {},
        created_at="t",
        updated_at="t",
    )


class FakeAgents:
    """The supervisor as budgets and the inbox use it."""

    def __init__(self, *records: AgentRecord) -> None:
        self.agents = {r.id: r for r in records}
        self.transitions: list[tuple[str, str, str]] = []

    def get(self, agent_id: str) -> AgentRecord:
        if agent_id not in self.agents:
            raise NotFound(f"no agent {agent_id}")
        return self.agents[agent_id]

    async def transition(
        self, agent_id: str, action: str, *, reason: str, source: str, caused_by: int | None = None
    ) -> Any:
        self.transitions.append((agent_id, action, reason))
        if len(self.transitions) > 1:
            raise Conflict(f"{agent_id} is paused already")
        return None


class FakeStore:
    """Rows for the budgets' start-of-day load (sessions, then reflections)."""

    def __init__(self, sessions: list[dict[str, Any]], reflections: list[dict[str, Any]]):
        self.answers = [sessions, reflections]

    async def fetchall(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        return self.answers.pop(0)


async def test_budgets_merge_overrides_and_pause_once() -> None:
    agents = FakeAgents(_record("bob", {"guards": {"daily_tokens": 1000}}), _record("eve"))
    store = FakeStore(
        [{"agent_id": "bob", "tokens": 900, "cost": 0.1}],
        [{"agent_id": "bob", "tokens": 50, "cost": 0.0}],
    )
    budgets = Budgets(store, agents, GuardsConfig(max_concurrent_sessions=3))  # type: ignore[arg-type]
    await budgets.load()
    g = budgets.guards(agents.agents["bob"])
    assert g.daily_tokens == 1000 and g.max_concurrent_sessions == 3
    assert budgets.over_budget("bob", g) is None  # 950 of 1000
    budgets.charge("bob", Usage(prompt_tokens=40, completion_tokens=10))
    reason = budgets.over_budget("bob", g)
    assert reason is not None and "1000 of 1000" in reason
    assert budgets.automatic_cap("bob") == 3 and budgets.automatic_cap("nobody") == 0
    # Pausing twice (a second guard racing the first) is not an error.
    await budgets.pause_for("bob", reason)
    await budgets.pause_for("bob", reason)
    assert [t[1] for t in agents.transitions] == ["pause", "pause"]
    # eve has no overrides: the daemon's [guards] apply.
    assert budgets.budget("eve")["tokens_limit"] == (GuardsConfig().daily_tokens or None)


class FakeBudgets:
    def __init__(self, cap: int) -> None:
        self.cap = cap

    def automatic_cap(self, agent_id: str) -> int:
        return self.cap


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "legion.db", StoreConfig())
    yield s
    await s.close()


async def _seed_agent(store: Store, agent_id: str) -> None:
    # The messages table refers to its agent: a row as the supervisor would write it.
    await store.writer.run(
        lambda db: db.execute(
            "INSERT INTO agents (id, model, state, created_at, updated_at)"
            " VALUES (?, 'mock/echo', 'running', 't', 't')",
            (agent_id,),
        )
    )


async def test_the_inbox_caps_automatic_triggers_and_wakes_waiters(store: Store) -> None:
    await _seed_agent(store, "bob")
    bus = EventBus(store.writer)
    inbox = Inbox(store, bus, FakeAgents(_record("bob")), FakeBudgets(cap=1))  # type: ignore[arg-type]
    received: list[int] = []
    bus.listen(["message.received"], lambda ev: received.append(ev.data["message_id"]))

    first = await inbox.deliver_automatic("bob", "cron:1", "tick", source="test")
    dropped = await inbox.deliver_automatic("bob", "cron:1", "tick", source="test")
    assert first is not None and dropped is None  # over the cap of 1 in flight
    assert received == [first.id]  # every committed delivery is announced, once

    with pytest.raises(NotFound):
        await inbox.tell("nobody", "hi")

    # A waiter is woken by the message's ending event, whoever commits it.
    async def finish() -> None:
        await bus.emit("bob", "message.replied", {"message_id": first.id, "reply": "ok"})

    async with anyio.create_task_group() as tg:
        await store.writer.run(
            lambda db: db.execute(
                "UPDATE messages SET status = 'done', reply = 'ok' WHERE id = ?", (first.id,)
            )
        )
        tg.start_soon(finish)
        with anyio.fail_after(10):
            done = await inbox.wait(first.id, within=10)
    assert done.status == "done" and done.reply == "ok"


class FakeRegistry:
    """The registry as ToolCalls uses it: records the context each call got."""

    def __init__(self) -> None:
        self.contexts: list[ToolContext] = []

    def prompt_schemas(self) -> list[dict[str, Any]]:
        return [{"name": "echo"}]

    def names(self) -> set[str]:
        return {"echo"}

    async def run(self, call: ToolCall, ctx: ToolContext, time_limit: float) -> ToolResult:
        self.contexts.append(ctx)
        return ToolResult(call, True, f'{{"ran": "{call.name}", "args": {call.arguments}}}', 1.0)


async def test_tool_calls_give_kernel_tools_their_context_and_run_watcher_actions(
    store: Store,
) -> None:
    bus = EventBus(store.writer)
    registry = FakeRegistry()
    services = {
        name: object()
        for name in (
            "agents",
            "activity",
            "budgets",
            "models",
            "memory",
            "board",
            "fleet",
            "messaging",
            "scheduler",
            "watchers",
            "tools",
            "reflection",
        )
    }
    kernel = Kernel(**services)  # type: ignore[arg-type]
    calls = ToolCalls(registry, kernel, bus, tool_timeout=5)  # type: ignore[arg-type]

    result = await calls.run(
        ToolCall(id="1", name="echo", arguments="{}"),
        ToolContext(agent_id="bob", session_id=7, call_event=3),
        5,
    )
    assert result.ok
    ctx = registry.contexts[-1]
    assert isinstance(ctx, KernelContext)
    assert (ctx.agent_id, ctx.session_id, ctx.call_event) == ("bob", 7, 3)
    assert ctx.memory is services["memory"] and ctx.fleet is services["fleet"]
    assert not hasattr(ctx, "services")

    # A watcher's tool action arrives as its fire's event and is answered by watch.tool.
    sub = bus.subscribe(kinds=["watch.tool"])
    async with anyio.create_task_group() as tg:
        await tg.start(calls.run_actions)
        await bus.emit(
            "bob",
            "watch.fired",
            {"watcher": 4, "tool": "echo", "arguments": {"x": 1}, "action": "tool:echo"},
        )
        with anyio.fail_after(10):
            ev = await sub.get()
        tg.cancel_scope.cancel()
    assert ev is not None and ev.data["ok"] is True  # type: ignore[union-attr]
    assert ev.data["tool"] == "echo" and ev.data["arguments"] == {"x": 1}  # type: ignore[union-attr]
    assert registry.contexts[-1].agent_id == "bob"


async def test_activity_interrupts_only_a_running_session() -> None:
    activity = Activity()
    assert activity.interrupt("bob") is False  # unknown
    state = AgentState()
    activity.states["bob"] = state
    assert activity.interrupt("bob") is False and not activity.busy("bob")  # idle
    scope = anyio.CancelScope()
    state.session_scope, state.activity = scope, "thinking"
    assert activity.busy("bob") and activity.interrupt("bob", "stop now")
    assert scope.cancel_called and state.interrupt_reason == "stop now"
    activity.arrived("bob")
    assert state.queued == 1 and state.wake.is_set()


async def test_a_plugin_host_bounds_what_it_relays(store: Store) -> None:
    from legion.daemon.methods import Host

    await _seed_agent(store, "bob")
    bus = EventBus(store.writer)
    agents = FakeAgents(_record("bob"))
    inbox = Inbox(store, bus, agents, FakeBudgets(cap=3))  # type: ignore[arg-type]
    host = Host("chat", agents, inbox, bus, {"token": "x"})  # type: ignore[arg-type]
    assert host.agents() == [
        {"id": "bob", "state": "running", "model": "mock/echo", "parent": None}
    ]
    assert host.settings() == {"token": "x"}
    for text in ("", "   ", "x" * 200_001):
        with pytest.raises(InvalidParams):
            await host.tell("bob", text, sender="chat:alice")
    with pytest.raises(NotFound):
        await host.tell("nobody", "hi", sender="chat:alice")
    mid = await host.tell("bob", "hi", sender="chat:alice")
    msg = await inbox.get(mid)
    assert msg is not None and msg.sender == "chat:alice" and msg.body == "hi"
    ev = await bus.emit("bob", "chat.relayed", {"id": mid})
    assert ev.source == "daemon" and (await host.emit("chat.seen", {"n": 1})) > ev.id
