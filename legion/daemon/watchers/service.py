"""Watchers: passive monitors that wake an agent only when their trigger fires.

Each watcher runs as a task of its own: it observes (polls, or for files,
waits on inotify), evaluates its trigger against the new and the previous
observation, and acts when the trigger fires:

- `wake`: a message to the agent's inbox (an automatic trigger, within the
  agent's in-flight cap);
- `message:AGENT`: the same, to another agent;
- `task:LANE`: a task on the agent's board, in that lane;
- `tool:NAME`: a kernel tool run directly, arguments from `action_args`
  (`{field}` is replaced by the observation's value): no model is called;
- `silent`: only the `watch.fired` event.

`min_interval` keeps a flapping source from flooding the agent: fires closer
together than that are suppressed (counted, and reported with the next fire).

States: a paused agent's watchers keep observing and their messages
accumulate in its inbox, to be handled on resume; a stopped agent's watchers
do not run at all; destroying the agent removes them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.events import Event, insert, now_iso
from legion.daemon.llm.types import ToolCall
from legion.daemon.tools.base import ToolContext
from legion.daemon.watchers import kinds, triggers
from legion.errors import InvalidParams, NotFound, close_matches
from legion.plugin import WatcherKind

if TYPE_CHECKING:
    from legion.daemon.services import Services

log = structlog.get_logger("legion.watchers")
ACTION = re.compile(r"^(wake|silent|message:[a-z][a-z0-9_-]{0,62}|task:[\w .-]{0,64}|"
                    r"tool:[a-z_][a-z0-9_]{0,63})$")
PREVIEW = 1500
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


async def _unused(cfg: Any) -> dict[str, Any]:
    raise AssertionError("this kind is not polled")


def check_action(action: str) -> str:
    if not ACTION.match(action):
        raise InvalidParams(f"invalid action {action!r}",
                            hint="use wake, silent, message:AGENT, task:LANE or tool:NAME",
                            kind="invalid_action")
    return action


def fill(value: Any, obs: dict[str, Any]) -> Any:
    """`{field}` placeholders in tool arguments, from the observation."""
    if isinstance(value, str):
        def one(m: re.Match[str]) -> str:
            found = triggers.lookup(obs, m.group(1))
            return "" if found is None else str(found)  # 0 and false are values too

        return PLACEHOLDER.sub(one, value)
    if isinstance(value, dict):
        return {k: fill(v, obs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, obs) for v in value]
    return value


class Watchers:
    def __init__(self, services: Services, plugin_kinds: dict[str, WatcherKind] | None = None
                 ) -> None:
        self.services = services
        # Plugin kinds (the built-in pollers among them); cmd_watch runs in the
        # sandbox and file_watch streams from inotify, so both are wired here.
        self.kinds: dict[str, WatcherKind] = dict(plugin_kinds or {})
        self.kinds["cmd_watch"] = WatcherKind("cmd_watch", kinds.CmdWatch, _unused,
                                              kinds.DEFAULT_TRIGGERS["cmd_watch"])
        self.kinds["file_watch"] = WatcherKind("file_watch", kinds.FileWatch, _unused,
                                               kinds.DEFAULT_TRIGGERS["file_watch"])
        self._tg: Any = None
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._changes: Any = None
        self.observations = 0
        self.fires = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1_000_000)
        self._changes = send
        async with anyio.create_task_group() as tg, receive:
            self._tg = tg
            for row in await self.services.store.fetchall("SELECT * FROM watchers ORDER BY id"):
                self._start(row)
            self.services.agents.listeners.append(self._on_change)
            task_status.started()
            async for action, agent in receive:
                await self._apply(action, agent)

    def _on_change(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        if action in ("stop", "resume", "destroy"):
            self._changes.send_nowait((action, agent_id))

    async def _apply(self, action: str, agent: str) -> None:
        rows = await self.services.store.fetchall("SELECT * FROM watchers WHERE agent_id = ?",
                                                  (agent,))
        for row in rows:
            self._halt(row["id"])
            if action == "resume":
                self._start(row)
        if action == "destroy":
            await self.services.store.writer.run(
                lambda db: db.execute("DELETE FROM watchers WHERE agent_id = ?", (agent,)))

    def _start(self, row: Any) -> None:
        rec = self.services.agents.agents.get(row["agent_id"])
        if rec is None or rec.state is State.STOPPED or row["id"] in self._scopes:
            return
        self._tg.start_soon(self._watch, dict(row))

    def _halt(self, wid: int) -> None:
        scope = self._scopes.pop(wid, None)
        if scope is not None:
            scope.cancel()

    # -- one watcher ----------------------------------------------------------------

    async def _watch(self, row: dict[str, Any]) -> None:
        wid = row["id"]
        with anyio.CancelScope() as scope:
            self._scopes[wid] = scope
            state = {"previous": None, "last_fire": 0.0, "suppressed": 0}
            # Nothing a watcher meets may escape its own task: it reports and ends.
            try:
                raw = json.loads(row["config"])
                raw.pop("action_args", None)
                cfg = kinds.check_config(row["kind"], raw, self.kinds)
                trigger = triggers.parse(row["trigger"])
                if isinstance(cfg, kinds.FileWatch):
                    stop = asyncio.Event()
                    try:
                        async for obs in kinds.file_changes(cfg, stop):
                            await self._consider(row, trigger, obs, state)
                    finally:
                        stop.set()
                    return
                poll = self.kinds[row["kind"]].poll
                if isinstance(cfg, kinds.CmdWatch):
                    poll = functools.partial(self.run_command, row["agent_id"])
                while True:
                    obs = await poll(cfg)
                    await self._consider(row, trigger, obs, state)
                    await anyio.sleep(row["interval"])
            except Exception as exc:
                log.exception("watcher failed", watcher=wid)
                await self.services.bus.emit(row["agent_id"], "watch.error", {
                    "watcher": wid, "error": str(exc)[:300]}, source=f"watcher:{wid}")
        self._scopes.pop(wid, None)

    async def _consider(self, row: dict[str, Any], trigger: triggers.Trigger,
                        obs: dict[str, Any], state: dict[str, Any]) -> None:
        self.observations += 1
        previous = state["previous"]
        state["previous"] = obs
        # A poller's first observation is the baseline: there is nothing to compare.
        baseline = previous is None and row["kind"] != "file_watch"
        if baseline or not trigger.evaluate(obs, previous):
            return
        now = time.monotonic()
        if now - state["last_fire"] < row["min_interval"]:
            state["suppressed"] += 1
            return
        state["last_fire"] = now
        suppressed, state["suppressed"] = state["suppressed"], 0
        await self._act(row, obs, suppressed)

    async def _act(self, row: dict[str, Any], obs: dict[str, Any], suppressed: int) -> None:
        self.fires += 1
        wid, agent, action = row["id"], row["agent_id"], row["action"]
        shown = json.dumps(obs, default=str)
        shown = shown if len(shown) <= PREVIEW else shown[:PREVIEW] + "…"

        def record(db: Any) -> Event:
            db.execute("UPDATE watchers SET last_fired_at = ? WHERE id = ?", (now_iso(), wid))
            return insert(db, agent, "watch.fired", {
                "watcher": wid, "kind": row["kind"], "trigger": row["trigger"],
                "action": action, "observation": shown, "suppressed_before": suppressed},
                source=f"watcher:{wid}")

        fired = await self.services.store.writer.run(record, on_commit=self.services.bus.deliver)
        text = (f"[watcher {wid} {row['kind']}] `{row['trigger']}` fired"
                + (f" ({suppressed} more fires were suppressed by min_interval)"
                   if suppressed else "") + f": {shown}")
        runtime = self.services.runtime
        if action == "wake":
            await runtime.deliver_automatic(agent, f"watcher:{wid}", text,
                                            source=f"watcher:{wid}", caused_by=fired.id)
        elif action.startswith("message:"):
            target = action.split(":", 1)[1]
            if target in self.services.agents.agents:
                await runtime.deliver_automatic(target, f"watcher:{wid}", f"[from {agent}] "
                                                + text, source=f"watcher:{wid}",
                                                caused_by=fired.id)
        elif action.startswith("task:"):
            await self.services.board.create(
                agent, f"watcher {wid}: {row['trigger']}", body=text,
                lane=action.split(":", 1)[1], source=f"watcher:{wid}", caused_by=fired.id)
        elif action.startswith("tool:"):
            await self._run_tool(row, obs, fired)

    async def _run_tool(self, row: dict[str, Any], obs: dict[str, Any], fired: Event) -> None:
        name = row["action"].split(":", 1)[1]
        args = fill(json.loads(row["config"]).get("action_args", {}), obs)
        call = ToolCall(id=f"watcher-{row['id']}", name=name, arguments=json.dumps(args))
        ctx = ToolContext(agent_id=row["agent_id"], session_id=0,
                          services=self.services, call_event=fired.id)
        result = await self.services.tools.run(call, ctx, self.services.config.guards.tool_timeout)
        result_ok, content = result.ok, result.content
        await self.services.bus.emit(row["agent_id"], "watch.tool", {
            "watcher": row["id"], "tool": name, "arguments": args, "ok": result_ok,
            "result": content[:PREVIEW]}, caused_by=fired.id, source=f"watcher:{row['id']}")

    async def run_command(self, agent: str, cfg: kinds.CmdWatch) -> dict[str, Any]:
        """A cmd_watch observation, from the sandbox (limits, scrubbed environment,
        the agent's working directory unless `cwd` says otherwise)."""
        argv = shlex.split(cfg.command) if isinstance(cfg.command, str) else list(cfg.command)
        try:
            return await self.services.sandbox.run_command(
                argv, agent=agent, time_limit=cfg.timeout, env=cfg.env, cwd=cfg.cwd,
                processes=self.services.config.tools.sandbox.command_processes)
        except OSError as exc:
            return {"exit_code": None, "stdout": "", "stderr": f"cannot run {argv[0]!r}: {exc}",
                    "timed_out": False}

    # -- the API ------------------------------------------------------------------

    async def add(self, agent: str, kind: str, config: dict[str, Any], *,
                  trigger: str | None = None, action: str = "wake", interval: float = 60.0,
                  min_interval: float = 60.0, source: str = "rpc") -> dict[str, Any]:
        rec = self.services.agents.get(agent)
        check_action(action)
        raw = dict(config)
        action_args = raw.pop("action_args", None)
        kinds.check_config(kind, raw, self.kinds)
        if action_args is not None:
            raw["action_args"] = action_args
        text = trigger or self.kinds[kind].default_trigger
        triggers.parse(text)
        if interval < 1:
            raise InvalidParams("interval must be at least 1 second", hint="e.g. 30")
        if min_interval < 0:
            raise InvalidParams("min_interval cannot be negative", hint="0 acts on every fire")
        target = action.split(":", 1)[1] if ":" in action else ""
        if action.startswith("message:") and target not in self.services.agents.agents:
            raise self.services.agents.not_found(target)
        if action.startswith("tool:") and target not in self.services.tools.names():
            near = close_matches(target, list(self.services.tools.names()))
            raise InvalidParams(f"there is no tool named {target!r}",
                                hint=("did you mean " + ", ".join(near) + "? " if near else "")
                                + "`legion tools ls` lists every tool", kind="invalid_action",
                                candidates=near)

        def job(db: Any) -> tuple[int, Event]:
            wid = db.execute(
                "INSERT INTO watchers (agent_id, kind, config, trigger, action, interval, "
                "min_interval, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (agent, kind, json.dumps(raw), text, action, interval, min_interval,
                 now_iso())).lastrowid
            return wid, insert(db, agent, "watch.added", {
                "watcher": wid, "kind": kind, "trigger": text, "action": action},
                source=source)

        wid, _ = await self.services.store.writer.run(
            job, on_commit=lambda r: self.services.bus.deliver(r[1]))
        row = await self.services.store.fetchone("SELECT * FROM watchers WHERE id = ?", (wid,))
        view = self.describe(row)
        if rec.state is not State.STOPPED:
            self._start(row)
            view["running"] = True  # started; its task begins on the next loop turn
        return view

    async def remove(self, agent: str, wid: int, source: str = "rpc") -> dict[str, Any]:
        await self._own(agent, wid)
        self._halt(wid)

        def job(db: Any) -> Event:
            db.execute("DELETE FROM watchers WHERE id = ?", (wid,))
            return insert(db, agent, "watch.removed", {"watcher": wid}, source=source)

        await self.services.store.writer.run(job, on_commit=self.services.bus.deliver)
        return {"removed": wid}

    async def listing(self, agent: str) -> list[dict[str, Any]]:
        self.services.agents.get(agent)
        rows = await self.services.store.fetchall(
            "SELECT * FROM watchers WHERE agent_id = ? ORDER BY id", (agent,))
        return [self.describe(r) for r in rows]

    def describe(self, row: Any) -> dict[str, Any]:
        return {"watcher": row["id"], "agent": row["agent_id"], "kind": row["kind"],
                "config": json.loads(row["config"]), "trigger": row["trigger"],
                "action": row["action"], "interval": row["interval"],
                "min_interval": row["min_interval"], "last_fired_at": row["last_fired_at"],
                "running": row["id"] in self._scopes}

    async def _own(self, agent: str, wid: int) -> Any:
        row = await self.services.store.fetchone(
            "SELECT * FROM watchers WHERE id = ? AND agent_id = ?", (wid, agent))
        if row is None:
            ids = [str(w["watcher"]) for w in await self.listing(agent)]
            raise NotFound(f"{agent} has no watcher {wid}",
                           hint=f"its watchers: {', '.join(ids) or 'none'}", candidates=ids,
                           kind="unknown_watcher")
        return row


def test_trigger(trigger: str, observation: dict[str, Any],
                 previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a trigger against sample observations, installing nothing."""
    t = triggers.parse(trigger)
    return {"trigger": t.source, "fired": t.evaluate(observation, previous),
            "compared_with_previous": previous is not None}

