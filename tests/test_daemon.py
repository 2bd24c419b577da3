"""The daemon process: start-up, the home lock, stale sockets, signals, systemd, logs."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, Daemon, RawClient


def _run_daemon(home: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legion", "--home", str(home), "daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def test_starts_agentless_and_healthy(daemon: Daemon) -> None:
    info = daemon.cli_json("info")
    assert info["agents"] == {"total": 0, "by_state": {"running": 0, "paused": 0, "stopped": 0}}
    assert info["database"]["writer"]["alive"] is True
    assert info["database"]["vec_version"].startswith("v")
    assert info["database"]["driver"] in {"stdlib", "pysqlite3", "sqlean"}
    assert info["home"] == str(daemon.home)
    human = daemon.cli("info")
    assert human.code == 0 and "sqlite-vec" in human.out and info["database"]["driver"] in human.out


def test_second_daemon_on_the_same_home_refuses(daemon: Daemon) -> None:
    second = _run_daemon(daemon.home)
    assert second.returncode == 5
    assert "already running" in second.stderr and str(daemon.proc.pid) in second.stderr  # type: ignore[union-attr]
    assert "--home" in second.stderr
    # The first one is unharmed.
    assert daemon.rpc("daemon.ping")["result"] == {"pong": True}


def test_stale_socket_from_a_crash_is_replaced(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon()
    daemon.cli("spawn", "survivor")
    daemon.kill9()
    assert daemon.socket.exists()  # left behind by the crash
    daemon.start()
    assert "replaced stale socket" in daemon.log()
    assert [a["id"] for a in daemon.cli_json("ps")] == ["survivor"]


def test_a_foreign_file_at_the_socket_path_is_not_clobbered(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(start=False)
    daemon.home.mkdir(parents=True)
    daemon.socket.write_text("not a socket")
    res = _run_daemon(daemon.home)
    assert res.returncode == 5 and "is not a socket" in res.stderr
    assert daemon.socket.read_text() == "not a socket"


def test_sigterm_is_graceful(daemon: Daemon) -> None:
    daemon.cli("spawn", "a")
    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.socket.exists()
    assert any("STOPPING=1" in n for n in daemon.notifications)
    log = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in log]
    assert "daemon ready" in events and "daemon stopped" in events


class DatabaseLock:
    """Hold the database's write lock from outside, so the daemon's next write
    waits: a real way to keep a request in flight for as long as a test needs."""

    def __init__(self, daemon: Daemon) -> None:
        self.db = sqlite3.connect(daemon.home / "legion.db", isolation_level=None, timeout=10)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


def _start_write(daemon: Daemon, agent: str) -> RawClient:
    """Send a write that will wait on the lock; return once the daemon is processing it."""
    c = daemon.client()
    c.sock.settimeout(60)
    c.send({"jsonrpc": "2.0", "id": 1, "method": "agents.spawn", "params": {"id": agent}})
    probe = daemon.client()
    # daemon.info is itself in flight while it answers, hence 2. Each probe is a
    # round trip to the daemon, so this waits on the daemon, not on a clock.
    for _ in range(10_000):
        if probe.call("daemon.info")["result"]["rpc"]["in_flight"] >= 2:
            break
    else:
        raise AssertionError("the write never reached the daemon")
    probe.close()
    return c


SLOW_WRITES = "[store]\nbusy_timeout = 60\n"


def test_graceful_shutdown_lets_in_flight_requests_finish(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config=SLOW_WRITES + "[daemon]\nshutdown_grace = 60\n")
    lock = DatabaseLock(daemon)
    client = _start_write(daemon, "late")
    daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    daemon.wait_for_notify("STOPPING=1")
    lock.release()
    reply = client.recv()
    assert reply["result"]["agent"]["id"] == "late"  # acknowledged, so it must be durable
    assert daemon.proc.wait(30) == 0  # type: ignore[union-attr]
    daemon.start()
    assert [a["id"] for a in daemon.cli_json("ps")] == ["late"]


def test_grace_period_is_bounded(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(config=SLOW_WRITES + "[daemon]\nshutdown_grace = 0.5\n")
    lock = DatabaseLock(daemon)
    client = _start_write(daemon, "never")
    daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    try:
        assert daemon.proc.wait(30) == 0  # type: ignore[union-attr]
    finally:
        lock.release()
    assert "outlived the grace period" in daemon.log()
    client.close()


def test_second_sigint_forces_shutdown(make_daemon: Any) -> None:
    # A long grace period and a request that cannot finish: only the second
    # SIGINT can end this quickly.
    daemon: Daemon = make_daemon(config=SLOW_WRITES + "[daemon]\nshutdown_grace = 120\n")
    lock = DatabaseLock(daemon)
    client = _start_write(daemon, "stuck")
    try:
        daemon.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        daemon.wait_for_notify("STOPPING=1")
        daemon.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert daemon.proc.wait(20) == 130  # type: ignore[union-attr]
    finally:
        lock.release()
    assert "second SIGINT" in daemon.log()
    client.close()


def test_watchdog_pings_when_systemd_asks(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(env={"WATCHDOG_USEC": "200000"})  # 0.2 s -> ping every 0.1 s
    for _ in range(3):
        daemon.wait_for_notify("WATCHDOG=1", timeout=5)
    ready = next(n for n in daemon.notifications if "READY=1" in n)
    assert f"MAINPID={daemon.proc.pid}" in ready  # type: ignore[union-attr]


def test_ready_is_sent_only_once_the_socket_listens(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(start=False)
    daemon.start(wait=False)
    daemon.wait_for_notify("READY=1")
    # At READY time the socket must already answer: no retry loop here.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket))
    s.close()


def test_logs_are_json_when_not_a_terminal(daemon: Daemon) -> None:
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"event", "level", "timestamp"} <= set(entry)


def test_bad_config_refuses_to_start_with_the_key_path(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(start=False, config="[rpc]\nmax_conections = 3\n")
    res = _run_daemon(daemon.home)
    assert res.returncode == 2
    assert "rpc.max_conections: unknown key" in res.stderr
    assert "did you mean rpc.max_connections" in res.stderr
    assert not (daemon.home / "legion.db").exists()


def test_bad_agent_definition_refuses_to_start(make_daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('id = "Bad Id"\n')
    daemon: Daemon = make_daemon(start=False)
    res = _run_daemon(daemon.home, "--agents", str(tmp_path))
    assert res.returncode == 2
    assert "x.toml" in res.stderr and "invalid agent id" in res.stderr


def test_socket_path_too_long_says_what_to_do(make_daemon: Any) -> None:
    daemon: Daemon = make_daemon(start=False)
    long_socket = "/tmp/" + "s" * 120 + ".sock"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "legion",
            "--home",
            str(daemon.home),
            "--socket",
            long_socket,
            "daemon",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert res.returncode == 2
    assert "Unix sockets allow 107" in res.stderr and "--socket" in res.stderr


def test_definitions_are_declared_and_kept_in_step(make_daemon: Any, tmp_path: Path) -> None:
    defs = tmp_path / "agents"
    defs.mkdir()
    (defs / "boss.toml").write_text('id = "boss"\nmodel = "smart"\nsystem = "Lead."\n')
    (defs / "aide.toml").write_text('id = "aide"\nparent = "boss"\nsystem_file = "aide.md"\n')
    (defs / "aide.md").write_text("Help the boss.")
    daemon: Daemon = make_daemon(args=["--agents", str(defs)])
    agents = {a["id"]: a for a in daemon.cli_json("ps")}
    assert agents["aide"]["parent"] == "boss"
    assert daemon.rpc("agents.get", {"id": "aide"})["result"]["system_prompt"] == "Help the boss."
    daemon.cli("pause", "boss")
    assert daemon.stop() == 0

    (defs / "boss.toml").write_text('id = "boss"\nmodel = "fast"\nsystem = "Lead."\n')
    daemon.start()
    boss = {a["id"]: a for a in daemon.cli_json("ps")}["boss"]
    # The definition changed the model; the state the person chose stands.
    assert boss["model"] == "fast" and boss["state"] == "paused"
    updated = daemon.cli_json("events", "boss", "--kind", "agent.updated")
    assert updated[-1]["data"]["changed"] == {"model": "fast"}


def test_a_typo_in_an_agent_definition_names_the_key(make_daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text('id = "ok"\nmodle = "smart"\n')
    daemon: Daemon = make_daemon(start=False)
    res = _run_daemon(daemon.home, "--agents", str(tmp_path / "typo.toml"))
    assert res.returncode == 2
    assert "typo.toml: modle: unknown key" in res.stderr and "did you mean model" in res.stderr
