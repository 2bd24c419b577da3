"""Agents that think: tell, sessions, tools, guards and a misbehaving model,
through the real daemon and the real litellm path (scripted models are
litellm custom providers; the OpenAI-compatible one is a real HTTP server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Daemon, RawClient
from tests.openai_server import OpenAIServer, Reply


def scripted(tmp: Path, name: str, turns: str, extra: str = "") -> str:
    """Config for an alias NAME that plays `turns` (TOML [[turn]] blocks)."""
    script = tmp / f"{name}.toml"
    script.write_text(turns)
    return (
        f'[providers.{name}]\nkind = "mock"\nscript = "{script}"\n{extra}\n'
        f'[models.aliases]\n{name} = "{name}/script"\n'
    )


def script_log(tmp: Path, name: str) -> list[list[dict[str, Any]]]:
    """What the scripted model was shown, one entry per call."""
    path = tmp / f"{name}.toml.log"
    return [json.loads(line)["messages"] for line in path.read_text().splitlines()]


class Watch:
    """A live subscription: wait for events as they happen (no polling, no sleeps)."""

    def __init__(self, daemon: Daemon, agent: str | None = None) -> None:
        self.client = RawClient(daemon.socket, timeout=60)
        params: dict[str, Any] = {"replay": 10_000}
        if agent:
            params["agent"] = agent
        self.client.call("events.subscribe", params)
        self.seen: list[dict[str, Any]] = []

    def until(self, kind: str, **match: Any) -> dict[str, Any]:
        for ev in self.seen:
            if ev["kind"] == kind and all(ev["data"].get(k) == v for k, v in match.items()):
                return ev
        while True:
            note = self.client.recv()
            if note.get("method") != "events.event":
                continue
            ev = note["params"]["event"]
            self.seen.append(ev)
            if ev["kind"] == kind and all(ev["data"].get(k) == v for k, v in match.items()):
                return ev

    def close(self) -> None:
        self.client.close()


def tell(daemon: Daemon, agent: str, text: str, timeout: float = 60) -> dict[str, Any]:
    c = RawClient(daemon.socket, timeout=timeout + 10)
    try:
        sent = c.call("agents.tell", {"id": agent, "text": text})["result"]
        reply = c.call("messages.wait", {"message_id": sent["message_id"], "timeout": timeout})
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result
    finally:
        c.close()


def test_tell_wait_on_a_fresh_install_answers_through_mock_echo(daemon: Daemon) -> None:
    daemon.cli("spawn", "alice")
    res = daemon.cli("tell", "alice", "hello", "--wait")
    assert res.code == 0, res.err
    assert res.out.startswith('I received: "hello"')
    doc = json.loads(daemon.cli("tell", "alice", "again", "--wait", "--json").out)
    assert doc["status"] == "done" and "again" in doc["reply"]
    assert doc["usage"]["total_tokens"] > 0 and doc["usage"]["model"] == "mock/echo"
    # The second session saw the first exchange as history.
    assert "4 messages in context" in doc["reply"]
    kinds = [e["kind"] for e in daemon.cli_json("events", "alice", "--limit", "100")]
    for k in (
        "message.received",
        "session.started",
        "model.request",
        "model.delta",
        "model.response",
        "session.ended",
        "message.replied",
    ):
        assert k in kinds, k
    # The reply streamed as deltas adds up to the reply.
    evs = daemon.cli_json("events", "alice", "--limit", "100")
    first = next(e for e in evs if e["kind"] == "session.started")["data"]["session"]
    deltas = "".join(
        e["data"]["text"]
        for e in evs
        if e["kind"] == "model.delta"
        and e["id"] < next(x for x in evs if x["kind"] == "message.replied")["id"]
    )
    assert deltas == next(e for e in evs if e["kind"] == "message.replied")["data"]["reply"]
    assert first == 1
    ps = daemon.cli_json("ps")[0]
    assert ps["resolved_model"] == "mock/echo" and ps["activity"] == "idle"


def test_two_tools_in_one_turn_run_concurrently_in_causal_order(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "plan",
        """
[[turn]]
reasoning = "I need the time and who I am."
text = "Let me look."
tool_calls = [{ name = "now", arguments = { timezone = "Europe/Paris" } },
              { name = "agent_info", arguments = {} }]
[[turn]]
text = "It is time, and I am bob."
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "bob", "--model", "plan")
    result = tell(daemon, "bob", "what time is it, and who are you?")
    assert result["status"] == "done" and result["reply"] == "It is time, and I am bob."
    assert result["usage"]["turns"] == 2

    evs = daemon.cli_json("events", "bob", "--limit", "200")
    by_id = {e["id"]: e for e in evs}
    calls = [e for e in evs if e["kind"] == "tool.call"]
    results = [e for e in evs if e["kind"] == "tool.result"]
    assert sorted(c["data"]["name"] for c in calls) == ["agent_info", "now"]
    assert all(r["data"]["ok"] for r in results)
    # Concurrent: both calls started before either finished.
    assert max(c["id"] for c in calls) < min(r["id"] for r in results)
    # Causal order: every event's cause is an earlier event of this session.
    response = next(e for e in evs if e["kind"] == "model.response")
    assert all(c["caused_by"] == response["id"] for c in calls)
    for r in results:
        cause = by_id[r["caused_by"]]
        assert cause["kind"] == "tool.call" and cause["data"]["call_id"] == r["data"]["call_id"]
    for e in evs:
        if e["caused_by"] is not None and e["kind"] != "agent.spawned":
            assert e["caused_by"] < e["id"]
    reasoning = [e for e in evs if e["kind"] == "model.reasoning"]
    assert "".join(e["data"]["text"] for e in reasoning) == "I need the time and who I am."
    # The results went back to the model on its second call.
    second_call = script_log(tmp_path, "plan")[1]
    tool_msgs = [m for m in second_call if m["role"] == "tool"]
    assert {m["name"] for m in tool_msgs} == {"now", "agent_info"}
    info = json.loads(next(m for m in tool_msgs if m["name"] == "agent_info")["content"])
    assert info["id"] == "bob" and info["budget_today"]["tokens_used"] > 0
    assert "Europe/Paris" in next(m for m in tool_msgs if m["name"] == "now")["content"]


def test_kill9_mid_session_redelivers_and_answers(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "slow",
        """
[[turn]]
text = "working on it, slowly..."
stall = true
[[turn]]
text = "answered after the restart"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "carol", "--model", "slow")
    watch = Watch(daemon, "carol")
    sent = daemon.cli_json("tell", "carol", "do the slow thing")
    watch.until("model.delta")  # the model is mid-answer
    watch.close()
    daemon.kill9()

    daemon.start()
    result = json.loads(daemon.cli("wait", str(sent["message_id"]), "--json").out)
    assert result["status"] == "done" and result["reply"] == "answered after the restart"
    kinds = [e["kind"] for e in daemon.cli_json("events", "carol", "--limit", "100")]
    assert "message.redelivered" in kinds
    msgs = daemon.cli_json("messages", "carol")
    assert [(m["status"], m["attempts"]) for m in msgs] == [("done", 2)]


def test_a_message_to_a_paused_agent_is_answered_after_resume(daemon: Daemon) -> None:
    daemon.cli("spawn", "dora")
    daemon.cli("pause", "dora")
    res = daemon.cli("tell", "dora", "are you there?")
    assert res.code == 0 and "waits in its inbox" in res.err
    mid = res.out.split()[1]
    assert [m["status"] for m in daemon.cli_json("messages", "dora")] == ["queued"]
    assert daemon.cli_json("ps")[0]["queued"] == 1
    daemon.cli("resume", "dora")
    assert "are you there?" in daemon.cli("wait", mid).out


def test_loop_detection_stops_a_repeated_tool_call(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "loopy",
        """
[[turn]]
tool_calls = [{ name = "now", arguments = { timezone = "UTC" } }]
repeat = true
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "eve", "--model", "loopy")
    res = daemon.cli("tell", "eve", "loop forever", "--wait")
    assert res.code == 1
    assert "loop detected" in res.err and "3 times" in res.err
    kinds = [e["kind"] for e in daemon.cli_json("events", "eve", "--limit", "200")]
    assert kinds.count("tool.call") == 2  # the third identical call was refused, not run
    assert "guard.loop" in kinds
    assert daemon.cli_json("ps")[0]["state"] == "running"  # a loop ends the session only


def test_daily_token_budget_pauses_the_agent_with_the_reason(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "hungry",
        """
[[turn]]
text = "that was expensive"
usage = { prompt_tokens = 900, completion_tokens = 300 }
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    spawned = daemon.rpc(
        "agents.spawn", {"id": "fay", "model": "hungry", "guards": {"daily_tokens": 1000}}
    )
    assert "result" in spawned, spawned
    assert tell(daemon, "fay", "first")["status"] == "done"
    second = tell(daemon, "fay", "second")
    assert second["status"] == "failed"
    assert "daily token budget reached: 1200 of 1000" in second["error"]
    agent = daemon.cli_json("ps")[0]
    assert agent["state"] == "paused" and "daily token budget" in agent["state_reason"]
    evs = {e["kind"]: e for e in daemon.cli_json("events", "fay", "--limit", "100")}
    assert evs["agent.paused"]["caused_by"] == evs["guard.budget"]["id"]
    assert evs["agent.paused"]["source"] == "guard"
    # No second model call was made.
    assert len(script_log(tmp_path, "hungry")) == 1


def test_retry_after_5xx_stall_and_bad_tool_json_are_all_survived(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "rough",
        """
[[turn]]
error = 429
retry_after = 0.3
[[turn]]
error = 500
[[turn]]
text = "partial"
stall = true
[[turn]]
tool_calls = [{ name = "now", raw_arguments = "{\\"timezone\\": " }]
[[turn]]
text = "recovered"
""",
        extra="stall_timeout = 0.5",
    )
    cfg += "[models.retry]\nattempts = 5\nbackoff = 0.05\n[models.breaker]\nfailures = 10\n"
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "gil", "--model", "rough")
    result = tell(daemon, "gil", "go")
    assert result["status"] == "done" and result["reply"] == "recovered"
    evs = daemon.cli_json("events", "gil", "--limit", "200")
    retries = [e["data"] for e in evs if e["kind"] == "model.retry"]
    assert [r["status"] for r in retries] == [429, 500, 408]
    assert retries[0]["wait_s"] == 0.3  # Retry-After honoured
    assert "stalled" in retries[2]["error"]
    bad = next(e for e in evs if e["kind"] == "tool.result")
    assert not bad["data"]["ok"] and "not valid JSON" in bad["data"]["result"]
    # The model was told how to fix it.
    last_call = script_log(tmp_path, "rough")[-1]
    tool_msg = next(m for m in last_call if m["role"] == "tool")
    assert "signature: now(timezone: str = 'UTC')" in tool_msg["content"]


def test_circuit_breaker_and_fallback_and_total_failure(make_daemon: Any, tmp_path: Path) -> None:
    cfg = (
        '[providers.dead]\nkind = "openai_compatible"\napi_base = "http://127.0.0.1:9/v1"\n'
        "connect_timeout = 1.0\n"
        '[models.aliases]\nsturdy = ["dead/tiny", "mock/echo"]\nfragile = "dead/tiny"\n'
        "[models.retry]\nattempts = 2\nbackoff = 0.05\n"
        "[models.breaker]\nfailures = 2\ncooldown = 60\n"
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "hal", "--model", "sturdy")
    daemon.cli("spawn", "ivy", "--model", "fragile")
    first = tell(daemon, "hal", "one")
    assert first["status"] == "done" and first["usage"]["model"] == "mock/echo"
    second = tell(daemon, "hal", "two")
    assert second["status"] == "done"
    evs = daemon.cli_json("events", "hal", "--limit", "200")
    kinds = [e["kind"] for e in evs]
    assert "model.fallback" in kinds
    # After the breaker opened, the dead server is skipped at once, not dialled again.
    assert "model.skipped" in kinds
    info = daemon.cli_json("info")
    assert info["models"]["providers"]["dead"]["circuit"]["state"] == "open"
    # With nowhere to fall back to, the message fails loudly; the daemon lives on.
    res = daemon.cli("tell", "ivy", "hello?", "--wait")
    assert res.code == 1 and "no model could answer" in res.err
    assert daemon.rpc("daemon.ping")["result"] == {"pong": True}
    assert [m["status"] for m in daemon.cli_json("messages", "ivy")] == ["failed"]


def test_idle_replies_are_dropped_and_tool_json_in_text_is_repaired(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "quiet",
        """
[[turn]]
text = '''
```json
{"name": "now", "arguments": {"timezone": "UTC"}}
```'''
[[turn]]
text = "IDLE"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "jo", "--model", "quiet")
    res = daemon.cli("tell", "jo", "thanks!", "--wait", "--json")
    assert res.code == 0
    doc = json.loads(res.out)
    assert doc["status"] == "idle" and doc["reply"] is None
    kinds = [e["kind"] for e in daemon.cli_json("events", "jo", "--limit", "100")]
    assert "model.repaired" in kinds and "tool.result" in kinds and "message.idle" in kinds
    assert "message.replied" not in kinds


def test_interrupt_cancels_the_running_session(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "ponder",
        """
[[turn]]
text = "let me think about this for a long while"
stall = true
[[turn]]
text = "next one is fine"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "kim", "--model", "ponder")
    watch = Watch(daemon, "kim")
    sent = daemon.cli_json("tell", "kim", "think hard")
    watch.until("model.delta")
    assert daemon.cli_json("ps")[0]["activity"] == "thinking"
    assert daemon.cli_json("interrupt", "kim")["interrupted"] is True
    watch.until("session.ended", status="interrupted")
    res = daemon.cli("wait", str(sent["message_id"]))
    assert res.code == 1 and "interrupted" in res.err
    # The agent goes on with its next message.
    assert tell(daemon, "kim", "and now?")["reply"] == "next one is fine"
    assert daemon.cli_json("interrupt", "kim")["interrupted"] is False
    watch.close()


def test_an_openai_compatible_server_configured_in_config_toml(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        server.replies.extend(
            [
                Reply(tool_calls=[{"name": "now", "arguments": {"timezone": "UTC"}}]),
                Reply("The time is now."),
                Reply(status=429, retry_after=0.2),
                Reply("second answer"),
            ]
        )
        cfg = (
            f'[providers.lan]\nkind = "openai_compatible"\napi_base = "{server.base}"\n'
            '[models.aliases]\nlocal = "lan/tiny"\n[models.retry]\nbackoff = 0.05\n'
        )
        daemon: Daemon = make_daemon(config=cfg)
        daemon.cli("spawn", "lena")  # default model alias `local`, now the server
        first = tell(daemon, "lena", "what time is it?")
        assert first["status"] == "done" and first["reply"] == "The time is now."
        assert first["usage"]["model"] == "lan/tiny"
        assert first["usage"]["prompt_tokens"] == 40  # two calls, 20 each
        req1, req2 = server.requests[:2]
        assert req1["model"] == "tiny" and req1["stream"] is True
        from legion.daemon.tools import kernel, meta

        # The prompt carries the everyday kernel tools and the two meta-tools, nothing else.
        assert {t["function"]["name"] for t in req1["tools"]} == {
            t.name for t in [*kernel.PROMPT, *meta.PROMPT]
        }
        assert req1["messages"][0]["role"] == "system"
        tool_msg = next(m for m in req2["messages"] if m["role"] == "tool")
        assert "UTC" in tool_msg["content"] and tool_msg["tool_call_id"] == "call_0"
        second = tell(daemon, "lena", "again")
        assert second["reply"] == "second answer"
        retry = list(daemon.cli_json("events", "lena", "--kind", "model.retry"))
        assert retry and retry[0]["data"]["status"] == 429 and retry[0]["data"]["wait_s"] == 0.2
        assert daemon.cli_json("ps")[0]["resolved_model"] == "lan/tiny"


def test_inbox_errors_are_instructive(daemon: Daemon) -> None:
    res = daemon.cli("tell", "ghost", "hi")
    assert res.code == 4 and "no agent 'ghost'" in res.err
    assert daemon.cli("messages", "ghost").code == 4
    res = daemon.cli("wait", "999")
    assert res.code == 4 and "no message 999" in res.err
    daemon.cli("spawn", "al")
    res = daemon.cli("tell", "al", "   ")
    assert res.code == 2 and "empty" in res.err
    res = daemon.cli("interrupt", "al")
    assert res.code == 0 and "no running session" in res.out
    assert daemon.cli_json("messages", "al") == []


def test_wait_timeout_leaves_the_message_to_be_answered(make_daemon: Any, tmp_path: Path) -> None:
    # A model slower than the wait (a paused agent's wait returns at once instead:
    # test_shutdown.py).
    turns = '[[turn]]\ndelay = 3\ntext = "later, as promised"\n'
    daemon: Daemon = make_daemon(config=scripted(tmp_path, "slow", turns))
    daemon.cli("spawn", "pat", "--model", "slow")
    res = daemon.cli("tell", "pat", "later", "--wait", "--timeout", "0.2")
    assert res.code == 6 and "will still be answered" in res.err
    mid = daemon.cli_json("messages", "pat")[0]["message_id"]
    assert "later, as promised" in daemon.cli("wait", str(mid)).out


def test_unknown_model_is_refused_at_spawn(daemon: Daemon) -> None:
    res = daemon.cli("spawn", "x", "--model", "gpt-nope")
    assert res.code == 2
    assert "unknown model 'gpt-nope'" in res.err and "local" in res.err
    assert daemon.cli_json("ps") == []


def test_unknown_tool_and_bad_arguments_teach_the_model(make_daemon: Any, tmp_path: Path) -> None:
    cfg = scripted(
        tmp_path,
        "clumsy",
        """
[[turn]]
tool_calls = [{ name = "clock", arguments = {} },
              { name = "now", arguments = { tz = "UTC" } },
              { name = "now", arguments = { timezone = "Mars/Olympus" } }]
[[turn]]
text = "ok"
""",
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "max", "--model", "clumsy")
    assert tell(daemon, "max", "time?")["reply"] == "ok"
    shown = [
        json.loads(m["content"]) for m in script_log(tmp_path, "clumsy")[1] if m["role"] == "tool"
    ]
    assert "no tool named 'clock'" in shown[0]["error"]
    assert "tool_search" in shown[0]["hint"] and "tool_invoke" in shown[0]["hint"]
    assert shown[1]["error"] == "unknown argument 'tz'"
    assert "timezone" in shown[1]["hint"]
    assert "unknown timezone 'Mars/Olympus'" in shown[2]["error"]


def test_guard_overrides_are_range_checked_and_aliases_merge(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config='[models.aliases]\ncoder = "mock/echo"\n')
    res = daemon.rpc("agents.spawn", {"id": "g", "guards": {"max_turns": 0}})
    assert res["error"]["code"] == -32602 and "max_turns" in res["error"]["message"]
    # A new alias leaves the embedded ones in place.
    assert daemon.cli("spawn", "a").code == 0  # default `local`
    assert daemon.cli("spawn", "b", "--model", "coder").code == 0
