"""Agent memory: entries keyed by (owner, path), found by words and by meaning.

- Privacy: an agent's entries are its own (owner = its id). Paths under
  `shared/` belong to everyone (owner `*`): any agent reads and writes them.
  No query ever reaches another agent's private entries: every read, list
  and search is filtered by owner inside SQL (and inside the vector KNN, via
  sqlite-vec's partition key).
- Literal search is FTS5 (bm25). Semantic search is hybrid: vector
  similarity fused with literal hits by reciprocal rank, so an entry written a
  moment ago (not embedded yet) is still found by its words.
- Vectors live in one sqlite-vec table per embedding model; changing the
  model re-embeds, never mixing two models' vectors.
- Quotas per agent (entries, bytes, entry size) refuse writes with a clear
  error; reads are counted (access_count, accessed_at) for ranking decay now
  and for consolidation later.
- Embedding happens off the write path, in `backfill.Backfill`. Memory is
  given that worker (or None when there is nothing to embed with) in its
  constructor, typed as the narrow `EmbeddingWorker` protocol below: after a
  write it wakes the worker, and `stats` reports its state. The worker in
  turn needs nothing of Memory (only the store, the bus and the helpers in
  `records`), so it is built first and handed in: no import cycle, nothing
  assigned after construction.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec
import structlog

from legion.config import MemoryConfig
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.memory import records
from legion.daemon.memory.embedders import Embedder
from legion.daemon.memory.records import SHARED, pack
from legion.daemon.store.database import Store
from legion.errors import Conflict, InvalidParams, LegionError, NotFound, close_matches

log = structlog.get_logger("legion.memory")

SHARED_PREFIX = "shared/"
PATH = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+/ -]{0,254}$")
RRF_K = 60
# Semantic hits this far below the best similarity are dropped: embedding
# models score unrelated text well above zero, and recall must not pad the
# prompt with it.
SIMILARITY_WINDOW = 0.06
# Words too common to find anything by when the search falls back to any-word.
STOP_WORDS = frozenset(
    "a an and are as at be by do for from has have how i in is it its my of on or our so "  # noqa: SIM905
    "that the their there this to was we what when where which who why will with you your".split()
)
Mode = Literal["create", "replace", "append"]


class QuotaExceeded(LegionError):
    code = -32002
    exit_code = 5
    kind = "memory_quota"


class Entry(msgspec.Struct):
    path: str
    content: str
    tags: list[str]
    shared: bool
    author: str
    bytes: int
    created_at: str
    updated_at: str
    accessed_at: str | None
    access_count: int
    embedded: bool

    @classmethod
    def from_row(cls, r: Any, model: str | None) -> Entry:
        return cls(
            r["path"],
            r["content"],
            json.loads(r["tags"]),
            r["owner"] == SHARED,
            r["author"],
            r["bytes"],
            r["created_at"],
            r["updated_at"],
            r["accessed_at"],
            r["access_count"],
            model is not None and r["embedded"] == 1,
        )


def owner_of(agent: str, path: str) -> str:
    return SHARED if path.startswith(SHARED_PREFIX) else agent


def check_path(path: str) -> str:
    norm = path.strip().lstrip("/")
    parts = norm.split("/")
    if not PATH.match(norm) or ".." in parts or "" in parts:
        raise InvalidParams(
            f"invalid memory path {path!r}",
            hint="use a relative path of letters, digits and . _ - @ + / (e.g. "
            "'notes/2026-11-21.md', 'shared/team.md'), up to 255 characters, no '..'",
            kind="invalid_memory_path",
        )
    return norm


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()[:32]


def fts_query(text: str, any_word: bool) -> str | None:
    words = re.findall(r"\w+", text.lower())
    if any_word:
        words = [w for w in words if w not in STOP_WORDS]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words[:32]]
    return (" OR " if any_word else " ").join(quoted)


class EmbeddingWorker(Protocol):
    """What Memory needs of the worker that embeds its entries (`backfill.Backfill`).

    Kept here, next to its one user, so that this module never imports the
    backfill: a write calls `wake` (new entries are pending), `stats` shows
    `describe()`.
    """

    def wake(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class Memory:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        cfg: MemoryConfig,
        embedder: Embedder | None,
        embedder_label: str,
        *,
        backfill: EmbeddingWorker | None = None,
    ) -> None:
        """`backfill` is the embedding worker, or None when nothing embeds (no
        embedder, or no sqlite-vec): then writes wake nobody and `stats` has no
        "backfill" section."""
        self.store = store
        self.bus = bus
        self.cfg = cfg
        self.embedder = embedder
        self.embedder_label = embedder_label
        self.vec_available = store.driver.vec_available
        self.backfill = backfill

    @property
    def model(self) -> str | None:
        return self.embedder.name if self.embedder is not None and self.vec_available else None

    # -- writing ----------------------------------------------------------------------

    async def write(
        self,
        agent: str,
        path: str,
        content: str,
        *,
        mode: Mode = "replace",
        tags: list[str] | None = None,
        source: str = "rpc",
        caused_by: int | None = None,
    ) -> tuple[Entry, Event]:
        path = check_path(path)
        owner = owner_of(agent, path)
        limit = self.cfg.max_entry_bytes

        def job(db: Any) -> tuple[Entry, Event]:
            row = db.execute(
                "SELECT * FROM memories WHERE owner = ? AND path = ?", (owner, path)
            ).fetchone()
            if row is not None and mode == "create":
                raise Conflict(
                    f"memory {path!r} already exists",
                    hint="use mode 'replace' to overwrite it or 'append' to add to it",
                    kind="memory_exists",
                )
            text = (
                row["content"] + "\n" + content if row is not None and mode == "append" else content
            )
            size = len(text.encode())
            if size > limit:
                raise QuotaExceeded(
                    f"memory {path!r} would be {size} bytes; one entry may hold {limit}",
                    hint="split it into several entries (e.g. by date or topic)",
                )
            used = db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM memories WHERE author = ?", (agent,)
            ).fetchone()
            count = used[0] + (0 if row is not None else 1)
            total = used[1] - (row["bytes"] if row is not None else 0) + size
            if count > self.cfg.max_entries or total > self.cfg.max_bytes:
                raise QuotaExceeded(
                    f"memory quota reached for {agent}: {used[0]} entries, {used[1]} bytes "
                    f"(limits {self.cfg.max_entries} entries, {self.cfg.max_bytes} bytes)",
                    hint="delete or merge entries you no longer need (memory_list shows sizes "
                    "and last access), then write again",
                )
            now = now_iso()
            tag_text = json.dumps(
                sorted(set(tags if tags is not None else (json.loads(row["tags"]) if row else [])))
            )
            if row is None:
                db.execute(
                    "INSERT INTO memories (owner, path, content, tags, author, bytes, hash, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (owner, path, text, tag_text, agent, size, content_hash(text), now, now),
                )
            else:
                db.execute(
                    "UPDATE memories SET content = ?, tags = ?, bytes = ?, hash = ?, "
                    "updated_at = ?, author = ?, embedded = 0 WHERE id = ?",
                    (text, tag_text, size, content_hash(text), now, agent, row["id"]),
                )
            fresh = db.execute(
                "SELECT * FROM memories WHERE owner = ? AND path = ?", (owner, path)
            ).fetchone()
            ev = insert(
                db,
                agent,
                "memory.written",
                {
                    "path": path,
                    "mode": mode,
                    "bytes": size,
                    "shared": owner == SHARED,
                    "created": row is None,
                },
                caused_by=caused_by,
                source=source,
            )
            return Entry.from_row(fresh, self.model), ev

        result = await self.store.writer.run(job, on_commit=self.bus.deliver)
        if self.backfill is not None:
            self.backfill.wake()
        return result

    async def delete(
        self, agent: str, path: str, source: str = "rpc", caused_by: int | None = None
    ) -> Event:
        path = check_path(path)
        owner = owner_of(agent, path)
        near = await self._near(agent, path)
        tables = await self._vector_tables()

        def job(db: Any) -> Event:
            row = db.execute(
                "SELECT id FROM memories WHERE owner = ? AND path = ?", (owner, path)
            ).fetchone()
            if row is None:
                raise self._missing(path, near)
            for table in tables:
                db.execute(f"DELETE FROM {table} WHERE rowid = ?", (row["id"],))
            db.execute("DELETE FROM memories WHERE id = ?", (row["id"],))
            return insert(
                db, agent, "memory.deleted", {"path": path}, caused_by=caused_by, source=source
            )

        return await self.store.writer.run(job, on_commit=self.bus.deliver)

    # -- reading ----------------------------------------------------------------------

    async def read(self, agent: str, path: str) -> Entry:
        path = check_path(path)
        owner = owner_of(agent, path)

        def job(db: Any) -> Any:
            # Reading reinforces: decay ranks by last access, consolidation will use counts.
            db.execute(
                "UPDATE memories SET access_count = access_count + 1, accessed_at = ? "
                "WHERE owner = ? AND path = ?",
                (now_iso(), owner, path),
            )
            return db.execute(
                "SELECT * FROM memories WHERE owner = ? AND path = ?", (owner, path)
            ).fetchone()

        row = await self.store.writer.run(job)
        if row is None:
            raise self._missing(path, await self._near(agent, path))
        return Entry.from_row(row, self.model)

    async def listing(self, agent: str, prefix: str = "", limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT path, owner, bytes, tags, updated_at, accessed_at, access_count, "
            "embedded FROM memories "
            "WHERE owner IN (?, ?) AND path LIKE ? ESCAPE '\\' ORDER BY path LIMIT ?",
            (agent, SHARED, _like_prefix(prefix), limit),
        )
        return [
            {
                "path": r["path"],
                "shared": r["owner"] == SHARED,
                "bytes": r["bytes"],
                "tags": json.loads(r["tags"]),
                "updated_at": r["updated_at"],
                "accessed_at": r["accessed_at"],
                "access_count": r["access_count"],
                "embedded": self.model is not None and r["embedded"] == 1,
            }
            for r in rows
        ]

    async def search(
        self, agent: str, query: str, *, semantic: bool = False, limit: int = 10, prefix: str = ""
    ) -> dict[str, Any]:
        literal = await self._literal(agent, query, prefix, limit * 3)
        note = ""
        mode = "literal"
        ranked: dict[int, dict[str, Any]] = {}
        for rank, hit in enumerate(literal):
            ranked[hit["id"]] = {**hit, "score": 1 / (RRF_K + rank + 1), "via": ["literal"]}
        if semantic:
            if self.embedder is None:
                note = (
                    f"semantic unavailable: no embedder configured "
                    f"({self.embedder_label}); literal results shown"
                )
            elif not self.vec_available:
                note = (
                    "semantic unavailable: sqlite-vec cannot be loaded by this sqlite build "
                    "(see `legion info`); literal results shown"
                )
            else:
                # Counted before the vector query: an entry embedded in between is then
                # either found or announced, never silently missing.
                pending = await self.pending_count(agent)
                try:
                    vector_hits = await self._vector(agent, query, prefix, limit * 3)
                except LegionError as exc:
                    vector_hits = None
                    note = f"semantic unavailable: {exc.message}; literal results shown"
                except Exception as exc:
                    vector_hits = None
                    note = (
                        f"semantic unavailable: the embedder failed ({exc}); literal results shown"
                    )
                if vector_hits is not None:
                    mode = "hybrid"
                    if vector_hits:
                        floor = vector_hits[0]["similarity"] - SIMILARITY_WINDOW
                        vector_hits = [h for h in vector_hits if h["similarity"] >= floor]
                    for rank, hit in enumerate(vector_hits):
                        entry = ranked.setdefault(hit["id"], {**hit, "score": 0.0, "via": []})
                        entry["score"] += 1 / (RRF_K + rank + 1)
                        entry["via"].append("semantic")
                        entry["similarity"] = hit["similarity"]
                    if pending:
                        note = (
                            f"{pending} entries are not embedded yet; they are matched by "
                            "their words until the backfill reaches them"
                        )
        results = sorted(ranked.values(), key=lambda h: -h["score"] * self._decay(h))[:limit]
        for h in results:
            h.pop("id", None)
            h.pop("accessed_at", None)
            h["score"] = round(h["score"], 6)
        return {"mode": mode, "note": note, "results": results}

    def _decay(self, hit: dict[str, Any]) -> float:
        half = self.cfg.decay_half_life_days
        if not half:
            return 1.0
        last = hit.get("accessed_at") or hit.get("updated_at")
        try:
            then = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
        except ValueError:
            return 1.0
        days = (datetime.now(UTC) - then).total_seconds() / 86400
        return math.pow(0.5, max(days, 0) / half)

    async def _literal(
        self, agent: str, query: str, prefix: str, limit: int
    ) -> list[dict[str, Any]]:
        for any_word in (False, True):
            match = fts_query(query, any_word)
            if match is None:
                return []
            rows = await self.store.fetchall(
                "SELECT m.id, m.path, m.owner, m.updated_at, m.accessed_at, "
                "snippet(memories_fts, 1, '«', '»', '…', 16) AS snippet, "
                # CROSS JOIN keeps the FTS match as the outer loop; left to itself
                # SQLite walks the owner's rows and re-runs the match for each.
                "bm25(memories_fts) AS rank FROM memories_fts CROSS JOIN memories m "
                "ON m.id = memories_fts.rowid WHERE memories_fts MATCH ? "
                "AND m.owner IN (?, ?) AND m.path LIKE ? ESCAPE '\\' ORDER BY rank LIMIT ?",
                (match, agent, SHARED, _like_prefix(prefix), limit),
            )
            if rows:
                return [
                    {
                        "id": r["id"],
                        "path": r["path"],
                        "shared": r["owner"] == SHARED,
                        "snippet": r["snippet"],
                        "updated_at": r["updated_at"],
                        "accessed_at": r["accessed_at"],
                    }
                    for r in rows
                ]
        return []

    async def _vector(
        self, agent: str, query: str, prefix: str, limit: int
    ) -> list[dict[str, Any]]:
        assert self.embedder is not None
        table = await self._table_for(self.embedder.name)
        if table is None:
            return []
        vector = await self.embedder.query(query)
        rows = await self.store.fetchall(
            f"SELECT v.rowid AS id, v.distance, m.path, m.owner, substr(m.content, 1, 400) AS "
            f"content, m.updated_at, "
            f"m.accessed_at FROM {table} v JOIN memories m ON m.id = v.rowid "
            # One KNN per partition (the agent's and shared): 2k rows, the best k kept.
            "WHERE v.embedding MATCH ? AND k = ? AND v.owner IN (?, ?) ORDER BY v.distance "
            "LIMIT ?",
            (pack(vector), limit, agent, SHARED, limit),
        )
        return [
            {
                "id": r["id"],
                "path": r["path"],
                "shared": r["owner"] == SHARED,
                "snippet": _excerpt(r["content"]),
                "similarity": round(1 - r["distance"], 4),
                "updated_at": r["updated_at"],
                "accessed_at": r["accessed_at"],
            }
            for r in rows
            if r["path"].startswith(prefix)
        ]

    # -- bookkeeping ------------------------------------------------------------------

    async def _table_for(self, model: str) -> str | None:
        row = await self.store.fetchone(
            "SELECT table_name FROM memory_vector_tables WHERE model = ?", (model,)
        )
        return row["table_name"] if row else None

    async def _vector_tables(self) -> list[str]:
        if not self.vec_available:
            return []
        rows = await self.store.fetchall("SELECT table_name FROM memory_vector_tables")
        return [r["table_name"] for r in rows]

    async def context(self, agent: str, text: str, budget_tokens: int) -> str:
        """Memories relevant to `text`, as a prompt block within the budget ("" if none)."""
        found = await self.search(agent, text, semantic=self.model is not None, limit=8)
        lines: list[str] = []
        used = 0
        for hit in found["results"]:
            line = f"- {hit['path']}: {hit['snippet']}"
            if used + len(line) > budget_tokens * 4:
                break
            used += len(line)
            lines.append(line)
        if not lines:
            return ""
        return "Memories that may be relevant (memory_read gives the whole entry):\n" + "\n".join(
            lines
        )

    async def prepare(self) -> None:
        """At start: entries embedded by another model are queued again."""
        if self.model is None:
            return
        model = self.model

        def job(db: Any) -> int:
            return int(
                db.execute(
                    "UPDATE memories SET embedded = 0 WHERE embedded = 1 AND "
                    "embedded_model IS NOT ?",
                    (model,),
                ).rowcount
            )

        queued = await self.store.writer.run(job)
        if queued:
            log.info("embedder changed; entries queued to embed again", entries=queued, model=model)

    # Reads that do not count as an access (reflection looks at the agent's memory
    # without making every entry look recently used).

    async def heads(self, agent: str, chars: int = 120, limit: int = 200) -> dict[str, str]:
        """The first `chars` characters of each of the agent's own entries, by path."""
        rows = await self.store.fetchall(
            "SELECT path, substr(content, 1, ?) AS head FROM memories WHERE owner = ? "
            "ORDER BY path LIMIT ?",
            (chars, agent, limit),
        )
        return {r["path"]: r["head"] for r in rows}

    async def peek(self, agent: str, paths: list[str]) -> dict[str, Any]:
        """The agent's own entries among `paths` (path, content, tags), by path."""
        if not paths:
            return {}
        marks = ", ".join("?" for _ in paths)
        rows = await self.store.fetchall(
            f"SELECT path, content, tags FROM memories WHERE owner = ? AND path IN ({marks})",
            (agent, *paths),
        )
        return {r["path"]: r for r in rows}

    async def find_own(self, agent: str, prefix: str, content: str) -> str | None:
        """The path of the agent's own entry under `prefix` with exactly this content."""
        row = await self.store.fetchone(
            "SELECT path FROM memories WHERE owner = ? AND substr(path, 1, ?) = ? AND content = ?",
            (agent, len(prefix), prefix, content),
        )
        return None if row is None else str(row["path"])

    async def pending_count(self, agent: str | None = None) -> int:
        if self.model is None:
            return 0
        return await records.pending_count(self.store, agent)

    async def stats(self, agent: str | None = None) -> dict[str, Any]:
        where, args = ("WHERE author = ? OR owner = ?", [agent, agent]) if agent else ("", [])
        row = await self.store.fetchone(
            f"SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b, "
            f"sum(owner = '*') AS shared FROM memories {where}",
            args,
        )
        out: dict[str, Any] = {
            "entries": row["n"],
            "bytes": row["b"],
            "shared_entries": row["shared"] or 0,
            "embedder": self.embedder_label,
            "vector_search": self.model is not None,
            "pending_embeddings": await self.pending_count(agent),
            "quota": {
                "max_entries": self.cfg.max_entries,
                "max_bytes": self.cfg.max_bytes,
                "max_entry_bytes": self.cfg.max_entry_bytes,
            },
            "decay_half_life_days": self.cfg.decay_half_life_days,
        }
        if self.backfill is not None:
            out["backfill"] = self.backfill.describe()
        return out

    async def _near(self, agent: str, path: str) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT path FROM memories WHERE owner IN (?, ?) LIMIT 2000", (agent, SHARED)
        )
        return close_matches(path, [r["path"] for r in rows])

    def _missing(self, path: str, near: list[str]) -> NotFound:
        return NotFound(
            f"no memory at {path!r}",
            hint=(f"did you mean {near[0]!r}? " if near else "")
            + "memory_list shows what exists (by prefix); memory_search finds by words",
            candidates=near,
            kind="unknown_memory",
        )


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _excerpt(content: str, size: int = 160) -> str:
    flat = " ".join(content.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"
