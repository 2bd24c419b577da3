"""`cron.*`, `heartbeat.*` and `watch.*`: schedules and watchers over RPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.rpc.dispatch import Context, Params, Registry
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.watchers.service import Watchers, test_trigger


class AgentParams(Params):
    agent: str


class CronAddParams(Params):
    agent: str
    # Exactly one of cron / every / at.
    cron: str | None = None
    every: str | None = None
    at: str | None = None
    prompt: str = ""
    model: str | None = None
    missed: Literal["skip", "run_once", "run_all"] = "run_once"
    missed_cap: int = 10


class ScheduleParams(Params):
    agent: str
    schedule: int


class HeartbeatParams(Params):
    agent: str
    # A duration ("10m", "1h", seconds), or null to turn it off.
    every: str | None


class WatchAddParams(Params):
    agent: str
    kind: str
    config: dict[str, Any]
    trigger: str | None = None
    action: str = "wake"
    interval: float = 60.0
    min_interval: float = 60.0


class WatcherParams(Params):
    agent: str
    watcher: int


class WatchTestParams(Params):
    trigger: str
    observation: dict[str, Any]
    previous: dict[str, Any] | None = None


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    scheduler: Scheduler
    watchers: Watchers


def register(registry: Registry, s: Deps) -> None:
    src = "rpc"

    async def cron_add(ctx: Context, p: CronAddParams) -> dict[str, Any]:
        """Add a schedule: cron expression, interval (every) or one time (at)."""
        from legion.errors import InvalidParams

        given = [(k, v) for k, v in (("cron", p.cron), ("interval", p.every), ("once", p.at)) if v]
        if len(given) != 1:
            raise InvalidParams(
                "give exactly one of cron, every or at",
                hint="e.g. cron='0 9 * * *', every='15m', at='2026-12-01T09:00Z'",
            )
        return await s.scheduler.add(
            p.agent,
            given[0][0],
            given[0][1],
            prompt=p.prompt,
            model=p.model,
            missed=p.missed,
            missed_cap=p.missed_cap,
            source=f"{src}:uid={ctx.peer.uid}",
        )

    async def cron_list(ctx: Context, p: AgentParams) -> list[dict[str, Any]]:
        """An agent's schedules (heartbeat excluded) with next and last fire times."""
        return await s.scheduler.listing(p.agent)

    async def cron_remove(ctx: Context, p: ScheduleParams) -> dict[str, Any]:
        """Remove a schedule."""
        return await s.scheduler.remove(p.agent, p.schedule, f"{src}:uid={ctx.peer.uid}")

    async def cron_run_now(ctx: Context, p: ScheduleParams) -> dict[str, Any]:
        """Deliver a schedule's run now, outside its plan."""
        return await s.scheduler.run_now(p.agent, p.schedule)

    async def heartbeat_set(ctx: Context, p: HeartbeatParams) -> dict[str, Any]:
        """Set an agent's heartbeat interval, or turn it off (null)."""
        return await s.scheduler.set_heartbeat(p.agent, p.every, f"{src}:uid={ctx.peer.uid}")

    async def heartbeat_get(ctx: Context, p: AgentParams) -> dict[str, Any]:
        """An agent's heartbeat (null when off)."""
        s.agents.get(p.agent)
        return {"agent": p.agent, "heartbeat": await s.scheduler.heartbeat(p.agent)}

    async def watch_add(ctx: Context, p: WatchAddParams) -> dict[str, Any]:
        """Add a watcher: kind, config, trigger, action, interval, min_interval."""
        return await s.watchers.add(
            p.agent,
            p.kind,
            p.config,
            trigger=p.trigger,
            action=p.action,
            interval=p.interval,
            min_interval=p.min_interval,
            source=f"{src}:uid={ctx.peer.uid}",
        )

    async def watch_list(ctx: Context, p: AgentParams) -> list[dict[str, Any]]:
        """An agent's watchers."""
        return await s.watchers.listing(p.agent)

    async def watch_remove(ctx: Context, p: WatcherParams) -> dict[str, Any]:
        """Remove a watcher."""
        return await s.watchers.remove(p.agent, p.watcher, f"{src}:uid={ctx.peer.uid}")

    async def watch_test(ctx: Context, p: WatchTestParams) -> dict[str, Any]:
        """Evaluate a trigger against sample observations, installing nothing."""
        return test_trigger(p.trigger, p.observation, p.previous)

    for name, fn, params in (
        ("cron.add", cron_add, CronAddParams),
        ("cron.list", cron_list, AgentParams),
        ("cron.remove", cron_remove, ScheduleParams),
        ("cron.run_now", cron_run_now, ScheduleParams),
        ("heartbeat.set", heartbeat_set, HeartbeatParams),
        ("heartbeat.get", heartbeat_get, AgentParams),
        ("watch.add", watch_add, WatchAddParams),
        ("watch.list", watch_list, AgentParams),
        ("watch.remove", watch_remove, WatcherParams),
        ("watch.test", watch_test, WatchTestParams),
    ):
        registry.add(name, fn, params)
