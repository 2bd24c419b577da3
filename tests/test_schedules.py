"""Agents that wake by themselves: cron with missed-run policies, heartbeats that
cost nothing when nothing is new, and the cap on automatic triggers."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import Daemon
from tests.test_sessions import Watch, script_log, scripted, tell

EVERY_SECOND = "* * * * * *"


def test_cron_fires_every_second_and_survives_a_restart_by_policy(make_daemon: Any) -> None:
    # Room for every late run: the messages a stop cut off are delivered again at the
    # start and count against the automatic-trigger cap (3 by default), which would
    # drop a late run (as `trigger.dropped`) and hide what this test looks at.
    daemon: Daemon = make_daemon(config="[guards]\nmax_concurrent_sessions = 50\n")
    daemon.cli("spawn", "cro")
    watch = Watch(daemon, "cro")
    ids = {}
    for policy in ("run_once", "skip", "run_all"):
        doc = daemon.cli_json(
            "cron",
            "add",
            "cro",
            f"tick {policy}",
            "--cron",
            EVERY_SECOND,
            "--missed",
            policy,
            "--missed-cap",
            "3",
        )
        ids[policy] = doc["schedule"]
        assert doc["next_fire"] is not None
    fired = [watch.until("schedule.fired", schedule=ids["skip"])]
    for _ in range(2):
        last = fired[-1]["id"]
        while True:
            ev = watch.until("schedule.fired", schedule=ids["skip"])
            if ev["id"] > last:
                fired.append(ev)
                break
            watch.seen.remove(ev)
    assert all(f["data"]["lateness_ms"] is not None for f in fired)
    planned = [datetime.fromisoformat(f["data"]["planned"].replace("Z", "+00:00")) for f in fired]
    assert all((b - a) == timedelta(seconds=1) for a, b in itertools.pairwise(planned))
    watch.close()
    assert daemon.stop() == 0

    # Ten seconds of runs missed while the daemon was down.
    db = sqlite3.connect(daemon.home / "legion.db")
    past = (datetime.now(UTC) - timedelta(seconds=10)).isoformat(timespec="milliseconds")
    db.execute("UPDATE schedules SET last_fire = ?", (past.replace("+00:00", "Z"),))
    db.commit()
    db.close()
    daemon.start()
    evs = daemon.cli_json("events", "cro", "--kind", "schedule.missed", "--limit", "200")
    by = {p: [e["data"] for e in evs if e["data"]["schedule"] == i] for p, i in ids.items()}
    assert all(d["action"] == "skipped" for d in by["skip"]) and len(by["skip"]) >= 9
    late = [d for d in by["run_once"] if d["action"] == "run late"]
    assert len(late) == 1 and late[0]["missed_total"] >= 9
    assert len([d for d in by["run_all"] if d["action"] == "run late"]) == 3
    # Every missed run is accounted for: none is silent.
    for policy in ids:
        assert len(by[policy]) >= 9
    received = daemon.cli_json("events", "cro", "--kind", "message.received", "--limit", "500")
    assert any(
        "planned runs were missed; this one stands for all of them" in e["data"]["text"]
        for e in received
    )
    # The schedules survived the restart and fire again.
    listed = daemon.cli_json("cron", "ls", "cro")
    assert sorted(s["schedule"] for s in listed) == sorted(ids.values())
    assert daemon.cli("cron", "rm", "cro", str(ids["skip"])).code == 0
    assert daemon.cli("cron", "rm", "cro", "999").code == 4


def test_bad_cron_expressions_say_what_a_good_one_looks_like(daemon: Daemon) -> None:
    daemon.cli("spawn", "bad")
    res = daemon.cli("cron", "add", "bad", "x", "--cron", "every monday")
    assert res.code == 2 and "2 fields" in res.err and "'0 9 * * 1-5'" in res.err
    res = daemon.cli("cron", "add", "bad", "x", "--cron", "61 * * * *")
    assert res.code == 2 and "invalid cron expression" in res.err
    res = daemon.cli("cron", "add", "bad", "x", "--every", "soon")
    assert res.code == 2 and "30s, 5m" in res.err
    res = daemon.cli("cron", "add", "bad", "x", "--at", "2001-01-01T00:00:00Z")
    assert res.code == 2 and "in the past" in res.err
    assert daemon.cli_json("cron", "ls", "bad") == []


def test_heartbeats_call_the_model_only_when_something_is_new(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(tmp_path, "beat", '[[turn]]\ntext = "IDLE"\nrepeat = true\n')
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "hb", "--model", "beat")
    watch = Watch(daemon, "hb")
    doc = daemon.cli_json("heartbeat", "hb", "1s")
    assert doc["heartbeat"]["spec"] == "1"
    first = watch.until("heartbeat.skipped")
    while True:  # a second quiet heartbeat
        ev = watch.until("heartbeat.skipped")
        if ev["id"] > first["id"]:
            break
        watch.seen.remove(ev)
    log = tmp_path / "beat.toml.log"
    assert not log.exists()  # two heartbeats, no model call
    assert daemon.cli_json("ps")[0]["next_heartbeat"] is not None

    tell(daemon, "hb", "something happened")  # one call for the message itself
    calls = len(script_log(tmp_path, "beat"))
    # The next heartbeat sees the message and calls the model once more...
    delivered = watch.until("message.received", sender="heartbeat")
    assert "a message from user" in delivered["data"]["text"]
    watch.until("session.ended", message_id=delivered["data"]["message_id"])
    assert len(script_log(tmp_path, "beat")) == calls + 1
    # ...and the one after that is quiet again.
    after = watch.until("session.ended", message_id=delivered["data"]["message_id"])
    while True:
        ev = watch.until("heartbeat.skipped")
        if ev["id"] > after["id"]:
            break
        watch.seen.remove(ev)
    assert len(script_log(tmp_path, "beat")) == calls + 1
    assert daemon.cli_json("heartbeat", "hb", "off")["heartbeat"] is None
    watch.close()


def test_the_cap_drops_excess_automatic_triggers_but_never_people(daemon: Daemon) -> None:
    spawned = daemon.rpc("agents.spawn", {"id": "cap", "guards": {"max_concurrent_sessions": 2}})
    assert "result" in spawned
    daemon.cli("pause", "cap")  # nothing is handled: triggers pile up
    watch = Watch(daemon, "cap")
    daemon.cli("cron", "add", "cap", "tick", "--cron", EVERY_SECOND)
    dropped = watch.until("trigger.dropped")
    assert dropped["data"]["cap"] == 2 and dropped["data"]["in_flight"] == 2
    assert "max_concurrent_sessions" in dropped["data"]["hint"]
    waiting = daemon.rpc("messages.list", {"agent": "cap", "status": "queued"})["result"]
    assert len(waiting) == 2
    # A person is never dropped.
    assert daemon.cli("tell", "cap", "from a person").code == 0
    assert len(daemon.rpc("messages.list", {"agent": "cap", "status": "queued"})["result"]) == 3
    watch.close()


def test_weekday_numbers_follow_standard_cron(daemon: Daemon) -> None:
    daemon.cli("spawn", "wk")
    doc = daemon.cli_json("cron", "add", "wk", "standup", "--cron", "0 9 * * 1-5")
    when = datetime.fromisoformat(doc["next_fire"].replace("Z", "+00:00"))
    assert when.weekday() < 5 and (when.hour, when.minute) == (9, 0)  # Monday to Friday
    assert daemon.cli("cron", "rm", "wk", "abc").code == 2
    bad = daemon.cli("heartbeat", "wk", "0.5s")
    assert bad.code == 2 and "at least 1 second" in bad.err
    daemon.cli("heartbeat", "wk", "1h")
    assert daemon.cli("heartbeat", "wk", "soon").code == 2
    assert daemon.cli_json("heartbeat", "wk")["heartbeat"]["spec"] == "3600"  # kept
