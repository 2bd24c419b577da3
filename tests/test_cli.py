"""The thin client: light imports, the exit-code contract, help that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Daemon, run_cli

FORBIDDEN = (
    "litellm",
    "aiosqlite",
    "prompt_toolkit",
    "legion.daemon",
    "rich",
    "msgspec",
    "structlog",
    "anyio",
    "sqlite3",
)

PROBE = """
import json, sys
sys.argv = ["legion", *json.loads(sys.argv[1])]
from legion.cli.main import main
rc = main()
heavy = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in {forbidden}))
print("\\n" + json.dumps({{"rc": rc, "heavy": heavy}}))
"""


def _imports_of(args: list[str], home: Path) -> dict[str, object]:
    code = PROBE.format(forbidden=repr(FORBIDDEN))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGION_")}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(["--home", str(home), *args])],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=30,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_one_shot_commands_import_nothing_heavy(daemon: Daemon) -> None:
    daemon.cli("spawn", "a")
    for args in (
        ["ps", "--json"],
        ["info", "--json"],
        ["pause", "a", "--json"],
        ["events", "a", "--json"],
        ["ps", "--state", "paused", "--json"],
        ["tell", "a", "hi", "--json"],
        ["messages", "a", "--json"],
    ):
        got = _imports_of(args, daemon.home)
        assert got == {"rc": 0, "heavy": []}, (args, got)


def test_human_output_loads_rich_but_never_the_daemon(daemon: Daemon) -> None:
    got = _imports_of(["ps"], daemon.home)
    assert got["rc"] == 0
    assert "rich" in got["heavy"]  # type: ignore[operator]
    assert not [
        m
        for m in got["heavy"]
        if m.startswith(
            (
                "legion.daemon",
                "aiosqlite",  # type: ignore[union-attr]
                "litellm",
                "prompt_toolkit",
            )
        )
    ]


def test_unreachable_daemon_exits_3_with_how_to_start_it(tmp_path: Path) -> None:
    for args in (
        ["ps"],
        ["info"],
        ["spawn", "x"],
        ["pause", "x"],
        ["resume", "x"],
        ["stop", "x"],
        ["destroy", "x"],
        ["events", "x"],
        ["attach", "x"],
        ["tell", "x", "hi"],
        ["wait", "1"],
        ["interrupt", "x"],
        ["messages", "x"],
        [],
    ):
        res = run_cli("--home", str(tmp_path), *args)
        assert res.code == 3, (args, res)
        assert "no Legion daemon is listening" in res.err
        assert "legion daemon" in res.err  # the hint says how to start it
    res = run_cli("--home", str(tmp_path), "ps", "--json")
    assert res.code == 3 and json.loads(res.err)["error"]["data"]["kind"] == "daemon_unreachable"


def test_socket_and_home_from_the_environment(daemon: Daemon, tmp_path: Path) -> None:
    env = {**daemon.env(), "LEGION_HOME": str(daemon.home)}
    proc = subprocess.run(
        [sys.executable, "-m", "legion", "ps", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    env = {**daemon.env(), "LEGION_HOME": str(tmp_path), "LEGION_SOCKET": str(daemon.socket)}
    proc = subprocess.run(
        [sys.executable, "-m", "legion", "ps", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert proc.returncode == 0


def test_bare_legion_prints_ps_when_not_a_terminal(daemon: Daemon) -> None:
    daemon.cli("spawn", "solo")
    res = daemon.cli()
    assert res.code == 0 and "solo" in res.out and "running" in res.out


def test_options_work_before_and_after_the_command(daemon: Daemon) -> None:
    a = run_cli("--json", "--home", str(daemon.home), "ps")
    b = run_cli("ps", "--home", str(daemon.home), "--json")
    assert a.code == b.code == 0 and json.loads(a.out) == json.loads(b.out) == []


@pytest.mark.parametrize(
    "cmd",
    [
        "",
        "daemon",
        "info",
        "ps",
        "spawn",
        "pause",
        "resume",
        "stop",
        "destroy",
        "events",
        "attach",
        "config",
        "config check",
        "tell",
        "wait",
        "interrupt",
        "messages",
        "tools",
        "tools ls",
        "tools search",
        "tools show",
        "tools stats",
        "tools run",
        "plugins",
    ],
)
def test_help_for_every_command(cmd: str) -> None:
    res = run_cli(*cmd.split(), "--help")
    assert res.code == 0 and "usage: legion" in res.out


def test_usage_errors_exit_2() -> None:
    res = run_cli("spawn")
    assert res.code == 2 and "required: ID" in res.err
    assert run_cli("no-such-command").code == 2
    assert run_cli("--version").out.startswith("legion ")


def test_system_prompt_from_file_and_stdin(daemon: Daemon, tmp_path: Path) -> None:
    prompt = tmp_path / "p.md"
    prompt.write_text("From a file.")
    assert daemon.cli("spawn", "f", "--system-file", str(prompt)).code == 0
    assert daemon.cli("spawn", "s", "--system-file", "-", input="From stdin.").code == 0
    get = daemon.rpc
    assert get("agents.get", {"id": "f"})["result"]["system_prompt"] == "From a file."
    assert get("agents.get", {"id": "s"})["result"]["system_prompt"] == "From stdin."
    res = daemon.cli("spawn", "m", "--system-file", str(tmp_path / "missing.md"))
    assert res.code == 2 and "cannot read --system-file" in res.err
    assert "m" not in {a["id"] for a in daemon.cli_json("ps")}
