"""`tasks.*`: the boards over RPC (what the CLI and people use; the actor is "user")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.rpc.dispatch import Context, Params, Registry
from legion.daemon.tasks import queries
from legion.daemon.tasks.board import Board

Status = Literal["open", "doing", "blocked", "done", "cancelled"]
USER = "user"


class BoardParams(Params):
    agent: str


class ListParams(Params):
    agent: str
    status: Status | None = None
    lane: str | None = None


class TaskParams(Params):
    agent: str
    task: str


class CreateParams(Params):
    agent: str
    title: Annotated[str, Meta(min_length=1, max_length=500)]
    body: str = ""
    lane: str = ""
    priority: int = 0
    due: str | None = None
    blocked_by: list[str] = []


class UpdateParams(Params):
    agent: str
    task: str
    status: Status | None = None
    title: str | None = None
    body: str | None = None
    lane: str | None = None
    priority: int | None = None
    due: str | None = None
    note: str | None = None
    add_blockers: list[str] = []
    remove_blockers: list[str] = []


class NoteParams(Params):
    agent: str
    task: str
    text: Annotated[str, Meta(min_length=1)]


class QueryParams(Params):
    agent: str
    presets: list[str]
    stuck_hours: Annotated[float, Meta(gt=0)] = 24.0
    upcoming_days: Annotated[float, Meta(gt=0)] = 7.0


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    board: Board


def register(registry: Registry, s: Deps) -> None:
    def board(agent: str) -> str:
        s.agents.get(agent)
        return agent

    src = "rpc"

    async def list_(ctx: Context, p: ListParams) -> list[dict[str, Any]]:
        """An agent's board, unfinished first, by priority."""
        return await s.board.listing(board(p.agent), None, p.status, p.lane)

    async def get(ctx: Context, p: TaskParams) -> dict[str, Any]:
        """One task in full (body, blockers, dependents, notes, status history)."""
        return await s.board.get(board(p.agent), p.task)

    async def create(ctx: Context, p: CreateParams) -> dict[str, Any]:
        """Add a task to an agent's board (as the user: no inbox message is sent)."""
        return await s.board.create(
            board(p.agent),
            p.title,
            body=p.body,
            lane=p.lane,
            priority=p.priority,
            due=p.due,
            blocked_by=p.blocked_by,
            source=f"{src}:uid={ctx.peer.uid}",
            actor=USER,
        )

    async def update(ctx: Context, p: UpdateParams) -> dict[str, Any]:
        """Change a task's status, fields, blockers, or add a note."""
        return await s.board.update(
            board(p.agent),
            p.task,
            status=p.status,
            title=p.title,
            body=p.body,
            lane=p.lane,
            priority=p.priority,
            due=p.due,
            note=p.note,
            add_blockers=p.add_blockers,
            remove_blockers=p.remove_blockers,
            source=f"{src}:uid={ctx.peer.uid}",
            actor=USER,
        )

    async def complete(ctx: Context, p: TaskParams) -> dict[str, Any]:
        """Mark a task done; the tasks it blocked are unblocked and their owners woken."""
        return await s.board.complete(
            board(p.agent), p.task, source=f"{src}:uid={ctx.peer.uid}", actor=USER
        )

    async def note(ctx: Context, p: NoteParams) -> dict[str, Any]:
        """Add a note to a task's timeline."""
        return await s.board.note(
            board(p.agent), p.task, p.text, source=f"{src}:uid={ctx.peer.uid}", actor=USER
        )

    async def query(ctx: Context, p: QueryParams) -> dict[str, Any]:
        """Presets over a board, several at once (blocked, stuck_in_doing, overdue, ...)."""
        return await queries.query(
            s.board,
            board(p.agent),
            p.presets,
            stuck_hours=p.stuck_hours,
            upcoming_days=p.upcoming_days,
        )

    async def graph(ctx: Context, p: BoardParams) -> dict[str, Any]:
        """The board's tasks and every task linked to them by dependencies, across boards."""
        return await queries.graph(s.board, board(p.agent))

    async def burndown(ctx: Context, p: BoardParams) -> dict[str, Any]:
        """Open vs done tasks over time, from the status history."""
        return await queries.burndown(s.board, board(p.agent))

    for name, fn, params in (
        ("tasks.list", list_, ListParams),
        ("tasks.get", get, TaskParams),
        ("tasks.create", create, CreateParams),
        ("tasks.update", update, UpdateParams),
        ("tasks.complete", complete, TaskParams),
        ("tasks.note", note, NoteParams),
        ("tasks.query", query, QueryParams),
        ("tasks.graph", graph, BoardParams),
        ("tasks.burndown", burndown, BoardParams),
    ):
        registry.add(name, fn, params)
