"""Guards and budgets: what an agent may spend, and what it has spent today.

Every model call an agent causes (its sessions, its reflections) is charged
here, per agent per UTC day; a session asks before each turn whether the
agent is over its daily token or cost budget, and a reflection asks before
it starts. The guards an agent runs under are the daemon's `[guards]` with
the agent's own overrides on top; the cap on automatic triggers in flight
(`max_concurrent_sessions`) is read here by every service that delivers one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from legion.config import GuardsConfig
from legion.daemon.agents import ledger
from legion.daemon.agents.model import AgentRecord
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.llm.types import Usage
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.errors import Conflict


@dataclass
class Guards:
    max_turns: int
    loop_repeats: int
    daily_tokens: int
    daily_cost: float
    tool_timeout: float
    history_tokens: int
    max_concurrent_sessions: int


class GuardOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-agent overrides of [guards], as given to spawn or in a definition
    (the same ranges as config.GuardsConfig)."""

    max_turns: Annotated[int, Meta(ge=1, le=1000)] | None = None
    loop_repeats: Annotated[int, Meta(ge=2, le=100)] | None = None
    daily_tokens: Annotated[int, Meta(ge=0)] | None = None
    daily_cost: Annotated[float, Meta(ge=0)] | None = None
    tool_timeout: Annotated[float, Meta(gt=0)] | None = None
    history_tokens: Annotated[int, Meta(ge=0)] | None = None
    max_concurrent_sessions: Annotated[int, Meta(ge=1, le=1000)] | None = None


@dataclass
class DailyUsage:
    day: str
    tokens: int = 0
    cost: float = 0.0


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


class Budgets:
    def __init__(self, store: Store, agents: Supervisor, guards: GuardsConfig) -> None:
        self.store = store
        self.agents = agents
        self.defaults = guards
        self.usage: dict[str, DailyUsage] = {}

    def guards(self, rec: AgentRecord) -> Guards:
        base = msgspec.structs.asdict(self.defaults)
        overrides = msgspec.convert(rec.settings.get("guards", {}), GuardOverrides)
        base.update({k: v for k, v in msgspec.structs.asdict(overrides).items() if v is not None})
        return Guards(**base)

    def automatic_cap(self, agent_id: str) -> int:
        """How many automatic triggers (cron, heartbeat, watcher, task nudges) may wait
        in this agent's inbox at once; 0 for an agent that does not exist."""
        rec = self.agents.agents.get(agent_id)
        return self.guards(rec).max_concurrent_sessions if rec else 0

    async def load(self) -> None:
        """Today's spend so far, from what is durable (sessions, and reflections,
        which are recorded only in their events)."""
        day = _today()
        self.usage = {}
        for agent, tokens, cost in [
            *await ledger.usage_since(self.store, day),
            *await event_log.reflection_usage_since(self.store, day),
        ]:
            u = self.usage.setdefault(agent, DailyUsage(day))
            u.tokens += tokens
            u.cost += cost

    def _today_usage(self, agent_id: str) -> DailyUsage:
        day = _today()
        u = self.usage.get(agent_id)
        if u is None or u.day != day:
            u = self.usage[agent_id] = DailyUsage(day)
        return u

    def charge(self, agent_id: str, usage: Usage) -> None:
        u = self._today_usage(agent_id)
        u.tokens += usage.total
        u.cost += usage.cost

    def over_budget(self, agent_id: str, g: Guards) -> str | None:
        u = self._today_usage(agent_id)
        if g.daily_tokens and u.tokens >= g.daily_tokens:
            return (
                f"daily token budget reached: {u.tokens} of {g.daily_tokens} tokens used "
                f"today (UTC)"
            )
        if g.daily_cost and u.cost >= g.daily_cost:
            return f"daily cost budget reached: ${u.cost:.4f} of ${g.daily_cost:.4f} today (UTC)"
        return None

    def budget(self, agent_id: str) -> dict[str, Any]:
        rec = self.agents.get(agent_id)
        g = self.guards(rec)
        u = self._today_usage(agent_id)
        return {
            "day": u.day,
            "tokens_used": u.tokens,
            "tokens_limit": g.daily_tokens or None,
            "cost_used": round(u.cost, 6),
            "cost_limit": g.daily_cost or None,
        }

    async def pause_for(self, agent_id: str, reason: str, caused_by: int | None = None) -> None:
        # Already paused or stopped by someone else: the guard event still says why.
        with contextlib.suppress(Conflict):
            await self.agents.transition(
                agent_id, "pause", reason=reason, source="guard", caused_by=caused_by
            )
