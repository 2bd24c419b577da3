"""The supervisor: the live set of agents and every change to it.

Each change (spawn, pause, resume, stop, destroy, update) is one write job
that checks the rule against the database row, writes the new row and its
event together, and commits both at once. The in-memory view is updated in
the job's `on_commit` callback, so it always matches what is durable, in
commit order, and the change's event reaches subscribers at the same moment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog

from legion.daemon.agents.model import (
    MAX_SYSTEM_PROMPT,
    AgentRecord,
    State,
    check_transition,
    validate_id,
)
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.errors import Conflict, InvalidParams, NotFound, close_matches

log = structlog.get_logger("legion.agents")


# What an agent leaves in a table it does not own, removed (or closed) in the
# destroy's own transaction by that table's owner: (db, agent_id, now) -> counts
# for the `agent.destroyed` event. The root hands the owners' functions in.
Departure = Callable[[Any, str, str], dict[str, Any]]


class Supervisor:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        default_model: str,
        departures: Sequence[Departure] = (),
    ) -> None:
        self._store = store
        self._bus = bus
        self.default_model = default_model
        self._departures = tuple(departures)
        self.agents: dict[str, AgentRecord] = {}
        # Called on the event loop, in commit order, after every change:
        # (action, the record as it is now or None once destroyed).
        self.listeners: list[Callable[[str, str, AgentRecord | None], None]] = []

    # -- reading --------------------------------------------------------------

    async def restore(self) -> dict[str, int]:
        """Load every persisted agent in the state it was left in."""
        rows = await self._store.fetchall("SELECT * FROM agents ORDER BY created_at, id")
        self.agents = {r["id"]: AgentRecord.from_row(r) for r in rows}
        return self.counts()

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in State if s != State.TERMINATED}
        for a in self.agents.values():
            out[a.state.value] = out.get(a.state.value, 0) + 1
        return out

    def select(self, state: State | None = None) -> list[AgentRecord]:
        return [a for a in self.agents.values() if state is None or a.state == state]

    def get(self, agent_id: str) -> AgentRecord:
        validate_id(agent_id)
        try:
            return self.agents[agent_id]
        except KeyError:
            raise self.not_found(agent_id) from None

    def not_found(self, agent_id: str) -> NotFound:
        near = close_matches(agent_id, list(self.agents))
        return NotFound(
            f"no agent '{agent_id}'",
            hint=(f"did you mean '{near[0]}'? " if near else "")
            + "`legion ps` lists the agents; `legion spawn ID` creates one",
            kind="unknown_agent",
            candidates=near,
            data={"agent": agent_id},
        )

    # -- changing -------------------------------------------------------------

    async def spawn(
        self,
        agent_id: str,
        *,
        model: str | None = None,
        system_prompt: str = "",
        parent: str | None = None,
        definition: str | None = None,
        settings: dict[str, Any] | None = None,
        source: str = "rpc",
    ) -> tuple[AgentRecord, Event]:
        validate_id(agent_id)
        if parent is not None:
            validate_id(parent, field="parent")
            if parent not in self.agents:
                raise self.not_found(parent)
        _check_prompt(system_prompt)
        now = now_iso()
        rec = AgentRecord(
            id=agent_id,
            model=model or self.default_model,
            system_prompt=system_prompt,
            parent=parent,
            definition=definition,
            settings=settings or {},
            created_at=now,
            updated_at=now,
        )

        def job(db: Any) -> tuple[AgentRecord, Event]:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone():
                raise Conflict(
                    f"agent '{agent_id}' already exists",
                    hint=f"pick another id, or `legion destroy {agent_id}` first",
                    kind="agent_exists",
                    data={"agent": agent_id},
                )
            if (
                parent is not None
                and not db.execute("SELECT 1 FROM agents WHERE id = ?", (parent,)).fetchone()
            ):
                raise self.not_found(parent)
            _write(db, rec)
            ev = insert(
                db,
                agent_id,
                "agent.spawned",
                {
                    "model": rec.model,
                    "parent": parent,
                    "definition": definition,
                    "system_prompt_chars": len(system_prompt),
                },
                source=source,
            )
            return rec, ev

        return await self._store.writer.run(job, on_commit=self._committed("spawn"))

    async def transition(
        self,
        agent_id: str,
        action: str,
        *,
        reason: str = "",
        source: str = "rpc",
        caused_by: int | None = None,
    ) -> tuple[AgentRecord, Event]:
        current = self.get(agent_id)
        check_transition(agent_id, current.state, action)  # fast refusal, re-checked below

        def job(db: Any) -> tuple[AgentRecord, Event]:
            row = db.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None:
                raise self.not_found(agent_id)
            rec = AgentRecord.from_row(row)
            before = rec.state
            rec.state = check_transition(agent_id, before, action)
            rec.state_reason = reason
            rec.updated_at = now_iso()
            _write(db, rec)
            ev = insert(
                db,
                agent_id,
                f"agent.{_past(action)}",
                {"from": before.value, "to": rec.state.value, "reason": reason},
                caused_by=caused_by,
                source=source,
            )
            return rec, ev

        return await self._store.writer.run(job, on_commit=self._committed(action))

    async def update(
        self,
        agent_id: str,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        definition: str | None = None,
        settings: dict[str, Any] | None = None,
        source: str = "rpc",
    ) -> tuple[AgentRecord, Event] | None:
        """Change an agent's model or prompt; None when nothing differs."""
        current = self.get(agent_id)
        if system_prompt is not None:
            _check_prompt(system_prompt)
        changes: dict[str, Any] = {}
        if model is not None and model != current.model:
            changes["model"] = model
        if system_prompt is not None and system_prompt != current.system_prompt:
            changes["system_prompt"] = system_prompt
        if definition is not None and definition != current.definition:
            changes["definition"] = definition
        if settings is not None and settings != current.settings:
            changes["settings"] = settings
        if not changes:
            return None

        def job(db: Any) -> tuple[AgentRecord, Event]:
            row = db.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None:
                raise self.not_found(agent_id)
            rec = msgspec.structs.replace(
                AgentRecord.from_row(row), **changes, updated_at=now_iso()
            )
            _write(db, rec)
            shown = {k: (len(v) if k == "system_prompt" else v) for k, v in changes.items()}
            ev = insert(db, agent_id, "agent.updated", {"changed": shown}, source=source)
            return rec, ev

        return await self._store.writer.run(job, on_commit=self._committed("update"))

    async def destroy(
        self, agent_id: str, *, purge: bool = False, reason: str = "", source: str = "rpc"
    ) -> Event:
        """Archive the agent and its events to the graveyard, or purge both."""
        self.get(agent_id)

        def job(db: Any) -> Event:
            row = db.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None:
                raise self.not_found(agent_id)
            rec = AgentRecord.from_row(row)
            now = now_iso()
            archive_id = None
            moved = 0
            if not purge:
                rec.state = State.TERMINATED
                rec.state_reason = reason
                rec.updated_at = now
                archive_id = db.execute(
                    "INSERT INTO graveyard (agent_id, record, reason, destroyed_at) "
                    "VALUES (?, ?, ?, ?)",
                    (agent_id, msgspec.json.encode(rec).decode(), reason, now),
                ).lastrowid
                moved = event_log.archive_agent(db, archive_id, agent_id)
            removed = event_log.remove_agent(db, agent_id)
            # The transcript lives on in the archived events; the working state
            # (messages, sessions, memory, subscriptions, proposals) goes, and its
            # unfinished tasks are cancelled: each by its table's owner.
            counts: dict[str, Any] = {}
            for departure in self._departures:
                counts.update(departure(db, agent_id, now))
            db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
            # The destroy itself stays in the live log: the audit trail of what
            # happened to this id, and the end-of-stream mark for `attach`.
            return insert(
                db,
                agent_id,
                "agent.destroyed",
                {
                    "purged": purge,
                    "archive_id": archive_id,
                    "events_archived": moved,
                    "events_removed": removed,
                    "reason": reason,
                    "last_state": row["state"],
                    "tasks_cancelled": counts.get("tasks_cancelled", 0),
                },
                source=source,
            )

        def committed(ev: Event) -> None:
            self.agents.pop(agent_id, None)
            self._bus.deliver(ev)
            self._notify("destroy", agent_id, None)

        return await self._store.writer.run(job, on_commit=committed)

    def _committed(self, action: str) -> Callable[[tuple[AgentRecord, Event]], None]:
        def done(result: tuple[AgentRecord, Event]) -> None:
            rec, ev = result
            self.agents[rec.id] = rec
            self._bus.deliver(ev)
            self._notify(action, rec.id, rec)

        return done

    def _notify(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        for listener in self.listeners:
            try:
                listener(action, agent_id, rec)
            except Exception:
                log.exception("agent change listener failed", action=action, agent=agent_id)

    async def graveyard(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT archive_id, agent_id, record, reason, destroyed_at FROM graveyard"
        rows = await self._store.fetchall(
            sql + (" WHERE agent_id = ?" if agent_id else "") + " ORDER BY archive_id",
            (agent_id,) if agent_id else (),
        )
        return [
            {
                "archive_id": r["archive_id"],
                "agent": r["agent_id"],
                "reason": r["reason"],
                "destroyed_at": r["destroyed_at"],
                "record": json.loads(r["record"]),
            }
            for r in rows
        ]

    async def graveyard_show(
        self, agent_id: str | None, archive_id: int | None, events: int = 50
    ) -> dict[str, Any]:
        if (agent_id is None) == (archive_id is None):
            raise InvalidParams(
                "give an agent id or an archive id (not both)",
                hint="`legion graveyard ls` lists both",
            )
        if archive_id is None:
            row = await self._store.fetchone(
                "SELECT * FROM graveyard WHERE agent_id = ? ORDER BY archive_id DESC LIMIT 1",
                (agent_id,),
            )
        else:
            row = await self._store.fetchone(
                "SELECT * FROM graveyard WHERE archive_id = ?", (archive_id,)
            )
        if row is None:
            ids = [
                r["agent_id"]
                for r in await self._store.fetchall("SELECT DISTINCT agent_id FROM graveyard")
            ]
            near = close_matches(agent_id or "", ids) if agent_id else []
            raise NotFound(
                f"nothing in the graveyard for {agent_id or archive_id}",
                hint=(f"did you mean '{near[0]}'? " if near else "")
                + "`legion graveyard ls` lists the archived agents",
                candidates=near,
                kind="not_archived",
            )
        rows = await self._store.fetchall(
            "SELECT id, ts, agent_id, kind, data, caused_by, source FROM graveyard_events "
            "WHERE archive_id = ? ORDER BY id DESC LIMIT ?",
            (row["archive_id"], events),
        )
        total = await self._store.fetchone(
            "SELECT count(*) AS n FROM graveyard_events WHERE archive_id = ?", (row["archive_id"],)
        )
        return {
            "archive_id": row["archive_id"],
            "agent": row["agent_id"],
            "reason": row["reason"],
            "destroyed_at": row["destroyed_at"],
            "record": json.loads(row["record"]),
            "events_total": total["n"],
            "events": [
                {
                    **{k: r[k] for k in ("id", "ts", "kind", "caused_by", "source")},
                    "agent": r["agent_id"],
                    "data": json.loads(r["data"]),
                }
                for r in reversed(rows)
            ],
        }


def exists(db: Any, agent_id: str) -> bool:
    """Inside a write job: does the agent exist as of this transaction? (The
    in-memory view lags a commit that is queued in the same batch.)"""
    return db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is not None


def _write(db: Any, rec: AgentRecord) -> None:
    db.execute(
        "INSERT INTO agents (id, model, system_prompt, parent, state, state_reason, "
        "definition, settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET model = excluded.model, "
        "system_prompt = excluded.system_prompt, parent = excluded.parent, "
        "state = excluded.state, state_reason = excluded.state_reason, "
        "definition = excluded.definition, settings = excluded.settings, "
        "updated_at = excluded.updated_at",
        (
            rec.id,
            rec.model,
            rec.system_prompt,
            rec.parent,
            rec.state.value,
            rec.state_reason,
            rec.definition,
            json.dumps(rec.settings),
            rec.created_at,
            rec.updated_at,
        ),
    )


def _check_prompt(prompt: str) -> None:
    if len(prompt) > MAX_SYSTEM_PROMPT:
        raise InvalidParams(
            f"system prompt is {len(prompt)} characters; the limit is {MAX_SYSTEM_PROMPT}",
            hint="shorten it, and keep reference material in memory instead of the prompt",
            data={"field": "system"},
        )


def _past(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "stop": "stopped"}[action]
