"""Watchers: passive monitors that wake an agent only when their trigger fires.

Each watcher runs as a task of its own: it observes (polls, or for files,
waits on inotify), evaluates its trigger against the new and the previous
observation, and acts when the trigger fires:

- `wake`: a message to the agent's inbox (an automatic trigger, within the
  agent's in-flight cap);
- `message:AGENT`: the same, to another agent;
- `task:LANE`: a task on the agent's board, in that lane;
- `tool:NAME`: a kernel tool run directly, arguments from `action_args`
  (`{field}` is replaced by the observation's value): no model is called.
  The filled arguments travel in the `watch.fired` event, and the tool runs
  where tools are run (legion/daemon/tools/context.py, which listens for it):
  tools reach the watchers (watch_add...), so the watchers cannot hold the
  tools in turn;
- `silent`: only the `watch.fired` event.

`min_interval` keeps a flapping source from flooding the agent: fires closer
together than that are suppressed (counted, and reported with the next fire).

States: a paused agent's watchers keep observing and their messages
accumulate in its inbox, to be handled on resume; a stopped agent's watchers
do not run at all; destroying the agent removes them.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import time
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.config import SandboxConfig
from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.daemon.tools.sandbox import Sandbox
from legion.daemon.watchers import kinds, triggers
from legion.errors import InvalidParams, NotFound, close_matches
from legion.plugin import WatcherKind

log = structlog.get_logger("legion.watchers")
ACTION = re.compile(
    r"^(wake|silent|message:[a-z][a-z0-9_-]{0,62}|task:[\w .-]{0,64}|"
    r"tool:[a-z_][a-z0-9_]{0,63})$"
)
PREVIEW = 1500
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


async def _unused(cfg: Any) -> dict[str, Any]:
    raise AssertionError("this kind is not polled")


def check_action(action: str) -> str:
    if not ACTION.match(action):
        raise InvalidParams(
            f"invalid action {action!r}",
            hint="use wake, silent, message:AGENT, task:LANE or tool:NAME",
            kind="invalid_action",
        )
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


class TaskCreator(Protocol):
    """The task board as a `task:LANE` action uses it."""

    async def create(
        self, viewer: str, title: str, *, body: str, lane: str, source: str, caused_by: int | None
    ) -> Any: ...


class ToolNames(Protocol):
    """The tool registry as `watch_add` checks a `tool:NAME` action against it."""

    def names(self) -> Any: ...


class Watchers:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        agents: Supervisor,
        inbox: Inbox,
        tasks: TaskCreator,
        tools: ToolNames,
        sandbox: Sandbox,
        sandbox_cfg: SandboxConfig,
        plugin_kinds: dict[str, WatcherKind] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        self.inbox = inbox
        self.tasks = tasks
        self.tools = tools
        self.sandbox = sandbox
        self.sandbox_cfg = sandbox_cfg
        # Plugin kinds (the built-in pollers among them); cmd_watch runs in the
        # sandbox and file_watch streams from inotify, so both are wired here.
        self.kinds: dict[str, WatcherKind] = dict(plugin_kinds or {})
        self.kinds["cmd_watch"] = WatcherKind(
            "cmd_watch", kinds.CmdWatch, _unused, kinds.DEFAULT_TRIGGERS["cmd_watch"]
        )
        self.kinds["file_watch"] = WatcherKind(
            "file_watch", kinds.FileWatch, _unused, kinds.DEFAULT_TRIGGERS["file_watch"]
        )
        self._tg: Any = None
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._changes: Any = None
        self.observations = 0
        self.fires = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1_000_000
        )
        self._changes = send
        async with anyio.create_task_group() as tg, receive:
            self._tg = tg
            for row in await self.store.fetchall("SELECT * FROM watchers ORDER BY id"):
                self._start(row)
            self.agents.listeners.append(self._on_change)
            task_status.started()
            async for action, agent in receive:
                await self._apply(action, agent)

    def _on_change(self, action: str, agent_id: str, rec: AgentRecord | None) -> None:
        if action in ("stop", "resume", "destroy"):
            self._changes.send_nowait((action, agent_id))

    async def _apply(self, action: str, agent: str) -> None:
        rows = await self.store.fetchall("SELECT * FROM watchers WHERE agent_id = ?", (agent,))
        for row in rows:
            self._halt(row["id"])
            if action == "resume":
                self._start(row)
        if action == "destroy":
            await self.store.writer.run(
                lambda db: db.execute("DELETE FROM watchers WHERE agent_id = ?", (agent,))
            )

    def _start(self, row: Any) -> None:
        rec = self.agents.agents.get(row["agent_id"])
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
                    stop = anyio.Event()
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
                await self.bus.emit(
                    row["agent_id"],
                    "watch.error",
                    {"watcher": wid, "error": str(exc)[:300]},
                    source=f"watcher:{wid}",
                )
        self._scopes.pop(wid, None)

    async def _consider(
        self,
        row: dict[str, Any],
        trigger: triggers.Trigger,
        obs: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
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

        data: dict[str, Any] = {
            "watcher": wid,
            "kind": row["kind"],
            "trigger": row["trigger"],
            "action": action,
            "observation": shown,
            "suppressed_before": suppressed,
        }
        if action.startswith("tool:"):
            # Filled from the whole observation here; the tool runs on this event.
            data["tool"] = action.split(":", 1)[1]
            data["arguments"] = fill(json.loads(row["config"]).get("action_args", {}), obs)

        def record(db: Any) -> Event:
            db.execute("UPDATE watchers SET last_fired_at = ? WHERE id = ?", (now_iso(), wid))
            return insert(db, agent, "watch.fired", data, source=f"watcher:{wid}")

        fired = await self.store.writer.run(record, on_commit=self.bus.deliver)
        text = (
            f"[watcher {wid} {row['kind']}] `{row['trigger']}` fired"
            + (f" ({suppressed} more fires were suppressed by min_interval)" if suppressed else "")
            + f": {shown}"
        )
        if action == "wake":
            await self.inbox.deliver_automatic(
                agent, f"watcher:{wid}", text, source=f"watcher:{wid}", caused_by=fired.id
            )
        elif action.startswith("message:"):
            target = action.split(":", 1)[1]
            if target in self.agents.agents:
                await self.inbox.deliver_automatic(
                    target,
                    f"watcher:{wid}",
                    f"[from {agent}] " + text,
                    source=f"watcher:{wid}",
                    caused_by=fired.id,
                )
        elif action.startswith("task:"):
            await self.tasks.create(
                agent,
                f"watcher {wid}: {row['trigger']}",
                body=text,
                lane=action.split(":", 1)[1],
                source=f"watcher:{wid}",
                caused_by=fired.id,
            )

    async def run_command(self, agent: str, cfg: kinds.CmdWatch) -> dict[str, Any]:
        """A cmd_watch observation, from the sandbox (limits, scrubbed environment,
        the agent's working directory unless `cwd` says otherwise)."""
        argv = shlex.split(cfg.command) if isinstance(cfg.command, str) else list(cfg.command)
        try:
            return await self.sandbox.run_command(
                argv,
                agent=agent,
                time_limit=cfg.timeout,
                env=cfg.env,
                cwd=cfg.cwd,
                processes=self.sandbox_cfg.command_processes,
            )
        except OSError as exc:
            return {
                "exit_code": None,
                "stdout": "",
                "stderr": f"cannot run {argv[0]!r}: {exc}",
                "timed_out": False,
            }

    # -- the API ------------------------------------------------------------------

    async def add(
        self,
        agent: str,
        kind: str,
        config: dict[str, Any],
        *,
        trigger: str | None = None,
        action: str = "wake",
        interval: float = 60.0,
        min_interval: float = 60.0,
        source: str = "rpc",
    ) -> dict[str, Any]:
        rec = self.agents.get(agent)
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
        if action.startswith("message:") and target not in self.agents.agents:
            raise self.agents.not_found(target)
        if action.startswith("tool:") and target not in self.tools.names():
            near = close_matches(target, list(self.tools.names()))
            raise InvalidParams(
                f"there is no tool named {target!r}",
                hint=("did you mean " + ", ".join(near) + "? " if near else "")
                + "`legion tools ls` lists every tool",
                kind="invalid_action",
                candidates=near,
            )

        def job(db: Any) -> tuple[int, Event]:
            wid = db.execute(
                "INSERT INTO watchers (agent_id, kind, config, trigger, action, interval, "
                "min_interval, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (agent, kind, json.dumps(raw), text, action, interval, min_interval, now_iso()),
            ).lastrowid
            return wid, insert(
                db,
                agent,
                "watch.added",
                {"watcher": wid, "kind": kind, "trigger": text, "action": action},
                source=source,
            )

        wid, _ = await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))
        row = await self.store.fetchone("SELECT * FROM watchers WHERE id = ?", (wid,))
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

        await self.store.writer.run(job, on_commit=self.bus.deliver)
        return {"removed": wid}

    async def listing(self, agent: str) -> list[dict[str, Any]]:
        self.agents.get(agent)
        rows = await self.store.fetchall(
            "SELECT * FROM watchers WHERE agent_id = ? ORDER BY id", (agent,)
        )
        return [self.describe(r) for r in rows]

    def describe(self, row: Any) -> dict[str, Any]:
        return {
            "watcher": row["id"],
            "agent": row["agent_id"],
            "kind": row["kind"],
            "config": json.loads(row["config"]),
            "trigger": row["trigger"],
            "action": row["action"],
            "interval": row["interval"],
            "min_interval": row["min_interval"],
            "last_fired_at": row["last_fired_at"],
            "running": row["id"] in self._scopes,
        }

    async def _own(self, agent: str, wid: int) -> Any:
        row = await self.store.fetchone(
            "SELECT * FROM watchers WHERE id = ? AND agent_id = ?", (wid, agent)
        )
        if row is None:
            ids = [str(w["watcher"]) for w in await self.listing(agent)]
            raise NotFound(
                f"{agent} has no watcher {wid}",
                hint=f"its watchers: {', '.join(ids) or 'none'}",
                candidates=ids,
                kind="unknown_watcher",
            )
        return row


def test_trigger(
    trigger: str, observation: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Evaluate a trigger against sample observations, installing nothing."""
    t = triggers.parse(trigger)
    return {
        "trigger": t.source,
        "fired": t.evaluate(observation, previous),
        "compared_with_previous": previous is not None,
    }
