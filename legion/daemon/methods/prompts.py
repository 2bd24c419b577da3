"""`prompts.*`: a person reviews the system-prompt changes agents proposed.

Agents propose (the `reflect` tool); only these methods decide. Accepting
applies the proposal through the supervisor, like `legion spawn --system`
would, so the change is an ordinary `agent.updated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from msgspec import Meta

from legion.daemon.agents.reflection import Reflection
from legion.daemon.rpc.dispatch import Context, Params, Registry


class AgentParams(Params):
    agent: str


class ProposalParams(Params):
    agent: str
    # A proposal id; left out: the agent's pending proposal.
    proposal: Annotated[int, Meta(ge=1)] | None = None


class DecideParams(Params):
    agent: str
    proposal: Annotated[int, Meta(ge=1)] | None = None
    note: Annotated[str, Meta(max_length=2000)] | None = None


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    reflection: Reflection


def register(registry: Registry, s: Deps) -> None:
    def by(ctx: Context) -> str:
        return f"rpc:uid={ctx.peer.uid}"

    async def show(ctx: Context, p: AgentParams) -> dict[str, Any]:
        """An agent's system prompt, its definition file, and its pending and recent proposals."""
        return await s.reflection.proposals.show(p.agent)

    async def diff(ctx: Context, p: ProposalParams) -> dict[str, Any]:
        """A proposal as unified diffs, from the prompt it was based on and from today's."""
        return await s.reflection.proposals.diff(p.agent, p.proposal)

    async def accept(ctx: Context, p: DecideParams) -> dict[str, Any]:
        """Accept a pending proposal: it becomes the agent's system prompt."""
        return await s.reflection.proposals.accept(p.agent, p.proposal, by(ctx), p.note)

    async def reject(ctx: Context, p: DecideParams) -> dict[str, Any]:
        """Reject a pending proposal, with an optional note; the prompt stays as it is."""
        return await s.reflection.proposals.reject(p.agent, p.proposal, by(ctx), p.note)

    registry.add("prompts.show", show, AgentParams)
    registry.add("prompts.diff", diff, ProposalParams)
    registry.add("prompts.accept", accept, DecideParams)
    registry.add("prompts.reject", reject, DecideParams)
