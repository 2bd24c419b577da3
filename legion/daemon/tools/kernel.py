"""Kernel tools: what every agent can do to itself and its own board.

Only the everyday ones (`PROMPT`) ride in every prompt, next to the two
meta-tools: each schema there is paid for on every turn. The rest
(`REGISTRY`: occasional setup such as schedules and watchers, and rarer
memory and task calls) are in the registry, one `tool_search` away, and a
direct call by name still works.
"""

from __future__ import annotations

from typing import Any

from legion.daemon.tools.context import KernelContext
from legion.tool import Tool, tool


@tool
async def agent_info(ctx: KernelContext) -> dict[str, Any]:
    """Who you are: your id, state, model, parent, and today's token budget use."""
    s = ctx
    rec = s.agents.get(ctx.agent_id)
    budget = s.budgets.budget(ctx.agent_id)
    return {
        "id": rec.id,
        "state": rec.state.value,
        "model": rec.model,
        "resolved_model": s.models.resolved(rec.model),
        "parent": rec.parent,
        "session": ctx.session_id,
        "budget_today": budget,
    }


# In every prompt; everything else of the kernel is in the registry.
IN_PROMPT = (
    "agent_info",
    "memory_write",
    "memory_read",
    "memory_search",
    "task_create",
    "task_update",
    "task_complete",
    "task_list",
)


def _kernel() -> list[Tool]:
    from legion.daemon.agents.fleet_tools import TOOLS as FLEET
    from legion.daemon.agents.reflection_tools import TOOLS as REFLECTION
    from legion.daemon.memory.tools import TOOLS as MEMORY
    from legion.daemon.schedule.tools import TOOLS as SCHEDULES
    from legion.daemon.tasks.tools import TOOLS as TASKS

    return [agent_info, *MEMORY, *TASKS, *SCHEDULES, *FLEET, *REFLECTION]


KERNEL: list[Tool] = _kernel()
PROMPT: list[Tool] = [t for t in KERNEL if t.name in IN_PROMPT]
REGISTRY: list[Tool] = [t for t in KERNEL if t.name not in IN_PROMPT]
