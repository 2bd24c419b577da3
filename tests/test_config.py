"""config.toml: defaults, environment expansion, and instructive refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from legion import config
from legion.errors import ConfigError
from tests.conftest import run_cli


def test_no_file_means_embedded_defaults() -> None:
    cfg = config.load(None)
    assert cfg.rpc.max_request_bytes == 1024 * 1024
    assert cfg.store.synchronous == "full"
    assert cfg.agents.default_model == "local"


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGION_TEST_MODEL", "smart")
    monkeypatch.delenv("LEGION_TEST_UNSET", raising=False)
    cfg = config.parse(
        {
            "agents": {"default_model": "${LEGION_TEST_MODEL}"},
            "daemon": {
                "agents": ["${LEGION_TEST_UNSET:-defs}", "cost$$", "${LEGION_TEST_MODEL}/x"]
            },
        }
    )
    assert cfg.agents.default_model == "smart"
    assert cfg.daemon.agents == ["defs", "cost$", "smart/x"]


def test_unset_variable_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEGION_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as exc:
        config.parse({"agents": {"default_model": "${LEGION_TEST_UNSET}"}})
    assert exc.value.message == (
        "agents.default_model: environment variable ${LEGION_TEST_UNSET} is not set"
    )
    assert "${LEGION_TEST_UNSET:-fallback}" in (exc.value.hint or "")


@pytest.mark.parametrize(
    ("raw", "message", "hint_part"),
    [
        (
            {"rpc": {"max_conections": 3}},
            "rpc.max_conections: unknown key",
            "did you mean rpc.max_connections",
        ),
        ({"nope": {}}, "nope: unknown key", "valid keys: agents, daemon"),
        (
            {"rpc": {"max_connections": "many"}},
            "rpc.max_connections: expected int, got str",
            "config check",
        ),
        ({"rpc": {"max_connections": 0}}, "rpc.max_connections: expected int >= 1", ""),
        (
            {"log": {"level": "loud"}},
            "log.level: invalid enum value 'loud'",
            "use one of: debug, info, warning, error",
        ),
        ({"events": 5}, "events: expected a table [events], got int", "[events]"),
        ({"daemon": {"shutdown_grace": -1}}, "daemon.shutdown_grace: expected float > 0.0", ""),
    ],
)
def test_bad_values_are_refused_with_the_key_path(
    raw: dict[str, object], message: str, hint_part: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse(raw)
    assert exc.value.message == message
    assert hint_part in (exc.value.hint or "")
    assert exc.value.exit_code == 2


def test_config_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[events]\nretention_days = 7\n[log]\nlevel = "debug"\n')
    res = run_cli("config", "check", str(good), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["valid"] is True
    assert doc["config"]["events"]["retention_days"] == 7
    assert doc["config"]["log"]["level"] == "debug"

    human = run_cli("config", "check", str(good))
    assert human.code == 0 and "events.retention_days = 7.0" in human.out

    bad = tmp_path / "bad.toml"
    bad.write_text("[rpc]\nmax_request_bytes = 10\n")
    res = run_cli("config", "check", str(bad))
    assert res.code == 2
    assert f"{bad}: rpc.max_request_bytes: expected int >= 1024" in res.err
    assert "hint:" in res.err

    broken = tmp_path / "broken.toml"
    broken.write_text("[rpc\n")
    res = run_cli("config", "check", str(broken))
    assert res.code == 2 and "not valid TOML" in res.err and "line 1" in res.err

    res = run_cli("config", "check", str(tmp_path / "missing.toml"))
    assert res.code == 2 and "not found" in res.err


def test_config_check_defaults_to_the_home(tmp_path: Path) -> None:
    res = run_cli("--home", str(tmp_path), "config", "check")
    assert res.code == 0 and "absent: embedded defaults" in res.out
    (tmp_path / "config.toml").write_text("[agents]\ndefault_model = 'fast'\n")
    res = run_cli("config", "check", "--home", str(tmp_path), "--json")
    assert json.loads(res.out)["config"]["agents"]["default_model"] == "fast"


def test_every_key_has_a_default_and_round_trips() -> None:
    cfg = config.load(None)

    def flatten(node: dict[str, object], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in node.items():
            if isinstance(v, dict) and k not in ("aliases", "params", "settings"):
                out |= flatten(v, f"{prefix}{k}.")  # type: ignore[arg-type]
            else:
                out.add(f"{prefix}{k}")
        return out

    flat = flatten(config.to_dict(cfg))
    # [providers.NAME] blocks are the user's own; none exist by default.
    assert flat == {k for k in config.key_paths() if not k.startswith("providers.")}
    with_provider = config.parse({"providers": {"lm": {"kind": "openai_compatible"}}})
    assert with_provider.providers["lm"].concurrency == 4
