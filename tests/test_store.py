"""The store: schema, migrations, the sqlite build in use, group commit, retention,
and a full disk. These run the real Store in-process on a temporary file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from legion.config import StoreConfig
from legion.daemon.agents import retention
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.daemon.store.migrations import MIGRATIONS
from legion.errors import Conflict, StorageError

pytestmark = pytest.mark.anyio

EXPECTED_SCHEMA = {
    ("table", "_migrations"),
    ("table", "agents"),
    ("table", "events"),
    ("table", "graveyard"),
    ("table", "graveyard_events"),
    ("index", "events_agent"),
    ("index", "events_agent_kind"),
    ("index", "events_ts"),
    ("index", "graveyard_agent"),
    ("index", "graveyard_events_ts"),
    ("table", "messages"),
    ("table", "sessions"),
    ("table", "history"),
    ("index", "messages_agent_status"),
    ("index", "messages_done_at"),
    ("index", "sessions_agent"),
    ("index", "history_agent"),
    ("table", "memories"),
    ("index", "memories_pending"),
    ("index", "memories_author"),
    ("table", "memories_fts"),
    ("table", "memories_fts_data"),
    ("table", "memories_fts_idx"),
    ("table", "memories_fts_docsize"),
    ("table", "memories_fts_config"),
    ("trigger", "memories_ai"),
    ("trigger", "memories_ad"),
    ("trigger", "memories_au"),
    ("table", "memory_vector_tables"),
    ("table", "tasks"),
    ("index", "tasks_owner_status"),
    ("table", "task_deps"),
    ("index", "task_deps_blocker"),
    ("table", "task_notes"),
    ("index", "task_notes_task"),
    ("table", "task_changes"),
    ("index", "task_changes_owner"),
    ("table", "schedules"),
    ("index", "schedules_agent"),
    ("table", "watchers"),
    ("index", "watchers_agent"),
    ("table", "tools"),
    ("table", "tool_versions"),
    ("index", "tool_versions_name"),
    ("table", "tool_stats"),
    ("table", "subscriptions"),
    ("index", "subscriptions_topic"),
    ("table", "prompt_proposals"),
    ("index", "prompt_proposals_agent"),
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "legion.db", StoreConfig())
    yield s
    await s.close()


async def test_migrating_an_empty_database_gives_the_exact_schema(store: Store) -> None:
    rows = await store.fetchall(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    )
    assert {(r["type"], r["name"]) for r in rows} == EXPECTED_SCHEMA
    applied = [r["name"] for r in await store.fetchall("SELECT name FROM _migrations")]
    assert applied == [name for name, _ in MIGRATIONS]
    cols = [r["name"] for r in await store.fetchall("PRAGMA table_info(events)")]
    assert cols == ["id", "ts", "agent_id", "kind", "data", "caused_by", "source"]
    assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    for _ in range(2):
        s = await Store.open(tmp_path / "legion.db", StoreConfig())
        rows = await s.fetchall("SELECT name FROM _migrations")
        assert len(rows) == len(MIGRATIONS)
        await s.close()


async def test_a_database_from_a_newer_legion_is_refused(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "legion.db", StoreConfig())
    await s.writer.run(
        lambda db: db.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 'x')")
    )
    await s.close()
    with pytest.raises(Conflict) as exc:
        await Store.open(tmp_path / "legion.db", StoreConfig())
    assert "newer Legion" in exc.value.message and "m999_from_the_future" in exc.value.message


async def test_sqlite_vec_is_loaded(store: Store) -> None:
    row = await store.fetchone("SELECT vec_version() AS v")
    assert row["v"] == store.driver.vec_version
    assert store.describe()["vec_version"].startswith("v")


async def test_a_failing_job_rolls_back_alone_in_a_shared_batch(store: Store) -> None:
    def ok(n: int) -> Any:
        return lambda db: (
            db.execute("INSERT INTO events (ts, kind) VALUES ('t', ?)", (f"ok{n}",)).lastrowid
        )

    def bad(db: Any) -> None:
        db.execute("INSERT INTO events (ts, kind) VALUES ('t', 'doomed')")
        raise ValueError("boom")

    before = store.writer.stats.batches
    futures = [store.writer.submit(ok(0)), store.writer.submit(bad), store.writer.submit(ok(1))]
    results = []
    for f in futures:
        try:
            results.append(await f)
        except ValueError as exc:
            results.append(str(exc))
    assert results[1] == "boom"
    kinds = [r["kind"] for r in await store.fetchall("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["ok0", "ok1"]
    # Submitted together, committed together: one transaction for all three.
    assert store.writer.stats.batches == before + 1
    assert store.writer.stats.largest_batch >= 3


async def test_concurrent_events_are_group_committed_in_id_order(store: Store) -> None:
    bus = EventBus(store.writer)
    sub = bus.subscribe()
    ids: list[int] = []

    async def emit(i: int) -> None:
        ids.append((await bus.emit("a", "test.tick", {"i": i})).id)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(emit, i)
    assert store.writer.stats.largest_batch > 1
    seen = [(await sub.get()).id for _ in range(200)]  # type: ignore[union-attr]
    assert seen == sorted(seen) == sorted(ids)


async def test_a_slow_subscriber_is_told_it_lagged_and_never_blocks(store: Store) -> None:
    bus = EventBus(store.writer)
    slow = bus.subscribe(maxsize=5)
    fast = bus.subscribe(maxsize=1000)
    for i in range(20):
        await bus.emit(None, "test.tick", {"i": i})
    got = [await slow.get() for _ in range(6)]
    assert [g.data["i"] for g in got[:5]] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    lag = got[5]
    assert type(lag).__name__ == "Lagged"
    assert lag.missed == 15 and lag.after_id == got[4].id  # type: ignore[union-attr]
    # The fast subscriber got everything.
    assert [(await fast.get()).data["i"] for _ in range(20)] == list(range(20))  # type: ignore[union-attr]
    # After the gap the slow one resumes with new events.
    await bus.emit(None, "test.tick", {"i": 20})
    assert (await slow.get()).data["i"] == 20  # type: ignore[union-attr]


async def test_retention_by_count_and_age(store: Store) -> None:
    bus = EventBus(store.writer)
    for i in range(30):
        await bus.emit("a", "test.tick", {"i": i})
    await store.writer.run(
        lambda db: db.execute("UPDATE events SET ts = '2001-01-01T00:00:00.000Z' WHERE id <= 5")
    )
    removed = await event_log.prune(store, retention_days=30, max_rows=20)
    assert removed == 10
    kept = await event_log.query(store, limit=100)
    assert [e.data["i"] for e in kept] == list(range(10, 30))
    # Ids keep increasing after pruning (AUTOINCREMENT never reuses them).
    assert (await bus.emit("a", "test.tick", {})).id == 31


async def test_history_and_finished_messages_are_bounded(store: Store) -> None:
    def seed(db: Any) -> None:
        for i in range(30):
            db.execute(
                "INSERT INTO history (agent_id, message, chars, created_at) "
                "VALUES ('a', ?, 10, 't')",
                (f'{{"n": {i}}}',),
            )
        for status, done in (
            ("done", "2001-01-01T00:00:00.000Z"),
            ("queued", None),
            ("done", "2999-01-01T00:00:00.000Z"),
        ):
            db.execute(
                "INSERT INTO messages (agent_id, sender, body, status, created_at, "
                "done_at) VALUES ('a', 'user', 'x', ?, 't', ?)",
                (status, done),
            )

    await store.writer.run(seed)
    await retention.prune(store, retention_days=30, max_rows=0, history_keep=10)
    kept = [r["message"] for r in await store.fetchall("SELECT message FROM history ORDER BY id")]
    assert kept == [f'{{"n": {i}}}' for i in range(20, 30)]
    rows = await store.fetchall("SELECT status, done_at FROM messages ORDER BY id")
    # The old finished one went; a queued one never does, however old.
    assert [(r["status"], r["done_at"]) for r in rows] == [
        ("queued", None),
        ("done", "2999-01-01T00:00:00.000Z"),
    ]


async def test_a_full_disk_refuses_the_write_and_loses_nothing(store: Store) -> None:
    bus = EventBus(store.writer)
    sup = Supervisor(store, bus, default_model="local")
    await sup.spawn("keeper")
    pages = (await store.fetchone("PRAGMA page_count"))[0]
    # Cap the database at its current size: the next growth fails as a full disk would.
    await store.writer.run(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
    with pytest.raises(StorageError) as exc:
        for i in range(200):
            await sup.spawn(f"filler{i}", system_prompt="x" * 20_000)
    assert exc.value.kind == "disk_full" and "free disk space" in (exc.value.hint or "")
    in_memory = set(sup.agents)
    rows = {r["id"] for r in await store.fetchall("SELECT id FROM agents")}
    assert rows == in_memory and "keeper" in rows  # what was acknowledged is all there
    # Space again: writes work again, nothing to repair.
    await store.writer.run(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
    await sup.transition("keeper", "pause")
    assert (await store.fetchone("PRAGMA integrity_check"))[0] == "ok"


def test_a_bad_forced_driver_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGION_")}
    env["LEGION_SQLITE_DRIVER"] = "bogus"
    res = run_cli("--home", str(tmp_path / "h"), "daemon", env=env)
    assert res.code == 2
    assert "LEGION_SQLITE_DRIVER='bogus'" in res.err and "stdlib, pysqlite3, sqlean" in res.err


def test_driver_can_be_forced_and_is_reported(tmp_path: Path) -> None:
    code = (
        "from legion.daemon.store.connect import driver; d = driver(); "
        "print(d.name, d.vec_version is not None)"
    )
    for name in ("pysqlite3", "sqlean"):
        env = {**os.environ, "LEGION_SQLITE_DRIVER": name}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        assert out == [name, "True"]
    stdlib_can_load = hasattr(sqlite3.Connection, "enable_load_extension")
    env = {**os.environ, "LEGION_SQLITE_DRIVER": "stdlib"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    # Where the interpreter cannot load extensions, forcing it must say so, not hide it.
    assert out[0] == "stdlib"
    if not stdlib_can_load:
        assert out[1] == "False"
