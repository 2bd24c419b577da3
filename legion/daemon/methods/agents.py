"""`agents.*`: spawn, list, inspect and move agents between states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from legion.daemon.agents.activity import Activity
from legion.daemon.agents.budgets import GuardOverrides
from legion.daemon.agents.fleet import Fleet, TerminateOn
from legion.daemon.agents.messaging import Messaging
from legion.daemon.agents.model import AgentRecord, State, check_transition
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.llm.client import ModelClient
from legion.daemon.rpc.dispatch import Context, NoParams, Params, Registry
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.tasks.board import Board

Reason = Annotated[str, Meta(max_length=2000)]


class ListParams(Params):
    state: State | None = None


class IdParams(Params):
    id: str


class SpawnParams(Params):
    id: str
    model: Annotated[str, Meta(min_length=1)] | None = None
    system: str = ""
    parent: str | None = None
    # Overrides of [guards]: max_turns, loop_repeats, daily_tokens, daily_cost,
    # tool_timeout, history_tokens.
    guards: GuardOverrides | None = None
    # Relevant memories added to each prompt, in estimated tokens (0: off);
    # null: memory.context_tokens from config.toml.
    memory_context_tokens: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    # The agent ends by itself: after a duration ("30m", "2h", seconds) or when
    # a condition holds ({"task_done": "3@parent"} or {"sessions": N}).
    ttl: str | float | None = None
    terminate_on: TerminateOn | None = None
    # A first message, delivered with the spawn.
    message: str | None = None


class TransitionParams(Params):
    id: str
    reason: Reason = ""


class DestroyParams(Params):
    id: str
    purge: bool = False
    reason: Reason = ""


class GraveyardParams(Params):
    agent: str | None = None


class GraveyardShowParams(Params):
    # An agent id (its latest archive) or an archive id.
    agent: str | None = None
    archive_id: int | None = None
    events: Annotated[int, Meta(ge=0, le=10_000)] = 50


class TopicsParams(Params):
    agent: str | None = None


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    activity: Activity
    agents: Supervisor
    board: Board
    fleet: Fleet
    messaging: Messaging
    models: ModelClient
    scheduler: Scheduler


def register(registry: Registry, s: Deps) -> None:
    sup = s.agents

    def _view(rec: AgentRecord, tasks: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
        """The record plus what the agent is doing now and the model it resolves to."""
        view = {
            **rec.summary(),
            "resolved_model": s.models.resolved(rec.model),
            **s.activity.describe(rec.id),
        }
        if tasks is not None:
            view["tasks"] = tasks.get(rec.id, {"doing": 0, "open": 0, "blocked": 0})
        view["next_heartbeat"] = s.scheduler.next_heartbeat(rec.id)
        return view

    async def list_(ctx: Context, p: ListParams) -> list[dict[str, Any]]:
        """The agents (optionally only those in one state), oldest first, with live
        activity and task counts (doing / open / blocked)."""
        counts = await s.board.counts()
        return [_view(a, counts) for a in sup.select(p.state)]

    async def get(ctx: Context, p: IdParams) -> AgentRecord:
        """One agent's full record, system prompt included."""
        return sup.get(p.id)

    async def spawn(ctx: Context, p: SpawnParams) -> dict[str, Any]:
        """Create an agent (running) and return it with its `agent.spawned` event."""
        s.models.resolve(p.model or sup.default_model)  # an unknown model fails here, not later
        settings: dict[str, Any] = {"guards": msgspec.to_builtins(p.guards)} if p.guards else {}
        if p.memory_context_tokens is not None:
            settings["memory_context_tokens"] = p.memory_context_tokens
        rec, ev = await s.fleet.spawn(
            p.id,
            parent=p.parent,
            system=p.system,
            model=p.model,
            ttl=p.ttl,
            terminate_on=p.terminate_on,
            message=p.message,
            settings=settings,
            source=f"rpc:uid={ctx.peer.uid}",
        )
        return {"agent": _view(rec), "event": ev}

    def transition(action: str) -> Any:
        async def handler(ctx: Context, p: TransitionParams) -> dict[str, Any]:
            source = f"rpc:uid={ctx.peer.uid}"
            if action == "stop":
                # Its descendants stop first (they could not go on without it).
                check_transition(p.id, sup.get(p.id).state, "stop")
                events = await s.fleet.stop(p.id, reason=p.reason, source=source)
                return {
                    "agent": _view(sup.get(p.id)),
                    "event": events[-1],
                    "stopped": [e.agent for e in events],
                }
            rec, ev = await sup.transition(p.id, action, reason=p.reason, source=source)
            return {"agent": _view(rec), "event": ev}

        handler.__doc__ = {
            "pause": "Pause an agent: no sessions run; its inbox keeps filling.",
            "resume": "Resume a paused or stopped agent (its children stay as they are).",
            "stop": "Stop an agent and its descendants: sessions, schedules and watchers halt.",
        }[action]
        return handler

    async def destroy(ctx: Context, p: DestroyParams) -> dict[str, Any]:
        """Archive an agent, its descendants and their events to the graveyard, or purge
        them; the parent (if any) is told."""
        events = await s.fleet.destroy(
            p.id, purge=p.purge, reason=p.reason, source=f"rpc:uid={ctx.peer.uid}"
        )
        return {"event": events[-1], "destroyed": [e.agent for e in events]}

    async def graveyard(ctx: Context, p: GraveyardParams) -> list[dict[str, Any]]:
        """Archived (destroyed) agents, optionally only those with one id."""
        return await sup.graveyard(p.agent)

    async def graveyard_show(ctx: Context, p: GraveyardShowParams) -> dict[str, Any]:
        """One archived agent: its record, why it ended, and its last archived events."""
        return await sup.graveyard_show(p.agent, p.archive_id, p.events)

    async def tree(ctx: Context, p: NoParams) -> list[dict[str, Any]]:
        """Every agent in tree order (parents first) with its depth, state and activity."""
        counts = await s.board.counts()
        return [{**_view(sup.agents[t["id"]], counts), "depth": t["depth"]} for t in s.fleet.tree()]

    async def topics(ctx: Context, p: TopicsParams) -> list[dict[str, Any]]:
        """Topics with their subscribers (optionally only one agent's topics)."""
        return await s.messaging.topics(p.agent)

    registry.add("agents.list", list_, ListParams)
    registry.add("agents.get", get, IdParams)
    registry.add("agents.spawn", spawn, SpawnParams)
    for action in ("pause", "resume", "stop"):
        registry.add(f"agents.{action}", transition(action), TransitionParams)
    registry.add("agents.destroy", destroy, DestroyParams)
    registry.add("agents.graveyard", graveyard, GraveyardParams)
    registry.add("agents.graveyard_show", graveyard_show, GraveyardShowParams)
    registry.add("agents.tree", tree, NoParams)
    registry.add("topics.list", topics, TopicsParams)
