"""Queries over the persisted event log: listing, replay and retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from legion.daemon.events import Event, from_row
from legion.daemon.store.database import Store

# Retention deletes in chunks so it never holds the write lock for long.
PRUNE_CHUNK = 5000


async def query(
    store: Store,
    *,
    agent: str | None = None,
    kinds: list[str] | None = None,
    limit: int = 50,
    before_id: int | None = None,
    after_id: int | None = None,
) -> list[Event]:
    """The newest `limit` matching events (older than `before_id` / newer than
    `after_id` when given), returned oldest first."""
    where, args = _filters(agent, kinds)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    if after_id is not None:
        # Paging forward: the oldest events after the cursor.
        sql = f"SELECT * FROM events {clause} ORDER BY id ASC LIMIT ?"
        rows = await store.fetchall(sql, [*args, limit])
    else:
        sql = f"SELECT * FROM events {clause} ORDER BY id DESC LIMIT ?"
        rows = list(reversed(await store.fetchall(sql, [*args, limit])))
    return [from_row(r) for r in rows]


def _filters(agent: str | None, kinds: list[str] | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if agent is not None:
        where.append("agent_id = ?")
        args.append(agent)
    if kinds:
        where.append("(" + " OR ".join("kind GLOB ?" for _ in kinds) + ")")
        args.extend(kinds)
    return where, args


async def has_events(store: Store, agent: str) -> bool:
    row = await store.fetchone("SELECT 1 FROM events WHERE agent_id = ? LIMIT 1", (agent,))
    return row is not None


async def counts(store: Store) -> dict[str, Any]:
    row = await store.fetchone(
        "SELECT count(*) AS n, min(id) AS first, max(id) AS last, min(ts) AS oldest FROM events"
    )
    return {
        "count": row["n"],
        "first_id": row["first"],
        "last_id": row["last"],
        "oldest": row["oldest"],
    }


def prune_job(retention_days: float, max_rows: int) -> Any:
    """A write job that removes one chunk of expired events; returns rows removed."""

    def job(db: Any) -> int:
        removed = 0
        if retention_days > 0:
            cutoff = (
                (datetime.now(UTC) - timedelta(days=retention_days))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
            removed += db.execute(
                "DELETE FROM events WHERE id IN "
                "(SELECT id FROM events WHERE ts < ? ORDER BY id LIMIT ?)",
                (cutoff, PRUNE_CHUNK),
            ).rowcount
            removed += db.execute(
                "DELETE FROM graveyard_events WHERE rowid IN "
                "(SELECT rowid FROM graveyard_events WHERE ts < ? LIMIT ?)",
                (cutoff, PRUNE_CHUNK),
            ).rowcount
        if max_rows > 0:
            row = db.execute(
                "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)
            ).fetchone()
            if row is not None:
                removed += db.execute(
                    "DELETE FROM events WHERE id IN "
                    "(SELECT id FROM events WHERE id <= ? ORDER BY id LIMIT ?)",
                    (row[0], PRUNE_CHUNK),
                ).rowcount
        return int(removed)

    return job


def cutoff_of(retention_days: float) -> str | None:
    """The oldest timestamp retention keeps, or None when retention is off."""
    if retention_days <= 0:
        return None
    return (
        (datetime.now(UTC) - timedelta(days=retention_days))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


async def prune(store: Store, retention_days: float, max_rows: int) -> int:
    """Apply event retention until nothing is left to remove; returns rows removed.

    Chunked, so the writer is never held for long and other writes interleave."""
    total = 0
    while True:
        n = int(await store.writer.run(prune_job(retention_days, max_rows)))
        total += n
        if n == 0:
            return total


async def reflection_usage_since(store: Store, day: str) -> list[tuple[str, int, float]]:
    """(agent, tokens, cost) of reflections since `day`: model calls outside sessions
    are recorded only in their events."""
    rows = await store.fetchall(
        "SELECT agent_id, sum(json_extract(data, '$.usage.total_tokens')) AS tokens, "
        "sum(json_extract(data, '$.usage.cost')) AS cost FROM events WHERE ts >= ? "
        "AND kind IN ('reflection.completed', 'reflection.failed') AND agent_id IS NOT NULL "
        "GROUP BY agent_id",
        (day,),
    )
    return [(r["agent_id"], int(r["tokens"] or 0), float(r["cost"] or 0)) for r in rows]


async def last_id(store: Store) -> int:
    row = await store.fetchone("SELECT max(id) AS m FROM events")
    return int(row["m"] or 0) if row is not None else 0


async def of_agent_since(
    store: Store, agent: str, after: int, kinds: tuple[str, ...], limit: int
) -> list[Any]:
    """Rows (id, kind, data, source) of an agent's events of these kinds after an id."""
    return await store.fetchall(
        f"SELECT id, kind, data, source FROM events WHERE agent_id = ? AND id > ? AND kind "
        f"IN ({', '.join('?' for _ in kinds)}) ORDER BY id LIMIT ?",
        (agent, after, *kinds, limit),
    )


def archive_agent(db: Any, archive_id: int, agent: str) -> int:
    """Inside a destroy: copy the agent's events to the graveyard; returns how many."""
    return int(
        db.execute(
            "INSERT INTO graveyard_events (archive_id, id, ts, agent_id, kind, data, caused_by, "
            "source) SELECT ?, id, ts, agent_id, kind, data, caused_by, source FROM events "
            "WHERE agent_id = ?",
            (archive_id, agent),
        ).rowcount
    )


def remove_agent(db: Any, agent: str) -> int:
    return int(db.execute("DELETE FROM events WHERE agent_id = ?", (agent,)).rowcount)


# Tool results with the call that asked for them (reflection's material).
_RESULTS = (
    "SELECT r.ts, r.data AS result, c.data AS call FROM events r LEFT JOIN events c "
    "ON c.id = r.caused_by WHERE r.agent_id = ? AND r.kind = 'tool.result' "
)


async def tool_results_of_session(store: Store, agent: str, session: int, limit: int) -> list[Any]:
    span = await store.fetchone(
        "SELECT min(id) AS a, max(id) AS b FROM events WHERE agent_id = ? AND kind IN "
        "('session.started', 'session.ended') AND json_extract(data, '$.session') = ?",
        (agent, session),
    )
    if span is None or span["a"] is None:
        return []
    return await store.fetchall(
        _RESULTS + "AND r.id BETWEEN ? AND ? ORDER BY r.id LIMIT ?",
        (agent, span["a"], span["b"], limit),
    )


async def failed_tool_results(store: Store, agent: str, since: str, limit: int) -> list[Any]:
    return await store.fetchall(
        _RESULTS + "AND r.ts >= ? AND json_extract(r.data, '$.ok') = 0 ORDER BY r.id DESC LIMIT ?",
        (agent, since, limit),
    )


async def tool_results(store: Store, agent: str, limit: int) -> list[Any]:
    """The agent's newest tool results, newest first."""
    return await store.fetchall(_RESULTS + "ORDER BY r.id DESC LIMIT ?", (agent, limit))


async def closed_conversations_since(store: Store, since: str) -> list[dict[str, Any]]:
    """The data of `guard.conversation` events since `since` that closed a pair until
    a time (`reopens_at`): the conversation bound rebuilds its closed pairs from them."""
    rows = await store.fetchall(
        "SELECT data FROM events WHERE ts >= ? AND kind = 'guard.conversation' AND "
        "json_extract(data, '$.reopens_at') IS NOT NULL",
        (since,),
    )
    return [json.loads(r["data"]) for r in rows]
