"""Tools about tools: find and call registry tools, write your own, see how they do.

`tool_search` and `tool_invoke` are in every prompt; the rest are in the
registry (found with `tool_search`, e.g. "write a tool").
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from legion.daemon.tools.context import KernelContext
from legion.tool import ToolError, tool


@tool(keywords=["find", "search", "discover", "registry"])
async def tool_search(
    ctx: KernelContext, query: str, limit: Annotated[int, Meta(ge=1, le=20)] = 5
) -> dict[str, Any]:
    """Find more tools (web, http, schedules, watchers, writing your own tools...) by what
    they do; the best hits show their parameters. Call one with tool_invoke."""
    hits = ctx.tools.search(query, limit)
    if not hits:
        return {
            "query": query,
            "results": [],
            "note": "nothing matched; try other words (e.g. http, web, schedule, watch, "
            "file, home) or write the tool you need with tool_write",
        }
    return {"query": query, "results": hits, "call_with": "tool_invoke(name=NAME, arguments={...})"}


@tool(keywords=["call", "run", "invoke"])
async def tool_invoke(
    ctx: KernelContext, name: str, arguments: dict[str, Any] | str | None = None
) -> Any:
    """Call a registry tool by name with its arguments (an object), e.g.
    tool_invoke(name="http_get", arguments={"url": "http://example.com"})."""
    # The registry unwraps tool_invoke calls itself (stats and errors name the tool
    # actually run; the tool.call event says which under `invokes`); this body is
    # reached only if that changes.
    raise ToolError("tool_invoke must be run through the registry")


@tool(keywords=["write", "create", "new", "author", "code", "python", "make", "build"])
async def tool_write(
    ctx: KernelContext,
    name: str,
    source: str,
    description: str = "",
    keywords: list[str] | None = None,
    network: bool | None = None,
    env: list[str] | None = None,
    timeout: Annotated[float, Meta(gt=0, le=3600)] | None = None,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Create or replace your own Python tool. source: one entry function named like the
    tool (typed parameters; its docstring is the description), optional `def test():`
    self-test. It runs sandboxed in your working directory; network=true if it needs the
    network; env: names of environment variables it needs. Replacing a tool keeps the
    settings you leave out."""
    out: dict[str, Any] = await ctx.tools.authored.write(
        ctx.agent_id,
        name,
        source,
        description=description,
        keywords=keywords,
        network=network,
        env=env,
        timeout=timeout,
        caused_by=ctx.call_event,
    )
    ctx.tools.refresh(name)
    return out


@tool(keywords=["read", "source", "show", "view", "code"])
async def tool_read(
    ctx: KernelContext, name: str, start_line: int | None = None, end_line: int | None = None
) -> dict[str, Any]:
    """Read an agent-written tool: its spec, recent edits, and source numbered like
    `cat -n` (the line numbers tool_edit takes), with total_lines and content_hash."""
    result: dict[str, Any] = ctx.tools.authored.read(name, start_line, end_line)
    return result


@tool(keywords=["edit", "change", "fix", "modify", "patch", "replace", "insert", "code"])
async def tool_edit(
    ctx: KernelContext,
    name: str,
    mode: str | None = None,
    old_string: str | None = None,
    new_string: str | None = None,
    start_line: int | None = None,
    end_line: int | None = None,
    new_text: str | None = None,
    insert_at_line: int | None = None,
    expected_content_hash: str | None = None,
) -> dict[str, Any]:
    """Edit your tool, then it is rebuilt. mode: string, range or insert (or left out:
    guessed from the arguments). STRING: old_string -> new_string (must occur
    exactly once). RANGE: replace lines start_line..end_line with new_text. INSERT: put
    new_text before insert_at_line. RANGE and INSERT need expected_content_hash from
    tool_read."""
    out: dict[str, Any] = await ctx.tools.authored.edit(
        ctx.agent_id,
        name,
        mode=mode,
        old_string=old_string,
        new_string=new_string,
        start_line=start_line,
        end_line=end_line,
        new_text=new_text,
        insert_at_line=insert_at_line,
        expected_content_hash=expected_content_hash,
        caused_by=ctx.call_event,
    )
    ctx.tools.refresh(name)
    return out


@tool(keywords=["delete", "remove", "drop", "retire"])
async def tool_delete(ctx: KernelContext, name: str) -> dict[str, Any]:
    """Delete a tool you maintain (its versions go with it)."""
    out: dict[str, Any] = await ctx.tools.delete(
        ctx.agent_id, name, source=f"agent:{ctx.agent_id}", caused_by=ctx.call_event
    )
    return out


@tool(keywords=["stats", "statistics", "health", "latency", "failures", "verdict"])
async def tool_stats(
    ctx: KernelContext, name: str | None = None, limit: Annotated[int, Meta(ge=1, le=100)] = 10
) -> dict[str, Any]:
    """How tools are doing: calls, failures, latency p50/p95/p99/max and a verdict
    (healthy, watch, degraded). One tool by name, or the least healthy and busiest."""
    reg = ctx.tools
    if name is not None:
        reg.get(name)
        return dict(reg.summary(name))
    rows = [reg.summary(n) for n, s in reg.stats.tools.items() if s.calls]
    rank = {"degraded": 0, "watch": 1, "healthy": 2}
    rows.sort(key=lambda r: (rank[r["verdict"]], -r["calls"]))
    return {"tools": rows[:limit], "total": len(rows)}


PROMPT = [tool_search, tool_invoke]
REGISTRY = [tool_write, tool_read, tool_edit, tool_delete, tool_stats]
