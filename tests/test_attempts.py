"""Attempts that mean something (issue 13, "Start-up"): an attempt is counted when
the session asks the model, not when the message is taken from the inbox.

"Before the model was asked" is made deterministic by holding the litellm import
itself: the daemon runs with a `litellm` package first on its PYTHONPATH whose
import never returns, so a session that has started can only be waiting for it
when the daemon is killed. The restart runs without it, on the real litellm.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from legion.daemon.agents.inbox import MAX_ATTEMPTS, MAX_DELIVERIES
from tests.conftest import Daemon
from tests.test_sessions import Watch, scripted


def held_import(tmp: Path) -> dict[str, str]:
    """Environment for a daemon whose `import litellm` blocks for good."""
    pkg = tmp / "held" / "litellm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import threading\nthreading.Event().wait()\n")
    return {"PYTHONPATH": str(tmp / "held")}


def messages(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = daemon.cli_json("messages", agent)
    return out


def redelivered(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in daemon.cli_json("events", agent, "--limit", "500")
        if e["kind"] == "message.redelivered"
    ]


def kill_at_each(daemon: Daemon, agent: str, kind: str, key: str, times: int) -> None:
    """SIGKILL and restart the daemon at each of `times` events `kind` whose
    `key` counts 1, 2, ... (the same message seen again after each restart)."""
    for n in range(1, times + 1):
        watch = Watch(daemon, agent)
        try:
            watch.until(kind, **{key: n})
        finally:
            watch.close()
        daemon.kill9()
        daemon.start()


def test_a_restart_before_the_model_was_asked_costs_no_attempt(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(tmp_path, "quick", '[[turn]]\ntext = "answered at last"\n')
    daemon: Daemon = make_daemon(config=cfg, env=held_import(tmp_path))
    daemon.cli("spawn", "carol", "--model", "quick")
    sent = daemon.cli_json("tell", "carol", "hello")
    watch = Watch(daemon, "carol")
    try:
        started = watch.until("session.started")
    finally:
        watch.close()
    assert started["data"]["attempt"] == 1
    # The session waits on the import (held for good): the model cannot have been asked.
    assert [(m["status"], m["attempts"]) for m in messages(daemon, "carol")] == [("processing", 0)]
    # Killed again and again during the import: neither an attempt nor a delivery
    # is spent (more kills than MAX_DELIVERIES would otherwise give it up).
    kill_at_each(daemon, "carol", "session.started", "attempt", 1)
    for _ in range(MAX_DELIVERIES):
        kill_at_each(daemon, "carol", "session.started", "delivery", 1)
    daemon.kill9()

    daemon.extra_env = {}
    daemon.start()
    result = json.loads(daemon.cli("wait", str(sent["message_id"]), "--json").out)
    assert result["status"] == "done" and result["reply"] == "answered at last"
    assert redelivered(daemon, "carol") == [
        {"message_id": sent["message_id"], "attempts": 0, "deliveries": 0}
    ] * (MAX_DELIVERIES + 2)
    # One attempt: the one that asked the model.
    assert [(m["status"], m["attempts"]) for m in messages(daemon, "carol")] == [("done", 1)]
    evs = daemon.cli_json("events", "carol", "--limit", "500")
    assert [e["data"]["attempt"] for e in evs if e["kind"] == "session.started"] == [1] * (
        MAX_DELIVERIES + 3
    )
    assert [e["data"].get("attempt") for e in evs if e["kind"] == "model.request"] == [1]


def test_each_restart_after_the_model_was_asked_counts_until_it_gives_up(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path, "hang", '[[turn]]\ntext = "thinking very hard"\nstall = true\nrepeat = true\n'
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "dave", "--model", "hang")
    sent = daemon.cli_json("tell", "dave", "a question that kills the daemon")
    # model.request is emitted once the attempt is durably counted, just before the request.
    kill_at_each(daemon, "dave", "model.request", "attempt", MAX_ATTEMPTS)
    result = json.loads(daemon.cli("wait", str(sent["message_id"]), "--json").out)
    assert result["status"] == "failed"
    assert f"gave up after {MAX_ATTEMPTS} attempts" in result["error"]
    assert "after the model was asked" in result["error"]
    assert [r["attempts"] for r in redelivered(daemon, "dave")] == list(range(1, MAX_ATTEMPTS + 1))


def test_a_message_that_never_reaches_the_model_is_given_up_after_max_deliveries(
    make_daemon: Any, tmp_path: Path
) -> None:
    # A message whose sessions got past the import MAX_DELIVERIES times and each
    # time ended the daemon before the model was asked (a prompt that crashes it,
    # say): its count is set where those restarts would have left it.
    cfg = scripted(tmp_path, "quick", '[[turn]]\ntext = "never"\n')
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "erin", "--model", "quick")
    daemon.cli("pause", "erin")
    sent = daemon.cli_json("tell", "erin", "hello")
    assert daemon.stop() == 0
    db = sqlite3.connect(daemon.home / "legion.db")
    db.execute(
        "UPDATE messages SET deliveries = ? WHERE id = ?", (MAX_DELIVERIES, sent["message_id"])
    )
    db.commit()
    db.close()
    daemon.start()
    daemon.cli("resume", "erin")
    result = json.loads(daemon.cli("wait", str(sent["message_id"]), "--json").out)
    assert result["status"] == "failed"
    assert f"gave up after {MAX_DELIVERIES} deliveries" in result["error"]
    assert "before the model was asked" in result["error"]
    assert messages(daemon, "erin")[0]["attempts"] == 0
    evs = daemon.cli_json("events", "erin", "--limit", "500")
    assert [e for e in evs if e["kind"] == "model.request"] == []
