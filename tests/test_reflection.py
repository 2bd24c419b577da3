"""Self-reflection and prompt proposals, through the real daemon.

The reflection is a model call of its own: on a scripted model it takes the
next turn of the tape, so a tape reads: the agent calls `reflect`, then the
reflection's JSON answer, then the agent's reply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Daemon
from tests.test_sessions import script_log, scripted, tell
from tests.test_tools import call, tool_messages, turns

PROPOSED = "You are careful.\nAlways check the clock first."
CRITIQUE: dict[str, Any] = {
    "lessons": [
        "Check the clock with now before promising a time.",
        "Say which timezone a time is in.",
    ],
    "tool_verdicts": [
        {"tool": "now", "verdict": "watch", "note": "answered in UTC only"},
        {"tool": "no_such_tool", "verdict": "degraded", "note": "never worked"},
    ],
    "tasks": [{"title": "Write down the timezone rule", "body": "learned on reflection"}],
    "prompt_proposal": {"text": PROPOSED, "rationale": "I guessed the time once"},
    "memory": {
        "merge": [
            {
                "paths": ["notes/a.md", "notes/b.md"],
                "into": "notes/ab.md",
                "content": "The user likes tea, green, no sugar.",
            },
            {"paths": ["shared/team.md"], "into": "notes/team.md", "content": "x"},
        ],
        "stale": ["notes/old.md", "notes/missing.md"],
    },
    "mood": "ignored: unknown keys are",
}


def test_reflect_writes_lessons_verdicts_tasks_merges_and_a_proposal_a_person_accepts(
    make_daemon: Any, tmp_path: Path
) -> None:
    answer = (
        "Here is my reflection:\n```json\n" + json.dumps(CRITIQUE, indent=1) + "\n```\nThat is all."
    )
    cfg = scripted(
        tmp_path,
        "r",
        turns(
            [call("now")],
            "It is noon.",
            [call("reflect", scope="last_session", focus="the clock")],
            answer,
            "reflected",
            [call("prompt_read")],
            "read it",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    assert daemon.cli("spawn", "ada", "--model", "r", "--system", "You are careful.").code == 0
    for path, content in (
        ("notes/a.md", "The user likes tea."),
        ("notes/b.md", "The user's tea: green, no sugar."),
        ("notes/old.md", "The office moves in 2019."),
        ("shared/team.md", "Everyone's."),
        # A lesson learned before is not written twice.
        ("lessons/earlier.md", CRITIQUE["lessons"][1]),
    ):
        assert "result" in daemon.rpc(
            "memory.write", {"agent": "ada", "path": path, "content": content, "tags": ["t"]}
        )
    assert tell(daemon, "ada", "what time is it?")["reply"] == "It is noon."
    assert tell(daemon, "ada", "look back at that")["reply"] == "reflected"

    # What the reflection was shown: the template, the focus, the last session (its
    # conversation and tool calls), the prompt, and the memory listing with access data.
    shown = script_log(tmp_path, "r")[3]
    assert len(shown) == 1 and shown[0]["role"] == "user"
    text = shown[0]["content"]
    assert "ONE JSON object" in text and "Focus on: the clock" in text
    assert "You are careful." in text and "It is noon." in text
    assert "now(" in text and "-> ok" in text
    assert "notes/old.md" in text and "read 0 times" in text and "shared/" in text
    assert "Everyone's" not in text  # shared entries are not the agent's to consolidate

    # (The conversation carries the first session's `now` result too.)
    result = tool_messages(tmp_path, "r")[-1]
    assert result["scope"] == "last_session" and result["focus"] == "the clock"
    (learned,) = result["lessons"]
    assert learned.startswith("lessons/") and learned.endswith(
        "-check-the-clock-with-now-before-promising-a-time.md"
    )
    assert result["verdicts"] == [{"tool": "now", "verdict": "watch"}]
    assert result["tasks"] == ["1"] and result["proposal"] == 1
    assert result["merged"] == [{"into": "notes/ab.md", "removed": ["notes/a.md", "notes/b.md"]}]
    assert result["staled"] == ["notes/old.md"]
    skipped = " | ".join(result["skipped"])
    assert "no_such_tool" in skipped and "shared/" in skipped and "notes/missing.md" in skipped
    assert "already learned: lessons/earlier.md" in skipped
    assert result["usage"]["total_tokens"] > 0

    # Lessons are memory entries tagged `lesson`; the merge and the stale mark landed.
    entries = {e["path"]: e for e in daemon.rpc("memory.list", {"agent": "ada"})["result"]}
    assert entries[learned]["tags"] == ["lesson"]
    lesson = daemon.rpc("memory.read", {"agent": "ada", "path": learned})
    assert lesson["result"]["content"] == CRITIQUE["lessons"][0]
    assert "notes/a.md" not in entries and "notes/b.md" not in entries
    assert entries["notes/ab.md"]["tags"] == ["t"]
    assert sorted(entries["notes/old.md"]["tags"]) == ["stale", "t"]
    old = daemon.rpc("memory.read", {"agent": "ada", "path": "notes/old.md"})["result"]
    assert old["content"] == "The office moves in 2019."
    assert "shared/team.md" in entries and "notes/team.md" not in entries

    # The verdict is the tool's note; the follow-up is on the board.
    now = daemon.rpc("tools.stats", {"name": "now"})["result"]["tools"][0]
    assert now["note"] == "watch: answered in UTC only (reflection by ada)"
    (task,) = daemon.rpc("tasks.list", {"agent": "ada"})["result"]
    assert task["title"] == "Write down the timezone rule" and task["lane"] == "reflection"

    # The proposal waits for a person: the prompt is unchanged, by any route.
    assert daemon.rpc("agents.get", {"id": "ada"})["result"]["system_prompt"] == "You are careful."
    shown_doc = daemon.cli_json("prompt", "ada")
    assert shown_doc["system_prompt"] == "You are careful."
    pending = shown_doc["pending"]
    assert pending["id"] == 1 and pending["rationale"] == "I guessed the time once"
    assert pending["proposed"] == PROPOSED
    assert pending["base_changed"] is False and pending["session_id"] == 2
    diff = daemon.cli("prompt", "ada", "diff")
    assert diff.code == 0, diff.err
    assert "+Always check the clock first." in diff.out and "I guessed the time" in diff.out
    assert "+Always check the clock first." in daemon.cli_json("prompt", "ada", "diff")["diff"]

    evs = daemon.cli_json("events", "ada", "--limit", "500")
    kinds = [e["kind"] for e in evs]
    assert "agent.updated" not in kinds
    proposed = next(e for e in evs if e["kind"] == "prompt.proposed")
    completed = next(e for e in evs if e["kind"] == "reflection.completed")
    reflect_call = next(
        e for e in evs if e["kind"] == "tool.call" and e["data"]["name"] == "reflect"
    )
    assert proposed["caused_by"] == completed["caused_by"] == reflect_call["id"]
    assert proposed["data"]["chars"] == len(pending["proposed"])
    assert completed["data"]["proposal"] == 1 and completed["data"]["tasks"] == ["1"]
    written = [
        e for e in evs if e["kind"] == "memory.written" and e["caused_by"] == reflect_call["id"]
    ]
    assert len(written) == 3  # the lesson, the merge, the stale mark

    # A person accepts: now it is the prompt, and the agent sees it.
    res = daemon.cli("prompt", "ada", "accept")
    assert res.code == 0, res.err
    assert "accepted proposal 1" in res.out
    assert daemon.rpc("agents.get", {"id": "ada"})["result"]["system_prompt"] == pending["proposed"]
    assert tell(daemon, "ada", "what is your prompt?")["reply"] == "read it"
    read = tool_messages(tmp_path, "r")[-1]
    assert read["system_prompt"] == pending["proposed"] and read["pending_proposal"] is None
    assert "cannot change it yourself" in read["note"]
    assert script_log(tmp_path, "r")[-1][0]["content"].startswith(pending["proposed"])
    after = daemon.cli_json("prompt", "ada")
    assert after["pending"] is None
    assert after["proposals"][0]["status"] == "accepted"
    assert after["proposals"][0]["decided_by"].startswith("rpc:uid=")
    # Decided is decided: no pending one (4), and proposal 1 cannot be decided again (5).
    assert daemon.cli("prompt", "ada", "accept").code == 4
    again = daemon.cli("prompt", "ada", "reject", "--proposal", "1")
    assert again.code == 5 and "already accepted" in again.err


def test_bad_reflections_are_instructive_and_a_newer_proposal_supersedes(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "g",
        turns(
            [call("reflect", scope="week")],
            [call("reflect", scope="last_session")],
            [call("reflect", scope="day")],
            "I did fine today, nothing to add.",
            [call("reflect", scope="tools")],
            '{"lessons": "be careful"}',
            [call("reflect", scope="tasks")],
            '{"prompt_proposal": {"text": "Proposal A", "rationale": "first"}}',
            [call("reflect", scope="day", focus="my prompt")],
            'Sure: {"prompt_proposal": {"text": "Proposal B", "rationale": "second"}} Done.',
            "done",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "gus", "--model", "g", "--system", "Be brief.")
    assert tell(daemon, "gus", "reflect a lot")["reply"] == "done"
    week, first, garbage, wrong, a, b = tool_messages(tmp_path, "g")

    assert week["error"].startswith("argument 'scope'") and "last_session" in week["hint"]
    assert first["error"] == "you have no finished session to reflect on yet"
    assert "'day'" in first["hint"]
    assert garbage["error"].startswith("the reflection was not a JSON object")
    assert "nothing to add" in garbage["error"] and '"lessons"' in garbage["hint"]
    assert wrong["error"] == "the reflection's lessons is wrong: expected array, got str"
    assert "call reflect again" in wrong["hint"]
    assert a["proposal"] == 1 and b["proposal"] == 2
    # Two reflection calls failed, two worked; the bad scopes never reached the model.
    assert len(script_log(tmp_path, "g")) == 11
    evs = daemon.cli_json("events", "gus", "--limit", "500")
    failed = [e for e in evs if e["kind"] == "reflection.failed"]
    assert len(failed) == 2 and failed[0]["data"]["scope"] == "day"
    assert failed[1]["data"]["answer"] == '{"lessons": "be careful"}'
    superseding = [e for e in evs if e["kind"] == "prompt.proposed"][-1]
    assert superseding["data"]["superseded"] == [1]

    # Only the newest proposal is pending; the older one was superseded.
    doc = daemon.cli_json("prompt", "gus")
    assert doc["pending"]["id"] == 2 and doc["pending"]["proposed"] == "Proposal B"
    old = next(p for p in doc["proposals"] if p["id"] == 1)
    assert old["status"] == "rejected" and old["decided_by"] == "legion:superseded"
    assert daemon.cli("prompt", "gus", "accept", "--proposal", "1").code == 5
    assert daemon.cli("prompt", "gus", "diff", "--proposal", "9").code == 4
    assert daemon.cli("prompt", "nobody").code == 4

    res = daemon.cli_json("prompt", "gus", "reject", "--note", "not now")
    assert res["status"] == "rejected" and res["proposal"] == 2
    assert res["system_prompt"] == "Be brief."
    rejected = next(p for p in daemon.cli_json("prompt", "gus")["proposals"] if p["id"] == 2)
    assert rejected["status"] == "rejected" and rejected["decision_note"] == "not now"
    nothing = daemon.cli("prompt", "gus", "accept")
    assert nothing.code == 4 and "no pending prompt proposal" in nothing.err
    assert "legion prompt gus" in nothing.err
    assert daemon.rpc("agents.get", {"id": "gus"})["result"]["system_prompt"] == "Be brief."
    kinds = [e["kind"] for e in daemon.cli_json("events", "gus", "--limit", "500")]
    assert "prompt.rejected" in kinds and "agent.updated" not in kinds


def test_budget_and_definition_files_and_a_prompt_changed_since_the_proposal(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "d",
        """
[[turn]]
text = '{"prompt_proposal": {"text": "New prompt.", "rationale": "clearer"}}'
usage = { prompt_tokens = 900, completion_tokens = 300 }
""",
    )
    defs = tmp_path / "defs"
    defs.mkdir()
    definition = defs / "dee.toml"
    definition.write_text(
        'id = "dee"\nmodel = "d"\nsystem = "Old prompt."\nguards = { daily_tokens = 1000 }\n'
    )
    daemon: Daemon = make_daemon(config=cfg, args=["--agents", str(defs)])
    # From the shell, no session: the reflection still charges the agent's budget...
    res = daemon.rpc("tools.run", {"name": "reflect", "agent": "dee", "args": {"scope": "tasks"}})[
        "result"
    ]
    assert res["ok"], res
    assert res["result"]["proposal"] == 1 and res["result"]["usage"]["total_tokens"] == 1200
    # ...and refuses once it is spent, without calling the model.
    res = daemon.rpc("tools.run", {"name": "reflect", "agent": "dee", "args": {"scope": "day"}})[
        "result"
    ]
    assert not res["ok"] and res["error"].startswith("cannot reflect now: daily token budget")
    assert len(script_log(tmp_path, "d")) == 1

    # The definition changes the prompt under the proposal (a restart applies it).
    definition.write_text(definition.read_text().replace("Old prompt.", "Edited prompt."))
    daemon.stop()
    daemon.start()
    assert daemon.rpc("agents.get", {"id": "dee"})["result"]["system_prompt"] == "Edited prompt."
    diff = daemon.cli_json("prompt", "dee", "diff")
    assert diff["base_changed"] is True
    assert "-Old prompt." in diff["diff"] and "+New prompt." in diff["diff"]
    assert "-Edited prompt." in diff["current_diff"]
    human = daemon.cli("prompt", "dee")
    assert human.code == 0 and "changed since" in human.out
    assert "dee.toml" in human.out.replace("\n", "")

    accepted = daemon.cli_json("prompt", "dee", "accept", "--note", "ok")
    assert accepted["base_changed"] is True and accepted["previous_prompt"] == "Edited prompt."
    assert any("changed since" in w for w in accepted["warnings"])
    where = str(definition.resolve())
    assert any(where in w and "next daemon start" in w for w in accepted["warnings"])
    assert daemon.rpc("agents.get", {"id": "dee"})["result"]["system_prompt"] == "New prompt."
    assert daemon.cli("prompt", "dee", "show", "--note", "x").code == 2


def test_a_reflection_counts_against_the_daily_budget_across_a_restart(
    make_daemon: Any, tmp_path: Path
) -> None:
    answer = json.dumps({"lessons": ["Keep answers short."]})
    # The reflection's own model call reports 1,000 tokens.
    tape = (
        turns("hello", [call("reflect", scope="last_session")])
        + f"\n[[turn]]\ntext = {json.dumps(answer)}\n"
        "usage = { prompt_tokens = 900, completion_tokens = 100 }\n\n" + turns("done")
    )
    cfg = scripted(tmp_path, "b", tape)
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "bea", "--model", "b")
    tell(daemon, "bea", "hi")
    assert tell(daemon, "bea", "reflect")["reply"] == "done"
    daemon.stop()
    daemon.start()
    # Read without a model call: sessions' tokens plus the reflection's, exactly.
    info = daemon.rpc("tools.run", {"name": "agent_info", "agent": "bea"})["result"]["result"]
    ended = daemon.rpc("events.list", {"agent": "bea", "kinds": ["session.ended"]})["result"]
    sessions = sum(e["data"]["usage"]["total_tokens"] for e in ended)
    assert info["budget_today"]["tokens_used"] == sessions + 1000
