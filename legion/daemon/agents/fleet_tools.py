"""Tools for a legion: sub-agents, messages, topics, and ending yourself.

They live in the registry (found with tool_search: "spawn a helper",
"message another agent", "publish to a topic"), not in every prompt.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents.fleet import TerminateOn
from legion.daemon.tools.context import KernelContext
from legion.tool import tool


def _src(ctx: KernelContext) -> str:
    return f"agent:{ctx.agent_id}"


@tool(
    keywords=[
        "spawn",
        "create",
        "helper",
        "child",
        "sub-agent",
        "subagent",
        "worker",
        "delegate",
        "agent",
    ]
)
async def agent_spawn(
    ctx: KernelContext,
    id: str,
    system: str = "",
    model: str | None = None,
    ttl: str | None = None,
    terminate_on: TerminateOn | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Create a child agent to delegate work to. system: its instructions; model: an alias
    (default: yours); ttl: it ends after e.g. 30m or 2h; terminate_on: it ends when
    {"task_done": "3"} (your task 3) is done or after {"sessions": N}; message: its first
    message (its reply comes to you). You are told when it ends."""
    s = ctx
    model = model or s.agents.get(ctx.agent_id).model
    rec, _ev = await s.fleet.spawn(
        id,
        parent=ctx.agent_id,
        system=system,
        model=model,
        ttl=ttl,
        terminate_on=terminate_on,
        message=message,
        source=_src(ctx),
        caused_by=ctx.call_event,
        sender=_src(ctx),
    )
    return {
        "spawned": rec.id,
        "model": rec.model,
        "parent": rec.parent,
        "expires_at": rec.settings.get("expires_at"),
        "terminate_on": rec.settings.get("terminate_on"),
        "children_now": len(s.fleet.children(ctx.agent_id)),
        "caps": {"max_children": s.fleet.cfg.max_children, "max_depth": s.fleet.cfg.max_depth},
    }


@tool(keywords=["list", "agents", "children", "fleet", "who", "team", "workers"])
async def agent_list(
    ctx: KernelContext, scope: Literal["children", "all"] = "children"
) -> dict[str, Any]:
    """Your children (default), or every agent in the daemon, with state and activity."""
    s = ctx
    recs = s.fleet.children(ctx.agent_id) if scope == "children" else list(s.agents.agents.values())
    return {
        "agents": [
            {
                "id": r.id,
                "state": r.state.value,
                "parent": r.parent,
                "activity": s.activity.describe(r.id).get("activity"),
                "expires_at": r.settings.get("expires_at"),
            }
            for r in recs
        ]
    }


@tool(keywords=["stop", "halt", "child", "agent", "pause"])
async def agent_stop(ctx: KernelContext, id: str, reason: str = "") -> dict[str, Any]:
    """Stop one of your children (and its own children). It can be resumed by a person."""
    s = ctx
    s.fleet.check_child(ctx.agent_id, id)
    events = await s.fleet.stop(id, reason=reason, source=_src(ctx), caused_by=ctx.call_event)
    return {"stopped": [e.agent for e in events]}


@tool(keywords=["destroy", "remove", "delete", "child", "agent", "retire", "end"])
async def agent_destroy(ctx: KernelContext, id: str, reason: str = "") -> dict[str, Any]:
    """Destroy one of your children (and its children): archived to the graveyard."""
    s = ctx
    s.fleet.check_child(ctx.agent_id, id)
    events = await s.fleet.destroy(
        id,
        reason=reason or f"destroyed by {ctx.agent_id}",
        source=_src(ctx),
        caused_by=ctx.call_event,
        notify_parent=False,
    )
    return {"destroyed": [e.agent for e in events]}


@tool(keywords=["message", "send", "tell", "ask", "agent", "talk", "delegate", "reply"])
async def agent_message(ctx: KernelContext, to: str, text: str) -> dict[str, Any]:
    """Send a message to another agent's inbox; its reply comes back to your inbox."""
    out: dict[str, Any] = await ctx.messaging.message(
        ctx.agent_id, to, text, hops=ctx.hops, caused_by=ctx.call_event
    )
    return out


@tool(keywords=["subscribe", "topic", "listen", "follow", "pubsub", "channel"])
async def agent_subscribe(ctx: KernelContext, topic: str) -> dict[str, Any]:
    """Receive every message published to a topic (e.g. news/ai) in your inbox."""
    out: dict[str, Any] = await ctx.messaging.subscribe(ctx.agent_id, topic, source=_src(ctx))
    return out


@tool(keywords=["unsubscribe", "topic", "stop", "leave", "pubsub", "channel"])
async def agent_unsubscribe(ctx: KernelContext, topic: str) -> dict[str, Any]:
    """Stop receiving a topic's messages."""
    out: dict[str, Any] = await ctx.messaging.subscribe(
        ctx.agent_id, topic, on=False, source=_src(ctx)
    )
    return out


@tool(keywords=["publish", "broadcast", "topic", "announce", "pubsub", "channel", "fan"])
async def agent_publish(
    ctx: KernelContext, topic: str, text: Annotated[str, Meta(min_length=1)]
) -> dict[str, Any]:
    """Send one message to every agent subscribed to a topic (not to yourself)."""
    out: dict[str, Any] = await ctx.messaging.publish(
        ctx.agent_id, topic, text, hops=ctx.hops, source=_src(ctx), caused_by=ctx.call_event
    )
    return out


@tool(keywords=["self", "destruct", "retire", "end", "finish", "quit", "done", "exit"])
async def agent_self_destruct(ctx: KernelContext, reason: str) -> dict[str, Any]:
    """End yourself when your work is done: after this session you are archived and your
    parent is told why. Your children end with you."""
    await ctx.fleet.request_end(ctx.agent_id, reason, ctx.call_event)
    return {
        "ending": ctx.agent_id,
        "reason": reason,
        "note": "you end when this session does; give your final answer now",
    }


TOOLS = [
    agent_spawn,
    agent_list,
    agent_stop,
    agent_destroy,
    agent_message,
    agent_subscribe,
    agent_unsubscribe,
    agent_publish,
    agent_self_destruct,
]
