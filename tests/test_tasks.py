"""The task board: scripted agents plan, assign and finish work across boards;
the rules refuse what they must; presets answer; the nudge fires once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Daemon
from tests.test_sessions import Watch, script_log, scripted, tell


def board(daemon: Daemon, agent: str) -> dict[str, str]:
    return {t["task"]: t["status"] for t in daemon.rpc("tasks.list", {"agent": agent})["result"]}


def test_agents_plan_assign_and_finish_work_across_boards(make_daemon: Any, tmp_path: Path) -> None:
    alice = scripted(
        tmp_path,
        "alice_model",
        """
[[turn]]
tool_calls = [
  { name = "task_create", arguments = { title = "design the API", owner = "bob" } },
]
[[turn]]
tool_calls = [
  { name = "task_create", arguments = { title = "write the client", blocked_by = ["1@bob"] } },
  { name = "task_create", arguments = { title = "ship it", blocked_by = ["1"] } },
]
[[turn]]
text = "planned"
[[turn]]
tool_calls = [{ name = "task_update", arguments = { task = "1", status = "doing" } }]
[[turn]]
tool_calls = [{ name = "task_complete", arguments = { task = "1", note = "client done" } }]
[[turn]]
text = "client written"
""",
    )
    bob = scripted(
        tmp_path,
        "bob_model",
        """
[[turn]]
tool_calls = [{ name = "task_update", arguments = { task = "1", status = "doing" } }]
[[turn]]
tool_calls = [{ name = "task_complete", arguments = { task = "1" } }]
[[turn]]
text = "API designed"
""",
    )
    # Two scripted models: the provider blocks of both, one [models.aliases] table.
    providers = [c.split("[models.aliases]")[0] for c in (alice, bob)]
    aliases = [c.split("[models.aliases]\n")[1] for c in (alice, bob)]
    daemon: Daemon = make_daemon(
        config="".join(providers) + "[models.aliases]\n" + "".join(aliases)
    )
    daemon.cli("spawn", "alice", "--model", "alice_model")
    daemon.cli("spawn", "bob", "--model", "bob_model")
    watch_alice = Watch(daemon, "alice")
    assert tell(daemon, "alice", "plan the release")["reply"] == "planned"
    # The assignment landed in bob's inbox and woke him; his finishing the design
    # unblocked alice's task and woke her; she finished it.
    watch_alice.until("task.status", task="1@alice", to="done")
    watch_alice.close()
    assert board(daemon, "bob") == {"1": "done"}
    assert board(daemon, "alice") == {"1": "done", "2": "open"}
    bob_msgs = daemon.cli_json("messages", "bob")
    assert [(m["sender"], m["status"]) for m in bob_msgs] == [("legion:tasks", "done")]
    first = script_log(tmp_path, "bob_model")[0]
    assert "[message from legion:tasks]" in first[-1]["content"]
    assert "alice assigned you task 1: design the API" in first[-1]["content"]
    woke = script_log(tmp_path, "alice_model")[3][-1]["content"]
    assert "your task 1 (write the client) is unblocked: 1@bob (design the API) is done" in woke
    evs = daemon.cli_json("events", "alice", "--limit", "500")
    kinds = [e["kind"] for e in evs]
    assert "task.unblocked" in kinds and "task.created" in kinds
    detail = daemon.rpc("tasks.get", {"agent": "alice", "task": "1"})["result"]
    assert [n["text"] for n in detail["notes"]] == ["client done"]
    assert [h["status"] for h in detail["history"]] == ["open", "blocked", "open", "doing", "done"]
    assert detail["dependents"][0]["task"] == "2"
    ps = {a["id"]: a["tasks"] for a in daemon.cli_json("ps")}
    assert ps["alice"] == {"doing": 0, "open": 1, "blocked": 0}


def test_the_rules_refuse_and_leave_the_board_unchanged(daemon: Daemon) -> None:
    daemon.cli("spawn", "ann")
    daemon.cli("spawn", "ben")
    daemon.cli_json("tasks", "add", "ben", "b-one")
    daemon.cli_json("tasks", "add", "ann", "a-one", "--blocked-by", "1@ben")
    daemon.cli_json("tasks", "add", "ann", "a-two", "--blocked-by", "1")
    before = (board(daemon, "ann"), board(daemon, "ben"))
    assert before[0] == {"1": "blocked", "2": "blocked"}

    # A cycle across boards is shown.
    res = daemon.rpc("tasks.update", {"agent": "ben", "task": "1", "add_blockers": ["2@ann"]})
    assert res["error"]["code"] == -32002 and res["error"]["data"]["kind"] == "task_cycle"
    assert "cycle: 1 -> 2@ann -> 1@ann -> 1" in res["error"]["message"]  # as ben sees it
    # An invented status lists the real ones.
    res = daemon.rpc("tasks.update", {"agent": "ann", "task": "1", "status": "banana"})
    assert res["error"]["code"] == -32602 and "'open' | 'doing'" in res["error"]["data"]["hint"]
    # An unknown id lists the active candidates.
    res = daemon.rpc("tasks.get", {"agent": "ann", "task": "9"})
    assert res["error"]["code"] == -32001 and res["error"]["data"]["candidates"] == ["1", "2"]
    # A blocked task cannot move to doing; the error names its blockers.
    res = daemon.cli("tasks", "move", "ann", "1", "doing")
    assert res.code == 5 and "blocked by 1@ben ('b-one', open)" in res.err
    res = daemon.cli("tasks", "done", "ann", "2")
    assert res.code == 5 and "blocked by 1 ('a-one', blocked)" in res.err
    # Bad references, empty titles and bad dates.
    assert daemon.cli("tasks", "show", "ann", "one").code == 2
    assert daemon.cli("tasks", "add", "ann", "x", "--due", "next tuesday").code == 2
    assert daemon.cli("tasks", "ls", "nobody").code == 4
    assert (board(daemon, "ann"), board(daemon, "ben")) == before


def test_the_session_close_nudge_fires_exactly_once(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "busy",
        """
[[turn]]
tool_calls = [{ name = "task_create", arguments = { title = "long job" } }]
[[turn]]
tool_calls = [{ name = "task_update", arguments = { task = "1", status = "doing" } }]
[[turn]]
text = "bye for now"
[[turn]]
text = "still on it, will report later"
[[turn]]
text = "nothing in doing now"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "nia", "--model", "busy")
    result = tell(daemon, "nia", "start the long job")
    assert result["reply"] == "still on it, will report later"
    nudges = daemon.cli_json("events", "nia", "--kind", "session.nudged")
    assert len(nudges) == 1
    assert "task 1 (long job) in doing" in nudges[0]["data"]["work"]
    shown = script_log(tmp_path, "busy")[3][-1]
    assert shown["role"] == "user" and shown["content"].startswith("[legion] Before you end")
    # Not otherwise: a session that ends with nothing in doing gets no nudge.
    daemon.rpc("tasks.update", {"agent": "nia", "task": "1", "status": "done"})
    tell(daemon, "nia", "anything else?")
    assert len(daemon.cli_json("events", "nia", "--kind", "session.nudged")) == 1


def test_presets_on_a_prepared_board_and_a_restart(daemon: Daemon) -> None:
    daemon.cli("spawn", "pam")
    daemon.cli("spawn", "rex")
    add = lambda agent, title, *extra: daemon.cli_json("tasks", "add", agent, title, *extra)  # noqa: E731
    add("rex", "r-design")  # 1@rex
    add("rex", "r-dropped")  # 2@rex
    add("pam", "p-build", "--blocked-by", "1@rex")  # 1 (blocked)
    add("pam", "p-ship", "--blocked-by", "1")  # 2 (blocked)
    add("pam", "p-late", "--due", "2001-01-01")  # 3 overdue
    add("pam", "p-soon", "--due", "2999-01-01")  # 4 (not upcoming)
    add("pam", "p-doing")  # 5
    add("pam", "p-orphan", "--blocked-by", "2@rex")  # 6
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    daemon.cli("tasks", "add", "pam", "p-upcoming", "--due", soon)  # 7 upcoming
    daemon.cli("tasks", "move", "pam", "5", "doing")
    daemon.cli("tasks", "note", "pam", "3", "waiting on the vendor")
    daemon.cli("tasks", "move", "rex", "2", "cancelled")

    doc = daemon.rpc(
        "tasks.query",
        {
            "agent": "pam",
            "stuck_hours": 1e-9,
            "presets": [
                "blocked",
                "stuck_in_doing",
                "overdue",
                "upcoming",
                "with_notes_not_done",
                "orphans",
                "longest_chain",
                "all",
            ],
        },
    )["result"]
    pick = {k: [t["task"] for t in v] for k, v in doc.items()}
    assert pick["blocked"] == ["1", "2", "6"]
    assert pick["stuck_in_doing"] == ["5"]
    assert pick["overdue"] == ["3"]
    assert pick["upcoming"] == ["7"]
    assert pick["with_notes_not_done"] == ["3"]
    assert pick["orphans"] == ["6"]
    assert pick["longest_chain"] == ["1@rex", "1", "2"]
    assert pick["all"] == [str(n) for n in range(1, 8)]
    res = daemon.rpc("tasks.query", {"agent": "pam", "presets": ["overdoo"]})
    assert res["error"]["data"]["candidates"] == ["overdue"]

    graph = daemon.cli_json("tasks", "graph", "pam")
    assert {"task": "2", "blocked_by": "1"} in graph["edges"]
    assert {"task": "1", "blocked_by": "1@rex"} in graph["edges"]
    drawn = daemon.cli("tasks", "graph", "pam").out
    assert "1@rex" in drawn and "p-ship" in drawn
    assert daemon.cli_json("tasks", "burndown", "pam")["points"][-1]["open"] == 7
    assert "open" in daemon.cli("tasks", "burndown", "pam").out

    before = (
        daemon.rpc("tasks.list", {"agent": "pam"})["result"],
        daemon.rpc("tasks.get", {"agent": "pam", "task": "3"})["result"],
    )
    assert daemon.stop() == 0
    daemon.start()
    after = (
        daemon.rpc("tasks.list", {"agent": "pam"})["result"],
        daemon.rpc("tasks.get", {"agent": "pam", "task": "3"})["result"],
    )
    assert after == before
    assert json.dumps(after)  # plain JSON all the way down


def test_blockers_released_reopened_and_destroyed(daemon: Daemon) -> None:
    daemon.cli("spawn", "cat")
    daemon.cli("spawn", "dan")
    daemon.cli_json("tasks", "add", "dan", "d-one")  # 1@dan
    daemon.cli_json("tasks", "add", "cat", "c-one", "--blocked-by", "1@dan")  # 1
    daemon.cli_json("tasks", "add", "cat", "c-two", "--blocked-by", "1@dan")  # 2
    # Removing the last blocker releases the task.
    res = daemon.rpc("tasks.update", {"agent": "cat", "task": "1", "remove_blockers": ["1@dan"]})
    assert res["result"]["status"] == "open" and res["result"]["blocked_by"] == []
    # Done unblocks; reopening blocks again.
    daemon.cli("tasks", "done", "dan", "1")
    assert board(daemon, "cat") == {"1": "open", "2": "open"}
    daemon.cli("tasks", "move", "dan", "1", "open")
    assert board(daemon, "cat") == {"1": "open", "2": "blocked"}
    # Destroying dan cancels his unfinished task (recorded) and orphans c-two.
    destroyed = daemon.cli_json("destroy", "dan")
    assert destroyed["event"]["data"]["tasks_cancelled"] == 1
    orphans = daemon.rpc("tasks.query", {"agent": "cat", "presets": ["orphans"]})["result"]
    assert [t["task"] for t in orphans["orphans"]] == ["2"]
    res = daemon.rpc("tasks.update", {"agent": "cat", "task": "1", "add_blockers": ["1"]})
    assert res["error"]["code"] == -32002 and res["error"]["data"]["kind"] == "task_cycle"
