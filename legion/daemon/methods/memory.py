"""`memory.*`: an agent's memory over RPC (what the CLI and people use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.memory.service import Entry, Memory
from legion.daemon.rpc.dispatch import Context, Params, Registry


class PathParams(Params):
    agent: str
    path: str


class WriteParams(Params):
    agent: str
    path: str
    content: str
    mode: Literal["replace", "create", "append"] = "replace"
    tags: list[str] | None = None


class ListParams(Params):
    agent: str
    prefix: str = ""
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 200


class SearchParams(Params):
    agent: str
    query: Annotated[str, Meta(min_length=1)]
    semantic: bool = False
    limit: Annotated[int, Meta(ge=1, le=200)] = 10
    prefix: str = ""


class StatsParams(Params):
    agent: str | None = None


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    memory: Memory


def register(registry: Registry, s: Deps) -> None:
    def check(agent: str) -> None:
        s.agents.get(agent)  # memory is reached through a live agent: privacy by owner

    async def read(ctx: Context, p: PathParams) -> Entry:
        """One entry of an agent's memory (its own, or shared/...)."""
        check(p.agent)
        return await s.memory.read(p.agent, p.path)

    async def write(ctx: Context, p: WriteParams) -> dict[str, Any]:
        """Write (replace, create or append) an entry in an agent's memory."""
        check(p.agent)
        entry, ev = await s.memory.write(
            p.agent, p.path, p.content, mode=p.mode, tags=p.tags, source=f"rpc:uid={ctx.peer.uid}"
        )
        return {"path": entry.path, "bytes": entry.bytes, "shared": entry.shared, "event": ev}

    async def delete(ctx: Context, p: PathParams) -> dict[str, Any]:
        """Delete an entry from an agent's memory."""
        check(p.agent)
        ev = await s.memory.delete(p.agent, p.path, source=f"rpc:uid={ctx.peer.uid}")
        return {"deleted": p.path, "event": ev}

    async def list_(ctx: Context, p: ListParams) -> list[dict[str, Any]]:
        """An agent's entries (and shared/ ones) under a prefix, with sizes and times."""
        check(p.agent)
        return await s.memory.listing(p.agent, p.prefix, p.limit)

    async def search(ctx: Context, p: SearchParams) -> dict[str, Any]:
        """Literal (FTS5) or hybrid semantic search; says which mode answered and why."""
        check(p.agent)
        return await s.memory.search(
            p.agent, p.query, semantic=p.semantic, limit=p.limit, prefix=p.prefix
        )

    async def stats(ctx: Context, p: StatsParams) -> dict[str, Any]:
        """Entries, bytes, quotas, the embedder and the backfill's progress."""
        if p.agent is not None:
            check(p.agent)
        return await s.memory.stats(p.agent)

    registry.add("memory.read", read, PathParams)
    registry.add("memory.write", write, WriteParams)
    registry.add("memory.delete", delete, PathParams)
    registry.add("memory.list", list_, ListParams)
    registry.add("memory.search", search, SearchParams)
    registry.add("memory.stats", stats, StatsParams)
