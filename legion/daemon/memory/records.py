"""What the memory service and its backfill worker share about the memory tables.

`service.Memory` (reads, writes, search) and `backfill.Backfill` (the embedding
worker) both work on the `memories` table and the per-model vector tables.
The few things both need live here, so that neither module imports the
other: the owner of shared entries, how a vector is stored, and the count of
entries waiting for an embedding. Only legion/daemon/memory touches these
tables.
"""

from __future__ import annotations

import struct
from typing import Any

from legion.daemon.store.database import Store

# The owner of every entry under `shared/`: any agent reads and writes them.
SHARED = "*"


def pack(vector: list[float]) -> bytes:
    """A vector as sqlite-vec stores it (float32, native order)."""
    return struct.pack(f"{len(vector)}f", *vector)


async def pending_count(store: Store, agent: str | None = None) -> int:
    """Entries whose vector is missing or stale: all of them, or those `agent` can see."""
    sql = "SELECT count(*) AS n FROM memories WHERE embedded = 0"
    args: list[Any] = []
    if agent is not None:
        sql += " AND owner IN (?, ?)"
        args += [agent, SHARED]
    row = await store.fetchone(sql, args)
    return int(row["n"])


def forget_owner(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's private memory and its vectors go (shared/
    entries stay)."""
    for (vec_table,) in db.execute("SELECT table_name FROM memory_vector_tables"):
        db.execute(
            f"DELETE FROM {vec_table} WHERE rowid IN (SELECT id FROM memories WHERE owner = ?)",
            (agent,),
        )
    db.execute("DELETE FROM memories WHERE owner = ?", (agent,))
    return {}
