"""The task board: a durable kanban per agent, with dependencies across agents.

Tasks are numbered per board; `3` is task 3 on the caller's own board and
`3@bob` is task 3 on bob's. The rules (docs/tasks.md):

- Dependencies form a DAG: an edge that would close a cycle is refused, and
  the error shows the cycle.
- A task with an unfinished blocker is `blocked`: it is created blocked, it
  becomes blocked when such a blocker is added, and it cannot move to
  `doing`, `open` or `done` (the error names the blockers). When its last
  blocker is done it returns to `open` by itself, with a `task.unblocked`
  event and a message to its owner's inbox (which wakes the owner).
  `blocked` may also be set by hand, for outside reasons; such a task (with
  no unfinished blockers) stays blocked until moved.
- A cancelled blocker never unblocks anything: its dependents are reported
  by the `orphans` preset.
- Creating a task on another agent's board assigns it: the message lands in
  that agent's inbox in the same transaction as the task.
- The owner and the creator may change a task; any agent may read any board.

Every change writes its events (and any inbox messages) in the same
transaction as the change itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.errors import Conflict, InvalidParams, NotFound, PermissionDenied

if TYPE_CHECKING:
    from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.supervisor import Supervisor

STATUSES = ("open", "doing", "blocked", "done", "cancelled")
FINISHED = frozenset({"done", "cancelled"})
REF = re.compile(r"^#?(\d+)(?:@([a-z][a-z0-9_-]{0,62}))?$")
PRESETS = (
    "blocked",
    "stuck_in_doing",
    "overdue",
    "upcoming",
    "with_notes_not_done",
    "orphans",
    "longest_chain",
    "all",
)


def parse_due(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParams(
            f"due {value!r} is not a date", hint="use ISO 8601: 2026-12-01 or 2026-12-01T17:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidParams(
            f"invalid status {status!r}",
            hint=f"use one of: {', '.join(STATUSES)}",
            candidates=list(STATUSES),
            kind="invalid_status",
        )
    return status


class Board:
    def __init__(self, store: Store, bus: EventBus, agents: Supervisor, inbox: Inbox) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        # Task wake-ups are automatic triggers: delivered within the agent's cap.
        self.inbox = inbox

    # -- references -------------------------------------------------------------

    def parse_ref(self, viewer: str, ref: str | int) -> tuple[str, int]:
        m = REF.match(str(ref).strip())
        if not m:
            raise InvalidParams(
                f"invalid task reference {ref!r}",
                hint="use a task number (3) for your board, or 3@agent for another agent's",
                kind="invalid_task_ref",
            )
        return (m.group(2) or viewer), int(m.group(1))

    @staticmethod
    def ref_of(owner: str, num: int, viewer: str | None = None) -> str:
        return str(num) if owner == viewer else f"{num}@{owner}"

    def _row(self, db: Any, viewer: str, ref: str | int) -> Any:
        owner, num = self.parse_ref(viewer, ref)
        row = db.execute("SELECT * FROM tasks WHERE owner = ? AND num = ?", (owner, num)).fetchone()
        if row is None:
            active = [
                self.ref_of(r["owner"], r["num"], viewer)
                for r in db.execute(
                    "SELECT owner, num FROM tasks WHERE owner = ? AND status NOT IN "
                    "('done', 'cancelled') ORDER BY num LIMIT 20",
                    (owner,),
                )
            ]
            raise NotFound(
                f"no task {self.ref_of(owner, num, viewer)} on {owner}'s board",
                hint=(
                    f"active tasks there: {', '.join(active)}"
                    if active
                    else f"{owner}'s board has no active tasks"
                )
                + "; task_list shows "
                "them all",
                candidates=active,
                kind="unknown_task",
            )
        return row

    # -- changes ------------------------------------------------------------------

    async def create(
        self,
        viewer: str,
        title: str,
        *,
        body: str = "",
        owner: str | None = None,
        lane: str = "",
        priority: int = 0,
        due: str | None = None,
        blocked_by: list[str] | None = None,
        source: str = "rpc",
        caused_by: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """`viewer` is the board refs are read against; `actor` who acts (an agent, or
        "user" for a person at the CLI), default the viewer."""
        who = actor or viewer
        if not title.strip():
            raise InvalidParams("a task needs a title", hint="say in a few words what to do")
        board = owner or viewer
        self.agents.get(board)  # the board's agent must exist
        due_at = parse_due(due)

        def job(db: Any) -> tuple[dict[str, Any], list[Event]]:
            now = now_iso()
            num = db.execute(
                "SELECT coalesce(max(num), 0) + 1 FROM tasks WHERE owner = ?", (board,)
            ).fetchone()[0]
            tid = db.execute(
                "INSERT INTO tasks (owner, num, title, body, status, lane, priority, due, "
                "creator, created_at, updated_at, status_changed_at) "
                "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
                (board, num, title.strip(), body, lane, priority, due_at, who, now, now, now),
            ).lastrowid
            self._change(db, tid, board, "open", who, now)
            events = [
                insert(
                    db,
                    board,
                    "task.created",
                    {
                        "task": self.ref_of(board, num),
                        "title": title,
                        "creator": who,
                        "lane": lane,
                        "priority": priority,
                        "due": due_at,
                    },
                    caused_by=caused_by,
                    source=source,
                )
            ]
            for ref in blocked_by or []:
                blocker = self._row(db, viewer, ref)
                self._add_edge(db, tid, blocker, board, num, viewer)
            self._settle_blocked(db, tid, who, now, events, source)
            if who not in (board, "user"):
                # An agent's assignment lands in the assignee's inbox (a person who
                # adds a task uses `legion tell` to say so, if they want a session).
                self._tell(
                    db,
                    board,
                    f"[legion] {who} assigned you task {num}: {title}"
                    + (f"\n\n{body}" if body else ""),
                    source,
                    events,
                    events[0].id,
                )
                events.append(
                    insert(
                        db,
                        board,
                        "task.assigned",
                        {"task": self.ref_of(board, num), "by": who},
                        caused_by=events[0].id,
                        source=source,
                    )
                )
            return self._view(db, tid, viewer), events

        return await self._run(job)

    async def update(
        self,
        viewer: str,
        ref: str | int,
        *,
        status: str | None = None,
        title: str | None = None,
        body: str | None = None,
        lane: str | None = None,
        priority: int | None = None,
        due: str | None = None,
        note: str | None = None,
        add_blockers: list[str] | None = None,
        remove_blockers: list[str] | None = None,
        source: str = "rpc",
        caused_by: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        who = actor or viewer
        if status is not None:
            check_status(status)
        due_at = parse_due(due) if due is not None else None

        def job(db: Any) -> tuple[dict[str, Any], list[Event]]:
            row = self._row(db, viewer, ref)
            self._may_change(row, who)
            tid, owner, now = row["id"], row["owner"], now_iso()
            tref = self.ref_of(owner, row["num"])
            events: list[Event] = []
            fields = {
                k: v
                for k, v in (
                    ("title", title),
                    ("body", body),
                    ("lane", lane),
                    ("priority", priority),
                    ("due", due_at),
                )
                if v is not None
            }
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                db.execute(
                    f"UPDATE tasks SET {sets}, updated_at = ? WHERE id = ?",
                    (*fields.values(), now, tid),
                )
                events.append(
                    insert(
                        db,
                        owner,
                        "task.updated",
                        {"task": tref, "changed": fields},
                        caused_by=caused_by,
                        source=source,
                    )
                )
            for bref in add_blockers or []:
                self._add_edge(db, tid, self._row(db, viewer, bref), owner, row["num"], viewer)
            had_blockers = bool(self._blocker_refs(db, tid))
            for bref in remove_blockers or []:
                b = self._row(db, viewer, bref)
                db.execute(
                    "DELETE FROM task_deps WHERE task_id = ? AND blocker_id = ?", (tid, b["id"])
                )
            if add_blockers or remove_blockers:
                events.append(
                    insert(
                        db,
                        owner,
                        "task.dependencies",
                        {
                            "task": tref,
                            "added": add_blockers or [],
                            "removed": remove_blockers or [],
                            "blocked_by": self._blocker_refs(db, tid),
                        },
                        caused_by=caused_by,
                        source=source,
                    )
                )
                self._settle_blocked(db, tid, who, now, events, source, released=had_blockers)
            if note:
                self._note(db, tid, owner, tref, who, note, now, events, source, caused_by)
            if status is not None:
                self._set_status(db, tid, viewer, who, status, now, events, source, caused_by)
            return self._view(db, tid, viewer), events

        return await self._run(job)

    async def complete(
        self,
        viewer: str,
        ref: str | int,
        note: str | None = None,
        source: str = "rpc",
        caused_by: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        return await self.update(
            viewer, ref, status="done", note=note, source=source, caused_by=caused_by, actor=actor
        )

    def _may_change(self, row: Any, viewer: str) -> None:
        if viewer not in (row["owner"], row["creator"], "user"):
            raise PermissionDenied(
                f"task {row['num']}@{row['owner']} belongs to {row['owner']}; only its owner "
                f"or its creator ({row['creator']}) may change it",
                hint=f"send {row['owner']} a message instead, or add a note to a task of yours",
            )

    def _set_status(
        self,
        db: Any,
        tid: int,
        viewer: str,
        who: str,
        status: str,
        now: str,
        events: list[Event],
        source: str,
        caused_by: int | None,
    ) -> None:
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (tid,)).fetchone()
        before = row["status"]
        if status == before:
            return
        pending = self._unfinished_blockers(db, tid)
        if pending and status in ("open", "doing", "done"):
            names = ", ".join(
                f"{self.ref_of(b['owner'], b['num'], viewer)} ('{b['title']}', {b['status']})"
                for b in pending
            )
            raise Conflict(
                f"task {self.ref_of(row['owner'], row['num'], viewer)} is blocked by {names}",
                hint="finish those first (task_complete; `legion tasks done`), or remove the "
                "dependency (task_update with remove_blockers)",
                kind="task_blocked",
                data={"blockers": [self.ref_of(b["owner"], b["num"], viewer) for b in pending]},
            )
        db.execute(
            "UPDATE tasks SET status = ?, updated_at = ?, status_changed_at = ? WHERE id = ?",
            (status, now, now, tid),
        )
        self._change(db, tid, row["owner"], status, who, now)
        tref = self.ref_of(row["owner"], row["num"])
        events.append(
            insert(
                db,
                row["owner"],
                "task.status",
                {"task": tref, "title": row["title"], "from": before, "to": status, "by": who},
                caused_by=caused_by,
                source=source,
            )
        )
        if status == "done":
            self._unblock_dependents(db, tid, who, now, events, source)
        elif before == "done":
            # Reopened: whatever waited on it waits again.
            for (dep,) in db.execute(
                "SELECT task_id FROM task_deps WHERE blocker_id = ?", (tid,)
            ).fetchall():
                self._settle_blocked(db, dep, who, now, events, source)

    def _unblock_dependents(
        self, db: Any, tid: int, viewer: str, now: str, events: list[Event], source: str
    ) -> None:
        done = db.execute("SELECT owner, num, title FROM tasks WHERE id = ?", (tid,)).fetchone()
        for dep in db.execute(
            "SELECT t.* FROM task_deps d JOIN tasks t ON t.id = d.task_id "
            "WHERE d.blocker_id = ? AND t.status = 'blocked'",
            (tid,),
        ).fetchall():
            if self._unfinished_blockers(db, dep["id"]):
                continue
            db.execute(
                "UPDATE tasks SET status = 'open', updated_at = ?, "
                "status_changed_at = ? WHERE id = ?",
                (now, now, dep["id"]),
            )
            self._change(db, dep["id"], dep["owner"], "open", viewer, now)
            dref = self.ref_of(dep["owner"], dep["num"])
            ev = insert(
                db,
                dep["owner"],
                "task.unblocked",
                {
                    "task": dref,
                    "title": dep["title"],
                    "by": self.ref_of(done["owner"], done["num"]),
                },
                source=source,
            )
            events.append(ev)
            if dep["owner"] != viewer:
                self._tell(
                    db,
                    dep["owner"],
                    f"[legion] your task {dep['num']} ({dep['title']}) is unblocked: "
                    f"{self.ref_of(done['owner'], done['num'], dep['owner'])} "
                    f"({done['title']}) is done.",
                    source,
                    events,
                    ev.id,
                )

    def _settle_blocked(
        self,
        db: Any,
        tid: int,
        viewer: str,
        now: str,
        events: list[Event],
        source: str,
        released: bool = False,
    ) -> None:
        """A task with unfinished blockers is blocked; one whose blockers are all done and
        that was blocked by them goes back to open."""
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (tid,)).fetchone()
        pending = self._unfinished_blockers(db, tid)
        target = None
        if pending and row["status"] in ("open", "doing"):
            target = "blocked"
        has_deps = db.execute("SELECT 1 FROM task_deps WHERE task_id = ?", (tid,)).fetchone()
        # `released`: its blockers were just removed, so "blocked" was theirs to lift.
        if not pending and row["status"] == "blocked" and (has_deps or released):
            target = "open"
        if target is None:
            return
        db.execute(
            "UPDATE tasks SET status = ?, updated_at = ?, status_changed_at = ? WHERE id = ?",
            (target, now, now, tid),
        )
        self._change(db, tid, row["owner"], target, viewer, now)
        events.append(
            insert(
                db,
                row["owner"],
                "task.status",
                {
                    "task": self.ref_of(row["owner"], row["num"]),
                    "title": row["title"],
                    "from": row["status"],
                    "to": target,
                    "by": viewer,
                    "reason": "unfinished blockers" if target == "blocked" else "blockers done",
                },
                source=source,
            )
        )

    def _add_edge(self, db: Any, tid: int, blocker: Any, owner: str, num: int, viewer: str) -> None:
        if blocker["id"] == tid:
            raise Conflict(
                "a task cannot block itself", hint="name another task", kind="task_cycle"
            )
        path = self._path(db, blocker["id"], tid)
        if path is not None:
            cycle = [self.ref_of(owner, num, viewer)] + [
                self.ref_of(r["owner"], r["num"], viewer)
                for r in (
                    db.execute("SELECT owner, num FROM tasks WHERE id = ?", (i,)).fetchone()
                    for i in path
                )
            ]
            raise Conflict(
                f"that dependency would make a cycle: {' -> '.join(cycle)}",
                hint="dependencies must form a tree without loops; drop one of these edges",
                kind="task_cycle",
                data={"cycle": cycle},
            )
        db.execute(
            "INSERT OR IGNORE INTO task_deps (task_id, blocker_id) VALUES (?, ?)",
            (tid, blocker["id"]),
        )

    def _path(self, db: Any, start: int, goal: int) -> list[int] | None:
        """A chain start -> ... -> goal following blocked_by edges, if one exists."""
        stack: list[tuple[int, list[int]]] = [(start, [start])]
        seen = {start}
        while stack:
            node, path = stack.pop()
            if node == goal:
                return path
            for (nxt,) in db.execute("SELECT blocker_id FROM task_deps WHERE task_id = ?", (node,)):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    def _note(
        self,
        db: Any,
        tid: int,
        owner: str,
        tref: str,
        viewer: str,
        text: str,
        now: str,
        events: list[Event],
        source: str,
        caused_by: int | None,
    ) -> None:
        db.execute(
            "INSERT INTO task_notes (task_id, author, text, created_at) VALUES (?, ?, ?, ?)",
            (tid, viewer, text, now),
        )
        db.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (now, tid))
        events.append(
            insert(
                db,
                owner,
                "task.noted",
                {"task": tref, "author": viewer, "text": text},
                caused_by=caused_by,
                source=source,
            )
        )

    async def note(
        self,
        viewer: str,
        ref: str | int,
        text: str,
        source: str = "rpc",
        caused_by: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        if not text.strip():
            raise InvalidParams("the note is empty", hint="write what happened or what is next")

        def job(db: Any) -> tuple[dict[str, Any], list[Event]]:
            row = self._row(db, viewer, ref)  # anyone may add a note to any task
            events: list[Event] = []
            self._note(
                db,
                row["id"],
                row["owner"],
                self.ref_of(row["owner"], row["num"]),
                actor or viewer,
                text,
                now_iso(),
                events,
                source,
                caused_by,
            )
            return self._view(db, row["id"], viewer), events

        return await self._run(job)

    def _tell(
        self,
        db: Any,
        agent: str,
        text: str,
        source: str,
        events: list[Event],
        caused_by: int | None = None,
    ) -> None:
        if self.agents.agents.get(agent) is None:
            return
        # In the task's own transaction; the runtime wakes on the committed
        # `message.received` like for any other delivery.
        _msg, ev = self.inbox.automatic_job(
            agent, "legion:tasks", text, source=source, caused_by=caused_by
        )(db)
        events.append(ev)

    def _change(self, db: Any, tid: int, owner: str, status: str, by: str, at: str) -> None:
        db.execute(
            "INSERT INTO task_changes (task_id, owner, status, by, at) VALUES (?, ?, ?, ?, ?)",
            (tid, owner, status, by, at),
        )

    async def _run(self, job: Any) -> dict[str, Any]:
        view, _events = await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))
        return dict(view)

    async def status_of(self, owner: str, num: int) -> str | None:
        row = await self.store.fetchone(
            "SELECT status FROM tasks WHERE owner = ? AND num = ?", (owner, num)
        )
        return None if row is None else str(row["status"])

    async def due_between(self, owner: str, after: str, until: str) -> list[Any]:
        """Open tasks of this owner that fell due in (after, until]."""
        return await self.store.fetchall(
            "SELECT num, title FROM tasks WHERE owner = ? AND status NOT IN ('done', "
            "'cancelled') AND due IS NOT NULL AND due <= ? AND due > ?",
            (owner, until, after),
        )

    # -- reading ------------------------------------------------------------------

    def _unfinished_blockers(self, db: Any, tid: int) -> list[Any]:
        return list(
            db.execute(
                "SELECT t.* FROM task_deps d JOIN tasks t ON t.id = d.blocker_id "
                "WHERE d.task_id = ? AND t.status != 'done' ORDER BY t.owner, t.num",
                (tid,),
            )
        )

    def _blocker_refs(self, db: Any, tid: int) -> list[str]:
        return [
            f"{r['num']}@{r['owner']}"
            for r in db.execute(
                "SELECT t.owner, t.num FROM task_deps d JOIN tasks t ON t.id = d.blocker_id "
                "WHERE d.task_id = ? ORDER BY t.owner, t.num",
                (tid,),
            )
        ]

    def _view(self, db: Any, tid: int, viewer: str | None, full: bool = False) -> dict[str, Any]:
        r = db.execute("SELECT * FROM tasks WHERE id = ?", (tid,)).fetchone()
        blockers = [
            {
                "task": self.ref_of(b["owner"], b["num"], viewer),
                "title": b["title"],
                "status": b["status"],
            }
            for b in db.execute(
                "SELECT t.* FROM task_deps d JOIN tasks t ON t.id = d.blocker_id "
                "WHERE d.task_id = ? ORDER BY t.owner, t.num",
                (tid,),
            )
        ]
        view: dict[str, Any] = {
            "task": self.ref_of(r["owner"], r["num"], viewer),
            "num": r["num"],
            "owner": r["owner"],
            "title": r["title"],
            "status": r["status"],
            "lane": r["lane"],
            "priority": r["priority"],
            "due": r["due"],
            "creator": r["creator"],
            "blocked_by": blockers,
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
            "status_changed_at": r["status_changed_at"],
        }
        if full:
            view["body"] = r["body"]
            view["dependents"] = [
                {
                    "task": self.ref_of(d["owner"], d["num"], viewer),
                    "title": d["title"],
                    "status": d["status"],
                }
                for d in db.execute(
                    "SELECT t.* FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                    "WHERE d.blocker_id = ? ORDER BY t.owner, t.num",
                    (tid,),
                )
            ]
            view["notes"] = [
                {"author": n["author"], "text": n["text"], "at": n["created_at"]}
                for n in db.execute(
                    "SELECT * FROM task_notes WHERE task_id = ? ORDER BY id", (tid,)
                )
            ]
            view["history"] = [
                {"status": c["status"], "by": c["by"], "at": c["at"]}
                for c in db.execute(
                    "SELECT * FROM task_changes WHERE task_id = ? ORDER BY id", (tid,)
                )
            ]
        return view

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run a read-only function on the writer's connection (consistent, and the
        boards are small): the same helpers serve reads and writes."""
        return await self.store.writer.run(fn)

    async def get(self, viewer: str, ref: str | int) -> dict[str, Any]:
        return dict(
            await self.read(
                lambda db: self._view(db, self._row(db, viewer, ref)["id"], viewer, full=True)
            )
        )

    async def listing(
        self,
        viewer: str,
        owner: str | None = None,
        status: str | None = None,
        lane: str | None = None,
    ) -> list[dict[str, Any]]:
        if status is not None:
            check_status(status)
        board = owner or viewer

        def fn(db: Any) -> list[dict[str, Any]]:
            sql = "SELECT id FROM tasks WHERE owner = ?"
            args: list[Any] = [board]
            if status:
                sql += " AND status = ?"
                args.append(status)
            if lane is not None:
                sql += " AND lane = ?"
                args.append(lane)
            sql += " ORDER BY status = 'done', status = 'cancelled', priority DESC, num"
            return [self._view(db, r[0], viewer) for r in db.execute(sql, args)]

        return list(await self.read(fn))

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self.store.fetchall(
            "SELECT owner, status, count(*) AS n FROM tasks WHERE status IN "
            "('doing', 'open', 'blocked') GROUP BY owner, status"
        )
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["owner"], {"doing": 0, "open": 0, "blocked": 0})[r["status"]] = r["n"]
        return out

    async def doing(self, agent: str) -> str | None:
        """For the session-close nudge: the tasks this agent has in doing, or None."""
        rows = await self.store.fetchall(
            "SELECT num, title FROM tasks WHERE owner = ? AND status = 'doing' ORDER BY num",
            (agent,),
        )
        if not rows:
            return None
        listed = "; ".join(f"task {r['num']} ({r['title']})" for r in rows)
        return (
            f"you still have {listed} in doing. Complete it with task_complete, or move "
            "it back with task_update (status open or blocked, with a note)."
        )


def cancel_owned(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's unfinished tasks are cancelled, not deleted:
    other boards may depend on them, and the `orphans` preset shows who is left
    waiting."""
    db.execute(
        "INSERT INTO task_changes (task_id, owner, status, by, at) SELECT id, "
        "owner, 'cancelled', 'legion:destroy', ? FROM tasks WHERE owner = ? AND "
        "status NOT IN ('done', 'cancelled')",
        (now, agent),
    )
    cancelled = db.execute(
        "UPDATE tasks SET status = 'cancelled', updated_at = ?, status_changed_at = ? "
        "WHERE owner = ? AND status NOT IN ('done', 'cancelled')",
        (now, now, agent),
    ).rowcount
    return {"tasks_cancelled": int(cancelled)}
