"""Schema migrations: an ordered list of named steps, recorded in the database.

A step is applied once, in order, inside the writer's transaction. Never edit
a step that has shipped; add a new one. A database that records a step this
code does not know was written by a newer Legion, and is refused rather than
guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from legion.errors import Conflict

Step = Callable[[Any], None]
MIGRATIONS: list[tuple[str, Step]] = []


def migration(fn: Step) -> Step:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def script(db: Any, sql: str) -> None:
    """Run several statements inside the current transaction.

    `executescript` would COMMIT first, breaking the writer's transaction, so
    statements are split with sqlite's own completeness test instead.
    """
    import sqlite3

    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            db.execute(pending)
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in migration: {pending!r}")


@migration
def m001_initial(db: Any) -> None:
    script(
        db,
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            system_prompt TEXT NOT NULL DEFAULT '',
            parent TEXT,
            state TEXT NOT NULL
                CHECK (state IN ('running', 'paused', 'stopped', 'terminated')),
            state_reason TEXT NOT NULL DEFAULT '',
            definition TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;

        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            agent_id TEXT,
            kind TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            caused_by INTEGER,
            source TEXT NOT NULL DEFAULT ''
        ) STRICT;
        CREATE INDEX events_agent ON events (agent_id, id);
        CREATE INDEX events_agent_kind ON events (agent_id, kind, id);
        CREATE INDEX events_ts ON events (ts);

        CREATE TABLE graveyard (
            archive_id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            record TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            destroyed_at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX graveyard_agent ON graveyard (agent_id);

        CREATE TABLE graveyard_events (
            archive_id INTEGER NOT NULL REFERENCES graveyard (archive_id) ON DELETE CASCADE,
            id INTEGER NOT NULL,
            ts TEXT NOT NULL,
            agent_id TEXT,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            caused_by INTEGER,
            source TEXT NOT NULL,
            PRIMARY KEY (archive_id, id)
        ) STRICT;
        CREATE INDEX graveyard_events_ts ON graveyard_events (ts);
        """,
    )


def applied(db: Any) -> list[str]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
    )
    return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: Any) -> list[str]:
    """Apply every pending step; return the names applied. Runs in one transaction."""
    done = applied(db)
    known = [name for name, _ in MIGRATIONS]
    unknown = [n for n in done if n not in known]
    if unknown:
        raise Conflict(
            f"the database was migrated by a newer Legion (unknown steps: {', '.join(unknown)})",
            hint="run the newer Legion, or restore a backup of the home made with this version",
            kind="schema_too_new",
        )
    now = datetime.now(UTC).isoformat()
    ran = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        step(db)
        db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, now))
        ran.append(name)
    return ran


@migration
def m002_inbox_sessions_history(db: Any) -> None:
    script(
        db,
        """
        ALTER TABLE agents ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'processing', 'done', 'idle', 'failed', 'interrupted')),
            attempts INTEGER NOT NULL DEFAULT 0,
            event_id INTEGER,
            session_id INTEGER,
            reply TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            done_at TEXT
        ) STRICT;
        CREATE INDEX messages_agent_status ON messages (agent_id, status, id);
        CREATE INDEX messages_done_at ON messages (done_at);

        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            message_id INTEGER,
            trigger TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            turns INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            ended_at TEXT
        ) STRICT;
        CREATE INDEX sessions_agent ON sessions (agent_id, started_at);

        CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            session_id INTEGER,
            message TEXT NOT NULL,
            chars INTEGER NOT NULL,
            created_at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX history_agent ON history (agent_id, id);
        """,
    )


@migration
def m003_memory(db: Any) -> None:
    script(
        db,
        """
        CREATE TABLE memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            path TEXT NOT NULL,
            content TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            author TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            accessed_at TEXT,
            access_count INTEGER NOT NULL DEFAULT 0,
            embedded_model TEXT,
            embedded_hash TEXT,
            -- 1 when the vector of the current embedder matches the content.
            embedded INTEGER NOT NULL DEFAULT 0,
            UNIQUE (owner, path)
        ) STRICT;
        -- The backfill's queue and the pending count, without scanning every entry.
        CREATE INDEX memories_pending ON memories (owner) WHERE embedded = 0;
        -- Quotas are counted by author on every write.
        CREATE INDEX memories_author ON memories (author, bytes);

        CREATE VIRTUAL TABLE memories_fts USING fts5(
            path, content, tags, content='memories', content_rowid='id',
            tokenize='porter unicode61'
        );
        CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, path, content, tags)
            VALUES (new.id, new.path, new.content, new.tags);
        END;
        CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, path, content, tags)
            VALUES ('delete', old.id, old.path, old.content, old.tags);
        END;
        CREATE TRIGGER memories_au AFTER UPDATE OF path, content, tags ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, path, content, tags)
            VALUES ('delete', old.id, old.path, old.content, old.tags);
            INSERT INTO memories_fts (rowid, path, content, tags)
            VALUES (new.id, new.path, new.content, new.tags);
        END;

        -- One sqlite-vec table per embedding model: vectors of two models never mix.
        CREATE TABLE memory_vector_tables (
            model TEXT PRIMARY KEY,
            dim INTEGER NOT NULL,
            table_name TEXT NOT NULL UNIQUE
        ) STRICT;
        """,
    )


@migration
def m004_tasks(db: Any) -> None:
    script(
        db,
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            num INTEGER NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL
                CHECK (status IN ('open', 'doing', 'blocked', 'done', 'cancelled')),
            lane TEXT NOT NULL DEFAULT '',
            priority INTEGER NOT NULL DEFAULT 0,
            due TEXT,
            creator TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            status_changed_at TEXT NOT NULL,
            UNIQUE (owner, num)
        ) STRICT;
        CREATE INDEX tasks_owner_status ON tasks (owner, status);

        -- task_id is blocked by blocker_id (which may be on another agent's board).
        CREATE TABLE task_deps (
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            blocker_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            PRIMARY KEY (task_id, blocker_id)
        ) STRICT;
        CREATE INDEX task_deps_blocker ON task_deps (blocker_id);

        CREATE TABLE task_notes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            author TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX task_notes_task ON task_notes (task_id);

        -- Every status change, for burndown charts and "stuck" queries.
        CREATE TABLE task_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            status TEXT NOT NULL,
            by TEXT NOT NULL,
            at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX task_changes_owner ON task_changes (owner, at);
        """,
    )


@migration
def m005_schedules_watchers(db: Any) -> None:
    script(
        db,
        """
        CREATE TABLE schedules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once', 'heartbeat')),
            spec TEXT NOT NULL,
            prompt TEXT NOT NULL DEFAULT '',
            model TEXT,
            missed TEXT NOT NULL DEFAULT 'run_once'
                CHECK (missed IN ('skip', 'run_once', 'run_all')),
            missed_cap INTEGER NOT NULL DEFAULT 10,
            -- The last planned fire time handled (fired, skipped or dropped).
            last_fire TEXT,
            created_at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX schedules_agent ON schedules (agent_id);

        -- A schedule may run its sessions on another model than the agent's.
        ALTER TABLE messages ADD COLUMN model TEXT;

        CREATE TABLE watchers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            config TEXT NOT NULL,
            trigger TEXT NOT NULL,
            action TEXT NOT NULL,
            interval REAL NOT NULL,
            min_interval REAL NOT NULL,
            created_at TEXT NOT NULL,
            last_fired_at TEXT
        ) STRICT;
        CREATE INDEX watchers_agent ON watchers (agent_id);
        """,
    )


@migration
def m006_tools(db: Any) -> None:
    script(
        db,
        """
        -- Agent-written tools. Starter and plugin tools live in code, not here.
        CREATE TABLE tools (
            name TEXT PRIMARY KEY,
            author TEXT NOT NULL,
            maintainer TEXT NOT NULL,
            description TEXT NOT NULL,
            keywords TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL,
            entry TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            version INTEGER NOT NULL,
            -- 'ok': built and callable; 'broken': saved, but the last build failed.
            status TEXT NOT NULL CHECK (status IN ('ok', 'broken')),
            problem TEXT,
            schema TEXT NOT NULL DEFAULT '{}',
            network INTEGER NOT NULL DEFAULT 0,
            env TEXT NOT NULL DEFAULT '[]',
            timeout REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;

        -- Recent versions of each agent-written tool (tools.versions_keep of them).
        CREATE TABLE tool_versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            source TEXT NOT NULL,
            diff TEXT NOT NULL DEFAULT '',
            added INTEGER NOT NULL DEFAULT 0,
            removed INTEGER NOT NULL DEFAULT 0,
            mode TEXT NOT NULL,
            agent TEXT NOT NULL,
            at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX tool_versions_name ON tool_versions (name, version);

        -- Usage of every tool (kernel, registry, agent-written); flushed from memory.
        CREATE TABLE tool_stats (
            name TEXT PRIMARY KEY,
            calls INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            misuses INTEGER NOT NULL DEFAULT 0,
            -- The recent window: [[duration_ms, ok], ...], newest last.
            recent TEXT NOT NULL DEFAULT '[]',
            last_error TEXT,
            last_used TEXT,
            verdict_note TEXT
        ) STRICT;
        """,
    )


@migration
def m007_fleet(db: Any) -> None:
    script(
        db,
        """
        -- Agent-to-agent messages: how many agent hops led to this message (the
        -- conversation-loop guard bounds it), and the message it answers.
        ALTER TABLE messages ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE messages ADD COLUMN reply_to INTEGER;

        -- Topic subscriptions: agent_publish fans a message out to each subscriber.
        CREATE TABLE subscriptions (
            agent_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (agent_id, topic)
        ) STRICT;
        CREATE INDEX subscriptions_topic ON subscriptions (topic);

        -- System-prompt changes an agent proposed (reflection); a person decides.
        CREATE TABLE prompt_proposals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            base TEXT NOT NULL,
            proposed TEXT NOT NULL,
            rationale TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
            session_id INTEGER,
            created_at TEXT NOT NULL,
            decided_at TEXT,
            decided_by TEXT,
            decision_note TEXT
        ) STRICT;
        CREATE INDEX prompt_proposals_agent ON prompt_proposals (agent_id, status);
        """,
    )


@migration
def m008_message_deliveries(db: Any) -> None:
    script(
        db,
        """
        -- How often a message was taken from the inbox. `attempts` now counts only
        -- the sessions that asked the model; this bounds the restarts that happen
        -- before that (a message that crashes the daemon while its prompt is built).
        ALTER TABLE messages ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0;
        """,
    )
