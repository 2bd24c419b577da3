"""The model edge holds: a reply that is not a whole completion is a provider
error (retried, then the message fails with the reason), never a `done`
message with an empty or truncated reply; Retry-After of any text is handled;
events stay strict JSON; a cancelled half-open trial frees the circuit.

End to end through the real daemon and the real litellm path to
tests/openai_server.py on loopback, which misbehaves on cue with real bytes:
an HTML page, broken JSON, `data: [DONE]` alone, a stream closed or reset
mid-way. The breaker, the Retry-After parser and the event encoder are also
tried alone.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from legion.daemon import events
from legion.daemon.llm import client
from legion.daemon.llm.breaker import Breaker, BreakerState
from tests.conftest import Daemon, RawClient
from tests.openai_server import OpenAIServer, Reply
from tests.test_sessions import tell

TEXT = "The quick brown fox jumps over the lazy dog."  # 44 characters, 9 chunks of 5


def edge_config(server: OpenAIServer, *, attempts: int = 2, extra: str = "") -> str:
    return (
        f'[providers.lan]\nkind = "openai_compatible"\napi_base = "{server.base}"\n'
        '[models.aliases]\nedge = "lan/tiny"\n'
        f"[models.retry]\nattempts = {attempts}\nbackoff = 0.05\nbackoff_max = 5\n"
        "[models.breaker]\nfailures = 100\n" + extra
    )


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def assert_events_strict(daemon: Daemon) -> int:
    """Every stored event's data parses as strict JSON (no Infinity/NaN); and so
    does what a client is sent. Returns how many events were checked."""
    db = sqlite3.connect(f"file:{daemon.home / 'legion.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, kind, data FROM events").fetchall()
    finally:
        db.close()
    for _id, kind, data in rows:
        try:
            strict_json(data)
        except ValueError as exc:
            raise AssertionError(f"event {_id} ({kind}) is not strict JSON: {data}") from exc
    c = RawClient(daemon.socket, timeout=30)
    try:
        c.send({"jsonrpc": "2.0", "id": 1, "method": "events.list", "params": {"limit": 10_000}})
        while b"\n" not in c.buf:
            c.buf += c.sock.recv(1 << 20)
        strict_json(c.buf.partition(b"\n")[0].decode())
    finally:
        c.close()
    return len(rows)


def events_of(daemon: Daemon, agent: str, kind: str) -> list[dict[str, Any]]:
    return list(daemon.cli_json("events", agent, "--kind", kind, "--limit", "1000"))


def failed(result: dict[str, Any], *reason: str) -> None:
    assert result["status"] == "failed", result
    assert not result["reply"], result
    for part in reason:
        assert part in result["error"], result["error"]


def test_a_reply_that_is_not_a_completion_is_retried_then_fails(make_daemon: Any) -> None:
    bad = {
        "an HTML page": Reply(
            body=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
        ),
        "broken JSON": Reply(
            body=b'{"choices": [{"delta": {"content": "Hel', content_type="application/json"
        ),
        # A whole, valid non-stream completion is still not the stream that was asked for.
        "a non-stream body": Reply(
            body=json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "tiny",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "hi"},
                        }
                    ],
                }
            ).encode(),
            content_type="application/json",
        ),
        "an empty stream": Reply(empty=True),
    }
    with OpenAIServer() as server:
        daemon: Daemon = make_daemon(config=edge_config(server))
        daemon.cli("spawn", "eve", "--model", "edge")
        for what, reply in bad.items():
            server.replies.extend([reply, reply])
            asked = len(server.requests)
            result = tell(daemon, "eve", f"try {what}")
            failed(result, "no model could answer", "not a completion")
            assert len(server.requests) == asked + 2, f"{what}: retried once (attempts = 2)"
        retries = events_of(daemon, "eve", "model.retry")
        assert len(retries) == len(bad)
        assert all("not a completion" in r["data"]["error"] for r in retries)
        # When the provider recovers, the retry answers.
        server.replies.extend([bad["an HTML page"], Reply("recovered")])
        result = tell(daemon, "eve", "once more")
        assert result["status"] == "done" and result["reply"] == "recovered"
        assert [m["status"] for m in daemon.cli_json("messages", "eve")].count("failed") == 4
        assert assert_events_strict(daemon) > 0


def test_a_runaway_reply_is_cut_off_at_its_bound_and_fails(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        daemon: Daemon = make_daemon(
            config=edge_config(
                server, extra="[models]\nmax_reply_chars = 1000\nmax_tool_calls = 3\n"
            )
        )
        daemon.cli("spawn", "rex", "--model", "edge")
        runaway = Reply("all work and no play " * 200)  # 4,200 characters
        server.replies.extend([runaway, runaway])
        failed(
            tell(daemon, "rex", "tell me everything"), "cut off by Legion", "models.max_reply_chars"
        )
        calls = [{"name": "now", "arguments": {}} for _ in range(4)]
        server.replies.extend([Reply(tool_calls=calls), Reply(tool_calls=calls)])
        failed(tell(daemon, "rex", "call a lot"), "models.max_tool_calls")
        # Within the bounds, the same provider answers as usual.
        server.replies.append(Reply("short and sweet"))
        assert tell(daemon, "rex", "briefly")["reply"] == "short and sweet"
        # Nothing of the cut replies was kept as an answer, and the events stayed small.
        deltas = events_of(daemon, "rex", "model.delta")
        assert sum(len(e["data"]["text"]) for e in deltas) < 3 * 1000 + 100


def test_a_stream_cut_or_reset_midway_is_never_stored_as_a_reply(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        daemon: Daemon = make_daemon(config=edge_config(server))
        daemon.cli("spawn", "cut", "--model", "edge")
        # Closed after 4 chunks (20 of 44 characters): the body simply ends (FIN).
        closed = Reply(TEXT, cut=4)
        server.replies.extend([closed, closed])
        failed(
            tell(daemon, "cut", "one"),
            "ended before the model finished",
            "no finish reason after 20 characters",
        )
        # Reset (RST) mid-way through a chunked body.
        reset = Reply(TEXT, cut=4, reset=True, chunked=True)
        server.replies.extend([reset, reset])
        failed(tell(daemon, "cut", "two"), "no model could answer")
        errors = events_of(daemon, "cut", "model.error")
        assert len(errors) == 2 and all(e["data"]["retryable"] for e in errors)
        # A cut stream, then a whole one: the reply is the whole text, never the part.
        server.replies.extend([Reply(TEXT, cut=2, chunked=True), Reply(TEXT, chunked=True)])
        result = tell(daemon, "cut", "three")
        assert result["status"] == "done" and result["reply"] == TEXT
        responses = events_of(daemon, "cut", "model.response")
        assert [r["data"]["text"] for r in responses] == [TEXT]
        assert responses[0]["data"]["finish_reason"] == "stop"
        assert_events_strict(daemon)


def test_empty_text_with_a_finish_reason_is_a_valid_completion(make_daemon: Any) -> None:
    # Some models do answer with nothing, and say they are done: that is an
    # answer (the session decides what an empty one means), not a provider error.
    with OpenAIServer() as server:
        daemon: Daemon = make_daemon(config=edge_config(server))
        daemon.cli("spawn", "mute", "--model", "edge")
        server.replies.append(Reply(""))
        result = tell(daemon, "mute", "say nothing")
        assert result["status"] != "failed", result
        assert len(server.requests) == 1  # not retried
        assert events_of(daemon, "mute", "model.retry") == []
        [response] = events_of(daemon, "mute", "model.response")
        assert response["data"]["text"] == "" and response["data"]["finish_reason"] == "stop"


def test_retry_after_of_any_text_is_handled_and_events_stay_json(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        daemon: Daemon = make_daemon(config=edge_config(server, attempts=5))
        daemon.cli("spawn", "ra", "--model", "edge")
        # Infinity (and a number that overflows to it): longer than we will wait.
        for forever in ("Infinity", "1e400"):
            server.replies.append(Reply(status=429, retry_after=forever))
            failed(
                tell(daemon, "ra", f"wait {forever}?"),
                "asked to wait forever",
                "models.retry.backoff_max",
            )
        # Longer than backoff_max (5 s): the target is given up too, with the figure.
        server.replies.append(Reply(status=503, retry_after="86400"))
        failed(tell(daemon, "ra", "wait a day?"), "asked to wait 86400s")
        # Nonsense says nothing: our own backoff applies and the retry answers.
        server.replies.extend([Reply(status=429, retry_after=v) for v in ("NaN", "-5", "soon")])
        server.replies.append(Reply("patience"))
        result = tell(daemon, "ra", "and now?")
        assert result["status"] == "done" and result["reply"] == "patience"
        waits = [r["data"]["wait_s"] for r in events_of(daemon, "ra", "model.retry")]
        assert len(waits) == 3 and all(0 < w <= 5 and math.isfinite(w) for w in waits)
        gave_up = [e["data"] for e in events_of(daemon, "ra", "model.error")]
        assert [e["retry_after"] for e in gave_up] == [None, None, 86400.0]
        assert all("given up" in e["note"] for e in gave_up)
        assert assert_events_strict(daemon) > 0
        assert daemon.rpc("daemon.ping")["result"] == {"pong": True}


def wait_for_circuit(daemon: Daemon, state: str, timeout: float = 20) -> dict[str, Any]:
    # The breaker's cool-down is a clock, not an event: poll `info` until it turns.
    deadline = time.monotonic() + timeout
    while True:
        circuit: dict[str, Any] = daemon.rpc("daemon.info")["result"]["models"]["providers"]["lan"][
            "circuit"
        ]
        if circuit["state"] == state:
            return circuit
        assert time.monotonic() < deadline, f"circuit still {circuit} after {timeout}s"
        time.sleep(0.05)


def test_a_cancelled_half_open_trial_lets_the_provider_be_asked_again(make_daemon: Any) -> None:
    with OpenAIServer() as server:
        cfg = edge_config(server, attempts=1, extra="failures = 1\ncooldown = 0.3\n").replace(
            "[models.breaker]\nfailures = 100\n", "[models.breaker]\n"
        )
        daemon: Daemon = make_daemon(config=cfg)
        daemon.cli("spawn", "tri", "--model", "edge")
        server.replies.append(Reply(status=500))
        failed(tell(daemon, "tri", "open it"), "no model could answer")
        wait_for_circuit(daemon, "half_open")
        # The trial call hangs at the provider; the session is interrupted meanwhile.
        server.replies.append(Reply("never sent", hold=True))
        sent = daemon.cli_json("tell", "tri", "the trial")
        assert server.holding.wait(30), "the trial call never reached the provider"
        assert daemon.cli_json("interrupt", "tri")["interrupted"] is True
        assert (
            daemon.rpc("messages.wait", {"message_id": sent["message_id"], "timeout": 30})[
                "result"
            ]["status"]
            != "done"
        )
        circuit = wait_for_circuit(daemon, "half_open")
        assert circuit["trial_running"] is False  # the cancelled trial ended
        # So the next call is the new trial: the provider is asked again, and answers.
        asked = len(server.requests)
        server.replies.append(Reply("back again"))
        result = tell(daemon, "tri", "are you there?")
        assert result["status"] == "done" and result["reply"] == "back again"
        assert len(server.requests) == asked + 1
        assert wait_for_circuit(daemon, "closed")["consecutive_failures"] == 0


def test_litellm_is_warmed_after_ready_without_any_message(daemon: Daemon) -> None:
    deadline = time.monotonic() + 60
    while not daemon.rpc("daemon.info")["result"]["models"]["litellm_loaded"]:
        assert time.monotonic() < deadline, "litellm was not warmed within 60 s of READY"
        time.sleep(0.1)
    assert "litellm ready" in daemon.log()
    daemon.cli("spawn", "w")
    assert tell(daemon, "w", "hi")["status"] == "done"


# -- the parts alone ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_trial_ends_on_every_outcome() -> None:
    clock = Clock()
    b = Breaker("p", failures=2, cooldown=10, cooldown_max=40, clock=clock)
    for _ in range(2):
        permit = b.admit()
        assert permit is not None and not permit.trial
        b.failure(permit, "boom")
    assert b.state is BreakerState.OPEN and b.admit() is None and b.retry_in() == 10
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN
    trial = b.admit()
    assert trial is not None and trial.trial
    assert b.admit() is None  # one trial at a time
    b.release(trial)  # cancelled: no verdict, but the slot is free again
    assert b.state is BreakerState.HALF_OPEN and not b.trial_running
    trial = b.admit()
    assert trial is not None and trial.trial
    b.failure(trial, "still down")
    b.release(trial)  # after a verdict, release changes nothing
    assert b.state is BreakerState.OPEN and b.cooldown == 20
    clock.now += 20
    trial = b.admit()
    assert trial is not None
    b.success(trial)
    b.release(trial)
    assert b.state is BreakerState.CLOSED and b.cooldown == 10 and b.consecutive == 0


def test_breaker_a_late_ordinary_failure_does_not_end_the_trial() -> None:
    clock = Clock()
    b = Breaker("p", failures=1, cooldown=5, cooldown_max=60, clock=clock)
    early = b.admit()  # admitted while closed, answers late
    first = b.admit()
    assert early is not None and first is not None
    b.failure(first)
    clock.now += 5
    trial = b.admit()
    assert trial is not None and trial.trial
    b.failure(early)
    assert b.trial_running and b.cooldown == 5  # still the trial's to decide
    b.success(trial)
    assert b.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("0.2", 0.2),
        ("7", 7.0),
        ("Infinity", math.inf),
        ("inf", math.inf),
        ("1e400", math.inf),
        ("-5", None),
        ("NaN", None),
        ("soon", None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: no wait
    ],
)
def test_retry_after_parsing(raw: str, seconds: float | None) -> None:
    assert client._parse_retry_after(raw) == seconds


def test_backoff_gives_up_on_an_infinite_or_too_long_retry_after() -> None:
    assert client._backoff(1, 0.5, 30, math.inf) is None
    assert client._backoff(1, 0.5, 30, 31) is None
    assert client._backoff(1, 0.5, 30, 3) == 3
    wait = client._backoff(3, 0.5, 30, None)
    assert wait is not None and 1.0 <= wait <= 2.0


def test_event_data_is_always_strict_json() -> None:
    data = {"retry_after": math.inf, "nested": [{"x": -math.inf}, (math.nan, 1.5)], "ok": 2}
    text, clean = events.encode(data)
    assert strict_json(text) == {"retry_after": None, "nested": [{"x": None}, [None, 1.5]], "ok": 2}
    assert clean == strict_json(text)  # subscribers get what was stored
    same = {"a": 1.5, "b": "x"}
    assert events.encode(same) == ('{"a":1.5,"b":"x"}', same)
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts TEXT, agent_id TEXT, kind TEXT, "
        "data TEXT, caused_by INTEGER, source TEXT)"
    )
    ev = events.insert(db, None, "model.error", {"retry_after": math.inf})
    assert ev.data == {"retry_after": None}
    # A row written before events were strict still reads, as null.
    db.execute(
        "INSERT INTO events (ts, kind, data, source) VALUES ('t', 'old', "
        "'{\"retry_after\":Infinity}', '')"
    )
    rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
    assert [events.from_row(r).data for r in rows] == [{"retry_after": None}] * 2


def test_every_caller_awaits_one_litellm_import(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    gate = threading.Event()
    module = object()

    def slow_import() -> Any:
        calls.append(1)
        gate.wait(10)
        return module

    monkeypatch.setattr(client, "litellm_module", slow_import)
    monkeypatch.setattr(client, "_import", {})

    async def main() -> None:
        got: list[Any] = []

        async def take() -> None:
            got.append(await client.import_litellm())

        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as impatient:
                impatient.cancel()  # a waiter cancelled at once must not cancel the import
                await client.import_litellm()
            for _ in range(3):
                tg.start_soon(take)
            gate.set()
        assert got == [module] * 3

    anyio.run(main)
    assert calls == [1]


def test_model_error_text_is_redacted(tmp_path: Path) -> None:
    from legion.config import parse

    key = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2
    cfg = parse(
        {
            "providers": {
                "p": {
                    "kind": "openai_compatible",
                    "api_base": "http://x/v1",
                    "api_key": "hunter2-is-long-enough",
                }
            }
        },
        base_dir=tmp_path,
    )
    models = client.ModelClient(cfg)
    text = models.describe_error(
        RuntimeError(
            f"AuthenticationError: Incorrect API key provided: {key}; also hunter2-is-long-enough"
        )
    )
    assert key not in text and "hunter2-is-long-enough" not in text
    assert text.count("[redacted]") == 2
