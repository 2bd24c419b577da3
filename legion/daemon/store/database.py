"""The Store: one SQLite database under the home, one writer, one reader.

WAL mode lets the reader see every committed write without waiting on the
writer. All database work happens off the event loop: writes on the writer
thread (group commit), reads on aiosqlite's thread.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from legion.config import StoreConfig
from legion.daemon.store import connect as connect_mod
from legion.daemon.store.migrations import migrate
from legion.daemon.store.writer import Writer

log = structlog.get_logger("legion.store")


class Store:
    def __init__(self, path: Path, cfg: StoreConfig) -> None:
        self.path = path
        self.cfg = cfg
        self.driver = connect_mod.driver()
        opener = functools.partial(
            connect_mod.connect, path, synchronous=cfg.synchronous, busy_timeout=cfg.busy_timeout
        )
        self.writer = Writer(opener, batch_max=cfg.batch_max)
        self._opener = opener
        self._reader: aiosqlite.Connection | None = None

    @classmethod
    async def open(cls, path: Path, cfg: StoreConfig) -> Store:
        store = cls(path, cfg)
        await store.writer.start()
        try:
            ran = await store.writer.run(migrate)
            if ran:
                log.info("database migrated", steps=ran, path=str(path))
            os.chmod(path, 0o600)
            store._reader = aiosqlite.Connection(store._opener, iter_chunk_size=256)
            await store._reader
        except BaseException:
            await store.writer.close()
            raise
        return store

    async def fetchall(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        assert self._reader is not None, "store not open"
        return list(await self._reader.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def describe(self) -> dict[str, Any]:
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            **self.driver.describe(),
            "synchronous": self.cfg.synchronous,
            "size_bytes": size,
            "writer": {
                "alive": self.writer.alive(),
                "batches": self.writer.stats.batches,
                "jobs": self.writer.stats.jobs,
                "largest_batch": self.writer.stats.largest_batch,
                "failures": self.writer.stats.failures,
                "last_error": self.writer.stats.last_error,
            },
        }

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self.writer.close()
