"""`tools.*` and `plugins.list`: the registry, its statistics and its plugins over RPC.

`tools.run` calls any registry tool from the shell with no model involved;
the call is recorded in the tool statistics like an agent's, and the
tool's own failure is a result with `ok: false`, not an RPC error (so a
script can read the instructive message the model would have read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.llm.types import ToolCall
from legion.daemon.plugins import Plugins
from legion.daemon.rpc.dispatch import Context, NoParams, Params, Registry
from legion.daemon.tools.context import ToolCalls
from legion.daemon.tools.registry import Registry as ToolRegistry
from legion.daemon.tools.sandbox import Sandbox
from legion.tool import ToolContext

Kind = Literal["kernel", "builtin", "starter", "plugin", "authored"]


class ListParams(Params):
    kind: Kind | None = None


class SearchParams(Params):
    query: Annotated[str, Meta(min_length=1)]
    limit: Annotated[int, Meta(ge=1, le=100)] = 10
    kind: Kind | None = None


class NameParams(Params):
    name: str


class StatsParams(Params):
    name: str | None = None


class RunParams(Params):
    name: str
    args: dict[str, Any] = {}
    # The agent the tool acts for (kernel tools need one; agent-written tools
    # then run in its working directory).
    agent: str | None = None
    timeout: Annotated[float, Meta(gt=0, le=3600)] | None = None


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    calls: ToolCalls
    plugins: Plugins
    sandbox: Sandbox
    tool_timeout: float
    tools: ToolRegistry


def register(registry: Registry, s: Deps) -> None:
    async def list_(ctx: Context, p: ListParams) -> dict[str, Any]:
        """Every tool: kernel (in prompts or not), builtin, starter, plugin, agent-written."""
        return {"tools": s.tools.listing(p.kind), "prompt": sorted(s.tools.prompt)}

    async def search(ctx: Context, p: SearchParams) -> dict[str, Any]:
        """Ranked search over names, descriptions and keywords (what tool_search runs)."""
        return {"query": p.query, "results": s.tools.search(p.query, p.limit, p.kind)}

    async def show(ctx: Context, p: NameParams) -> dict[str, Any]:
        """One tool: spec, schema, statistics; source and recent edits if agent-written."""
        out = s.tools.show(p.name)
        if p.name in s.tools.authored.tools:
            out["versions"] = await s.tools.authored.versions(p.name)
        return out

    async def stats(ctx: Context, p: StatsParams) -> dict[str, Any]:
        """Calls, failures, latency p50/p95/p99/max and verdict, per tool."""
        if p.name is not None:
            s.tools.get(p.name)
            return {"tools": [s.tools.summary(p.name)]}
        return {"tools": [s.tools.summary(n) for n in sorted(s.tools.stats.tools)]}

    async def run(ctx: Context, p: RunParams) -> dict[str, Any]:
        """Run a tool directly, no model: the result, or its instructive error."""
        s.tools.get(p.name)
        s.tools.check_agent_bound(p.name, p.agent)
        if p.agent is not None:
            s.agents.get(p.agent)
        call = ToolCall(id=f"rpc-{ctx.peer.pid}", name=p.name, arguments=json.dumps(p.args))
        tctx = ToolContext(agent_id=p.agent or "", session_id=0)
        result = await s.calls.run(call, tctx, p.timeout or s.tool_timeout)
        try:
            value: Any = json.loads(result.content)
        except ValueError:
            value = result.content
        out: dict[str, Any] = {
            "name": p.name,
            "ok": result.ok,
            "duration_ms": result.duration_ms,
            "error_kind": result.error_kind,
            "error": None,
            "hint": None,
        }
        if result.ok:
            out["result"] = value
        else:
            out["result"] = None
            if isinstance(value, dict):
                out["error"], out["hint"] = value.get("error"), value.get("hint")
            else:
                out["error"] = str(value)
        return out

    async def delete(ctx: Context, p: NameParams) -> dict[str, Any]:
        """Delete an agent-written tool (a person may delete any)."""
        return await s.tools.delete(None, p.name, source=f"rpc:uid={ctx.peer.uid}")

    async def plugins(ctx: Context, p: NoParams) -> dict[str, Any]:
        """Loaded, failed and disabled plugins, where each came from and what it adds."""
        return {"plugins": s.plugins.listing(), "sandbox": s.sandbox.describe()}

    registry.add("tools.list", list_, ListParams)
    registry.add("tools.search", search, SearchParams)
    registry.add("tools.show", show, NameParams)
    registry.add("tools.stats", stats, StatsParams)
    registry.add("tools.run", run, RunParams)
    registry.add("tools.delete", delete, NameParams)
    registry.add("plugins.list", plugins, NoParams)
