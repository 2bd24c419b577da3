"""Plugins: every hook, from a package installed with pip the way users install one.

tests/plugins/probe is a real package with a `legion.plugins` entry point; it
is pip-installed into a directory of its own, which the daemon gets on its
PYTHONPATH (so uninstalling is just leaving it off).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Daemon, short_tmpdir
from tests.test_sessions import Watch, tell


def pip_install(source: Path, target: Path) -> None:
    """pip install SOURCE into TARGET, building from a copy so the repo stays clean."""
    work = short_tmpdir("lg-build-")
    try:
        copy = work / source.name
        shutil.copytree(source, copy)
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--quiet",
                "--target",
                str(target),
                str(copy),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 0, res.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def probe_site() -> Iterator[Path]:
    site = short_tmpdir("lg-site-")
    pip_install(REPO / "tests" / "plugins" / "probe", site)
    yield site
    shutil.rmtree(site, ignore_errors=True)


def test_a_plugin_adds_a_tool_a_watcher_kind_a_model_provider_and_an_rpc_method(
    make_daemon: Any, probe_site: Path
) -> None:
    daemon: Daemon = make_daemon(
        config='[plugins.settings.probe]\ngreeting = "${PROBE_GREETING}"\n',
        env={"PYTHONPATH": str(probe_site), "PROBE_GREETING": "hello from config"},
    )
    plugins = {p["name"]: p for p in daemon.rpc("plugins.list")["result"]["plugins"]}
    probe = plugins["probe"]
    assert probe["status"] == "loaded" and probe["source"] == "legion-probe 1.2.3"
    assert probe["module"] == "legion_probe"
    assert probe["tools"] == ["probe_echo"] and probe["watcher_kinds"] == ["counter"]
    assert probe["providers"] == ["probe"] and probe["rpc_methods"] == ["probe.ping"]
    assert probe["transports"] == 1
    assert plugins["starter"]["source"] == "builtin"

    # The tool, with the plugin's settings (${VAR} expanded).
    res = daemon.rpc("tools.run", {"name": "probe_echo", "args": {"text": "x"}})["result"]
    assert res["result"] == {"text": "x", "greeting": "hello from config"}
    assert daemon.rpc("tools.show", {"name": "probe_echo"})["result"]["plugin"] == "probe"

    # The RPC method, typed like a built-in one.
    assert daemon.rpc("probe.ping", {"word": "marco"})["result"]["echo"] == "marco"
    bad = daemon.rpc("probe.ping", {"wrd": "marco"})
    assert bad["error"]["code"] == -32602
    methods = {m["name"] for m in daemon.rpc("daemon.methods")["result"]}
    assert "probe.ping" in methods

    # The model provider: probe/ANY is a valid model reference.
    daemon.cli("spawn", "pat", "--model", "probe/tiny")
    assert "says hi" in tell(daemon, "pat", "hello")["reply"]

    # The watcher kind: polled without a model, fires on a change.
    daemon.cli("spawn", "wendy")
    watch = Watch(daemon, "wendy")
    try:
        added = daemon.rpc(
            "watch.add",
            {
                "agent": "wendy",
                "kind": "counter",
                "config": {},
                "interval": 1,
                "min_interval": 0,
                "action": "silent",
            },
        )
        assert "result" in added, added
        fired = watch.until("watch.fired")
        assert fired["data"]["kind"] == "counter" and fired["data"]["trigger"] == "changed(n)"
    finally:
        watch.close()
    bad = daemon.rpc("watch.add", {"agent": "wendy", "kind": "counter", "config": {"stat": 1}})
    assert bad["error"]["code"] == -32602 and "start" in bad["error"]["data"]["hint"]

    out = daemon.cli("plugins")
    assert out.code == 0 and "probe" in out.out and "legion-probe 1.2.3" in out.out


def test_a_disabled_plugin_is_listed_and_adds_nothing(make_daemon: Any, probe_site: Path) -> None:
    daemon: Daemon = make_daemon(
        config='[plugins]\ndisabled = ["probe"]\n', env={"PYTHONPATH": str(probe_site)}
    )
    plugins = {p["name"]: p for p in daemon.cli_json("plugins")["plugins"]}
    assert plugins["probe"]["status"] == "disabled" and plugins["probe"]["tools"] == []
    assert daemon.rpc("tools.run", {"name": "probe_echo"})["error"]["code"] == -32001
    assert daemon.rpc("probe.ping", {"word": "x"})["error"]["code"] == -32601
    res = daemon.cli("spawn", "pat", "--model", "probe/tiny")
    assert res.code == 2 and "unknown model" in res.err


def test_without_the_package_the_plugin_is_gone(daemon: Daemon) -> None:
    names = {p["name"] for p in daemon.rpc("plugins.list")["result"]["plugins"]}
    assert names == {"starter", "watchers"}
    assert daemon.rpc("tools.run", {"name": "probe_echo"})["error"]["code"] == -32001
