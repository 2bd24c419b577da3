"""The agent record, its states, and the rules for moving between them."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

import msgspec

from legion.errors import Conflict, InvalidParams

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_SYSTEM_PROMPT = 200_000


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    TERMINATED = "terminated"


class AgentRecord(msgspec.Struct, kw_only=True):
    """What the daemon persists about an agent (and what `ps --json` shows)."""

    id: str
    model: str
    system_prompt: str = ""
    parent: str | None = None
    state: State = State.RUNNING
    state_reason: str = ""
    definition: str | None = None
    # Per-agent overrides of [guards] (max_turns, daily_tokens, ...).
    settings: dict[str, Any] = {}
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Any) -> AgentRecord:
        return cls(
            id=row["id"],
            model=row["model"],
            system_prompt=row["system_prompt"],
            parent=row["parent"],
            state=State(row["state"]),
            state_reason=row["state_reason"],
            definition=row["definition"],
            settings=json.loads(row["settings"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def summary(self) -> dict[str, Any]:
        """The record without the (possibly long) system prompt, for listings."""
        out = msgspec.to_builtins(self)
        assert isinstance(out, dict)
        prompt = out.pop("system_prompt")
        out["system_prompt_chars"] = len(prompt)
        return out


# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "pause": (frozenset({State.RUNNING}), State.PAUSED),
    "resume": (frozenset({State.PAUSED, State.STOPPED}), State.RUNNING),
    "stop": (frozenset({State.RUNNING, State.PAUSED}), State.STOPPED),
}

# What to suggest for a refused action, by the agent's current state.
_NEXT_STEP = {
    State.RUNNING: "it is running; `legion pause {id}` or `legion stop {id}` change that",
    State.PAUSED: "it is paused; `legion resume {id}` runs it again, `legion stop {id}` stops it",
    State.STOPPED: "it is stopped; `legion resume {id}` starts it again, "
    "`legion destroy {id}` archives it",
    State.TERMINATED: "it is terminated; spawn a new agent instead",
}


def check_transition(agent_id: str, current: State, action: str) -> State:
    """The state `action` leads to from `current`, or an instructive Conflict."""
    allowed, target = TRANSITIONS[action]
    if current in allowed:
        return target
    already = current == target
    msg = (
        f"agent '{agent_id}' is already {current.value}"
        if already
        else f"cannot {action} agent '{agent_id}' while it is {current.value} "
        f"({action} works from: {', '.join(sorted(s.value for s in allowed))})"
    )
    raise Conflict(
        msg,
        hint=_NEXT_STEP[current].format(id=agent_id),
        kind="invalid_transition",
        data={"agent": agent_id, "state": current.value, "action": action},
    )


def validate_id(agent_id: str, *, field: str = "id") -> str:
    if ID_PATTERN.match(agent_id):
        return agent_id
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", agent_id.lower()).strip("-_")
    suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:63]
    raise InvalidParams(
        f"invalid agent id {agent_id!r}: use 1-63 characters of a-z, 0-9, '-' and '_', "
        "starting with a letter",
        hint=f"try {suggestion!r}" if suggestion else "e.g. 'alice' or 'build-bot-2'",
        kind="invalid_agent_id",
        candidates=[suggestion] if suggestion else None,
        data={"field": field},
    )
