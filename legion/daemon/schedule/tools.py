"""Kernel tools for schedules and watchers: how an agent wakes itself."""

from __future__ import annotations

from typing import Any, Literal

from legion.daemon.tools.context import KernelContext
from legion.daemon.watchers.service import test_trigger
from legion.tool import ToolError, tool


def _src(ctx: KernelContext) -> str:
    return f"agent:{ctx.agent_id}"


@tool(
    keywords=[
        "schedule",
        "cron",
        "daily",
        "weekly",
        "every",
        "recurring",
        "repeat",
        "timer",
        "job",
        "later",
        "remind",
    ]
)
async def cron_add(
    ctx: KernelContext,
    prompt: str,
    cron: str | None = None,
    every: str | None = None,
    at: str | None = None,
    missed: Literal["skip", "run_once", "run_all"] = "run_once",
    model: str | None = None,
) -> dict[str, Any]:
    """Schedule yourself: give exactly one of cron ('0 9 * * 1-5'; 6 fields for seconds),
    every ('30m', '2h') or at (ISO time). prompt is what you will be told then. missed: what
    to do with runs missed while the daemon was down."""
    given = [(k, v) for k, v in (("cron", cron), ("interval", every), ("once", at)) if v]
    if len(given) != 1:
        raise ToolError(
            "give exactly one of cron, every or at",
            hint="e.g. cron='0 9 * * *', or every='15m', or at='2026-12-01T09:00Z'",
        )
    return dict(
        await ctx.scheduler.add(
            ctx.agent_id,
            given[0][0],
            given[0][1],
            prompt=prompt,
            model=model,
            missed=missed,
            source=_src(ctx),
        )
    )


@tool(keywords=["schedule", "cron", "list", "jobs", "timers"])
async def cron_list(ctx: KernelContext) -> dict[str, Any]:
    """Your schedules with their next and last fire times."""
    return {"schedules": await ctx.scheduler.listing(ctx.agent_id)}


@tool(keywords=["schedule", "cron", "remove", "cancel", "delete", "stop"])
async def cron_remove(ctx: KernelContext, schedule: int) -> dict[str, Any]:
    """Remove one of your schedules."""
    return dict(await ctx.scheduler.remove(ctx.agent_id, schedule, _src(ctx)))


@tool(keywords=["heartbeat", "wake", "periodic", "interval", "check", "regularly"])
async def heartbeat_set(ctx: KernelContext, every: str) -> dict[str, Any]:
    """Wake yourself regularly ('10m', '1h'), or 'off'. A heartbeat with nothing new costs
    nothing: the model is only called when something happened."""
    return dict(
        await ctx.scheduler.set_heartbeat(
            ctx.agent_id, None if every.strip().lower() == "off" else every, _src(ctx)
        )
    )


@tool(keywords=["heartbeat", "interval", "wake"])
async def heartbeat_get(ctx: KernelContext) -> dict[str, Any]:
    """Your heartbeat: its interval and next time, or null when off."""
    return {"heartbeat": await ctx.scheduler.heartbeat(ctx.agent_id)}


@tool(
    keywords=[
        "watch",
        "monitor",
        "observe",
        "alert",
        "notify",
        "file",
        "url",
        "port",
        "process",
        "command",
        "change",
    ]
)
async def watch_add(
    ctx: KernelContext,
    kind: str,
    config: dict[str, Any],
    trigger: str | None = None,
    action: str = "wake",
    interval: float = 60.0,
    min_interval: float = 60.0,
) -> dict[str, Any]:
    """Watch something without spending tokens; you are woken only when trigger fires.
    config: http_poll {url}, cmd_watch {command}, file_watch {path}, process_watch {name|pid},
    tcp_probe {port, host}. trigger e.g. 'status != 200', 'changed(body)', 'went_down'.
    action: wake, silent, message:AGENT, task:LANE, tool:NAME (args in config.action_args)."""
    return dict(
        await ctx.watchers.add(
            ctx.agent_id,
            kind,
            config,
            trigger=trigger,
            action=action,
            interval=interval,
            min_interval=min_interval,
            source=_src(ctx),
        )
    )


@tool(keywords=["watch", "watchers", "monitors", "list"])
async def watch_list(ctx: KernelContext) -> dict[str, Any]:
    """Your watchers."""
    return {"watchers": await ctx.watchers.listing(ctx.agent_id)}


@tool(keywords=["watch", "monitor", "remove", "stop", "delete"])
async def watch_remove(ctx: KernelContext, watcher: int) -> dict[str, Any]:
    """Remove one of your watchers."""
    return dict(await ctx.watchers.remove(ctx.agent_id, watcher, _src(ctx)))


@tool(keywords=["watch", "trigger", "test", "try", "condition"])
def watch_test(
    trigger: str, observation: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Try a trigger on a sample observation (and optionally the previous one) without
    installing anything."""
    return test_trigger(trigger, observation, previous)


TOOLS = [
    cron_add,
    cron_list,
    cron_remove,
    heartbeat_set,
    heartbeat_get,
    watch_add,
    watch_list,
    watch_remove,
    watch_test,
]
