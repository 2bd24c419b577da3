"""The home_assistant plugin, installed for real and driven through the daemon.

The plugin directory is copied out of the repository (so a build leaves no
`build/` or `*.egg-info` behind in it) and pip-installed with `--target` into
a temporary directory; the daemon finds it through PYTHONPATH and the
`legion.plugins` entry point in its dist-info, exactly as it would find a
plugin installed with `pip install`. Home Assistant is tests/fake_hass.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Daemon, short_tmpdir
from tests.fake_hass import TOKEN, FakeHass

PLUGIN_DIR = REPO / "plugins" / "home_assistant"
TABLE = "[plugins.settings.home_assistant]"
OPERATIONS = ["list_entities", "get_state", "turn_on", "turn_off", "toggle", "set_brightness"]


def pip_install_target(src: Path, target: Path) -> None:
    """`pip install --target` of a source tree, offline, as the brief's users would."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, (
        "pip could not build/install the plugin (an offline build needs setuptools>=70.1, "
        f"or setuptools with the wheel package):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def pythonpath(*dirs: Path) -> str:
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([*map(str, dirs), *inherited])


@pytest.fixture(scope="module")
def plugin_site() -> Iterator[Path]:
    """A directory where legion-home-assistant is pip-installed."""
    base = short_tmpdir("lg-ha-")
    try:
        src = base / "src"
        shutil.copytree(
            PLUGIN_DIR,
            src,
            ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
        )
        pip_install_target(src, base / "site")
        yield base / "site"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeHass]:
    with FakeHass() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeHass) -> FakeHass:
    fake_server.reset()
    return fake_server


def hass_config(url: str | None, token: str | None) -> str:
    lines = [TABLE]
    if url is not None:
        lines.append(f'url = "{url}"')
    if token is not None:
        lines.append(f'token = "{token}"')
    return "\n".join(lines) + "\n"


# The environment's own HASS_URL / HASS_TOKEN must not stand in for missing settings.
NO_HASS_ENV = {"HASS_URL": "", "HASS_TOKEN": ""}


@pytest.fixture
def start(make_daemon: Any, plugin_site: Path, fake: FakeHass) -> Any:
    """start(url=..., token=...) -> a daemon with the plugin installed and configured."""

    def go(*, url: str | None = fake.url, token: str | None = TOKEN) -> Daemon:
        d: Daemon = make_daemon(
            config=hass_config(url, token),
            env={"PYTHONPATH": pythonpath(plugin_site), **NO_HASS_ENV},
        )
        return d

    return go


def run(d: Daemon, name: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = d.rpc("tools.run", {"name": name, "args": args})
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


def hass(d: Daemon, **args: Any) -> dict[str, Any]:
    return run(d, "home_assistant", args)


def plugin_entry(d: Daemon, name: str) -> dict[str, Any] | None:
    reply = d.rpc("plugins.list")
    assert "result" in reply, reply
    found = [p for p in reply["result"]["plugins"] if p["name"] == name]
    return found[0] if found else None


# Installed and configured.


def test_list_entities_and_get_state(start: Any, fake: FakeHass) -> None:
    d = start()
    res = hass(d, operation="list_entities")
    assert res["ok"], res
    ids = {e["entity_id"]: e for e in res["result"]["entities"]}
    assert set(ids) == {"light.kitchen", "switch.fan", "sensor.temperature"}
    assert ids["light.kitchen"] == {
        "entity_id": "light.kitchen",
        "state": "on",
        "friendly_name": "Kitchen Light",
    }
    lights = hass(d, operation="ls", domain="light")["result"]
    assert [e["entity_id"] for e in lights["entities"]] == ["light.kitchen"]

    state = hass(d, operation="get_state", entity_id="sensor.temperature")
    assert state["ok"], state
    assert state["result"]["state"] == "21.5"
    assert state["result"]["attributes"]["unit_of_measurement"] == "°C"
    status = hass(d, operation="status", entity_id="light.kitchen")["result"]
    assert status["brightness_pct"] == 100
    # Every request carried the configured token.
    assert fake.calls
    assert {c.authorization for c in fake.calls} == {f"Bearer {TOKEN}"}


def test_turn_off_by_alias(start: Any, fake: FakeHass) -> None:
    d = start()
    res = hass(d, operation="switch off", entity_id="switch.fan")
    assert res["ok"], res
    assert res["result"]["service"] == "switch.turn_off"
    assert res["result"]["before"] == "on"
    assert res["result"]["state"] == "off"
    assert fake.states["switch.fan"]["state"] == "off"
    assert [(c.path, c.body) for c in fake.service_calls()] == [
        ("/api/services/switch/turn_off", {"entity_id": "switch.fan"})
    ]

    assert hass(d, operation="on", entity_id="switch.fan")["ok"]
    assert fake.states["switch.fan"]["state"] == "on"
    assert hass(d, operation="OFF", entity_id="switch.fan")["result"]["state"] == "off"
    assert fake.states["switch.fan"]["state"] == "off"


def test_dim_sets_brightness(start: Any, fake: FakeHass) -> None:
    d = start()
    res = hass(d, operation="dim", entity_id="light.kitchen", brightness=30)
    assert res["ok"], res
    assert res["result"]["service"] == "light.turn_on"
    assert res["result"]["brightness_pct"] == 30
    assert fake.states["light.kitchen"]["attributes"]["brightness"] == round(30 * 255 / 100)
    assert fake.service_calls()[-1].body == {"entity_id": "light.kitchen", "brightness_pct": 30}
    # Not a percent: refused before anything is sent.
    calls = len(fake.calls)
    bad = hass(d, operation="dim", entity_id="light.kitchen", brightness=200)
    assert not bad["ok"]
    assert "0" in bad["error"] and "100" in bad["error"]
    assert len(fake.calls) == calls


def test_bad_token_gets_an_instructive_hint(start: Any, fake: FakeHass) -> None:
    d = start(token="not-the-token")
    res = hass(d, operation="list_entities")
    assert not res["ok"]
    assert "token" in res["error"] and "401" in res["error"]
    assert res["hint"] and "token" in res["hint"] and TABLE in res["hint"]
    assert fake.calls and fake.calls[0].authorization == "Bearer not-the-token"


def test_unknown_operation_lists_the_operations(start: Any, fake: FakeHass) -> None:
    d = start()
    res = hass(d, operation="explode", entity_id="switch.fan")
    assert not res["ok"]
    for op in OPERATIONS:
        assert op in res["error"]
    assert res["hint"]
    assert fake.calls == []


def test_unknown_entity_suggests_near_ids(start: Any) -> None:
    d = start()
    res = hass(d, operation="get_state", entity_id="light.kitchn")
    assert not res["ok"]
    assert "light.kitchn" in res["error"]
    assert "light.kitchen" in res["hint"] and "list_entities" in res["hint"]


def test_missing_url_names_the_config_key(start: Any, fake: FakeHass) -> None:
    d = start(url=None)
    res = hass(d, operation="list_entities")
    assert not res["ok"]
    assert "`url`" in res["error"] and TABLE in res["error"]
    assert "HASS_URL" in res["error"]
    assert res["hint"] and "url =" in res["hint"]
    assert fake.calls == []


def test_plugins_list_and_tools_show(start: Any) -> None:
    d = start()
    entry = plugin_entry(d, "home_assistant")
    assert entry is not None
    assert entry["status"] == "loaded", entry
    assert entry["error"] is None
    assert entry["tools"] == ["home_assistant"]
    assert entry["module"] == "legion_home_assistant"
    assert "legion-home-assistant" in entry["source"] and "0.1.0" in entry["source"]

    reply = d.rpc("tools.show", {"name": "home_assistant"})
    assert "result" in reply, reply
    shown = reply["result"]
    assert shown["kind"] == "plugin"
    assert shown["plugin"] == "home_assistant"
    assert "Home Assistant" in shown["description"]
    assert "home assistant" in shown["keywords"]
    schema = shown.get("schema", shown.get("parameters"))
    assert schema is not None, shown
    assert "operation" in schema["properties"] and schema["required"] == ["operation"]


# Not installed, or broken.


def test_uninstalled_plugin_is_absent(make_daemon: Any, fake: FakeHass) -> None:
    # The settings table may stay in config.toml after an uninstall.
    d: Daemon = make_daemon(config=hass_config(fake.url, TOKEN), env=NO_HASS_ENV)
    reply = d.rpc("tools.run", {"name": "home_assistant", "args": {"operation": "list"}})
    assert "error" in reply, reply
    assert reply["error"]["code"] == -32001
    assert plugin_entry(d, "home_assistant") is None
    assert fake.calls == []


BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "legion-broken-plugin"
version = "0.0.1"

[project.entry-points."legion.plugins"]
broken = "legion_broken_plugin"

[tool.setuptools]
py-modules = ["legion_broken_plugin"]
"""

BROKEN_MODULE = """\
raise ImportError("legion_broken_plugin is broken on purpose")
"""


@pytest.fixture(scope="module")
def broken_site() -> Iterator[Path]:
    base = short_tmpdir("lg-broken-")
    try:
        src = base / "src"
        src.mkdir()
        (src / "pyproject.toml").write_text(BROKEN_PYPROJECT)
        (src / "legion_broken_plugin.py").write_text(textwrap.dedent(BROKEN_MODULE))
        pip_install_target(src, base / "site")
        yield base / "site"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_broken_plugin_is_reported_and_the_daemon_runs(
    make_daemon: Any, broken_site: Path, plugin_site: Path
) -> None:
    d: Daemon = make_daemon(
        env={"PYTHONPATH": pythonpath(broken_site, plugin_site), **NO_HASS_ENV}
    )  # READY was awaited
    entry = plugin_entry(d, "broken")
    assert entry is not None
    assert entry["status"] == "failed", entry
    assert "broken on purpose" in entry["error"]
    assert entry["tools"] == []
    # A broken neighbour does not stop other plugins, nor the built-in tools.
    good = plugin_entry(d, "home_assistant")
    assert good is not None and good["status"] == "loaded", good
    now = run(d, "now", {})
    assert now["ok"], now
    assert "iso" in now["result"]
