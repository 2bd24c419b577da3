"""The sandbox holds: secrets, writes outside, endless loops, fork bombs, memory.

Each hostile tool is written by a scripted agent (the real tool_write path:
built in the sandbox) and then run with `tools.run`, as the agent would run
it. Every case must end as a tool error within its limits, and the daemon
must carry on as if nothing happened.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, kernel_isolation
from tests.test_sessions import Watch, scripted, tell
from tests.test_tools import call, turns

SECRET = "hunter2-do-not-leak"

HOSTILE = {
    "env_dump": "import os\n\ndef env_dump() -> dict:\n    return dict(os.environ)\n",
    "proc_env": (
        "import os\n\ndef proc_env() -> str:\n"
        "    return open(f'/proc/{os.getppid()}/environ').read()\n"
    ),
    "read_home": "def read_home(path: str) -> str:\n    return open(path).read()\n",
    "write_out": (
        "def write_out(path: str) -> str:\n"
        "    with open(path, 'w') as f:\n        f.write('pwned')\n    return path\n"
    ),
    "write_in": (
        "import os\n\ndef write_in() -> str:\n"
        "    with open('note.txt', 'w') as f:\n        f.write('ok')\n"
        "    return os.path.abspath('note.txt')\n"
    ),
    "spin": "def spin() -> int:\n    n = 0\n    while True:\n        n += 1\n",
    "sleeper": "import time\n\ndef sleeper() -> int:\n    time.sleep(3600)\n    return 0\n",
    "fork_bomb": "import os\n\ndef fork_bomb() -> int:\n    while True:\n        os.fork()\n",
    "shell_bomb": (
        "import subprocess\n\ndef shell_bomb() -> int:\n"
        "    return subprocess.call(['bash', '-c', ':(){ :|:& };:'])\n"
    ),
    "hog": "def hog() -> int:\n    return len(bytearray(4 * 1024 ** 3))\n",
    "grow": "def grow() -> int:\n    xs = []\n    while True:\n        xs.append(' ' * 10 ** 6)\n",
    "sneaky": "def sneaky() -> str:\n    import ctypes\n    return str(ctypes.CDLL(None))\n",
    # Not hostile: threads are not processes, and tools use thread pools.
    "pool": (
        "from concurrent.futures import ThreadPoolExecutor\n\ndef pool() -> list:\n"
        "    with ThreadPoolExecutor(4) as ex:\n"
        "        return sorted(ex.map(lambda n: n * n, range(8)))\n"
    ),
    "net": (
        "import socket\n\ndef net(port: int) -> str:\n"
        "    socket.create_connection(('127.0.0.1', port), timeout=2)\n"
        "    return 'connected'\n"
    ),
}


# "auto" is the strongest level this machine has (bubblewrap or namespaces where
# available); "process" is the weakest, where only the limits and the audit
# hook hold: every case must hold under both.
@pytest.fixture(params=["auto", "process"])
def sandboxed(make_daemon: Any, tmp_path: Path, request: Any) -> Daemon:
    if request.param == "auto" and (why := kernel_isolation()[1]):
        pytest.skip(why)
    writes = [call("tool_write", name=n, source=src) for n, src in HOSTILE.items()]
    writes.append(
        call(
            "tool_write",
            name="wants_secret",
            env=["LEGION_TEST_SECRET"],
            source="import os\n\ndef wants_secret() -> str:\n"
            "    return os.environ.get('LEGION_TEST_SECRET', 'absent')\n",
        )
    )
    cfg = (
        scripted(
            tmp_path,
            "hacker",
            turns(writes, "written"),
            extra=f"""
[tools.sandbox]
level = "{request.param}"
cpu_seconds = 2
timeout = 4
memory_mb = 256
""",
        )
        + f'\n[providers.paid]\nkind = "openai"\napi_key = "{SECRET}-key"\n'
    )
    daemon: Daemon = make_daemon(config=cfg, env={"LEGION_TEST_SECRET": SECRET})
    daemon.cli("spawn", "mallory", "--model", "hacker")
    assert tell(daemon, "mallory", "write them")["reply"] == "written"
    return daemon


def run(daemon: Daemon, name: str, **args: Any) -> dict[str, Any]:
    reply = daemon.rpc("tools.run", {"name": name, "args": args, "agent": "mallory"})
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


def assert_daemon_fine(daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.rpc("daemon.ping")["result"]["pong"] is True
    assert run(daemon, "write_in")["ok"] is True


def test_secrets_of_the_daemon_do_not_reach_a_tool(sandboxed: Daemon) -> None:
    env = run(sandboxed, "env_dump")
    assert env["ok"]
    assert SECRET not in json.dumps(env["result"])
    assert set(env["result"]) <= {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "LC_CTYPE",
        "TZ",
        "LC_ALL",
        "PWD",
    }
    proc = run(sandboxed, "proc_env")
    assert not proc["ok"] and "not allowed" in proc["error"]
    # The config file (API keys) and the database are in the daemon's home.
    for path in (sandboxed.home / "config.toml", sandboxed.home / "legion.db"):
        res = run(sandboxed, "read_home", path=str(path))
        assert not res["ok"] and "not allowed" in res["error"], res
    # A declared variable passes only if the person allowed it.
    assert run(sandboxed, "wants_secret")["result"] == "absent"
    assert_daemon_fine(sandboxed)


def test_a_declared_variable_passes_when_env_allow_lists_it(
    make_daemon: Any, tmp_path: Path
) -> None:
    cfg = scripted(
        tmp_path,
        "w",
        turns(
            [
                call(
                    "tool_write",
                    name="key",
                    env=["LEGION_TEST_KEY"],
                    source=(
                        "import os\n\ndef key() -> str:\n    return os.environ['LEGION_TEST_KEY']\n"
                    ),
                )
            ],
            "ok",
        ),
        extra='[tools.sandbox]\nenv_allow = ["LEGION_TEST_KEY"]\n',
    )
    daemon: Daemon = make_daemon(
        config=cfg, env={"LEGION_TEST_KEY": "brave-123", "LEGION_TEST_OTHER": "x"}
    )
    daemon.cli("spawn", "kim", "--model", "w")
    assert tell(daemon, "kim", "go")["reply"] == "ok"
    res = daemon.rpc("tools.run", {"name": "key", "agent": "kim"})["result"]
    assert res["ok"] and res["result"] == "brave-123"


def test_writes_stay_inside_the_agents_working_directory(sandboxed: Daemon, tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    res = run(sandboxed, "write_out", path=str(target))
    assert not res["ok"] and "only inside its working directory" in res["error"]
    assert not target.exists()
    # Relative escapes resolve outside too.
    res = run(sandboxed, "write_out", path="../../escape.txt")
    assert not res["ok"] and not (sandboxed.home / "escape.txt").exists()
    inside = run(sandboxed, "write_in")
    assert inside["ok"]
    assert Path(inside["result"]) == sandboxed.home / "work" / "mallory" / "note.txt"
    assert Path(inside["result"]).read_text() == "ok"
    assert_daemon_fine(sandboxed)


def test_an_endless_loop_is_stopped_by_the_cpu_limit_and_a_sleeper_by_the_clock(
    sandboxed: Daemon,
) -> None:
    start = time.monotonic()
    res = run(sandboxed, "spin")
    assert not res["ok"] and res["error_kind"] == "cpu"
    assert "2s of CPU time" in res["error"] and "endless loop" in res["hint"]
    res = run(sandboxed, "sleeper")
    assert not res["ok"] and res["error_kind"] == "timeout"
    assert "longer than 4s" in res["error"]
    # Both ended at their limits (2 s CPU, 4 s wall), not at some outer timeout.
    assert time.monotonic() - start < 20
    assert_daemon_fine(sandboxed)


def test_a_fork_bomb_ends_as_a_tool_error(sandboxed: Daemon) -> None:
    res = run(sandboxed, "fork_bomb")
    assert not res["ok"] and "starting processes is not allowed" in res["error"]
    res = run(sandboxed, "shell_bomb")
    assert not res["ok"] and "starting processes is not allowed" in res["error"]
    assert_daemon_fine(sandboxed)


def test_a_command_fork_bomb_is_held_by_the_process_limit(make_daemon: Any) -> None:
    """cmd_watch commands may start processes (a shell pipeline), up to a limit."""
    daemon: Daemon = make_daemon(config="[tools.sandbox]\ncommand_processes = 8\n")
    sandbox = daemon.rpc("plugins.list")["result"]["sandbox"]
    if os.geteuid() == 0 and not any(x.startswith("cgroup") for x in sandbox["layers"]):
        pytest.skip("root without a writable pids cgroup: only the timeout holds a command")
    daemon.cli("spawn", "bomber")
    watch = Watch(daemon, "bomber")
    try:
        # The first observation is the baseline; the second one fires.
        added = daemon.rpc(
            "watch.add",
            {
                "agent": "bomber",
                "kind": "cmd_watch",
                "interval": 1,
                "min_interval": 0,
                "action": "silent",
                "trigger": "exit_code != 0 or timed_out or 'Resource' in stderr",
                "config": {"command": ["bash", "-c", ":(){ :|:& };:"], "timeout": 3},
            },
        )
        assert "result" in added, added
        fired = watch.until("watch.fired")
    finally:
        watch.close()
    # The observation as shown to the agent (cut at 1,500 characters).
    obs = fired["data"]["observation"]
    assert '"timed_out": true' in obs or "Resource temporarily unavailable" in obs
    assert daemon.rpc("daemon.ping")["result"]["pong"] is True


def test_a_tool_may_use_threads(sandboxed: Daemon) -> None:
    res = run(sandboxed, "pool")
    assert res["ok"], res
    assert res["result"] == [0, 1, 4, 9, 16, 25, 36, 49]


def test_memory_blowups_end_as_tool_errors(sandboxed: Daemon) -> None:
    for name in ("hog", "grow"):
        res = run(sandboxed, name)
        assert not res["ok"] and res["error_kind"] in ("memory", "killed"), res
        assert "256 MB" in res["error"]
    assert_daemon_fine(sandboxed)


def test_ctypes_and_the_network_are_refused_unless_declared(sandboxed: Daemon) -> None:
    res = run(sandboxed, "sneaky")
    assert not res["ok"] and "ctypes" in res["error"]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        res = run(sandboxed, "net", port=srv.getsockname()[1])
        assert not res["ok"] and "network access is not allowed" in res["error"]
        assert "network=true" in res["error"]
    finally:
        srv.close()


def test_the_sandbox_level_is_reported(daemon: Daemon) -> None:
    info = daemon.rpc("daemon.info")["result"]["sandbox"]
    assert info["level"] in ("bubblewrap", "namespaces", "process")
    assert {"rlimits", "scrubbed-env", "workdir", "process-group", "audit-hook"} <= set(
        info["layers"]
    )
    out = daemon.cli("info")
    assert out.code == 0 and "sandbox" in out.out and info["level"] in out.out
