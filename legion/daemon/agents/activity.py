"""What each agent is doing right now: the live, in-memory side of the fleet.

The runtime writes it (a runner per agent sets the activity and the session's
cancel scope); others only ask "is this agent busy?" or "interrupt it". It is
its own object, built before both, so the fleet (which interrupts an agent
whose ttl expired) and the runtime (which runs the fleet's conversation
guard in its sessions) need not hold each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass
class AgentState:
    activity: str = "idle"
    wake: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    session_scope: anyio.CancelScope | None = None
    interrupt_reason: str = ""
    # Cancelled because the daemon is stopping: recorded as `shutdown`, not as
    # an interrupt, and the message is delivered again after the restart.
    shutdown: bool = False
    queued: int = 0
    # Messages told so far (never decreases): tells a claim may have raced.
    told: int = 0


class Activity:
    def __init__(self) -> None:
        self.states: dict[str, AgentState] = {}

    def describe(self, agent_id: str) -> dict[str, Any]:
        state = self.states.get(agent_id)
        return {
            "activity": state.activity if state else "idle",
            "queued": state.queued if state else 0,
        }

    def busy(self, agent_id: str) -> bool:
        state = self.states.get(agent_id)
        return state is not None and state.activity != "idle"

    def known(self, agent_id: str) -> bool:
        return agent_id in self.states

    def interrupt(self, agent_id: str, reason: str = "interrupted") -> bool:
        """Cancel the agent's running session, if it has one; False when idle."""
        state = self.states.get(agent_id)
        if state is None or state.session_scope is None:
            return False
        state.interrupt_reason = reason
        state.session_scope.cancel()
        return True

    def arrived(self, agent_id: str) -> None:
        """A message was committed to this agent's inbox: count it and wake its runner."""
        state = self.states.get(agent_id)
        if state is not None:
            state.queued += 1
            state.told += 1
            state.wake.set()

    def wake(self, agent_id: str) -> None:
        state = self.states.get(agent_id)
        if state is not None:
            state.wake.set()
