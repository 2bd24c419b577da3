"""Agents through their whole life, driven from the CLI against the real daemon."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from typing import Any

from tests.conftest import REPO, Daemon


def test_spawn_ps_pause_resume_stop_destroy_with_events(daemon: Daemon) -> None:
    assert daemon.cli_json("ps") == []

    res = daemon.cli("spawn", "alice", "--model", "smart", "--system", "You are Alice.")
    assert res.code == 0, res.err
    assert "spawned alice" in res.out
    spawned = daemon.cli_json("spawn", "bob", "--parent", "alice")
    assert spawned["agent"]["state"] == "running"
    assert spawned["agent"]["parent"] == "alice"
    assert spawned["agent"]["model"] == "local"  # agents.default_model

    ps = {a["id"]: a for a in daemon.cli_json("ps")}
    assert set(ps) == {"alice", "bob"}
    assert ps["alice"]["model"] == "smart"
    assert ps["alice"]["system_prompt_chars"] == len("You are Alice.")

    assert daemon.cli_json("pause", "alice", "--reason", "lunch")["agent"]["state"] == "paused"
    assert [a["id"] for a in daemon.cli_json("ps", "--state", "paused")] == ["alice"]
    assert daemon.cli_json("resume", "alice")["agent"]["state"] == "running"
    assert daemon.cli_json("stop", "alice")["agent"]["state"] == "stopped"
    assert daemon.cli_json("resume", "alice")["agent"]["state"] == "running"

    kinds = [e["kind"] for e in daemon.cli_json("events", "alice")]
    assert kinds == [
        "agent.spawned",
        "agent.paused",
        "agent.resumed",
        "agent.stopped",
        "agent.resumed",
    ]
    paused = daemon.cli_json("events", "alice", "--kind", "agent.paused")
    assert len(paused) == 1
    assert paused[0]["data"] == {"from": "running", "to": "paused", "reason": "lunch"}
    assert paused[0]["source"].startswith("rpc:uid=")
    assert len(daemon.cli_json("events", "alice", "--limit", "2")) == 2
    assert len(daemon.cli_json("events", "alice", "--kind", "agent.res*")) == 2

    human = daemon.cli("events", "alice")
    assert human.code == 0 and "agent.stopped" in human.out

    destroyed = daemon.cli_json("destroy", "alice")
    assert destroyed["event"]["data"]["events_archived"] == 5
    # bob is alice's child: destroying a parent takes its descendants with it.
    assert destroyed["destroyed"] == ["bob", "alice"]
    assert daemon.cli_json("ps") == []
    # The destroy stays visible in the live log; the rest went to the graveyard.
    assert [e["kind"] for e in daemon.cli_json("events", "alice")] == ["agent.destroyed"]
    grave = daemon.rpc("agents.graveyard", {"agent": "alice"})["result"]
    assert len(grave) == 1 and grave[0]["record"]["state"] == "terminated"

    assert len(daemon.rpc("agents.graveyard", {"agent": "bob"})["result"]) == 1
    daemon.cli("spawn", "carl")
    purged = daemon.cli_json("destroy", "carl", "--purge")
    assert purged["event"]["data"]["purged"] is True
    assert daemon.rpc("agents.graveyard", {"agent": "carl"})["result"] == []
    assert daemon.cli_json("ps") == []

    # The id is free again once destroyed.
    assert daemon.cli("spawn", "alice").code == 0


def _read_json_line(proc: subprocess.Popen[str], timeout: float = 15) -> dict[str, Any]:
    """The next JSON line attach printed (a reader thread feeds a queue, so a
    buffered pipe never hides a line that already arrived)."""
    lines: queue.Queue[str] = proc._lines
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no event from attach in time") from None
    if not line:
        raise AssertionError("attach ended early")
    result: dict[str, Any] = json.loads(line)
    return result


def _attach(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "legion", "--home", str(daemon.home), "attach", *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=daemon.env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    proc._lines = lines  # type: ignore[attr-defined]
    return proc


def test_attach_replays_history_then_streams_live_until_destroyed(daemon: Daemon) -> None:
    daemon.cli("spawn", "carol")
    daemon.cli("pause", "carol")
    proc = _attach(daemon, "carol")
    try:
        # A new attach never opens blank: history first.
        first = _read_json_line(proc)
        second = _read_json_line(proc)
        assert [first["kind"], second["kind"]] == ["agent.spawned", "agent.paused"]
        # Then live events, as they happen.
        daemon.cli("resume", "carol")
        live = _read_json_line(proc)
        assert live["kind"] == "agent.resumed" and live["id"] > second["id"]
        daemon.cli("stop", "carol")
        assert _read_json_line(proc)["kind"] == "agent.stopped"
        daemon.cli("destroy", "carol")
        assert _read_json_line(proc)["kind"] == "agent.destroyed"
        # The stream ends by itself when the agent is gone.
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_attach_sees_only_its_agent_and_kinds(daemon: Daemon) -> None:
    daemon.cli("spawn", "dave")
    daemon.cli("spawn", "erin")
    daemon.cli("pause", "dave")
    daemon.cli("resume", "dave")
    proc = _attach(daemon, "dave", "--kind", "agent.paused")
    try:
        # The replayed pause proves the subscription is live before we act.
        replayed = _read_json_line(proc)
        assert (replayed["agent"], replayed["kind"]) == ("dave", "agent.paused")
        daemon.cli("pause", "erin")  # another agent
        daemon.cli("stop", "dave")  # another kind
        daemon.cli("resume", "dave")
        daemon.cli("pause", "dave")
        ev = _read_json_line(proc)
        assert (ev["agent"], ev["kind"]) == ("dave", "agent.paused")
        assert ev["id"] > replayed["id"]
        assert ev["data"]["from"] == "running"
    finally:
        proc.terminate()
        proc.wait()


def test_attach_to_a_destroyed_agent_replays_its_end_and_exits(daemon: Daemon) -> None:
    daemon.cli("spawn", "gone")
    daemon.cli("destroy", "gone")
    proc = _attach(daemon, "gone")
    try:
        assert _read_json_line(proc)["kind"] == "agent.destroyed"
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_events_pages_back_and_forth(daemon: Daemon) -> None:
    daemon.cli("spawn", "pager")
    for _ in range(3):
        daemon.cli("pause", "pager")
        daemon.cli("resume", "pager")
    ids = [e["id"] for e in daemon.cli_json("events", "pager", "--limit", "100")]
    assert len(ids) == 7
    back = daemon.cli_json("events", "pager", "--before", str(ids[4]), "--limit", "2")
    assert [e["id"] for e in back] == ids[2:4]
    forth = daemon.cli_json("events", "pager", "--after", str(ids[4]), "--limit", "10")
    assert [e["id"] for e in forth] == ids[5:]


def test_attach_unknown_agent_is_not_found(daemon: Daemon) -> None:
    res = daemon.cli("attach", "nobody")
    assert res.code == 4
    assert "no agent 'nobody'" in res.err and "hint:" in res.err


def test_attach_ctrl_c_exits_130(daemon: Daemon) -> None:
    import signal

    daemon.cli("spawn", "frank")
    proc = _attach(daemon, "frank")
    try:
        _read_json_line(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    finally:
        proc.kill()
        proc.wait()
