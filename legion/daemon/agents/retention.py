"""Retention: what keeps a daemon that runs for months from growing without end.

Events are pruned by age and count (the event log's own rule); what sessions
leave behind is bounded too: each agent's conversation history to its newest
`agents.history_keep` rows, finished messages and ended sessions to the event
retention period. Each table's owner prunes its own rows, one chunk per write,
so the writer is never held for long.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from legion.config import EventsConfig
from legion.daemon.agents import inbox, ledger
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.errors import LegionError

log = structlog.get_logger("legion.daemon")


def working_state_job(retention_days: float, history_keep: int) -> Any:
    cutoff = event_log.cutoff_of(retention_days)

    def job(db: Any) -> int:
        removed = ledger.prune(db, history_keep, cutoff, event_log.PRUNE_CHUNK)
        if cutoff is not None:
            removed += inbox.prune(db, cutoff, event_log.PRUNE_CHUNK)
        return removed

    return job


async def prune(
    store: Store, retention_days: float, max_rows: int, history_keep: int = 2000
) -> int:
    """Apply every retention rule until nothing is left to remove; returns rows removed."""
    total = await event_log.prune(store, retention_days, max_rows)
    while True:
        n = int(await store.writer.run(working_state_job(retention_days, history_keep)))
        total += n
        if n == 0:
            return total


async def keep(store: Store, cfg: EventsConfig, history_keep: int) -> None:
    """Apply retention every `events.prune_interval` seconds, for as long as the daemon
    runs; a failed round (a busy or full disk) is logged and tried again."""
    while True:
        try:
            removed = await prune(store, cfg.retention_days, cfg.max_rows, history_keep)
            if removed:
                log.info("pruned old events", removed=removed)
        except LegionError as exc:
            log.warning("event retention failed; will retry", error=exc.message)
        await anyio.sleep(cfg.prune_interval)
