"""The project's own promises: the README's two commands, CI running the same
test command, docs covering every method, key and command, lint and types."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from legion import config
from tests.conftest import REPO, Daemon

RUN = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/legion daemon "
    "--agents examples/agents"
)
TEST = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)][:2]


def test_readme_starts_with_the_run_and_test_commands() -> None:
    assert _readme_commands() == [RUN, TEST]


def test_ci_runs_the_readme_test_command() -> None:
    assert TEST in (REPO / ".ci" / "run").read_text()


def test_the_readme_run_command_serves_the_example_agents(make_daemon: Any) -> None:
    # The README's daemon command, on a fresh home: the example agents are there.
    args = RUN.split(".venv/bin/legion daemon ", 1)[1].split()
    daemon: Daemon = make_daemon(args=args)
    agents = daemon.cli_json("ps")
    ids = sorted(a["id"] for a in agents)
    expected = sorted(p.stem for p in (REPO / "examples" / "agents").glob("*.toml"))
    assert ids == expected and ids
    assert all(a["state"] == "running" for a in agents)
    human = daemon.cli("ps")
    assert all(i in human.out for i in ids)


def _docs() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))


def test_every_rpc_method_is_documented(daemon: Daemon) -> None:
    docs = (REPO / "docs" / "rpc.md").read_text()
    names = [m["name"] for m in daemon.rpc("daemon.methods")["result"]]
    missing = [n for n in names if f"`{n}`" not in docs]
    assert not missing, f"undocumented RPC methods: {missing}"


def test_every_config_key_is_documented() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text()
    missing = [k for k in config.key_paths() if f"`{k}`" not in docs]
    assert not missing, f"undocumented config keys: {missing}"


def test_every_cli_command_and_option_is_documented() -> None:
    from legion.cli.main import build_parser

    docs = (REPO / "docs" / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    choices: dict[str, Any] = sub.choices  # type: ignore[assignment]
    for name, p in choices.items():
        assert f"legion {name}" in docs, f"`legion {name}` is not in docs/cli.md"
        for action in p._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt not in docs:
                    pytest.fail(f"option {opt} of `legion {name}` is not in docs/cli.md")


def test_docs_exist() -> None:
    for name in ("architecture", "cli", "configuration", "operations", "rpc"):
        assert (REPO / "docs" / f"{name}.md").stat().st_size > 500


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run(
        [ruff, "check", "legion", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_is_applied() -> None:
    # One style for the whole tree: `ruff format` changes nothing.
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run(
        [ruff, "format", "--check", "legion", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, "run `ruff format legion tests benchmarks`:\n" + res.stdout


def test_mypy_is_clean() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "No module named mypy" in res.stderr:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    assert res.returncode == 0, res.stdout + res.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    unit = (REPO / "legion.service").read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert directive in unit
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    legion = Path(sys.executable).parent / "legion"
    local = tmp_path / "legion.service"
    local.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={legion}", unit, flags=re.M))
    res = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    problems = [
        line
        for line in (res.stdout + res.stderr).splitlines()
        if ("legion.service" in line and "Unknown" in line)
        or "Invalid" in line
        or "Failed to parse" in line
    ]
    assert not problems, res.stdout + res.stderr


def test_every_plugin_hook_is_documented() -> None:
    from legion import plugin

    docs = (REPO / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(plugin.Specs) if name.startswith("legion_")]
    assert len(hooks) >= 5
    for name in hooks:
        assert f"### `{name}`" in docs, f"hook {name} is not documented in docs/plugins.md"
