"""`agents.tell`, `agents.interrupt` and `messages.*`: the inbox over RPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta

from legion.daemon.agents import ledger
from legion.daemon.agents.inbox import Inbox, Message
from legion.daemon.agents.runtime import Runtime
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.rpc.dispatch import Context, Params, Registry
from legion.daemon.store.database import Store
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
    return {
        "message_id": msg.id,
        "agent": msg.agent,
        "status": msg.status,
        "reply": msg.reply,
        "error": msg.error,
        "sender": msg.sender,
        "created_at": msg.created_at,
        "done_at": msg.done_at,
        "session": msg.session_id,
        "attempts": msg.attempts,
        "deliveries": msg.deliveries,
        "usage": None,
        "text": msg.body,
        "hops": msg.hops,
        "reply_to": msg.reply_to,
    }


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    inbox: Inbox
    runtime: Runtime
    store: Store


def register(registry: Registry, s: Deps) -> None:
    async def usage_of(msg: Message) -> dict[str, Any] | None:
        if msg.session_id is None:
            return None
        return await ledger.usage_of(s.store, msg.session_id)

    async def full(msg: Message) -> dict[str, Any]:
        view = _view(msg)
        view["usage"] = await usage_of(msg)
        return view

    async def tell(ctx: Context, p: TellParams) -> dict[str, Any]:
        """Deliver a message to an agent's durable inbox; the id is the receipt."""
        msg, ev = await s.inbox.tell(p.id, p.text, source=f"rpc:uid={ctx.peer.uid}")
        rec = s.agents.get(p.id)
        note = None
        if rec.state.value != "running":
            note = (
                f"{p.id} is {rec.state.value}: the message waits in its inbox and is "
                f"handled after `legion resume {p.id}`"
            )
        return {"message_id": msg.id, "status": msg.status, "event": ev, "note": note}

    async def wait(ctx: Context, p: WaitParams) -> dict[str, Any]:
        """Wait until a message is answered (or failed); its reply and usage."""
        return await full(await s.inbox.wait(p.message_id, within=p.timeout))

    async def get(ctx: Context, p: MessageParams) -> dict[str, Any]:
        """One message: status, reply or error, usage of its session."""
        msg = await s.inbox.get(p.message_id)
        if msg is None:
            raise NotFound(
                f"no message {p.message_id}", hint="`legion messages ID` lists an agent's messages"
            )
        return await full(msg)

    async def list_(ctx: Context, p: ListParams) -> list[dict[str, Any]]:
        """An agent's recent messages, oldest first."""
        found = await s.inbox.listing(p.agent, p.status, p.limit)
        if not found and p.agent not in s.agents.agents:
            s.agents.get(p.agent)  # raises an instructive not-found (or bad id) error
        return [_view(m) for m in found]

    async def interrupt(ctx: Context, p: InterruptParams) -> dict[str, Any]:
        """Cancel the agent's running session (its message ends `interrupted`)."""
        s.agents.get(p.id)
        done = s.runtime.interrupt(p.id, f"interrupted by uid {ctx.peer.uid}")
        return {"interrupted": done, "note": None if done else f"{p.id} has no running session"}

    registry.add("agents.tell", tell, TellParams)
    registry.add("agents.interrupt", interrupt, InterruptParams)
    registry.add("messages.wait", wait, WaitParams)
    registry.add("messages.get", get, MessageParams)
    registry.add("messages.list", list_, ListParams)
