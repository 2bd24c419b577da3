"""The single writer: every write to the database goes through one thread.

Callers submit a job (a function of the connection). The writer thread takes
every job queued at that moment, up to `batch_max`, and runs them in one
`BEGIN IMMEDIATE` transaction, each inside its own savepoint: one commit (one
fsync) serves the whole batch, so a burst of events costs one disk flush, and
a job that raises rolls back alone without spoiling its neighbours (group
commit). A lone write is committed at once; batching never adds latency.

After the commit, on the event loop and in commit order, each job's
`on_commit` callback runs before its caller is woken. The event bus uses it to
fan out events only once they are durable, in id order. A job whose caller was
cancelled still commits and still runs `on_commit`: a write that was submitted
is never half-done.

aiosqlite serves the read side; it has no notion of a batched writer, which is
why this one is a thread of its own.
"""

from __future__ import annotations

# asyncio, not anyio: the writer thread resolves loop futures with
# call_soon_threadsafe, one per job, which anyio has no cheaper equivalent for.
import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

from legion.errors import LegionError, StorageError

T = TypeVar("T")
log = structlog.get_logger("legion.store")


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Any], T]
    future: asyncio.Future[T]
    on_commit: Callable[[T], None] | None = None


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    largest_batch: int = 0
    failures: int = 0
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_STOP = object()


class Writer:
    def __init__(self, connect: Callable[[], Any], *, batch_max: int = 512) -> None:
        self._connect = connect
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.stats = WriterStats()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(opened,), name="legion-writer", daemon=True
        )
        self._thread.start()
        await opened

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(
        self, fn: Callable[[Any], T], on_commit: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        if self._closed or self._loop is None:
            raise StorageError(
                "the store is closed", hint="the daemon is shutting down; retry after it restarts"
            )
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, fut, on_commit))
        return fut

    async def run(self, fn: Callable[[Any], T], on_commit: Callable[[T], None] | None = None) -> T:
        """Run `fn(conn)` in a write transaction and return its result once committed."""
        return await self.submit(fn, on_commit)

    async def close(self) -> None:
        """Commit everything already queued, then stop the thread."""
        if self._closed or self._loop is None or self._thread is None:
            return
        self._closed = True
        done: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((_STOP, done))
        await done
        self._thread.join(timeout=5)

    # -- the writer thread ----------------------------------------------------

    def _main(self, opened: asyncio.Future[None]) -> None:
        assert self._loop is not None
        loop = self._loop
        try:
            conn = self._connect()
        except Exception as exc:
            loop.call_soon_threadsafe(_set_exception, opened, exc)
            return
        loop.call_soon_threadsafe(_set_result, opened, None)
        stop_done: asyncio.Future[None] | None = None
        try:
            while stop_done is None:
                item = self._queue.get()
                batch: list[_Job[Any]] = []
                while True:
                    if isinstance(item, tuple) and item[0] is _STOP:
                        stop_done = item[1]
                        break
                    batch.append(item)
                    if len(batch) >= self._batch_max:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    results = self._commit(conn, batch)
                    loop.call_soon_threadsafe(self._complete, batch, results)
        finally:
            conn.close()
            if stop_done is not None:
                loop.call_soon_threadsafe(_set_result, stop_done, None)

    def _commit(self, conn: Any, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    results.append((True, job.fn(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back itself (a full
                        # disk, an I/O error): the batch's earlier jobs are gone
                        # too, so the batch fails as one.
                        raise exc from None
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, _storage_error(exc)))
            conn.execute("COMMIT")
        except Exception as exc:
            # BEGIN or COMMIT failed (disk full, I/O error, read-only file):
            # nothing of this batch is durable, so every job fails.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    log.debug("rollback after failed commit also failed", exc_info=True)
            err = _storage_error(exc)
            self.stats.failures += 1
            self.stats.last_error = str(err)
            log.error("write batch failed", error=str(exc), jobs=len(batch))
            return [(False, err)] * len(batch)
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        return results

    def _complete(self, batch: list[_Job[Any]], results: list[tuple[bool, Any]]) -> None:
        # Runs on the event loop, once per batch, so callbacks keep commit order.
        for job, (ok, value) in zip(batch, results, strict=True):
            if ok and job.on_commit is not None:
                try:
                    job.on_commit(value)
                except Exception:
                    log.exception("on_commit callback failed")
            if job.future.cancelled():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


def _storage_error(exc: Exception) -> Exception:
    """Turn the database's own failures into an error that says what to do."""
    if isinstance(exc, LegionError):
        return exc
    text = str(exc).lower()
    if "full" in text:
        return StorageError(
            f"the database could not be written: {exc}",
            hint="free disk space under the Legion home; nothing was recorded, retry afterwards",
            kind="disk_full",
        )
    if "readonly" in text or "read-only" in text or "disk i/o" in text:
        return StorageError(
            f"the database could not be written: {exc}",
            hint="check the Legion home's file system and permissions; nothing was recorded",
        )
    return exc


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
