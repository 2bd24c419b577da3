"""The reflection tools: `reflect` and `prompt_read` (see reflection.py)."""

from __future__ import annotations

from typing import Any

from legion.daemon.agents.reflection import NOTE, REFLECT_TIMEOUT, Scope
from legion.daemon.tools.context import KernelContext
from legion.tool import tool


@tool(
    timeout=REFLECT_TIMEOUT,
    keywords=[
        "reflect",
        "reflection",
        "review",
        "retrospective",
        "lessons",
        "learn",
        "improve",
        "critique",
        "mistakes",
        "consolidate",
        "memory",
        "prompt",
        "verdict",
    ],
)
async def reflect(ctx: KernelContext, scope: Scope, focus: str | None = None) -> dict[str, Any]:
    """Look back at your own work and learn from it: lessons go to your memory, tool
    verdicts to the tool statistics, follow-ups to your board, and a change to your
    system prompt becomes a proposal a person reviews. scope: last_session, day, tools or
    tasks; focus: what to look at most.

    It also tidies your memory: duplicate entries merged, stale ones tagged "stale". It
    spends one model call from your budget."""
    result: dict[str, Any] = await ctx.reflection.reflect(
        ctx.agent_id, scope, focus, session_id=ctx.session_id, caused_by=ctx.call_event
    )
    return result


@tool(keywords=["prompt", "system", "instructions", "read", "identity", "proposal"])
async def prompt_read(ctx: KernelContext) -> dict[str, Any]:
    """Read your own system prompt, and the change you proposed if one is pending."""
    s = ctx
    rec = s.agents.get(ctx.agent_id)
    pending = await s.reflection.proposals.pending(ctx.agent_id)
    return {
        "system_prompt": rec.system_prompt,
        "chars": len(rec.system_prompt),
        "definition": rec.definition,
        "pending_proposal": None
        if pending is None
        else {
            "id": pending["id"],
            "proposed": pending["proposed"],
            "rationale": pending["rationale"],
        },
        "note": NOTE,
    }


TOOLS = [reflect, prompt_read]
