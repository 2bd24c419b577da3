"""Stopping the daemon: at once when idle, and when busy without waiting out the
grace period: the running session is cut off and recorded (`shutdown`), the
client waiting for its reply is told the message id, and the message is
answered after the restart. A wait for a paused agent's message returns at once.

The bounds below are the shutdown grace (set to 30 s), not speed targets: they
show the daemon does not wait it out. The figures are in benchmarks/."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO, Daemon
from tests.test_sessions import Watch, scripted

GRACE = "[daemon]\nshutdown_grace = 30\n"


def test_an_idle_daemon_stops_without_waiting_the_grace(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config=GRACE)
    daemon.cli("spawn", "idle")
    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 10  # the grace is 30 s
    assert '"daemon stopped"' in daemon.log()


def test_a_busy_daemon_cuts_its_session_off_and_answers_after_restart(
    make_daemon: Any, tmp_path: Path
) -> None:
    turns = (
        '[[turn]]\ndelay = 300\ntext = "never seen"\n\n'
        '[[turn]]\ntext = "answered after the restart"\n'
    )
    daemon: Daemon = make_daemon(config=GRACE + scripted(tmp_path, "slow", turns))
    daemon.cli("spawn", "busy", "--model", "slow")
    watch = Watch(daemon, "busy")
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legion",
            "--home",
            str(daemon.home),
            "tell",
            "busy",
            "what now?",
            "--wait",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=daemon.env(),
    )
    request = watch.until("model.request")
    mid = request_message(daemon, request)

    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 10  # the session was cut off, not waited for
    _out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 3, err
    assert "the daemon is stopping" in err and f"legion wait {mid}" in err

    db = sqlite3.connect(daemon.home / "legion.db")
    status = db.execute(
        "SELECT s.status, m.status FROM sessions s JOIN messages m ON m.id = s.message_id "
        "WHERE m.id = ?",
        (mid,),
    ).fetchone()
    ended = db.execute(
        "SELECT json_extract(data, '$.status') FROM events WHERE kind = 'session.ended' "
        "AND agent_id = 'busy'"
    ).fetchall()
    db.close()
    # Recorded, not half-done: the session ended `shutdown`, the message waits to be
    # delivered again.
    assert status == ("shutdown", "processing") and ended == [("shutdown",)]

    daemon.start()
    res = daemon.cli("wait", str(mid), "--timeout", "60")
    assert res.code == 0 and "answered after the restart" in res.out
    kinds = [e["kind"] for e in daemon.cli_json("events", "busy", "--limit", "200")]
    assert "message.redelivered" in kinds


def request_message(daemon: Daemon, request: dict[str, Any]) -> int:
    msgs = daemon.cli_json("messages", "busy")
    assert len(msgs) == 1 and msgs[0]["status"] == "processing", msgs
    return int(msgs[0]["message_id"])


def test_waiting_for_a_paused_agent_returns_at_once_with_what_to_do(daemon: Daemon) -> None:
    daemon.cli("spawn", "napper")
    daemon.cli("pause", "napper")
    t0 = time.monotonic()
    res = daemon.cli("tell", "napper", "wake up", "--wait", "--timeout", "120")
    assert time.monotonic() - t0 < 60  # not the 120 s it was allowed
    assert res.code == 5, res.err
    assert "napper is paused" in res.err and "legion resume napper" in res.err
    mid = daemon.cli_json("messages", "napper")[0]["message_id"]
    assert f"legion wait {mid}" in res.err
    daemon.cli("resume", "napper")
    assert daemon.cli("wait", str(mid)).code == 0
