"""What Legion's kernel tools work with, and where every tool call is run.

A plugin's tool receives the public `ToolContext` (who calls, from which
session, its settings). A kernel tool receives a `KernelContext`: the same,
plus the services kernel tools act on, each typed, so a reader sees what a
tool may touch. Nothing here is the daemon as a whole: the RPC server, the
runtime, the store and the sandbox are not in it.

`ToolCalls` is the one place a call runs: a session's, and a watcher's
`tool:NAME` action (which arrives as its `watch.fired` event: the tools reach
the watchers, so the watchers cannot hold the tools in turn).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.daemon.agents.activity import Activity
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.fleet import Fleet
from legion.daemon.agents.messaging import Messaging
from legion.daemon.agents.reflection import Reflection
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus
from legion.daemon.llm.client import ModelClient
from legion.daemon.memory.service import Memory
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.tasks.board import Board
from legion.daemon.tools.registry import Registry
from legion.daemon.watchers.service import PREVIEW, Watchers
from legion.tool import ToolCall, ToolContext, ToolResult

log = structlog.get_logger("legion.tools")


@dataclass(kw_only=True)
class Kernel:
    """The services kernel tools act on."""

    agents: Supervisor
    activity: Activity
    budgets: Budgets
    models: ModelClient
    memory: Memory
    board: Board
    fleet: Fleet
    messaging: Messaging
    scheduler: Scheduler
    watchers: Watchers
    tools: Registry
    reflection: Reflection


@dataclass(kw_only=True)
class KernelContext(Kernel, ToolContext):
    """A kernel tool's context: the call's own fields and the kernel's services."""


class ToolCalls:
    """Every tool call, run with the context its tool may see."""

    def __init__(
        self, registry: Registry, kernel: Kernel, bus: EventBus, tool_timeout: float
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.tool_timeout = tool_timeout
        self._kernel = {f.name: getattr(kernel, f.name) for f in dataclasses.fields(Kernel)}
        send, receive = anyio.create_memory_object_stream[Event](max_buffer_size=1_000_000)
        self._fired = send
        self._receive = receive
        bus.listen(["watch.fired"], self._on_fired)

    # What a session needs of the tools (session.ToolRunner).

    def prompt_schemas(self) -> list[dict[str, Any]]:
        return self.registry.prompt_schemas()

    def names(self) -> Any:
        return self.registry.names()

    async def run(self, call: ToolCall, ctx: ToolContext, time_limit: float) -> ToolResult:
        full = KernelContext(
            agent_id=ctx.agent_id,
            session_id=ctx.session_id,
            call_event=ctx.call_event,
            hops=ctx.hops,
            **self._kernel,
        )
        return await self.registry.run(call, full, time_limit)

    # A watcher's tool action.

    def _on_fired(self, ev: Event) -> None:
        if "tool" in ev.data:
            self._fired.send_nowait(ev)

    async def run_actions(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run watchers' tool actions as their fires are committed, each in its own
        task of this group (a slow tool does not hold up the next fire)."""
        async with anyio.create_task_group() as tg, self._receive:
            task_status.started()
            async for ev in self._receive:
                tg.start_soon(self._action, ev)

    async def _action(self, fired: Event) -> None:
        wid, name, args = fired.data["watcher"], fired.data["tool"], fired.data["arguments"]
        agent = fired.agent or ""
        call = ToolCall(id=f"watcher-{wid}", name=name, arguments=json.dumps(args))
        ctx = ToolContext(agent_id=agent, session_id=0, call_event=fired.id)
        try:
            result = await self.run(call, ctx, self.tool_timeout)
        except Exception as exc:  # the registry never raises for a tool; this is ours
            log.exception("a watcher's tool action failed", watcher=wid, tool=name)
            ok, content = False, f"{name} failed: {exc}"
        else:
            ok, content = result.ok, result.content
        await self.bus.emit(
            agent,
            "watch.tool",
            {
                "watcher": wid,
                "tool": name,
                "arguments": args,
                "ok": ok,
                "result": content[:PREVIEW],
            },
            caused_by=fired.id,
            source=f"watcher:{wid}",
        )
