"""The composition root and the one delivery path, in-process.

An in-process daemon is built through `root.open_legion` (no lock, no
socket, no signals), and a message delivered by each path (a person's tell,
an agent's message, a schedule's fire, a watcher's fire, a task assigned to
another agent) is handled by its agent: every path wakes the runner through
the bus, none by calling the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from legion import config
from legion.daemon.agents.inbox import Message
from legion.daemon.root import Legion, open_legion
from legion.paths import Paths

pytestmark = pytest.mark.anyio

WAIT = 30.0


@pytest.fixture
async def legion(tmp_path: Path) -> AsyncIterator[Legion]:
    paths = Paths(tmp_path / "home", tmp_path / "home" / "daemon.sock")
    cfg = config.parse(
        {"agents": {"default_model": "mock/echo"}, "tools": {"sandbox": {"allow_weak": True}}}
    )
    async with open_legion(paths, cfg) as running:
        await running.agents.spawn("alice", model="mock/echo")
        await running.agents.spawn("bob", model="mock/echo")
        yield running


async def _next_message(legion: Legion, agent: str, start: object) -> Message:
    """The next message delivered to `agent` after `start()` runs, once it was handled."""
    sub = legion.bus.subscribe(agent=agent, kinds=["message.received"])
    try:
        await start()  # type: ignore[operator]
        with anyio.fail_after(WAIT):
            ev = await sub.get()
        assert ev is not None and not hasattr(ev, "missed")
        return await legion.inbox.wait(ev.data["message_id"], within=WAIT)  # type: ignore[union-attr]
    finally:
        legion.bus.unsubscribe(sub)


async def test_an_in_process_daemon_serves_without_a_socket(legion: Legion) -> None:
    msg, _ev = await legion.inbox.tell("bob", "hello there")
    done = await legion.inbox.wait(msg.id, within=WAIT)
    assert done.status == "done" and done.reply
    # Nothing listens: the in-process daemon never bound its socket.
    assert not legion.paths.socket.exists()
    assert legion.runtime.sessions_run >= 1


async def test_a_tell_wakes_its_agent(legion: Legion) -> None:
    async def tell() -> None:
        await legion.inbox.tell("bob", "are you there?")

    msg = await _next_message(legion, "bob", tell)
    assert msg.status == "done" and msg.sender == "user"


async def test_an_agent_message_wakes_its_agent(legion: Legion) -> None:
    async def send() -> None:
        await legion.messaging.message("alice", "bob", "please summarise", hops=0)

    msg = await _next_message(legion, "bob", send)
    assert msg.final and msg.sender == "agent:alice"


async def test_a_schedule_fire_wakes_its_agent(legion: Legion) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    async def plan() -> None:
        await legion.scheduler.add("bob", "once", at, prompt="the nightly report")

    msg = await _next_message(legion, "bob", plan)
    assert msg.final and msg.sender.startswith("cron:") and "nightly report" in msg.body


async def test_a_watcher_fire_wakes_its_agent(legion: Legion, tmp_path: Path) -> None:
    watched = tmp_path / "inbox-dir"
    watched.mkdir()
    sub = legion.bus.subscribe(agent="bob", kinds=["message.received"])
    try:
        await legion.watchers.add(
            "bob", "file_watch", {"path": str(watched), "debounce_ms": 0}, min_interval=0
        )
        # inotify is armed by the watcher's own task: write until a fire is delivered.
        ev = None
        with anyio.fail_after(WAIT):
            for i in range(1000):
                (watched / f"f{i}.txt").write_text("new")
                with anyio.move_on_after(0.5):
                    ev = await sub.get()
                if ev is not None:
                    break
        assert ev is not None and not hasattr(ev, "missed")
        msg = await legion.inbox.wait(ev.data["message_id"], within=WAIT)  # type: ignore[union-attr]
    finally:
        legion.bus.unsubscribe(sub)
    assert msg.final and msg.sender.startswith("watcher:")


async def test_a_task_nudge_wakes_its_agent(legion: Legion) -> None:
    async def assign() -> None:
        await legion.board.create("alice", "review the draft", owner="bob", source="test")

    msg = await _next_message(legion, "bob", assign)
    assert msg.final and msg.sender == "legion:tasks" and "review the draft" in msg.body


async def test_an_error_inside_an_in_process_daemon_comes_out_as_it_is(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home", tmp_path / "home" / "daemon.sock")
    with pytest.raises(LookupError, match="the caller's own"):
        async with open_legion(paths, config.parse({})):
            raise LookupError("the caller's own")
    # Closed cleanly: the same home opens again at once.
    async with open_legion(paths, config.parse({})) as again:
        assert again.agents.agents == {}
