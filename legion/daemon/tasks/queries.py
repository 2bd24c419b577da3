"""Questions asked of a board: the `task_query` presets, the dependency graph,
and the burndown series. Read-only; several presets may be asked at once.

Presets (docs/tasks.md):
- `blocked`: tasks in `blocked`.
- `stuck_in_doing`: in `doing` for longer than `stuck_hours` (default 24).
- `overdue`: due in the past and not finished.
- `upcoming`: due within `upcoming_days` (default 7) and not finished.
- `with_notes_not_done`: unfinished tasks that have notes.
- `orphans`: unfinished tasks that can never be unblocked: a blocker was
  cancelled, or belongs to an agent that no longer exists.
- `longest_chain`: the longest chain of unfinished tasks, following
  blockers across boards, that ends at one of this board's tasks (the
  critical path to finishing the board).
- `all`: every task on the board.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from legion.daemon.tasks.board import PRESETS, Board
from legion.errors import InvalidParams, close_matches


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


async def query(
    board: Board,
    viewer: str,
    presets: list[str],
    *,
    owner: str | None = None,
    stuck_hours: float = 24.0,
    upcoming_days: float = 7.0,
) -> dict[str, Any]:
    for p in presets:
        if p not in PRESETS:
            near = close_matches(p, list(PRESETS))
            raise InvalidParams(
                f"unknown preset {p!r}",
                hint=(f"did you mean {near[0]!r}? " if near else "")
                + f"presets: {', '.join(PRESETS)}",
                candidates=near,
            )
    if not presets:
        raise InvalidParams("no presets given", hint=f"ask for some of: {', '.join(PRESETS)}")
    home = owner or viewer
    now = datetime.now(UTC)
    live = set(board.agents.agents)

    def fn(db: Any) -> dict[str, Any]:
        def ids(sql: str, *args: Any) -> list[dict[str, Any]]:
            return [board._view(db, r[0], viewer) for r in db.execute(sql, (home, *args))]

        out: dict[str, Any] = {}
        unfinished = "status NOT IN ('done', 'cancelled')"
        for p in presets:
            if p == "blocked":
                out[p] = ids(
                    "SELECT id FROM tasks WHERE owner = ? AND status = 'blocked' ORDER BY num"
                )
            elif p == "stuck_in_doing":
                out[p] = ids(
                    "SELECT id FROM tasks WHERE owner = ? AND status = 'doing' AND "
                    "status_changed_at < ? ORDER BY status_changed_at",
                    _iso(now - timedelta(hours=stuck_hours)),
                )
            elif p == "overdue":
                out[p] = ids(
                    f"SELECT id FROM tasks WHERE owner = ? AND {unfinished} AND "
                    "due IS NOT NULL AND due < ? ORDER BY due",
                    _iso(now),
                )
            elif p == "upcoming":
                out[p] = ids(
                    f"SELECT id FROM tasks WHERE owner = ? AND {unfinished} AND "
                    "due >= ? AND due <= ? ORDER BY due",
                    _iso(now),
                    _iso(now + timedelta(days=upcoming_days)),
                )
            elif p == "with_notes_not_done":
                out[p] = ids(
                    f"SELECT id FROM tasks WHERE owner = ? AND {unfinished} AND "
                    "EXISTS (SELECT 1 FROM task_notes n WHERE n.task_id = tasks.id) "
                    "ORDER BY num"
                )
            elif p == "orphans":
                rows = db.execute(
                    f"SELECT DISTINCT t.id, b.status AS bstatus, b.owner AS bowner FROM tasks t "
                    "JOIN task_deps d ON d.task_id = t.id JOIN tasks b ON b.id = d.blocker_id "
                    f"WHERE t.owner = ? AND t.{unfinished} ORDER BY t.num",
                    (home,),
                ).fetchall()
                dead = sorted(
                    {
                        r["id"]
                        for r in rows
                        if r["bstatus"] == "cancelled"
                        or (r["bowner"] not in live and r["bstatus"] != "done")
                    }
                )
                out[p] = [board._view(db, i, viewer) for i in dead]
            elif p == "longest_chain":
                out[p] = _longest_chain(board, db, home, viewer)
            elif p == "all":
                out[p] = ids("SELECT id FROM tasks WHERE owner = ? ORDER BY num")
        return out

    return dict(await board.read(fn))


def _longest_chain(board: Board, db: Any, home: str, viewer: str) -> list[dict[str, Any]]:
    """Longest path of unfinished tasks along blocked_by edges, ending on this board.

    Dependencies are a DAG (cycles are refused), so a memoised depth-first
    search gives, per task, its longest chain of unfinished blockers."""
    best: dict[int, list[int]] = {}

    def chain(tid: int) -> list[int]:
        if tid in best:
            return best[tid]
        longest: list[int] = []
        for (bid,) in db.execute(
            "SELECT d.blocker_id FROM task_deps d JOIN tasks b ON b.id = d.blocker_id "
            "WHERE d.task_id = ? AND b.status NOT IN ('done', 'cancelled')",
            (tid,),
        ):
            candidate = chain(bid)
            if len(candidate) > len(longest):
                longest = candidate
        best[tid] = [*longest, tid]
        return best[tid]

    winner: list[int] = []
    for (tid,) in db.execute(
        "SELECT id FROM tasks WHERE owner = ? AND status NOT IN ('done', 'cancelled') ORDER BY num",
        (home,),
    ):
        c = chain(tid)
        if len(c) > len(winner):
            winner = c
    return [board._view(db, i, viewer) for i in winner]


async def graph(board: Board, viewer: str, owner: str | None = None) -> dict[str, Any]:
    """The board's tasks with every task they depend on or that depends on them,
    across boards: nodes and blocked_by edges."""
    home = owner or viewer

    def fn(db: Any) -> dict[str, Any]:
        frontier = [r[0] for r in db.execute("SELECT id FROM tasks WHERE owner = ?", (home,))]
        seen = set(frontier)
        edges: set[tuple[int, int]] = set()
        while frontier:
            tid = frontier.pop()
            for a, b in db.execute(
                "SELECT task_id, blocker_id FROM task_deps WHERE task_id = ? OR blocker_id = ?",
                (tid, tid),
            ):
                edges.add((a, b))
                for n in (a, b):
                    if n not in seen:
                        seen.add(n)
                        frontier.append(n)
        names = {i: board._view(db, i, viewer) for i in seen}
        return {
            "nodes": sorted(
                names.values(), key=lambda v: (v["owner"] != home, v["owner"], v["num"])
            ),
            "edges": sorted(
                [{"task": names[a]["task"], "blocked_by": names[b]["task"]} for a, b in edges],
                key=lambda e: (e["task"], e["blocked_by"]),
            ),
        }

    return dict(await board.read(fn))


async def burndown(board: Board, owner: str) -> dict[str, Any]:
    """Open (unfinished) vs done tasks over time, from the status history."""

    def fn(db: Any) -> dict[str, Any]:
        changes = db.execute(
            "SELECT task_id, status, at FROM task_changes WHERE owner = ? ORDER BY id", (owner,)
        ).fetchall()
        if not changes:
            return {"owner": owner, "bucket": None, "points": []}
        first = datetime.fromisoformat(changes[0]["at"].replace("Z", "+00:00"))
        span = datetime.now(UTC) - first
        bucket = (
            timedelta(minutes=1)
            if span < timedelta(hours=2)
            else timedelta(hours=1)
            if span < timedelta(days=3)
            else timedelta(days=1)
        )
        state: dict[int, str] = {}
        points: list[dict[str, Any]] = []
        edge = first + bucket
        for c in changes:
            at = datetime.fromisoformat(c["at"].replace("Z", "+00:00"))
            while at >= edge:
                points.append(_point(edge, state))
                edge += bucket
            state[c["task_id"]] = c["status"]
        points.append(_point(edge, state))
        return {"owner": owner, "bucket": str(bucket), "points": points[-60:]}

    return dict(await board.read(fn))


def _point(at: datetime, state: dict[int, str]) -> dict[str, Any]:
    values = list(state.values())
    return {
        "at": _iso(at),
        "open": sum(v not in ("done", "cancelled") for v in values),
        "done": values.count("done"),
    }
