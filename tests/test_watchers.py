"""Watchers against real sources: a local HTTP server, files, commands, processes
and ports. Each fires on a real change and not otherwise; no model is needed
for a tool action; paused agents accumulate, stopped ones do not poll."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon
from tests.test_sessions import Watch


class Site:
    """A loopback HTTP server whose answer the test changes; it counts requests per path."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[int, str]] = {}
        self.hits: dict[str, int] = {}
        self.cond = threading.Condition()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = site.bodies.get(self.path, (404, "nope"))
                data = body.encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with site.cond:
                    site.hits[self.path] = site.hits.get(self.path, 0) + 1
                    site.cond.notify_all()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def wait_hits(self, path: str, n: int, timeout: float = 30) -> None:
        """Until `path` has been requested n times (the server is told, no polling)."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.hits.get(path, 0) >= n, timeout), (
                f"{path} was requested {self.hits.get(path, 0)} times, expected {n}"
            )


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.httpd.shutdown()


def add(
    daemon: Daemon, agent: str, kind: str, config: dict[str, Any], *extra: str
) -> dict[str, Any]:
    res = daemon.cli(
        "watch",
        "add",
        agent,
        kind,
        json.dumps(config),
        "--interval",
        "1",
        "--min-interval",
        "0",
        *extra,
        "--json",
    )
    assert res.code == 0, res.err
    doc: dict[str, Any] = json.loads(res.out)
    return doc


def fired(daemon: Daemon, agent: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in daemon.cli_json("events", agent, "--kind", "watch.fired", "--limit", "500")
    ]


def test_http_poll_fires_on_a_change_and_not_otherwise(daemon: Daemon, site: Site) -> None:
    site.bodies["/price"] = (200, json.dumps({"price": 120}))
    daemon.cli("spawn", "shop")
    w = add(
        daemon,
        "shop",
        "http_poll",
        {"url": site.url("/price")},
        "--trigger",
        "json.price < 100",
        "--action",
        "silent",
    )
    site.wait_hits("/price", 3)
    assert fired(daemon, "shop") == []  # unchanged, above the threshold: nothing
    watch = Watch(daemon, "shop")
    site.bodies["/price"] = (200, json.dumps({"price": 90}))
    ev = watch.until("watch.fired", watcher=w["watcher"])
    assert '"price": 90' in ev["data"]["observation"]
    watch.close()


def test_wake_while_paused_accumulates_and_stop_stops_polling(daemon: Daemon, site: Site) -> None:
    site.bodies["/a"] = (200, "one")
    site.bodies["/control"] = (200, "steady")
    daemon.cli("spawn", "paws")
    daemon.cli("spawn", "ctl")
    daemon.cli("pause", "paws")
    watch = Watch(daemon, "paws")
    add(daemon, "paws", "http_poll", {"url": site.url("/a")})  # default: changed(body)
    site.wait_hits("/a", 2)
    site.bodies["/a"] = (200, "two")
    watch.until("watch.fired")
    received = watch.until("message.received")
    assert received["data"]["sender"].startswith("watcher:")
    queued = daemon.rpc("messages.list", {"agent": "paws", "status": "queued"})["result"]
    assert len(queued) == 1  # paused: it waits in the inbox
    daemon.cli("resume", "paws")
    watch.until("message.replied", message_id=received["data"]["message_id"])

    # Stopped: no polling at all, while a control watcher of another agent polls on.
    daemon.cli("stop", "paws")
    before = site.hits["/a"]
    add(daemon, "ctl", "http_poll", {"url": site.url("/control")}, "--action", "silent")
    site.wait_hits("/control", 4)
    assert site.hits["/a"] == before
    daemon.cli("resume", "paws")
    site.wait_hits("/a", before + 1)  # resumed: polling again
    watch.close()


def test_tool_action_runs_without_a_model(daemon: Daemon, site: Site) -> None:
    site.bodies["/health"] = (200, "ok")
    daemon.cli("spawn", "ops")
    watch = Watch(daemon, "ops")
    cfg = {
        "url": site.url("/health"),
        "action_args": {"path": "ops/health.md", "content": "health is {status}"},
    }
    add(
        daemon,
        "ops",
        "http_poll",
        cfg,
        "--trigger",
        "status != 200",
        "--action",
        "tool:memory_write",
    )
    site.wait_hits("/health", 2)
    site.bodies["/health"] = (503, "down")
    ran = watch.until("watch.tool")
    assert ran["data"]["ok"] is True
    assert daemon.cli("memory", "cat", "ops", "ops/health.md").out.strip() == "health is 503"
    kinds = {e["kind"] for e in daemon.cli_json("events", "ops", "--limit", "500")}
    assert "model.request" not in kinds and "session.started" not in kinds
    watch.close()


@pytest.mark.needs_isolation
def test_file_cmd_process_and_tcp_watchers(daemon: Daemon, tmp_path: Path) -> None:
    daemon.cli("spawn", "eye")
    watch = Watch(daemon, "eye")
    folder = tmp_path / "inbox"
    folder.mkdir()
    fw = add(daemon, "eye", "file_watch", {"path": str(folder)}, "--action", "silent")
    data = tmp_path / "data.txt"
    data.write_text("alpha")
    cw = add(
        daemon,
        "eye",
        "cmd_watch",
        {"command": ["cat", str(data)]},
        "--trigger",
        "changed(stdout)",
        "--action",
        "silent",
    )
    marker = "31.4159"
    # Added over RPC: a `legion watch add` command line would itself contain the name.
    pw = daemon.rpc(
        "watch.add",
        {
            "agent": "eye",
            "kind": "process_watch",
            "config": {"name": f"sleep {marker}"},
            "interval": 1,
            "min_interval": 0,
            "trigger": "changed(running)",
            "action": "silent",
        },
    )["result"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen()
    tw = add(
        daemon, "eye", "tcp_probe", {"port": port}, "--trigger", "went_down", "--action", "silent"
    )
    running = daemon.cli_json("watch", "ls", "eye")
    assert all(w["running"] for w in running) and len(running) == 4

    (folder / "new.txt").write_text("hello")
    ev = watch.until("watch.fired", watcher=fw["watcher"])
    assert "new.txt" in ev["data"]["observation"]
    data.write_text("beta")
    ev = watch.until("watch.fired", watcher=cw["watcher"])
    assert '"stdout": "beta"' in ev["data"]["observation"]
    proc = subprocess.Popen(["sleep", marker])
    try:
        ev = watch.until("watch.fired", watcher=pw["watcher"])
        assert '"running": true' in ev["data"]["observation"]
    finally:
        proc.kill()
        proc.wait()
    listener.close()
    ev = watch.until("watch.fired", watcher=tw["watcher"])
    assert '"up": false' in ev["data"]["observation"]
    # Each fired for its own change only.
    counts: dict[int, int] = {}
    for f in fired(daemon, "eye"):
        counts[f["watcher"]] = counts.get(f["watcher"], 0) + 1
    assert counts[cw["watcher"]] == 1 and counts[tw["watcher"]] == 1
    assert daemon.cli("watch", "rm", "eye", str(fw["watcher"])).code == 0
    watch.close()


def test_trigger_errors_point_at_the_column_and_test_needs_no_install(daemon: Daemon) -> None:
    daemon.cli("spawn", "syn")
    res = daemon.cli(
        "watch",
        "add",
        "syn",
        "http_poll",
        '{"url": "http://127.0.0.1:9/"}',
        "--trigger",
        "status !== 200",
    )
    assert res.code == 2 and "column 10" in res.err and "^" in res.err
    res = daemon.cli(
        "watch",
        "add",
        "syn",
        "http_poll",
        '{"url": "http://127.0.0.1:9/"}',
        "--trigger",
        "__import__('os')",
    )
    assert res.code == 2 and "unknown function; the functions are: changed" in res.err
    res = daemon.cli("watch", "add", "syn", "http_poll", '{"link": "x"}')
    assert res.code == 2 and "http_poll takes: url" in res.err
    res = daemon.cli("watch", "add", "syn", "http_pol", "{}")
    assert res.code == 2
    res = daemon.cli("watch", "add", "syn", "tcp_probe", '{"port": 1}', "--action", "explode")
    assert res.code == 2 and "wake, silent, message:AGENT" in res.err
    assert daemon.cli_json("watch", "ls", "syn") == []
    ok = daemon.cli("watch", "test", "json.price < 100", '{"json": {"price": 90}}')
    assert ok.code == 0
    no = daemon.cli(
        "watch", "test", "changed(body)", '{"body": "a"}', "--previous", '{"body": "a"}'
    )
    assert no.code == 1
