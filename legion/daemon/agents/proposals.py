"""Prompt proposals: system-prompt changes an agent proposed, and a person's decision.

A reflection may propose a change; it waits here, `pending`, until a person
accepts or rejects it (`legion prompt ID ...`, the `prompts.*` RPC methods).
Accepting is the only way a proposal reaches the prompt, and no tool can do
it: an agent never rewrites its own system prompt. One proposal is pending
per agent at a time; a newer one supersedes the older.
"""

from __future__ import annotations

import difflib
from typing import Any

from legion.daemon.agents.model import AgentRecord
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.errors import Conflict, NotFound

# Proposals listed per agent (newest first).
RECENT_PROPOSALS = 20


def udiff(a: str, b: str, a_name: str, b_name: str) -> str:
    return "\n".join(
        difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name, lineterm="")
    )


class Proposals:
    def __init__(self, store: Store, bus: EventBus, agents: Supervisor) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents

    async def propose(
        self,
        rec: AgentRecord,
        text: str,
        rationale: str,
        session_id: int | None,
        caused_by: int | None,
        source: str,
    ) -> int:
        def job(db: Any) -> tuple[int, Event]:
            now = now_iso()
            pid = int(
                db.execute(
                    "INSERT INTO prompt_proposals (agent_id, base, proposed, rationale, status, "
                    "session_id, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (rec.id, rec.system_prompt, text, rationale, session_id, now),
                ).lastrowid
            )
            # One pending proposal per agent: the newer supersedes the older.
            older = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM prompt_proposals WHERE agent_id = ? AND status = 'pending' "
                    "AND id != ?",
                    (rec.id, pid),
                )
            ]
            db.execute(
                "UPDATE prompt_proposals SET status = 'rejected', decided_at = ?, "
                "decided_by = 'legion:superseded', decision_note = ? WHERE agent_id = ? "
                "AND status = 'pending' AND id != ?",
                (now, f"superseded by proposal {pid}", rec.id, pid),
            )
            ev = insert(
                db,
                rec.id,
                "prompt.proposed",
                {"proposal": pid, "chars": len(text), "rationale": rationale, "superseded": older},
                caused_by=caused_by,
                source=source,
            )
            return pid, ev

        pid, _ = await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))
        return pid

    async def proposals(self, agent: str) -> list[dict[str, Any]]:
        """The agent's proposals, newest first (texts left out)."""
        rec = self.agents.get(agent)
        cols = (
            "id",
            "status",
            "rationale",
            "chars",
            "session_id",
            "created_at",
            "decided_at",
            "decided_by",
            "decision_note",
        )
        rows = await self.store.fetchall(
            "SELECT id, status, rationale, length(proposed) AS chars, session_id, created_at, "
            "decided_at, decided_by, decision_note FROM prompt_proposals WHERE agent_id = ? "
            # An earlier agent of the same id (destroyed) does not hand down its proposals.
            "AND created_at >= ? ORDER BY id DESC LIMIT ?",
            (agent, rec.created_at, RECENT_PROPOSALS),
        )
        return [{c: r[c] for c in cols} for r in rows]

    async def pending(self, agent: str) -> dict[str, Any] | None:
        rec = self.agents.get(agent)
        row = await self.store.fetchone(
            "SELECT * FROM prompt_proposals WHERE agent_id = ? AND status = 'pending' "
            "AND created_at >= ? ORDER BY id DESC LIMIT 1",
            (agent, rec.created_at),
        )
        return None if row is None else self._full(row, rec)

    @staticmethod
    def _full(row: Any, rec: AgentRecord) -> dict[str, Any]:
        return {
            "id": row["id"],
            "status": row["status"],
            "proposed": row["proposed"],
            "chars": len(row["proposed"]),
            "rationale": row["rationale"],
            "session_id": row["session_id"],
            "created_at": row["created_at"],
            "decided_at": row["decided_at"],
            "decided_by": row["decided_by"],
            "decision_note": row["decision_note"],
            "base_changed": row["base"] != rec.system_prompt,
        }

    async def show(self, agent: str) -> dict[str, Any]:
        rec = self.agents.get(agent)
        return {
            "agent": agent,
            "system_prompt": rec.system_prompt,
            "chars": len(rec.system_prompt),
            "definition": rec.definition,
            "pending": await self.pending(agent),
            "proposals": await self.proposals(agent),
        }

    async def _find(self, rec: AgentRecord, proposal: int | None) -> Any:
        store = self.store
        if proposal is None:
            row = await store.fetchone(
                "SELECT * FROM prompt_proposals WHERE agent_id = ? AND status = 'pending' "
                "AND created_at >= ? ORDER BY id DESC LIMIT 1",
                (rec.id, rec.created_at),
            )
            if row is None:
                raise NotFound(
                    f"agent '{rec.id}' has no pending prompt proposal",
                    hint=f"`legion prompt {rec.id}` shows its proposals; an agent "
                    "proposes a change by reflecting (the reflect tool)",
                    kind="no_pending_proposal",
                )
            return row
        row = await store.fetchone(
            "SELECT * FROM prompt_proposals WHERE agent_id = ? AND id = ? AND created_at >= ?",
            (rec.id, proposal, rec.created_at),
        )
        if row is None:
            ids = [str(p["id"]) for p in await self.proposals(rec.id)]
            raise NotFound(
                f"agent '{rec.id}' has no prompt proposal {proposal}",
                hint=(f"its proposals: {', '.join(ids)}; " if ids else "it has made none; ")
                + f"`legion prompt {rec.id}` shows them",
                candidates=ids,
                kind="unknown_proposal",
            )
        return row

    @staticmethod
    def _undecided(row: Any, agent: str) -> None:
        if row["status"] != "pending":
            raise Conflict(
                f"proposal {row['id']} was already {row['status']} by {row['decided_by']} "
                f"at {row['decided_at']}",
                hint=f"only a pending proposal can be decided; `legion prompt {agent}` shows "
                "the pending one, if any",
                kind="proposal_decided",
                data={"proposal": row["id"], "status": row["status"]},
            )

    async def diff(self, agent: str, proposal: int | None) -> dict[str, Any]:
        rec = self.agents.get(agent)
        row = await self._find(rec, proposal)
        name = f"proposal {row['id']}"
        return {
            "agent": agent,
            "proposal": row["id"],
            "status": row["status"],
            "rationale": row["rationale"],
            "base_changed": row["base"] != rec.system_prompt,
            "diff": udiff(row["base"], row["proposed"], "prompt when proposed", name),
            "current_diff": udiff(rec.system_prompt, row["proposed"], "current prompt", name),
        }

    async def _decide(
        self, agent: str, pid: int, status: str, by: str, note: str | None, data: dict[str, Any]
    ) -> Event:
        def job(db: Any) -> Event:
            changed = db.execute(
                "UPDATE prompt_proposals SET status = ?, decided_at = ?, decided_by = ?, "
                "decision_note = ? WHERE id = ? AND status = 'pending'",
                (status, now_iso(), by, note, pid),
            ).rowcount
            if not changed:
                raise Conflict(
                    f"proposal {pid} was decided meanwhile",
                    hint=f"`legion prompt {agent}` shows where it stands",
                    kind="proposal_decided",
                )
            return insert(
                db,
                agent,
                f"prompt.{status}",
                {"proposal": pid, "by": by, "note": note, **data},
                source=by,
            )

        return await self.store.writer.run(job, on_commit=self.bus.deliver)

    async def accept(
        self, agent: str, proposal: int | None, by: str, note: str | None = None
    ) -> dict[str, Any]:
        rec = self.agents.get(agent)
        row = await self._find(rec, proposal)
        self._undecided(row, agent)
        base_changed = row["base"] != rec.system_prompt
        await self.agents.update(
            agent, system_prompt=row["proposed"], source=f"prompt-proposal:{row['id']}:{by}"
        )
        ev = await self._decide(
            agent,
            row["id"],
            "accepted",
            by,
            note,
            {"chars": len(row["proposed"]), "base_changed": base_changed},
        )
        warnings = []
        out: dict[str, Any] = {
            "agent": agent,
            "proposal": row["id"],
            "status": "accepted",
            "system_prompt": row["proposed"],
            "chars": len(row["proposed"]),
            "base_changed": base_changed,
            "event": ev.id,
        }
        if base_changed:
            warnings.append(
                "the prompt had changed since this proposal was made; those "
                "changes are replaced (previous_prompt holds what was replaced)"
            )
            out["previous_prompt"] = rec.system_prompt
        if rec.definition:
            warnings.append(
                f"agent '{agent}' is declared in {rec.definition}: if that file "
                "sets its prompt (system or system_file), the next daemon start "
                "restores it; edit the file to keep this change"
            )
        out["warnings"] = warnings
        return out

    async def reject(
        self, agent: str, proposal: int | None, by: str, note: str | None = None
    ) -> dict[str, Any]:
        rec = self.agents.get(agent)
        row = await self._find(rec, proposal)
        self._undecided(row, agent)
        ev = await self._decide(agent, row["id"], "rejected", by, note, {})
        return {
            "agent": agent,
            "proposal": row["id"],
            "status": "rejected",
            "note": note,
            "system_prompt": rec.system_prompt,
            "chars": len(rec.system_prompt),
            "base_changed": False,
            "warnings": [],
            "event": ev.id,
        }


def forget_agent(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's prompt proposals go."""
    db.execute("DELETE FROM prompt_proposals WHERE agent_id = ?", (agent,))
    return {}
