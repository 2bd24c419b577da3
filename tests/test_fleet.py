"""A legion: sub-agents, caps, messages between agents, topics, lifecycle.

Every agent here plays a scripted tape (mock/script), so what each one does
is fixed and what the daemon does with it is what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Daemon
from tests.test_sessions import Watch, tell
from tests.test_tools import call, tool_messages, turns


def tapes(tmp: Path, extra: str = "", **scripts: str) -> str:
    """Config with one scripted model alias per keyword: alias = its tape."""
    cfg = ""
    for name, tape in scripts.items():
        (tmp / f"{name}.toml").write_text(tape)
        cfg += f'[providers.{name}]\nkind = "mock"\nscript = "{tmp / name}.toml"\n'
    cfg += (
        extra + "\n[models.aliases]\n" + "".join(f'{name} = "{name}/script"\n' for name in scripts)
    )
    return cfg


def repeat(text: str) -> str:
    return f"[[turn]]\ntext = {json.dumps(text)}\nrepeat = true\n"


def wait_for_each(watch: Watch, kind: str, agents: set[str]) -> None:
    """Until every agent in `agents` has had an event of this kind (no sleeps)."""
    pending = set(agents) - {e["agent"] for e in watch.seen if e["kind"] == kind}
    while pending:
        note = watch.client.recv()
        if note.get("method") != "events.event":
            continue
        ev = note["params"]["event"]
        watch.seen.append(ev)
        if ev["kind"] == kind:
            pending.discard(ev["agent"])


def chatty(tmp: Path, extra: str) -> str:
    """ping and pong tapes: two agents that always answer with content (neither
    IDLE nor a courtesy), ping starting with an agent_message to pong."""
    return tapes(
        tmp,
        extra=extra,
        ping=turns([call("agent_message", to="pong", text="shall we discuss the plan?")], "sent")
        + repeat("Interesting point; what about the next step of the plan?"),
        pong=repeat("Good question; the next step depends on the budget, what do you think?"),
    )


def converse(daemon: Daemon, **match: Any) -> dict[str, Any]:
    """Spawn ping and pong on their tapes, have ping start a discussion, and
    return the first guard.conversation event matching `match`."""
    daemon.cli("spawn", "ping", "--model", "ping")
    daemon.cli("spawn", "pong", "--model", "pong")
    watch = Watch(daemon)
    try:
        tell(daemon, "ping", "start a discussion with pong")
        return watch.until("guard.conversation", **match)
    finally:
        watch.close()


def received(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in daemon.rpc(
            "events.list", {"agent": agent, "kinds": ["message.received"], "limit": 1000}
        )["result"]
    ]


# -- acceptance 1: a parent, two children, work by message and by task, ttl ------------


def test_a_parent_delegates_to_two_children_and_is_told_when_their_ttl_ends(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = tapes(
        tmp_path,
        boss=turns(
            [
                call(
                    "agent_spawn", id="counter", model="counter", ttl="3s", message="count to three"
                ),
                call("agent_spawn", id="writer", model="writer", ttl="3s"),
            ],
            # Calls of one turn run concurrently: the task waits for the spawn's turn.
            [call("task_create", title="write the summary", owner="writer")],
            "delegated",
        )
        + repeat("IDLE"),
        counter=turns("one two three") + repeat("IDLE"),
        writer=turns(
            [call("task_complete", task="1", note="summary written")],
            [call("agent_message", to="boss", text="the summary is done")],
            "IDLE",
        )
        + repeat("IDLE"),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "boss", "--model", "boss")
    watch = Watch(daemon, "boss")
    try:
        assert tell(daemon, "boss", "get it done")["reply"] == "delegated"
        tree = daemon.cli_json("ps", "--tree")
        assert [(a["id"], a["depth"]) for a in tree] == [("boss", 0), ("counter", 1), ("writer", 1)]
        human = daemon.cli("ps", "--tree")
        assert "├─ counter" in human.out and "└─ writer" in human.out
        ends = {
            watch.until("agent.child_terminated", child=c)["data"]["reason"]
            for c in ("counter", "writer")
        }
        assert ends == {"ttl expired"}
    finally:
        watch.close()
    got = received(daemon, "boss")
    senders = [m["sender"] for m in got]
    # The reply to the first message came back by itself; the task's worker wrote.
    assert {"text": "one two three", "sender": "agent:counter"}.items() <= next(
        m for m in got if m["sender"] == "agent:counter"
    ).items()
    assert any(m["text"] == "the summary is done" for m in got if m["sender"] == "agent:writer")
    assert senders.count("legion:lifecycle") == 2
    # The task given to the writer was done before it ended (its events are archived).
    done = daemon.cli_json("graveyard", "show", "writer")["events"]
    assert any(e["kind"] == "task.status" and e["data"]["to"] == "done" for e in done)
    assert [a["id"] for a in daemon.cli_json("ps")] == ["boss"]
    grave = daemon.cli_json("graveyard", "ls")
    assert {(g["agent"], g["reason"]) for g in grave} == {
        ("counter", "ttl expired"),
        ("writer", "ttl expired"),
    }
    shown = daemon.cli_json("graveyard", "show", "counter")
    assert shown["record"]["parent"] == "boss"
    assert any(e["kind"] == "message.replied" for e in shown["events"])


# -- acceptance 2: the caps ----------------------------------------------------------------


def test_caps_refuse_spawns_with_the_cap_and_its_value(make_daemon: Any, tmp_path: Path) -> None:
    cfg = tapes(
        tmp_path,
        extra="[agents]\nmax_children = 2\nmax_depth = 1\nspawn_rate = 100\nmax_agents = 6\n",
        spawner=turns(*[[call("agent_spawn", id=f"kid{i}")] for i in range(1, 8)], "stopped"),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "spawner", "--model", "spawner")
    out = tell(daemon, "spawner", "spawn as many as you can")
    # The loop guard ends the session once the same refusal repeats.
    assert out["status"] == "failed" and "loop detected" in out["error"]
    shown = tool_messages(tmp_path, "spawner")
    assert [m.get("spawned") for m in shown[:2]] == ["kid1", "kid2"]
    refusal = shown[2]
    assert "spawner already has 2 children (agents.max_children = 2)" in refusal["error"]
    assert "agent_message" in refusal["hint"]
    assert len(daemon.cli_json("ps")) == 3

    # Depth: a child of a child would be at depth 2.
    res = daemon.cli("spawn", "deep", "--parent", "kid1")
    assert res.code == 5 and "agents.max_depth is 1" in res.err

    # Total: max_agents counts every agent, spawned by anyone.
    for extra in ("x1", "x2", "x3"):
        assert daemon.cli("spawn", extra).code == 0
    res = daemon.cli("spawn", "x4")
    assert res.code == 5 and "agents.max_agents = 6" in res.err and "hint:" in res.err


def test_the_spawn_rate_cap(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config="[agents]\nspawn_rate = 2\n")
    daemon.cli("spawn", "mom")
    for kid in ("a", "b"):
        assert daemon.cli("spawn", kid, "--parent", "mom").code == 0
    res = daemon.cli("spawn", "c", "--parent", "mom", "--json")
    err = json.loads(res.err)["error"]
    assert res.code == 5 and err["data"]["kind"] == "cap_rate"
    assert err["data"]["cap"] == "agents.spawn_rate" and err["data"]["value"] == 2
    assert "wait" in err["data"]["hint"]


# -- acceptance 3: two agents that would talk forever --------------------------------------


def test_the_loop_guard_and_the_idle_filter_stop_agents_talking_forever(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = chatty(tmp_path, "[agents]\nmax_hops = 4\n")
    daemon: Daemon = make_daemon(config=cfg)
    guard = converse(daemon)
    assert guard["data"]["max_hops"] == 4 and guard["data"]["hops"] == 5
    hops = sorted(
        m.get("hops", 0)
        for a in ("ping", "pong")
        for m in received(daemon, a)
        if m["sender"].startswith("agent:")
    )
    assert hops == [1, 2, 3, 4]
    # Nothing is left in flight: the exchange is over.
    for agent in ("ping", "pong"):
        assert all(m["status"] in ("done", "idle") for m in daemon.cli_json("messages", agent))


def test_a_courtesy_reply_to_an_agent_is_not_sent(make_daemon: Any, tmp_path: Path) -> None:
    cfg = tapes(
        tmp_path,
        asker=turns([call("agent_message", to="helper", text="what is 2+2?")], "asked")
        + repeat("Thanks a lot!"),
        helper=repeat("It is 4."),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "asker", "--model", "asker")
    daemon.cli("spawn", "helper", "--model", "helper")
    watch = Watch(daemon, "asker")
    try:
        tell(daemon, "asker", "ask helper")
        idle = watch.until("message.idle")
    finally:
        watch.close()
    assert "courtesy" in idle["data"]["note"]
    # helper got the question once, and no thank-you.
    assert [m["text"] for m in received(daemon, "helper")] == ["what is 2+2?"]


# -- acceptance 4: pub/sub, exactly once, across a restart ---------------------------------


def test_a_publish_reaches_every_subscriber_exactly_once_across_a_restart(daemon: Daemon) -> None:
    for a in ("editor", "s1", "s2", "s3"):
        daemon.cli("spawn", a)
    for a in ("s1", "s2", "s3"):
        res = daemon.cli_json("tools", "run", "agent_subscribe", "topic=news/ai", "--agent", a)
        assert res["ok"], res
    daemon.cli("tools", "run", "agent_subscribe", "topic=news/ai", "--agent", "editor")
    # Subscribers that are paused keep their messages queued: the restart comes
    # between the publish and the delivery.
    for a in ("s1", "s2", "s3"):
        daemon.cli("pause", a)
    pub = daemon.cli_json(
        "tools",
        "run",
        "agent_publish",
        "topic=news/ai",
        "text=model X released",
        "--agent",
        "editor",
    )
    assert pub["result"]["delivered_to"] == ["s1", "s2", "s3"]  # not the publisher
    assert daemon.cli_json("messages", "s1")[0]["status"] == "queued"
    daemon.stop()
    daemon.start()
    watch = Watch(daemon)
    try:
        for a in ("s1", "s2", "s3"):
            daemon.cli("resume", a)
        wait_for_each(watch, "message.replied", {"s1", "s2", "s3"})
    finally:
        watch.close()
    for a in ("s1", "s2", "s3"):
        msgs = daemon.cli_json("messages", a)
        assert [(m["sender"], m["text"], m["status"]) for m in msgs] == [
            ("topic:news/ai/editor", "model X released", "done")
        ]
    assert daemon.cli_json("messages", "editor") == []
    topics = daemon.rpc("topics.list")["result"]
    assert topics == [{"topic": "news/ai", "subscribers": ["editor", "s1", "s2", "s3"]}]


# -- lifecycle ------------------------------------------------------------------------------


def test_terminate_on_sessions_self_destruct_and_cascades(make_daemon: Any, tmp_path: Path) -> None:
    cfg = tapes(
        tmp_path, quitter=turns([call("agent_self_destruct", reason="my work is done")], "bye")
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "root")
    # terminate_on sessions: ends after its second session.
    daemon.cli("spawn", "twice", "--parent", "root", "--terminate-on", '{"sessions": 2}')
    watch = Watch(daemon, "root")
    try:
        tell(daemon, "twice", "one")
        assert "twice" in [a["id"] for a in daemon.cli_json("ps")]
        tell(daemon, "twice", "two")
        ended = watch.until("agent.child_terminated", child="twice")
        assert ended["data"]["reason"] == "terminate_on: after 2 sessions"
        # Self-destruct: at the end of the session that asked for it.
        daemon.cli("spawn", "quitter", "--parent", "root", "--model", "quitter")
        assert tell(daemon, "quitter", "finish up")["reply"] == "bye"
        ended = watch.until("agent.child_terminated", child="quitter")
        assert ended["data"]["reason"] == "self-destructed: my work is done"
    finally:
        watch.close()
    # terminate_on a task: the child ends when its parent's task is done.
    task = daemon.rpc("tasks.create", {"agent": "root", "title": "review"})
    assert "result" in task, task
    daemon.cli(
        "spawn",
        "reviewer",
        "--parent",
        "root",
        "--terminate-on",
        json.dumps({"task_done": "1@root"}),
    )
    watch = Watch(daemon, "root")
    try:
        daemon.rpc("tasks.complete", {"agent": "root", "task": "1"})
        ended = watch.until("agent.child_terminated", child="reviewer")
        assert ended["data"]["reason"] == "terminate_on: task 1@root is done"
    finally:
        watch.close()
    # Stop and destroy cascade down the tree.
    daemon.cli("spawn", "mid", "--parent", "root")
    daemon.cli("spawn", "leaf", "--parent", "mid")
    res = daemon.cli_json("stop", "root")
    assert res["stopped"] == ["leaf", "mid", "root"]
    assert {a["id"]: a["state"] for a in daemon.cli_json("ps")} == {
        "root": "stopped",
        "mid": "stopped",
        "leaf": "stopped",
    }
    # A purge also removes the agents' sandbox working directories.
    (daemon.home / "work" / "leaf").mkdir(parents=True)
    (daemon.home / "work" / "leaf" / "out.txt").write_text("x")
    res = daemon.cli_json("destroy", "root", "--purge")
    assert res["destroyed"] == ["leaf", "mid", "root"]
    assert daemon.cli_json("ps") == []
    assert not (daemon.home / "work" / "leaf").exists()


def test_what_counts_as_a_courtesy_reply() -> None:
    from legion.daemon.agents.session import _is_courtesy

    for text in (
        "Thanks!",
        "thank you so much.",
        "You're welcome! Glad to help.",
        "OK",
        "Got it, thanks - have a great day!",
    ):
        assert _is_courtesy(text), text
    for text in (
        "OK, 42.",
        "Thanks! The answer is below: use port 8080.",
        "ok, I will restart the server",
        "2+2=4",
        "Thanks, but the build failed",
    ):
        assert not _is_courtesy(text), text


def test_a_failed_answer_tells_the_asking_agent(make_daemon: Any, tmp_path: Path) -> None:
    cfg = tapes(
        tmp_path,
        asker=turns([call("agent_message", to="broken", text="status?")], "asked") + repeat("IDLE"),
        broken='[[turn]]\nerror = 400\nmessage = "bad request"\nrepeat = true\n',
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "asker", "--model", "asker")
    daemon.cli("spawn", "broken", "--model", "broken")
    watch = Watch(daemon, "asker")
    try:
        tell(daemon, "asker", "ask broken")
        notice = watch.until("message.received", sender="legion:fleet")
    finally:
        watch.close()
    assert "broken could not answer your message" in notice["data"]["text"]


def test_bad_fleet_inputs_are_refused_and_change_nothing(daemon: Daemon) -> None:
    daemon.cli("spawn", "mom")
    for args, expect in (
        (["--terminate-on", "{bad"], "--terminate-on is not JSON"),
        (["--terminate-on", "{}"], "terminate_on names no condition"),
        (["--terminate-on", '{"sessions": 0}'], "at least 1"),
        (["--terminate-on", '{"task_done": "9@mom"}'], "there is no task 9@mom"),
        (["--terminate-on", '{"when": 1}'], "when"),
        (["--ttl", "soon"], "ttl 'soon' is not a duration"),
        (["--parent", "nobody"], "no agent 'nobody'"),
    ):
        res = daemon.cli("spawn", "kid", *args)
        assert res.code in (2, 4) and expect in res.err and "hint:" in res.err, (args, res)
    assert [a["id"] for a in daemon.cli_json("ps")] == ["mom"]
    daemon.cli("spawn", "dad")
    for who, name, args, expect in (
        ("mom", "agent_message", ["to=mom", "text=hi"], "you cannot message yourself"),
        ("mom", "agent_message", ["to=ghost", "text=hi"], "no agent 'ghost'"),
        ("dad", "agent_message", ["to=mom", "text= "], "the message is empty"),
        ("mom", "agent_publish", ["topic=Bad Topic!", "text=x"], "invalid topic"),
        ("dad", "agent_destroy", ["id=mom"], "mom is not your child"),
        ("mom", "agent_spawn", ["id=Bad Id"], "Bad Id"),
    ):
        res = json.loads(daemon.cli("tools", "run", name, *args, "--agent", who, "--json").out)
        assert res["ok"] is False and expect in res["error"] and res["hint"], (name, res)
    assert [a["id"] for a in daemon.cli_json("ps")] == ["mom", "dad"]
    assert daemon.cli_json("messages", "mom") == []
    assert daemon.rpc("topics.list")["result"] == []
