"""`agents.tell`, `agents.interrupt` and `messages.*`: the inbox over RPC."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents.inbox import Message, listing
from legion.daemon.agents.inbox import get as fetch
from legion.daemon.rpc.dispatch import Context, Params, Registry
from legion.daemon.services import Services
from legion.errors import NotFound

MAX_TEXT = 200_000


class TellParams(Params):
    id: str
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


class WaitParams(Params):
    message_id: int
    timeout: Annotated[float, Meta(gt=0, le=86_400)] = 300.0


class MessageParams(Params):
    message_id: int


Status = Literal["queued", "processing", "done", "idle", "failed", "interrupted"]


class ListParams(Params):
    agent: str
    status: Status | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 50


class InterruptParams(Params):
    id: str


def _view(msg: Message) -> dict[str, Any]:
    return {"message_id": msg.id, "agent": msg.agent, "status": msg.status, "reply": msg.reply,
            "error": msg.error, "sender": msg.sender, "created_at": msg.created_at,
            "done_at": msg.done_at, "session": msg.session_id, "attempts": msg.attempts,
            "deliveries": msg.deliveries,
            "usage": None, "text": msg.body, "hops": msg.hops, "reply_to": msg.reply_to}


def register(registry: Registry, s: Services) -> None:
    async def usage_of(msg: Message) -> dict[str, Any] | None:
        if msg.session_id is None:
            return None
        row = await s.store.fetchone(
            "SELECT prompt_tokens, completion_tokens, reasoning_tokens, cost, turns, model "
            "FROM sessions WHERE id = ?", (msg.session_id,))
        if row is None:
            return None
        return {"prompt_tokens": row["prompt_tokens"], "completion_tokens":
                row["completion_tokens"], "reasoning_tokens": row["reasoning_tokens"],
                "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
                "cost": row["cost"], "turns": row["turns"], "model": row["model"]}

    async def full(msg: Message) -> dict[str, Any]:
        view = _view(msg)
        view["usage"] = await usage_of(msg)
        return view

    async def tell(ctx: Context, p: TellParams) -> dict[str, Any]:
        """Deliver a message to an agent's durable inbox; the id is the receipt."""
        msg, ev = await s.runtime.tell(p.id, p.text, source=f"rpc:uid={ctx.peer.uid}")
        rec = s.agents.get(p.id)
        note = None
        if rec.state.value != "running":
            note = (f"{p.id} is {rec.state.value}: the message waits in its inbox and is "
                    f"handled after `legion resume {p.id}`")
        return {"message_id": msg.id, "status": msg.status, "event": ev, "note": note}

    async def wait(ctx: Context, p: WaitParams) -> dict[str, Any]:
        """Wait until a message is answered (or failed); its reply and usage."""
        return await full(await s.runtime.wait(p.message_id, within=p.timeout))

    async def get(ctx: Context, p: MessageParams) -> dict[str, Any]:
        """One message: status, reply or error, usage of its session."""
        msg = await fetch(s.store, p.message_id)
        if msg is None:
            raise NotFound(f"no message {p.message_id}",
                           hint="`legion messages ID` lists an agent's messages")
        return await full(msg)

    async def list_(ctx: Context, p: ListParams) -> list[dict[str, Any]]:
        """An agent's recent messages, oldest first."""
        found = await listing(s.store, p.agent, p.status, p.limit)
        if not found and p.agent not in s.agents.agents:
            s.agents.get(p.agent)  # raises an instructive not-found (or bad id) error
        return [_view(m) for m in found]

    async def interrupt(ctx: Context, p: InterruptParams) -> dict[str, Any]:
        """Cancel the agent's running session (its message ends `interrupted`)."""
        s.agents.get(p.id)
        done = s.runtime.interrupt(p.id, f"interrupted by uid {ctx.peer.uid}")
        return {"interrupted": done,
                "note": None if done else f"{p.id} has no running session"}

    registry.add("agents.tell", tell, TellParams)
    registry.add("agents.interrupt", interrupt, InterruptParams)
    registry.add("messages.wait", wait, WaitParams)
    registry.add("messages.get", get, MessageParams)
    registry.add("messages.list", list_, ListParams)
