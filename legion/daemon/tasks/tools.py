"""Task kernel tools: an agent's own kanban, and its links to others' boards.

Tasks are referred to as `3` (your board) or `3@bob` (bob's board).
"""

from __future__ import annotations

from typing import Any, Literal

from legion.daemon.tasks import queries
from legion.daemon.tools.context import KernelContext
from legion.tool import tool

Status = Literal["open", "doing", "blocked", "done", "cancelled"]
Preset = Literal[
    "blocked",
    "stuck_in_doing",
    "overdue",
    "upcoming",
    "with_notes_not_done",
    "orphans",
    "longest_chain",
    "all",
]


def _source(ctx: KernelContext) -> dict[str, Any]:
    return {"source": f"agent:{ctx.agent_id}", "caused_by": ctx.call_event}


@tool(keywords=["task", "todo", "plan", "assign", "board"])
async def task_create(
    ctx: KernelContext,
    title: str,
    body: str = "",
    owner: str | None = None,
    lane: str = "",
    priority: int = 0,
    due: str | None = None,
    blocked_by: list[str] | None = None,
) -> dict[str, Any]:
    """Create a task. owner: another agent's id assigns it to them (it lands in their inbox).
    blocked_by: tasks that must be done first (3 or 3@agent). due: ISO date."""
    return dict(
        await ctx.board.create(
            ctx.agent_id,
            title,
            body=body,
            owner=owner,
            lane=lane,
            priority=priority,
            due=due,
            blocked_by=blocked_by,
            **_source(ctx),
        )
    )


@tool(keywords=["task", "status", "progress", "block", "note"])
async def task_update(
    ctx: KernelContext,
    task: str,
    status: Status | None = None,
    title: str | None = None,
    body: str | None = None,
    lane: str | None = None,
    priority: int | None = None,
    due: str | None = None,
    note: str | None = None,
    add_blockers: list[str] | None = None,
    remove_blockers: list[str] | None = None,
) -> dict[str, Any]:
    """Change a task: its status (open, doing, blocked, done, cancelled), fields, a note,
    or its blockers."""
    return dict(
        await ctx.board.update(
            ctx.agent_id,
            task,
            status=status,
            title=title,
            body=body,
            lane=lane,
            priority=priority,
            due=due,
            note=note,
            add_blockers=add_blockers,
            remove_blockers=remove_blockers,
            **_source(ctx),
        )
    )


@tool(keywords=["task", "done", "finish", "complete"])
async def task_complete(ctx: KernelContext, task: str, note: str | None = None) -> dict[str, Any]:
    """Mark a task done (with an optional closing note); tasks it blocked are unblocked."""
    return dict(await ctx.board.complete(ctx.agent_id, task, note, **_source(ctx)))


@tool(keywords=["task", "details", "notes", "show"])
async def task_get(ctx: KernelContext, task: str) -> dict[str, Any]:
    """One task in full: body, blockers, dependents, notes and status history."""
    return dict(await ctx.board.get(ctx.agent_id, task))


@tool(keywords=["task", "todo", "board", "list"])
async def task_list(
    ctx: KernelContext,
    status: Status | None = None,
    lane: str | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """List tasks on your board (or another agent's, with owner), by status or lane."""
    tasks = await ctx.board.listing(ctx.agent_id, owner, status, lane)
    return {"tasks": tasks}


@tool(keywords=["task", "blocked", "overdue", "stuck", "query", "report", "critical", "path"])
async def task_query(
    ctx: KernelContext, presets: list[Preset], stuck_hours: float = 24.0, upcoming_days: float = 7.0
) -> dict[str, Any]:
    """Answer several questions about your board at once, e.g. presets: ["stuck_in_doing",
    "overdue", "upcoming"]. Presets: blocked, stuck_in_doing, overdue, upcoming,
    with_notes_not_done, orphans, longest_chain, all."""
    return await queries.query(
        ctx.board,
        ctx.agent_id,
        list(presets),
        stuck_hours=stuck_hours,
        upcoming_days=upcoming_days,
    )


TOOLS = [task_create, task_update, task_complete, task_get, task_list, task_query]
