"""Secrets stay out of what Legion shows: `config check`, `info`, events and logs.

The daemon tests use a real OpenAI-compatible server that refuses the key with
a 401 whose message quotes it back, as some providers and proxies do: the
text then travels through litellm's error, the breaker's `last_error` (in
`info`), the message's failure reason (in events) and the log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from legion import config
from legion.daemon.log import RedactSecrets
from legion.redact import MIN_SECRET_LEN, REDACTED, Redactor, config_view, secrets_of
from tests.conftest import Daemon, run_cli
from tests.openai_server import OpenAIServer, Reply
from tests.test_sessions import tell

ENV_KEY = "envkey-7f3a9c1e5b2d4a6f8e0c"  # no vendor shape: only the known value can match
LITERAL_KEY = "sk-literal-Q2w3E4r5T6y7U8i9O0p1"
HEADER_KEY = "hdrsecret-55aa66bb77cc"
HASS = "hass-4b7e1d9a2c6f"


def _toml(api_base: str = "http://127.0.0.1:9/v1") -> str:
    return (
        f'[providers.envp]\nkind = "openai_compatible"\napi_base = "{api_base}"\n'
        'api_key = "${LG_TEST_API_KEY}"\n'
        f'[providers.litp]\nkind = "openai_compatible"\napi_base = "{api_base}"\n'
        f'api_key = "{LITERAL_KEY}"\n'
        f'params = {{extra_headers = {{"X-Api-Key" = "{HEADER_KEY}"}}}}\n'
        "[plugins.settings.home_assistant]\n"
        'url = "http://hass.local/api?access=${LG_TEST_HASS_TOKEN}"\n'
        'token = "${LG_TEST_HASS_TOKEN:-fallback-secret-123}"\n'
    )


ENV = {"LG_TEST_API_KEY": ENV_KEY, "LG_TEST_HASS_TOKEN": HASS}


def _clean(text: str) -> None:
    for secret in (ENV_KEY, LITERAL_KEY, HEADER_KEY, HASS, "fallback-secret-123"):
        assert secret not in text, f"{secret!r} shown in:\n{text}"


# --- the Redactor itself -------------------------------------------------------


def test_known_values_and_credential_shapes_are_replaced_in_text() -> None:
    r = Redactor(["correct-horse-battery", "correct-horse"])
    out = r.text("auth failed for correct-horse-battery (was correct-horse)")
    # The longer secret is replaced whole, not left with a tail showing.
    assert out == f"auth failed for {REDACTED} (was {REDACTED})"
    shaped = (
        "key sk-proj-abcdefghijklmnopqrstuv and sk-ant-api03-abcdefghijklmnop, "
        "Authorization: Bearer eyJhbGciOi.payload.sig, slack xoxb-1234567890-abcdef, "
        "github ghp_abcdefghijklmnopqrstuvwx1234"
    )
    out = Redactor().text(shaped)
    for leaked in ("abcdefghijklmnopqrstuv", "api03", "eyJhbGciOi", "1234567890", "ghp_"):
        assert leaked not in out, out
    assert "Bearer [redacted]" in out
    # Ordinary text that merely resembles a prefix is left alone.
    plain = "task-7 asked sk-1 about risk-free tokens; Bearer of bad news"
    assert Redactor().text(plain) == plain


def test_short_secrets_are_hidden_under_their_keys_but_not_searched_for_in_text() -> None:
    r = Redactor(["pw12", "longenough-secret"])
    assert len("pw12") < MIN_SECRET_LEN
    # Replacing "pw12" everywhere would mangle text and hint at the password.
    assert r.text("pw12 is in this sentence") == "pw12 is in this sentence"
    shown = r.value({"password": "pw12", "note": "uses longenough-secret"})
    assert shown == {"password": REDACTED, "note": f"uses {REDACTED}"}


def test_value_is_a_deep_copy_with_secret_named_keys_blanked() -> None:
    original: dict[str, Any] = {
        "api_key": "whatever",
        "hass_token": "abc",
        "X-Api-Key": "k",
        "Authorization": "t",
        "unset_key": None,
        "empty_token": "",
        "prompt_tokens": 20,
        "max_tokens": 100,
        "nested": [{"client_secret": "s", "url": "http://x/?q=known-secret-value"}],
        "tuple": ("known-secret-value", 3),
    }
    shown = Redactor(["known-secret-value"]).value(original)
    assert shown == {
        "api_key": REDACTED,
        "hass_token": REDACTED,
        "X-Api-Key": REDACTED,
        "Authorization": REDACTED,
        # Unset secrets stay visible as unset; token *counts* are not secrets.
        "unset_key": None,
        "empty_token": "",
        "prompt_tokens": 20,
        "max_tokens": 100,
        "nested": [{"client_secret": REDACTED, "url": f"http://x/?q={REDACTED}"}],
        "tuple": (REDACTED, 3),
    }
    assert original["api_key"] == "whatever"
    assert original["nested"][0]["url"].endswith("known-secret-value")


def test_secrets_of_collects_keys_settings_and_secret_environment(
    monkeypatch: Any, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_toml())
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = config.load(path)
    assert cfg.sources["providers.envp.api_key"] == "${LG_TEST_API_KEY}"
    env = {**ENV, "HOME": "/home/someone", "PATH": "/usr/bin", "OTHER_SERVICE_TOKEN": "tok-999999"}
    found = secrets_of(cfg, env)
    assert {ENV_KEY, LITERAL_KEY, HEADER_KEY, HASS, "tok-999999"} <= found
    assert "/home/someone" not in found and "/usr/bin" not in found
    # The internal record of templates is neither a key nor part of the output.
    assert "sources" not in config.to_dict(cfg)
    assert not any(k.startswith("sources") for k in config.key_paths())


def test_config_view_shows_the_variable_a_secret_came_from(
    monkeypatch: Any, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_toml())
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    shown = config_view(config.load(path))
    assert shown["providers"]["envp"]["api_key"] == "${LG_TEST_API_KEY}"
    assert shown["providers"]["litp"]["api_key"] == REDACTED
    assert shown["providers"]["litp"]["params"]["extra_headers"]["X-Api-Key"] == REDACTED
    hass = shown["plugins"]["settings"]["home_assistant"]
    # The default after :- could itself be a literal key: hidden too.
    assert hass["token"] == "${LG_TEST_HASS_TOKEN:-[redacted]}"
    assert hass["url"] == f"http://hass.local/api?access={REDACTED}"
    # Everything that is not a secret is shown as it is.
    assert shown["providers"]["envp"]["api_base"] == "http://127.0.0.1:9/v1"
    _clean(json.dumps(shown))


def test_the_log_processor_redacts_fields_exceptions_and_objects() -> None:
    proc = RedactSecrets(Redactor([ENV_KEY]))
    out = proc(
        None,
        "error",
        {
            "event": f"call failed with {ENV_KEY}",
            "api_key": "anything",
            "error": RuntimeError(f"401: bad key {ENV_KEY}"),
            "count": 3,
            "exception": f"Traceback...\nAuthenticationError: {ENV_KEY}",
        },
    )
    assert out == {
        "event": f"call failed with {REDACTED}",
        "api_key": REDACTED,
        "error": f"401: bad key {REDACTED}",
        "count": 3,
        "exception": f"Traceback...\nAuthenticationError: {REDACTED}",
    }


# --- through the CLI and the daemon ----------------------------------------------


def test_config_check_never_prints_a_key_human_or_json(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_toml())
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEGION_")}, **ENV}
    human = run_cli("config", "check", str(path), env=env)
    assert human.code == 0, human
    _clean(human.out + human.err)
    assert "'${LG_TEST_API_KEY}'" in human.out and REDACTED in human.out
    as_json = run_cli("config", "check", str(path), "--json", env=env)
    assert as_json.code == 0, as_json
    _clean(as_json.out + as_json.err)
    doc = json.loads(as_json.out)
    assert doc["config"]["providers"]["envp"]["api_key"] == "${LG_TEST_API_KEY}"
    assert doc["config"]["providers"]["litp"]["api_key"] == REDACTED


def test_a_provider_that_echoes_the_key_leaks_it_nowhere(make_daemon: Any) -> None:
    with OpenAIServer() as server:

        def refusal(key: str) -> Reply:
            body = {
                "error": {
                    "message": f"Incorrect API key provided: {key}. You can find "
                    "your API key at https://example.invalid/keys",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
            return Reply(status=401, body=json.dumps(body).encode())

        server.replies.extend([refusal(ENV_KEY), refusal(LITERAL_KEY)] * 4)
        cfg = (
            _toml(server.base) + '[models.aliases]\nviaenv = "envp/tiny"\n'
            'literal = "litp/tiny"\n[models.retry]\nattempts = 1\nbackoff = 0.05\n'
            '[log]\nlevel = "debug"\nformat = "json"\n'
        )
        daemon: Daemon = make_daemon(config=cfg, env=ENV)
        daemon.cli("spawn", "ann", "--model", "viaenv")
        daemon.cli("spawn", "bob", "--model", "literal")
        for agent in ("ann", "bob"):
            assert tell(daemon, agent, "hello")["status"] == "failed"
        assert len(server.requests) >= 2  # the provider really was asked, and refused
        info = daemon.cli("info", "--json")
        assert info.code == 0, info
        _clean(info.out)
        providers = json.loads(info.out)["models"]["providers"]
        assert REDACTED in (providers["envp"]["circuit"]["last_error"] or ""), providers
        events = daemon.cli("events", "--limit", "1000", "--json")
        assert events.code == 0, events
        _clean(events.out)
        assert REDACTED in events.out
        human = daemon.cli("events", "ann", "--limit", "1000")
        _clean(human.out)
        daemon.stop()
        log = daemon.log()
        assert "session failed" in log, log
        _clean(log)


def test_secrets_in_events_and_log_lines_from_anywhere_are_redacted(make_daemon: Any) -> None:
    # Not only the model client's errors: any event payload and any log line is
    # redacted where it is written (a person pasting a key, a method's error).
    daemon: Daemon = make_daemon(config=_toml(), env=ENV)
    daemon.cli("spawn", "cy")
    assert tell(daemon, "cy", f"remember {ENV_KEY} and {LITERAL_KEY}")["status"] == "done"
    c = daemon.client()
    try:
        # A notification has no reply, so its failure is logged; the error
        # message quotes the unknown agent id it was given.
        c.send({"jsonrpc": "2.0", "method": "agents.tell", "params": {"id": HASS, "text": "x"}})
        assert c.call("daemon.ping")["result"] == {"pong": True}
    finally:
        c.close()
    received = [
        e
        for e in daemon.cli_json("events", "cy", "--limit", "1000")
        if e["kind"] == "message.received"
    ]
    assert received and received[0]["data"]["text"] == f"remember {REDACTED} and {REDACTED}"
    daemon.stop()
    log = daemon.log()
    assert "notification failed" in log, log
    _clean(log)
