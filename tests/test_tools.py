"""The tool registry, agent-written tools and tool statistics, through the real daemon.

Scripted models (mock/script tapes) play the agent; what the model was shown
is read back from the tape's log, so every assertion is about what a real
model would have seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from legion.daemon.tools.authored import content_hash
from tests.conftest import REPO, Daemon
from tests.test_sessions import Watch, script_log, scripted, tell


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the local server"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def tool_messages(tmp: Path, name: str) -> list[Any]:
    """The tool results the model was shown in its last call, parsed."""
    out = []
    for m in script_log(tmp, name)[-1]:
        if m["role"] == "tool":
            try:
                out.append(json.loads(m["content"]))
            except ValueError:
                out.append(m["content"])
    return out


def call(tool: str, /, **args: Any) -> str:
    return "{ name = " + json.dumps(tool) + ", arguments = " + _toml(args) + " }"


def _toml(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def turns(*calls: list[str] | str) -> str:
    out = []
    for c in calls:
        if isinstance(c, str):
            out.append(f"[[turn]]\ntext = {json.dumps(c)}\n")
        else:
            out.append("[[turn]]\ntool_calls = [" + ", ".join(c) + "]\n")
    return "\n".join(out)


# -- the registry ----------------------------------------------------------------------


def test_an_agent_finds_http_get_invokes_it_and_learns_from_its_mistakes(
    make_daemon: Any, tmp_path: Path, web: str
) -> None:
    cfg = scripted(
        tmp_path,
        "finder",
        turns(
            [call("tool_search", query="fetch a url over http")],
            [call("tool_invoke", name="http_get", arguments={"url": f"{web}/hello"})],
            [call("tool_invoke", name="http_gett", arguments={"url": f"{web}/hello"})],
            [call("tool_invoke", name="http_get", arguments={"link": f"{web}/hello"})],
            # Small models call what they found by its own name: that works too.
            [call("http_get", url=f"{web}/hello")],
            "done",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "scout", "--model", "finder")
    assert tell(daemon, "scout", "get the page")["reply"] == "done"
    search, fetched, unknown, bad, direct = tool_messages(tmp_path, "finder")

    top = search["results"][0]
    assert top["name"] == "http_get" and top["kind"] == "starter"
    assert top["parameters"]["required"] == ["url"] and "url" in top["signature"]
    assert "tool_invoke" in search["call_with"]

    assert fetched["status"] == 200 and fetched["body"] == "hello from the local server"

    assert unknown["error"] == "there is no tool named 'http_gett'"
    assert "http_get" in unknown["hint"] and "tool_search" in unknown["hint"]

    assert bad["error"] == "unknown argument 'link'"
    assert bad["hint"].startswith("signature: http_get(url: str")

    assert direct["body"] == "hello from the local server"
    # The events name the tool actually run, and the stats count it.
    stats = daemon.rpc("tools.stats", {"name": "http_get"})["result"]["tools"][0]
    assert stats["calls"] == 3 and stats["failures"] == 0 and stats["misuses"] == 1


@pytest.mark.needs_isolation
def test_the_prompt_carries_only_the_kernel_and_the_two_meta_tools(daemon: Daemon) -> None:
    from legion.daemon.tools import kernel, meta

    listing = daemon.rpc("tools.list")["result"]
    expected = sorted(t.name for t in [*kernel.PROMPT, *meta.PROMPT])
    assert listing["prompt"] == expected
    assert {"tool_search", "tool_invoke"} <= set(listing["prompt"])
    in_prompt = {t["name"] for t in listing["tools"] if t["in_prompt"]}
    assert in_prompt == set(expected)
    # Everything else is one search away.
    kinds = {t["name"]: t["kind"] for t in listing["tools"]}
    assert kinds["web_fetch"] == "starter" and kinds["tool_write"] == "builtin"
    assert kinds["watch_add"] == "kernel" and "watch_add" not in in_prompt
    info = daemon.rpc("daemon.info")["result"]["tools"]
    assert info["in_prompt"] == len(expected)
    assert 0 < info["prompt_schema_bytes"] < 8000


def test_tools_run_from_the_shell(daemon: Daemon) -> None:
    res = daemon.cli("tools", "run", "now", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["ok"] is True and out["result"]["timezone"] == "UTC"
    res = daemon.cli("tools", "run", "now", "timezone=Europe/Paris")
    assert res.code == 0 and '"Europe/Paris"' in res.out
    # KEY=VALUE values are JSON when they parse as JSON.
    res = daemon.cli("tools", "run", "dag_analyze", 'edges=[["a","b"],["b","c"]]', "--json")
    assert json.loads(res.out)["result"]["critical_path"] == ["a", "b", "c"]
    # The tool's own failure: exit 1, its error and hint on stderr.
    res = daemon.cli("tools", "run", "now", "timezone=Mars/Olympus")
    assert res.code == 1 and "unknown timezone" in res.err and "hint:" in res.err
    # An unknown tool: exit 4 with near names.
    res = daemon.cli("tools", "run", "nwo")
    assert res.code == 4 and "did you mean now" in res.err
    # Kernel tools act for an agent: the shell must say which.
    res = daemon.cli("tools", "run", "memory_list")
    assert res.code == 2 and "--agent" in res.err
    daemon.cli("spawn", "ann")
    res = daemon.cli("tools", "run", "memory_list", "--agent", "ann", "--json", "prefix=notes/")
    assert res.code == 0 and json.loads(res.out)["ok"] is True
    res = daemon.cli("tools", "run", "now", "oops")
    assert res.code == 2 and "KEY=VALUE" in res.err


def test_tools_search_show_and_ls_from_the_cli(daemon: Daemon) -> None:
    hits = daemon.cli_json("tools", "search", "web", "page", "text")["results"]
    assert hits[0]["name"] == "web_fetch"
    shown = daemon.cli_json("tools", "show", "dag_analyze")
    assert shown["kind"] == "starter" and shown["plugin"] == "starter"
    assert "edges" in shown["parameters"]["properties"]
    names = {t["name"] for t in daemon.cli_json("tools", "ls", "--kind", "starter")["tools"]}
    assert names == {"http_get", "web_fetch", "web_search", "now", "dag_analyze"}
    res = daemon.cli("tools", "ls")
    assert res.code == 0 and "web_search" in res.out
    res = daemon.cli("tools", "show", "web_fetc")
    assert res.code == 4 and "web_fetch" in res.err


# -- agent-written tools ---------------------------------------------------------------

V1 = '''def triple(x: int) -> int:
    """Three times x."""
    return x * 3


def test():
    assert triple(2) == 6
'''
V2 = V1.replace("Three times x.", "Three times x, exactly.")
V3 = V2.replace("    return x * 3\n", "    y = x * 3\n    return y\n")
V4 = "# written by an agent\n" + V3


@pytest.mark.needs_isolation
def test_an_agent_writes_builds_runs_and_edits_a_tool_in_all_three_modes(
    make_daemon: Any, tmp_path: Path
) -> None:
    h2, h3 = content_hash(V2), content_hash(V3)
    cfg = scripted(
        tmp_path,
        "author",
        turns(
            [call("tool_write", name="triple", source=V1, keywords=["math", "multiply"])],
            [call("tool_invoke", name="triple", arguments={"x": 4})],
            [
                call(
                    "tool_edit",
                    name="triple",
                    old_string="Three times x.",
                    new_string="Three times x, exactly.",
                )
            ],
            [
                call(
                    "tool_edit",
                    name="triple",
                    mode="range",
                    start_line=3,
                    end_line=3,
                    new_text="    y = x * 3\n    return y",
                    expected_content_hash=h2,
                )
            ],
            [
                call(
                    "tool_edit",
                    name="triple",
                    mode="insert",
                    insert_at_line=1,
                    new_text="# written by an agent",
                    expected_content_hash=h3,
                )
            ],
            # Computed against an old read: refused, nothing changes.
            [
                call(
                    "tool_edit",
                    name="triple",
                    mode="range",
                    start_line=1,
                    end_line=1,
                    new_text="",
                    expected_content_hash=h2,
                )
            ],
            [call("tool_edit", name="triple", old_string="x", new_string="z")],
            [call("tool_read", name="triple", start_line=1, end_line=3)],
            [call("triple", x=5)],
            "done",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "smith", "--model", "author")
    watch = Watch(daemon, "smith")
    try:
        assert tell(daemon, "smith", "make a tripler")["reply"] == "done"
        built = watch.until("tool.built", name="triple", version=1)
        assert built["data"]["ok"] and built["data"]["selftest"] == "passed"
        edits = [watch.until("tool.edited", version=v) for v in (2, 3, 4)]
    finally:
        watch.close()
    (wrote, ran, e_string, e_range, e_insert, stale, ambiguous, read, direct) = tool_messages(
        tmp_path, "author"
    )
    assert wrote["built"] and wrote["status"] == "ok" and wrote["selftest"] == "passed"
    assert wrote["signature"] == "triple(x: int)"
    assert ran == 12
    assert e_string["content_hash"] == h2 and e_range["content_hash"] == h3
    assert e_insert["content_hash"] == content_hash(V4) and e_insert["total_lines"] == 9
    assert "changed since you read it" in stale["error"]
    assert content_hash(V4) in stale["error"] and "tool_read" in stale["hint"]
    assert "occurs" in ambiguous["error"] and "exactly once" in ambiguous["error"]
    assert read["total_lines"] == 9 and read["content_hash"] == content_hash(V4)
    assert read["source"].splitlines()[0] == "     1\t# written by an agent"
    assert [e["mode"] for e in read["recent_edits"]] == ["insert", "range", "string", "write"]
    assert direct == 15

    assert [e["data"]["mode"] for e in edits] == ["string", "range", "insert"]
    rng = edits[1]["data"]
    assert rng["before_hash"] == h2 and rng["after_hash"] == h3
    assert rng["added"] == 2 and rng["removed"] == 1
    assert "-    return x * 3" in rng["diff"] and "+    y = x * 3" in rng["diff"]

    # `legion attach` shows each edit as a diff block.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legion",
            "--home",
            str(daemon.home),
            "attach",
            "smith",
            "--kind",
            "tool.edited",
            "--kind",
            "tool.built",
            "--kind",
            "agent.destroyed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=daemon.env(),
        stdin=subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the replay, up to the last build
            lines.append(line)
            if "built v4" in line:
                break
        daemon.cli("stop", "smith")
        daemon.cli("destroy", "smith")  # ends the attach
        rest, _err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    out = "".join(lines) + rest
    assert "triple" in out and "range edit" in out
    assert "+    y = x * 3" in out and "-    return x * 3" in out
    assert "+# written by an agent" in out

    # The tool outlives its author's session; the registry shows its history.
    shown = daemon.rpc("tools.show", {"name": "triple"})["result"]
    assert shown["kind"] == "authored" and shown["version"] == 4
    assert [v["version"] for v in shown["versions"]] == [4, 3, 2, 1]


@pytest.mark.needs_isolation
def test_a_tool_that_does_not_build_is_saved_broken_and_fixed_by_an_edit(
    make_daemon: Any, tmp_path: Path
) -> None:
    bad = "def half(x: int) -> float:\n    return x / 2\n\ndef test():\n    assert half(3) == 1\n"
    cfg = scripted(
        tmp_path,
        "fixer",
        turns(
            [
                call(
                    "tool_write",
                    name="half",
                    source="def half(x: int) -> float\n    return x / 2\n",
                )
            ],
            [call("tool_invoke", name="half", arguments={"x": 3})],
            [call("tool_write", name="half", source=bad)],
            [call("tool_edit", name="half", old_string="== 1", new_string="== 1.5")],
            [call("half", x=3)],
            [call("half", x="three")],
            "done",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "fix", "--model", "fixer")
    assert tell(daemon, "fix", "halve")["reply"] == "done"
    syntax, refused, selftest, fixed, ran, bad_args = tool_messages(tmp_path, "fixer")
    assert syntax["status"] == "broken" and not syntax["built"]
    assert syntax["problem"].startswith("syntax error at line 1")
    assert "tool_edit" in syntax["hint"]
    assert refused["error"].startswith("half does not build") and "tool_edit" in refused["hint"]
    assert selftest["status"] == "broken" and "self-test failed" in selftest["problem"]
    assert "line 5" in selftest["problem"]
    assert fixed["status"] == "ok" and fixed["selftest"] == "passed"
    assert ran == 1.5
    assert bad_args["error"].startswith("argument 'x'") and "half(x: int)" in bad_args["hint"]


@pytest.mark.needs_isolation
def test_only_the_maintainer_edits_a_tool_and_builtin_names_are_taken(
    make_daemon: Any, tmp_path: Path
) -> None:
    (tmp_path / "a.toml").write_text(
        turns(
            [
                call(
                    "tool_write",
                    name="greet",
                    source="def greet(name: str) -> str:\n    return 'hi ' + name\n",
                )
            ],
            [call("tool_write", name="now", source="def now() -> int:\n    return 0\n")],
            [call("tool_write", name="Bad-Name", source="def f() -> int:\n    return 0\n")],
            "done",
        )
    )
    (tmp_path / "b.toml").write_text(
        turns(
            [call("tool_edit", name="greet", old_string="hi", new_string="bye")],
            [call("greet", name="bob")],
            "done",
        )
    )
    cfg = (
        "".join(f'[providers.{n}]\nkind = "mock"\nscript = "{tmp_path / n}.toml"\n' for n in "ab")
        + '[models.aliases]\na = "a/script"\nb = "b/script"\n'
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "alice", "--model", "a")
    daemon.cli("spawn", "bob", "--model", "b")
    assert tell(daemon, "alice", "write")["reply"] == "done"
    _ok, taken, badname = tool_messages(tmp_path, "a")
    assert "built-in tool" in taken["error"]
    assert "invalid tool name" in badname["error"] and "lowercase" in badname["hint"]
    assert tell(daemon, "bob", "edit")["reply"] == "done"
    refused, used = tool_messages(tmp_path, "b")
    assert "maintained by alice" in refused["error"] and "ask alice" in refused["hint"]
    # Anyone may use it.
    assert used == "hi bob"
    # A person deletes any agent-written tool; built-in ones cannot be deleted.
    res = daemon.cli("tools", "rm", "now")
    assert res.code == 2 and "only tools written by agents" in res.err
    assert daemon.cli("tools", "rm", "greet").code == 0
    assert (
        daemon.rpc("tools.run", {"name": "greet", "args": {"name": "x"}})["error"]["code"] == -32001
    )
    assert daemon.cli("tools", "stats", "greet").code == 4


# -- statistics ------------------------------------------------------------------------


@pytest.mark.needs_isolation
def test_stats_give_percentiles_and_a_verdict_and_search_demotes_degraded_tools(
    make_daemon: Any, tmp_path: Path
) -> None:
    flaky = (
        "def flaky_fetch(n: int) -> int:\n    '''Fetch a number from the web.'''\n"
        "    if n > 0:\n        raise ValueError('upstream said no')\n    return n\n"
    )
    cfg = scripted(
        tmp_path,
        "w",
        turns(
            [call("tool_write", name="flaky_fetch", source=flaky, keywords=["web", "fetch"])],
            "done",
        ),
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "sam", "--model", "w")
    assert tell(daemon, "sam", "write")["reply"] == "done"
    for n in (1, 2, 3, 0):
        res = daemon.rpc("tools.run", {"name": "flaky_fetch", "args": {"n": n}, "agent": "sam"})[
            "result"
        ]
        assert res["ok"] is (n == 0)
        if n:
            assert "ValueError: upstream said no" in res["error"] and "line 4" in res["error"]
    stats = daemon.cli_json("tools", "stats", "flaky_fetch")["tools"][0]
    assert stats["calls"] == 4 and stats["failures"] == 3
    assert stats["verdict"] == "degraded" and "3 of the last 4" in stats["why"]
    assert stats["p50_ms"] is not None and stats["p50_ms"] <= stats["p95_ms"] <= stats["max_ms"]
    assert "upstream said no" in stats["last_error"]
    now = daemon.cli_json("tools", "stats", "now")["tools"][0]
    assert now["calls"] == 0 and now["verdict"] == "healthy"
    # Search still finds it, but after the healthy tool that matches as well.
    hits = [
        h["name"] for h in daemon.rpc("tools.search", {"query": "web fetch"})["result"]["results"]
    ]
    assert hits.index("web_fetch") < hits.index("flaky_fetch")
    # Statistics survive a restart.
    daemon.stop()
    daemon.start()
    again = daemon.cli_json("tools", "stats", "flaky_fetch")["tools"][0]
    assert again["calls"] == 4 and again["verdict"] == "degraded"


@pytest.mark.needs_isolation
def test_bad_tool_inputs_from_the_shell_and_agents_change_nothing(daemon: Daemon) -> None:
    for args, expect in (
        (["--args", "{not json"], "--args is not valid JSON"),
        (["--args", "[1, 2]"], "--args must be a JSON object"),
        (["--agent", "ghost"], "no agent 'ghost'"),
    ):
        res = daemon.cli("tools", "run", "now", *args)
        assert res.code in (2, 4) and expect in res.err and "hint:" in res.err, (args, res)
    daemon.cli("spawn", "ann")
    for name, args, expect in (
        ("tool_read", ["name=nothing"], "no agent-written tool named 'nothing'"),
        ("tool_edit", ["name=nothing", "old_string=a", "new_string=b"], "nothing"),
        ("tool_delete", ["name=nothing"], "nothing"),
        ("tool_write", ["name=x", "source=def x() -> int:\n    return 1\n"], "invalid tool name"),
        ("tool_invoke", ["name=tool_invoke"], "cannot invoke itself"),
    ):
        res = json.loads(daemon.cli("tools", "run", name, *args, "--agent", "ann", "--json").out)
        assert res["ok"] is False and expect in res["error"], (name, res)
    assert daemon.cli_json("tools", "ls", "--kind", "authored")["tools"] == []
