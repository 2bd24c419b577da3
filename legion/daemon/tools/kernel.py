"""Kernel tools: the few tools every agent's prompt carries.

Everything else will live in the searchable registry (a later issue), so the
prompt stays small: every schema here is paid for on every turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from legion.daemon.tools.base import Tool, ToolContext, ToolError, tool


@tool
def now(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in a timezone (IANA name, e.g. Europe/Paris)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        from legion.errors import close_matches

        near = close_matches(timezone, sorted(available_timezones()), n=3)
        raise ToolError(f"unknown timezone {timezone!r}",
                        hint=f"use an IANA name such as {', '.join(near) or 'UTC, Europe/Paris'}"
                        ) from None
    t = datetime.now(zone)
    return {"iso": t.isoformat(timespec="seconds"), "weekday": t.strftime("%A"),
            "timezone": timezone}


@tool
async def agent_info(ctx: ToolContext) -> dict[str, Any]:
    """Who you are: your id, state, model, parent, and today's token budget use."""
    s = ctx.services
    rec = s.agents.get(ctx.agent_id)
    budget = s.runtime.budget(ctx.agent_id)
    return {"id": rec.id, "state": rec.state.value, "model": rec.model,
            "resolved_model": s.models.resolved(rec.model), "parent": rec.parent,
            "session": ctx.session_id, "budget_today": budget}


def _kernel() -> list[Tool]:
    from legion.daemon.memory.tools import TOOLS as MEMORY
    from legion.daemon.schedule.tools import TOOLS as SCHEDULES
    from legion.daemon.tasks.tools import TOOLS as TASKS

    return [now, agent_info, *MEMORY, *TASKS, *SCHEDULES]


KERNEL: list[Tool] = _kernel()
