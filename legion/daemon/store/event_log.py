"""Queries over the persisted event log: listing, replay and retention."""

from __future__ import annotations

from collections.abc import Callable
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
    return {"count": row["n"], "first_id": row["first"], "last_id": row["last"],
            "oldest": row["oldest"]}


def prune_job(retention_days: float, max_rows: int) -> Any:
    """A write job that removes one chunk of expired events; returns rows removed."""

    def job(db: Any) -> int:
        removed = 0
        if retention_days > 0:
            cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z")
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


def prune_working_state_job(retention_days: float, history_keep: int) -> Any:
    """A write job that bounds what sessions leave behind: each agent's
    conversation history to its newest `history_keep` rows, and finished
    messages and sessions to the event retention period."""

    def job(db: Any) -> int:
        removed = 0
        over = db.execute("SELECT agent_id FROM history GROUP BY agent_id HAVING count(*) > ?",
                          (history_keep,)).fetchall()
        for (agent,) in over:
            edge = db.execute("SELECT id FROM history WHERE agent_id = ? ORDER BY id DESC "
                              "LIMIT 1 OFFSET ?", (agent, history_keep)).fetchone()
            removed += db.execute(
                "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE agent_id = ? "
                "AND id <= ? ORDER BY id LIMIT ?)", (agent, edge[0], PRUNE_CHUNK)).rowcount
        if retention_days > 0:
            cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
            removed += db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE done_at < ? "
                "AND status NOT IN ('queued', 'processing') LIMIT ?)",
                (cutoff, PRUNE_CHUNK)).rowcount
            removed += db.execute(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE ended_at < ? "
                "LIMIT ?)", (cutoff, PRUNE_CHUNK)).rowcount
        return int(removed)

    return job


async def prune(store: Store, retention_days: float, max_rows: int,
                history_keep: int = 2000) -> int:
    """Apply retention until nothing is left to remove; returns rows removed.

    Chunked, so the writer is never held for long and other writes interleave."""
    total = 0
    jobs: list[Callable[[], Any]] = [lambda: prune_job(retention_days, max_rows),
                                     lambda: prune_working_state_job(retention_days, history_keep)]
    for make in jobs:
        while True:
            n = int(await store.writer.run(make()))
            total += n
            if n == 0:
                break
    return total
