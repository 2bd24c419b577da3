"""The backfill worker: embeds entries whose vector is missing or stale.

It wakes when memory is written, takes a batch of entries whose embedding
was made by another model or from older content, embeds them (off the event
loop), and writes the vectors in one transaction. A vector is only stored if
the entry's content is still the one that was embedded. When the embedder
fails, it backs off exponentially (capped), and says so in `legion memory
stats`; writes and literal search carry on regardless.

Wiring: the worker needs nothing of `service.Memory`. It reads and writes the
memory tables through the store, announces progress on the bus, and takes
the shared helpers from `records`. So it is constructed first, from the
store, bus and embedder, and handed to `Memory(..., backfill=...)`, which
wakes it after each write and shows `describe()` in its stats (through the
`service.EmbeddingWorker` protocol). Neither module imports the other, and
nothing is assigned after construction. It is only built when there is
something to embed with: an embedder, and sqlite-vec loaded
(`store.driver.vec_available`).
"""

from __future__ import annotations

import re
import time
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.daemon.events import EventBus
from legion.daemon.memory.embedders import Embedder
from legion.daemon.memory.records import pack, pending_count
from legion.daemon.store.database import Store

log = structlog.get_logger("legion.memory")


class Backfill:
    def __init__(
        self, store: Store, bus: EventBus, embedder: Embedder, *, batch: int, backoff_max: float
    ) -> None:
        self.store = store
        self.bus = bus
        self.embedder = embedder
        self.batch = batch
        self.backoff_max = backoff_max
        self.state = "idle"
        self.embedded = 0
        self.failures = 0
        self.last_error = ""
        self.retry_at: float | None = None
        self._wake = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "embedded": self.embedded,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
        }
        if self.retry_at is not None:
            out["retry_in_s"] = round(max(0.0, self.retry_at - time.monotonic()), 1)
        return out

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        model = self.embedder.name
        while True:
            self._wake = anyio.Event()
            rows = await self.store.fetchall(
                "SELECT id, owner, content, hash FROM memories WHERE embedded = 0 "
                "ORDER BY id LIMIT ?",
                (self.batch,),
            )
            if not rows:
                self.state = "idle"
                await self._wake.wait()
                continue
            self.state = "embedding"
            try:
                vectors = await self.embedder.passages([r["content"] for r in rows])
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
                wait = min(self.backoff_max, 2.0**self.failures)
                self.state = "backing off"
                self.retry_at = time.monotonic() + wait
                log.warning("embedding failed; backing off", error=self.last_error, wait_s=wait)
                # A new write cuts the wait short: the embedder may be back.
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                self.retry_at = None
                continue
            self.failures = 0
            self.last_error = ""
            table = await self._ensure_table(model, len(vectors[0]))
            batch = [
                (r["id"], r["owner"], r["hash"], pack(v))
                for r, v in zip(rows, vectors, strict=True)
            ]
            stored = await self.store.writer.run(self._store_job(model, table, batch))
            self.embedded += stored
            await self.bus.emit(
                None,
                "memory.embedded",
                {
                    "model": model,
                    "count": stored,
                    "pending": await pending_count(self.store),
                },
                source="backfill",
            )

    def _store_job(self, model: str, table: str, batch: list[tuple[int, str, str, bytes]]) -> Any:
        def job(db: Any) -> int:
            tables = [r[0] for r in db.execute("SELECT table_name FROM memory_vector_tables")]
            stored = 0
            for mid, owner, hsh, blob in batch:
                current = db.execute("SELECT hash FROM memories WHERE id = ?", (mid,)).fetchone()
                if current is None or current[0] != hsh:
                    continue  # deleted or rewritten meanwhile: the next round embeds it anew
                for t in tables:
                    db.execute(f"DELETE FROM {t} WHERE rowid = ?", (mid,))
                db.execute(
                    f"INSERT INTO {table} (rowid, owner, embedding) VALUES (?, ?, ?)",
                    (mid, owner, blob),
                )
                db.execute(
                    "UPDATE memories SET embedded = 1, embedded_model = ?, "
                    "embedded_hash = ? WHERE id = ?",
                    (model, hsh, mid),
                )
                stored += 1
            return stored

        return job

    async def _ensure_table(self, model: str, dim: int) -> str:
        name = "memory_vec_" + re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:40]

        def job(db: Any) -> str:
            row = db.execute(
                "SELECT table_name, dim FROM memory_vector_tables WHERE model = ?", (model,)
            ).fetchone()
            if row is not None:
                return str(row[0])
            table = name
            n = 1
            while db.execute(
                "SELECT 1 FROM memory_vector_tables WHERE table_name = ?", (table,)
            ).fetchone():
                n += 1
                table = f"{name}_{n}"
            db.execute(
                f"CREATE VIRTUAL TABLE {table} USING vec0(owner text partition key, "
                f"embedding float[{dim}] distance_metric=cosine)"
            )
            db.execute(
                "INSERT INTO memory_vector_tables (model, dim, table_name) VALUES (?, ?, ?)",
                (model, dim, table),
            )
            return table

        return str(await self.store.writer.run(job))
