"""Caps that hold under concurrency, the canonical loop guard, and the volume bound
on a conversation between two agents (issue 13, "Caps").

Concurrency here is real: the calls of one model turn run concurrently, and the
RPC server runs the elements of a batch concurrently, so each spawn's check
races the others' writes unless check and reservation are one step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from legion.daemon.agents.session import canonical_call
from tests.conftest import Daemon
from tests.test_fleet import chatty, converse, received, tapes
from tests.test_sessions import tell
from tests.test_tools import call, tool_messages, turns


def tool_results(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    """Every tool result of the agent, parsed (the events quote them whole here)."""
    evs = daemon.cli_json("events", agent, "--limit", "1000")
    return [json.loads(e["data"]["result"]) for e in evs if e["kind"] == "tool.result"]


def spawn_all(tmp: Path, n: int, extra: str) -> str:
    return tapes(
        tmp,
        extra=extra,
        spawner=turns([call("agent_spawn", id=f"k{i:02d}") for i in range(n)], "done spawning"),
    )


def test_40_spawns_in_one_turn_end_at_max_children(make_daemon: Any, tmp_path: Path) -> None:
    cfg = spawn_all(tmp_path, 40, "[agents]\nmax_children = 7\nspawn_rate = 1000\n")
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "spawner", "--model", "spawner")
    tell(daemon, "spawner", "spawn forty helpers")
    shown = tool_results(daemon, "spawner")
    spawned = [m["spawned"] for m in shown if "spawned" in m]
    refused = [m for m in shown if "error" in m]
    assert len(spawned) == 7 and len(refused) == 33
    assert all("agents.max_children = 7" in m["error"] for m in refused)
    assert sorted(a["id"] for a in daemon.cli_json("ps") if a.get("parent") == "spawner") == sorted(
        spawned
    )


def test_40_spawns_in_one_turn_end_at_max_agents(make_daemon: Any, tmp_path: Path) -> None:
    cfg = spawn_all(
        tmp_path, 40, "[agents]\nmax_agents = 12\nmax_children = 100\nspawn_rate = 1000\n"
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "spawner", "--model", "spawner")
    tell(daemon, "spawner", "spawn forty helpers")
    shown = tool_results(daemon, "spawner")
    refused = [m for m in shown if "error" in m]
    assert len(refused) == 29 and all("agents.max_agents = 12" in m["error"] for m in refused)
    assert len(daemon.cli_json("ps")) == 12


def test_the_spawn_rate_holds_within_one_turn(make_daemon: Any, tmp_path: Path) -> None:
    cfg = spawn_all(tmp_path, 40, "[agents]\nmax_children = 100\nspawn_rate = 4\n")
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "spawner", "--model", "spawner")
    tell(daemon, "spawner", "spawn forty helpers")
    shown = tool_results(daemon, "spawner")
    assert len([m for m in shown if "spawned" in m]) == 4
    assert len(daemon.cli_json("ps")) == 5


def batch(daemon: Daemon, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    c = daemon.client()
    try:
        c.send(
            [
                {"jsonrpc": "2.0", "id": i, "method": "agents.spawn", "params": p}
                for i, p in enumerate(calls)
            ]
        )
        while True:
            reply = c.recv()
            if isinstance(reply, list):
                return sorted(reply, key=lambda r: r["id"])
    finally:
        c.close()


def test_60_spawns_in_one_batch_end_at_max_agents(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config="[agents]\nmax_agents = 30\n")
    replies = batch(daemon, [{"id": f"b{i:02d}"} for i in range(60)])
    assert len(replies) == 60
    ok = [r for r in replies if "result" in r]
    refused = [r for r in replies if "error" in r]
    assert len(ok) == 30 and len(refused) == 30
    assert {r["error"]["data"]["kind"] for r in refused} == {"cap_total"}
    assert all(r["error"]["data"]["value"] == 30 for r in refused)
    assert len(daemon.cli_json("ps")) == 30
    # Refused spawns left nothing held: with room made, spawning works again.
    assert daemon.cli("destroy", "b00").code == 0
    assert daemon.cli("spawn", "late").code == 0
    assert daemon.cli("spawn", "later").code == 5


def test_a_batch_of_children_ends_at_max_children_and_duplicates_are_refused(
    make_daemon: Any,
) -> None:
    daemon: Daemon = make_daemon(config="[agents]\nmax_children = 5\nspawn_rate = 1000\n")
    daemon.cli("spawn", "mom")
    replies = batch(
        daemon,
        [{"id": f"c{i:02d}", "parent": "mom"} for i in range(20)]
        + [{"id": "twin"}, {"id": "twin"}],
    )
    kids = [r for r in replies[:20] if "result" in r]
    assert len(kids) == 5
    assert {r["error"]["data"]["kind"] for r in replies[:20] if "error" in r} == {"cap_children"}
    twins = replies[20:]
    assert sorted("result" in r for r in twins) == [False, True]
    assert next(r for r in twins if "error" in r)["error"]["data"]["kind"] == "agent_exists"
    assert len([a for a in daemon.cli_json("ps") if a.get("parent") == "mom"]) == 5


# -- the loop guard keys on the canonical call ------------------------------------------------


def test_every_surface_form_of_one_call_has_one_key() -> None:
    args = {"timezone": "UTC"}
    forms = [
        ("now", json.dumps(args)),
        ("now", '{ "timezone" : "UTC" }'),
        ("now", '{"timezone":"UTC"}\n'),
    ]
    for spacing in ("", " ", "  ", "\n", "\t"):
        inner = json.dumps(args).replace(" ", spacing)
        forms.append(("tool_invoke", json.dumps({"name": "now", "arguments": inner})))
        forms.append(
            ("tool_invoke", json.dumps({"arguments": args, "name": "now"}).replace(" ", spacing))
        )
    forms += [
        ("tool_invoke", json.dumps({"name": "now", "arguments": json.dumps(args, indent=4)})),
        ("tool_invoke", '{"name":"now","arguments":"{\\"timezone\\":\\"UTC\\"}"}'),
        (
            "tool_invoke",
            json.dumps({"name": "tool_invoke", "arguments": {"name": "now", "arguments": args}}),
        ),
    ]
    assert len(forms) == 16
    assert {canonical_call(n, a) for n, a in forms} == {'now:{"timezone":"UTC"}'}
    # Other arguments are another call; no arguments and empty ones are the same.
    assert canonical_call("now", '{"timezone": "Europe/Paris"}') != canonical_call(
        "now", '{"timezone": "UTC"}'
    )
    assert (
        canonical_call("now", "")
        == canonical_call("tool_invoke", '{"name": "now"}')
        == canonical_call("tool_invoke", '{"name": "now", "arguments": ""}')
        == "now:{}"
    )


def test_the_loop_guard_stops_one_call_repeated_in_its_tool_invoke_forms(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = tapes(
        tmp_path,
        extra="[guards]\nloop_repeats = 4\n",
        loopy=turns(
            [call("now", timezone="UTC")],
            [call("tool_invoke", name="now", arguments={"timezone": "UTC"})],
            [call("tool_invoke", name="now", arguments='{"timezone": "UTC"}')],
            [call("tool_invoke", name="now", arguments='{ "timezone" :"UTC"  }')],
            "never reached",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "eve", "--model", "loopy")
    out = tell(daemon, "eve", "what time is it?")
    assert out["status"] == "failed" and "loop detected" in out["error"]
    assert "(now) 4 times" in out["error"]
    evs = daemon.cli_json("events", "eve", "--limit", "200")
    kinds = [e["kind"] for e in evs]
    # Three ran; the fourth form of the same call was refused before it ran.
    assert kinds.count("tool.call") == 3
    guard = next(e for e in evs if e["kind"] == "guard.loop")
    assert guard["data"]["call"] == 'now:{"timezone":"UTC"}'


# -- the volume bound on a conversation between two agents ------------------------------------


def agent_messages(daemon: Daemon) -> list[dict[str, Any]]:
    return [
        m for a in ("ping", "pong") for m in received(daemon, a) if m["sender"].startswith("agent:")
    ]


def notes(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    return [m for m in received(daemon, agent) if m["sender"] == "legion:fleet"]


def settle(daemon: Daemon) -> None:
    """Until both inboxes are empty (each note answered, nothing left queued)."""
    for agent in ("ping", "pong"):
        for m in daemon.cli_json("messages", agent):
            if m["status"] in ("queued", "processing"):
                daemon.cli("wait", str(m["message_id"]))


def test_a_ping_pong_stops_at_the_conversation_message_bound(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = chatty(
        tmp_path,
        "[agents]\nmax_hops = 1000\nconversation_messages = 6\nconversation_model_calls = 1000\n",
    )
    daemon: Daemon = make_daemon(config=cfg)
    guard = converse(daemon, bound="messages")
    # The notes were committed with the guard event; let both be answered.
    settle(daemon)
    data = guard["data"]
    assert data["pair"] == ["ping", "pong"] and data["messages"] == 6
    assert data["limits"] == {"messages": 6, "model_calls": 1000, "window_s": 3600.0}
    assert data["reopens_at"].endswith("Z")
    # Exactly the bound went between them; the refused reply is recorded.
    assert len(agent_messages(daemon)) == 6
    evs = [e for a in ("ping", "pong") for e in daemon.cli_json("events", a, "--limit", "500")]
    assert [e for e in evs if e["kind"] == "message.undeliverable"] == []
    assert len([e for e in evs if e["kind"] == "guard.conversation"]) == 1
    # One note each, answered without starting anything (not counted, not routed).
    for agent in ("ping", "pong"):
        (note,) = notes(daemon, agent)
        assert "reached its bound" in note["text"] and "IDLE" in note["text"]
    assert len(agent_messages(daemon)) == 6
    for agent in ("ping", "pong"):
        assert all(m["status"] in ("done", "idle") for m in daemon.cli_json("messages", agent))

    # While closed, agent_message to the peer is refused with the reason.
    daemon.stop()
    (tmp_path / "ping.toml").write_text(
        turns([call("agent_message", to="pong", text="one more thing about the plan")], "ok")
    )
    (tmp_path / "ping.toml.state").unlink()
    daemon.start()  # the counts and the closure survive a restart
    tell(daemon, "ping", "ask pong once more")
    refusal = tool_messages(tmp_path, "ping")[-1]
    assert "conversation bound" in refusal["error"] and "stop messaging pong" in refusal["hint"]
    assert len(agent_messages(daemon)) == 6


def test_a_conversation_stops_at_its_model_call_bound(make_daemon: Any, tmp_path: Path) -> None:
    cfg = chatty(
        tmp_path,
        "[agents]\nmax_hops = 1000\nconversation_messages = 1000\nconversation_model_calls = 5\n",
    )
    daemon: Daemon = make_daemon(config=cfg)
    guard = converse(daemon, bound="model_calls")
    settle(daemon)
    assert guard["data"]["model_calls"] == 5 and guard["data"]["pair"] == ["ping", "pong"]
    # The session that would have made the sixth call stopped, with the reason, and
    # no failure notice was sent on top of the notes.
    failed = [
        m
        for a in ("ping", "pong")
        for m in daemon.cli_json("messages", a)
        if m["status"] == "failed"
    ]
    assert len(failed) == 1 and "reached its bound" in failed[0]["error"]
    for agent in ("ping", "pong"):
        assert len(notes(daemon, agent)) == 1
    # Sessions started by messages between them made exactly five model calls.
    calls = 0
    for agent in ("ping", "pong"):
        evs = daemon.cli_json("events", agent, "--limit", "1000")
        by_msg = {
            e["data"]["session"]: e["data"]["message_id"]
            for e in evs
            if e["kind"] == "session.started"
        }
        pair_msgs = {
            m["message_id"] for m in received(daemon, agent) if m["sender"].startswith("agent:")
        }
        sessions = {s for s, mid in by_msg.items() if mid in pair_msgs}
        calls += sum(
            e["data"]["turns"]
            for e in evs
            if e["kind"] == "session.ended" and e["data"]["session"] in sessions
        )
    assert calls == 5
