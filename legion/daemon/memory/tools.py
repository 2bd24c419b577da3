"""Memory kernel tools: what an agent uses to remember and recall.

Paths are the agent's own; `shared/...` paths are readable and writable by
every agent. Results say which search mode answered and why.
"""

from __future__ import annotations

from typing import Any, Literal

from legion.daemon.tools.context import KernelContext
from legion.tool import tool


@tool(keywords=["remember", "save", "note", "store", "memory"])
async def memory_write(
    ctx: KernelContext,
    path: str,
    content: str,
    mode: Literal["replace", "create", "append"] = "replace",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Save text to your memory at a path (e.g. notes/ideas.md; shared/... is shared with
    all agents). mode: replace (default), create (fail if it exists) or append."""
    entry, _ = await ctx.memory.write(
        ctx.agent_id,
        path,
        content,
        mode=mode,
        tags=tags,
        source=f"agent:{ctx.agent_id}",
        caused_by=ctx.call_event,
    )
    return {"path": entry.path, "bytes": entry.bytes, "shared": entry.shared}


@tool(keywords=["recall", "read", "note", "memory"])
async def memory_read(ctx: KernelContext, path: str) -> dict[str, Any]:
    """Read one memory entry by its path."""
    entry = await ctx.memory.read(ctx.agent_id, path)
    return {
        "path": entry.path,
        "content": entry.content,
        "tags": entry.tags,
        "updated_at": entry.updated_at,
    }


@tool(keywords=["memory", "notes", "list", "browse", "entries"])
async def memory_list(ctx: KernelContext, prefix: str = "", limit: int = 100) -> dict[str, Any]:
    """List your memory entries under a path prefix, with sizes and times."""
    entries = await ctx.memory.listing(ctx.agent_id, prefix, max(1, min(limit, 1000)))
    return {
        "entries": [
            {k: e[k] for k in ("path", "bytes", "updated_at", "accessed_at", "shared")}
            for e in entries
        ]
    }


@tool(keywords=["memory", "forget", "delete", "remove", "note"])
async def memory_delete(ctx: KernelContext, path: str) -> dict[str, Any]:
    """Delete one memory entry."""
    await ctx.memory.delete(
        ctx.agent_id, path, source=f"agent:{ctx.agent_id}", caused_by=ctx.call_event
    )
    return {"deleted": path}


@tool(keywords=["memory", "recall", "find", "search", "remember"])
async def memory_search(
    ctx: KernelContext, query: str, semantic: bool = False, limit: int = 8, prefix: str = ""
) -> dict[str, Any]:
    """Search your memory (and shared/) by words; semantic: true also finds entries by
    meaning. The result says which mode answered."""
    return dict(
        await ctx.memory.search(
            ctx.agent_id, query, semantic=semantic, limit=max(1, min(limit, 50)), prefix=prefix
        )
    )


TOOLS = [memory_write, memory_read, memory_list, memory_delete, memory_search]
