"""`events.*`: list the event log, and stream it live (replay first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from msgspec import Meta

from legion import protocol
from legion.config import Config
from legion.daemon.agents.model import validate_id
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, Lagged, Subscription
from legion.daemon.rpc.dispatch import Context, Params, Registry
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.errors import NotFound

Limit = Annotated[int, Meta(ge=1, le=10_000)]


class ListParams(Params):
    agent: str | None = None
    kinds: list[str] | None = None
    limit: Limit = 50
    before_id: int | None = None
    after_id: int | None = None


class SubscribeParams(Params):
    agent: str | None = None
    kinds: list[str] | None = None
    # Events replayed before going live; null means the daemon's events.replay.
    replay: Annotated[int, Meta(ge=0, le=10_000)] | None = None


class UnsubscribeParams(Params):
    subscription: int


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    bus: EventBus
    config: Config
    store: Store


def register(registry: Registry, s: Deps) -> None:
    async def known_agent(agent: str | None) -> None:
        """An agent is known while it lives or while its events are still kept."""
        if agent is None:
            return
        validate_id(agent, field="agent")
        if agent not in s.agents.agents and not await event_log.has_events(s.store, agent):
            raise s.agents.not_found(agent)

    async def list_(ctx: Context, p: ListParams) -> list[Event]:
        """Persisted events, newest `limit` (or paged by id), oldest first."""
        await known_agent(p.agent)
        return await event_log.query(
            s.store,
            agent=p.agent,
            kinds=p.kinds,
            limit=p.limit,
            before_id=p.before_id,
            after_id=p.after_id,
        )

    async def subscribe(ctx: Context, p: SubscribeParams) -> dict[str, Any]:
        """Stream events as `events.event` notifications, recent history first."""
        await known_agent(p.agent)
        conn = ctx.connection
        # Subscribe before reading history: an event committed in between shows
        # up in both and is sent once (ids are compared), never in neither.
        sub = s.bus.subscribe(p.agent, p.kinds)
        conn.add_subscription(sub)
        replay = s.config.events.replay if p.replay is None else p.replay
        history = (
            await event_log.query(s.store, agent=p.agent, kinds=p.kinds, limit=replay)
            if replay
            else []
        )

        # A destroyed agent's log ends with its destroy: replay it, then end.
        gone = p.agent is not None and p.agent not in s.agents.agents

        async def stream() -> None:
            await _stream(conn, sub, history, ended=gone)

        ctx.after_response.append(stream)
        return {
            "subscription": sub.id,
            "replayed": len(history),
            "last_id": history[-1].id if history else None,
        }

    async def unsubscribe(ctx: Context, p: UnsubscribeParams) -> dict[str, Any]:
        """End a subscription made on this connection."""
        if not ctx.connection.drop_subscription(p.subscription):
            raise NotFound(
                f"no subscription {p.subscription} on this connection",
                hint="subscriptions belong to the connection that made them",
            )
        return {"unsubscribed": p.subscription}

    registry.add("events.list", list_, ListParams)
    registry.add("events.subscribe", subscribe, SubscribeParams)
    registry.add("events.unsubscribe", unsubscribe, UnsubscribeParams)


async def _stream(conn: Any, sub: Subscription, history: list[Event], *, ended: bool) -> None:
    last = 0
    for ev in history:
        await conn.send(_note(protocol.NOTIFY_EVENT, sub, ev))
        last = ev.id
    if ended:
        await _end(conn, sub)
        return
    while True:
        item = await sub.get()
        if item is None:
            return
        if isinstance(item, Lagged):
            await conn.send(
                {
                    "jsonrpc": "2.0",
                    "method": protocol.NOTIFY_LAGGED,
                    "params": {
                        "subscription": sub.id,
                        "missed": item.missed,
                        "after_id": item.after_id,
                        "hint": "missed events can be listed with events.list "
                        "after_id; read faster or subscribe with fewer kinds",
                    },
                }
            )
            continue
        if item.id <= last:
            continue
        await conn.send(_note(protocol.NOTIFY_EVENT, sub, item))
        if item.kind == "agent.destroyed" and sub.agent == item.agent:
            await _end(conn, sub)
            return


async def _end(conn: Any, sub: Subscription) -> None:
    await conn.send(
        {
            "jsonrpc": "2.0",
            "method": protocol.NOTIFY_END,
            "params": {"subscription": sub.id, "reason": "agent destroyed"},
        }
    )
    conn.drop_subscription(sub.id)


def _note(method: str, sub: Subscription, ev: Event) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": {"subscription": sub.id, "event": ev}}
