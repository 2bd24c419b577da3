"""The ledger: sessions and the conversation history they leave.

One owner for the `sessions` and `history` tables: every read and write of
them is a function here (write jobs run inside a caller's transaction, so a
session's end stays one commit). A second store would implement these same
functions; see docs/architecture.md.
"""

from __future__ import annotations

import json
from typing import Any

from legion.daemon.agents.prompt import CHARS_PER_TOKEN
from legion.daemon.events import now_iso
from legion.daemon.llm.types import Usage
from legion.daemon.store.database import Store

# -- writes (inside a caller's transaction) -----------------------------------------


def open_session(db: Any, agent: str, message_id: int, model: str) -> int:
    return int(
        db.execute(
            "INSERT INTO sessions (agent_id, message_id, trigger, model, status, started_at)"
            " VALUES (?, ?, 'message', ?, 'running', ?)",
            (agent, message_id, model, now_iso()),
        ).lastrowid
    )


def mark_crashed(db: Any, message_id: int) -> None:
    """At start-up: a session a crash left open on this message is recorded crashed."""
    db.execute(
        "UPDATE sessions SET status = 'crashed', ended_at = ? "
        "WHERE message_id = ? AND ended_at IS NULL",
        (now_iso(), message_id),
    )


def close_session(
    db: Any,
    session_id: int,
    *,
    status: str,
    reason: str,
    turns: int,
    usage: Usage,
    model: str,
    ended_at: str,
) -> None:
    db.execute(
        "UPDATE sessions SET status = ?, reason = ?, turns = ?, prompt_tokens = ?, "
        "completion_tokens = ?, reasoning_tokens = ?, cost = ?, model = ?, ended_at = ? "
        "WHERE id = ?",
        (
            status,
            reason,
            turns,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.reasoning_tokens,
            usage.cost,
            model,
            ended_at,
            session_id,
        ),
    )


def add_history(
    db: Any, agent: str, session_id: int, messages: list[dict[str, Any]], created_at: str
) -> None:
    rows = []
    for m in messages:
        text = json.dumps(m, separators=(",", ":"))
        rows.append((agent, session_id, text, len(text), created_at))
    db.executemany(
        "INSERT INTO history (agent_id, session_id, message, chars, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )


def prune(db: Any, history_keep: int, cutoff: str | None, chunk: int) -> int:
    """One chunk of retention: each agent's history to its newest `history_keep`
    rows, and (with a cutoff) sessions that ended before it."""
    removed = 0
    over = db.execute(
        "SELECT agent_id FROM history GROUP BY agent_id HAVING count(*) > ?", (history_keep,)
    ).fetchall()
    for (agent,) in over:
        edge = db.execute(
            "SELECT id FROM history WHERE agent_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (agent, history_keep),
        ).fetchone()
        removed += db.execute(
            "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE agent_id = ? "
            "AND id <= ? ORDER BY id LIMIT ?)",
            (agent, edge[0], chunk),
        ).rowcount
    if cutoff is not None:
        removed += db.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE ended_at < ? LIMIT ?)",
            (cutoff, chunk),
        ).rowcount
    return int(removed)


# -- reads ----------------------------------------------------------------------------


async def history(store: Store, agent: str, budget_tokens: int) -> list[dict[str, Any]]:
    """The newest conversation rows that fit the budget, starting at a user turn
    (so a tool result never appears without the call that asked for it)."""
    if budget_tokens <= 0:
        return []
    budget = budget_tokens * CHARS_PER_TOKEN
    rows = await store.fetchall(
        "SELECT message, chars FROM history WHERE agent_id = ? ORDER BY id DESC LIMIT 500", (agent,)
    )
    picked: list[dict[str, Any]] = []
    used = 0
    for r in rows:
        if used + r["chars"] > budget:
            break
        used += r["chars"]
        picked.append(json.loads(r["message"]))
    picked.reverse()
    while picked and picked[0].get("role") != "user":
        picked.pop(0)
    return picked


async def session_history(store: Store, agent: str, session_id: int) -> list[str]:
    rows = await store.fetchall(
        "SELECT message FROM history WHERE agent_id = ? AND session_id = ? ORDER BY id",
        (agent, session_id),
    )
    return [r["message"] for r in rows]


async def usage_since(store: Store, day: str) -> list[tuple[str, int, float]]:
    """(agent, tokens, cost) of the sessions started since `day`."""
    rows = await store.fetchall(
        "SELECT agent_id, sum(prompt_tokens + completion_tokens) AS tokens, "
        "sum(cost) AS cost FROM sessions WHERE started_at >= ? GROUP BY agent_id",
        (day,),
    )
    return [(r["agent_id"], int(r["tokens"] or 0), float(r["cost"] or 0)) for r in rows]


async def usage_of(store: Store, session_id: int) -> dict[str, Any] | None:
    row = await store.fetchone(
        "SELECT prompt_tokens, completion_tokens, reasoning_tokens, cost, turns, model "
        "FROM sessions WHERE id = ?",
        (session_id,),
    )
    if row is None:
        return None
    return {
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
        "cost": row["cost"],
        "turns": row["turns"],
        "model": row["model"],
    }


async def ended_count(store: Store, agent: str) -> int:
    row = await store.fetchone(
        "SELECT count(*) AS n FROM sessions WHERE agent_id = ? AND status != 'running'", (agent,)
    )
    return int(row["n"]) if row is not None else 0


async def last_finished(store: Store, agent: str, other_than: int) -> Any:
    """The agent's newest finished session (not `other_than`), with the message it
    answered; None if it has none."""
    return await store.fetchone(
        "SELECT s.*, m.sender, m.body FROM sessions s LEFT JOIN messages m "
        "ON m.id = s.message_id WHERE s.agent_id = ? AND s.id != ? "
        "AND s.ended_at IS NOT NULL ORDER BY s.id DESC LIMIT 1",
        (agent, other_than),
    )


async def started_since(store: Store, agent: str, since: str, limit: int) -> list[Any]:
    return await store.fetchall(
        "SELECT s.id, s.status, s.reason, s.turns, s.prompt_tokens + s.completion_tokens "
        "AS tokens, s.started_at, m.sender, m.body FROM sessions s LEFT JOIN messages m "
        "ON m.id = s.message_id WHERE s.agent_id = ? AND s.started_at >= ? "
        "ORDER BY s.id DESC LIMIT ?",
        (agent, since, limit),
    )


async def agent_sessions_since(store: Store, since: str) -> list[Any]:
    """Sessions started since `since` on a message from another agent or a topic
    (the conversation bound's model calls): agent_id, sender, started_at, turns."""
    return await store.fetchall(
        "SELECT m.agent_id, m.sender, s.started_at, s.turns FROM sessions s "
        "JOIN messages m ON m.id = s.message_id WHERE s.started_at >= ? AND "
        "(m.sender LIKE 'agent:%' OR m.sender LIKE 'topic:%') ORDER BY s.id",
        (since,),
    )


def forget_agent(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's sessions and history go."""
    db.execute("DELETE FROM sessions WHERE agent_id = ?", (agent,))
    db.execute("DELETE FROM history WHERE agent_id = ?", (agent,))
    return {}
