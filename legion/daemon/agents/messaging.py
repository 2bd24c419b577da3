"""Messages between agents and topics, under the loop guard and the conversation bound.

- an agent-to-agent message carries the number of agent hops that led to it;
  past `agents.max_hops` nothing more is delivered (the loop guard); a
  courtesy-only reply to an agent ("Thanks!") is filtered like IDLE (by the
  session, which routes replies in its closing write);
- the volume of a conversation between two agents is bounded too (messages
  and the model calls they cause, in a window): see conversation.py. This is
  the `ConversationGuard` a session asks before each model call and reply;
- a topic delivers one message into every subscriber's inbox in the
  publishing transaction. This module owns the `subscriptions` table.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from legion.config import AgentsConfig
from legion.daemon.agents import inbox, supervisor
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.conversation import Conversations, Refusal, agent_sender, trip_job
from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.errors import Conflict, InvalidParams

log = structlog.get_logger("legion.fleet")

TOPIC = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,63}$")
MAX_TEXT = 64 * 1024


class Messaging:
    def __init__(
        self,
        cfg: AgentsConfig,
        store: Store,
        bus: EventBus,
        agents: Supervisor,
        inbox: Inbox,
        budgets: Budgets,
        conversations: Conversations,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.bus = bus
        self.agents = agents
        self.inbox = inbox
        self.budgets = budgets
        self.conversations = conversations

    def check_hops(self, sender: str, to: str, hops: int) -> None:
        if hops > self.cfg.max_hops:
            raise Conflict(
                f"conversation loop guard: this exchange has already taken {hops - 1} agent "
                f"hops (agents.max_hops = {self.cfg.max_hops}); the message to {to} was not "
                "sent",
                hint="stop messaging; finish with what you have and answer your sender (or IDLE)",
                kind="loop_guard",
                data={"cap": "agents.max_hops", "value": self.cfg.max_hops},
            )

    async def message(
        self, sender: str, to: str, text: str, *, hops: int, caused_by: int | None = None
    ) -> dict[str, Any]:
        """agent_message: into the other agent's durable inbox, with the sender
        recorded; its reply comes back the same way."""
        if to == sender:
            raise InvalidParams(
                "you cannot message yourself",
                hint="write a note to memory, or create a task for yourself",
            )
        self.agents.get(to)
        _check_text(text)
        hops += 1
        if hops > self.cfg.max_hops:
            await self.bus.emit(
                sender,
                "guard.conversation",
                {"to": to, "hops": hops, "max_hops": self.cfg.max_hops},
                caused_by=caused_by,
                source=f"agent:{sender}",
            )
        self.check_hops(sender, to, hops)
        refusal = self.conversations.admit_message(sender, to)
        if refusal is not None:
            if refusal.tripped:
                await self.trip(refusal, sender, caused_by)
            raise Conflict(
                f"conversation bound: {refusal.sentence()}; the message to {to} was not sent",
                hint=f"stop messaging {to}; finish with what you have and answer your sender "
                "(or IDLE)",
                kind="conversation_bound",
                data={"cap": f"agents.conversation_{refusal.bound}", **refusal.data(self.cfg)},
            )
        msg = await self.inbox.deliver(
            to, agent_sender(sender), text, hops=hops, source=f"agent:{sender}", caused_by=caused_by
        )
        return {
            "message_id": msg.id,
            "to": to,
            "hops": hops,
            "note": f"delivered to {to}'s inbox; its reply will come to yours",
        }

    # The conversation guard, as a session meets it (session.ConversationGuard).

    def admit_call(self, peer: str, agent: str) -> Refusal | None:
        return self.conversations.admit_call(peer, agent)

    def admit_message(self, sender: str, to: str) -> Refusal | None:
        return self.conversations.admit_message(sender, to)

    def caps_of(self, refusal: Refusal) -> dict[str, int]:
        return {a: self.budgets.automatic_cap(a) for a in refusal.pair}

    async def trip(self, refusal: Refusal, by: str, caused_by: int | None) -> None:
        """Record that a pair's conversation bound tripped, and tell both agents."""
        caps = self.caps_of(refusal)
        log.warning(
            "conversation bound reached",
            pair=refusal.pair,
            bound=refusal.bound,
            messages=refusal.messages,
            model_calls=refusal.model_calls,
        )

        def job(db: Any) -> list[Event]:
            return trip_job(db, refusal, self.cfg, by, caps, caused_by, "legion:fleet")

        await self.store.writer.run(job, on_commit=self.bus.deliver)

    # -- topics ---------------------------------------------------------------------------

    async def subscribe(
        self, agent: str, topic: str, on: bool = True, source: str = "rpc"
    ) -> dict[str, Any]:
        self.agents.get(agent)
        _check_topic(topic)

        def job(db: Any) -> Event:
            if on:
                db.execute(
                    "INSERT OR IGNORE INTO subscriptions (agent_id, topic, created_at) "
                    "VALUES (?, ?, ?)",
                    (agent, topic, now_iso()),
                )
            else:
                db.execute(
                    "DELETE FROM subscriptions WHERE agent_id = ? AND topic = ?", (agent, topic)
                )
            count = db.execute(
                "SELECT count(*) FROM subscriptions WHERE topic = ?", (topic,)
            ).fetchone()[0]
            return insert(
                db,
                agent,
                "topic.subscribed" if on else "topic.unsubscribed",
                {"topic": topic, "subscribers": count},
                source=source,
            )

        ev = await self.store.writer.run(job, on_commit=self.bus.deliver)
        return {"topic": topic, "subscribed": on, "subscribers": ev.data["subscribers"]}

    async def topics(self, agent: str | None = None) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT topic, group_concat(agent_id, ',') AS agents FROM subscriptions"
            + (
                " WHERE topic IN (SELECT topic FROM subscriptions WHERE agent_id = ?)"
                if agent
                else ""
            )
            + " GROUP BY topic ORDER BY topic",
            (agent,) if agent else (),
        )
        return [{"topic": r["topic"], "subscribers": sorted(r["agents"].split(","))} for r in rows]

    async def publish(
        self,
        agent: str,
        topic: str,
        text: str,
        *,
        hops: int = 0,
        source: str,
        caused_by: int | None = None,
    ) -> dict[str, Any]:
        """One message into every subscriber's inbox (the publisher's excepted), all in
        the publishing transaction: each is delivered exactly once, restart or not."""
        self.agents.get(agent)
        _check_topic(topic)
        _check_text(text)
        hops += 1
        self.check_hops(agent, f"topic {topic}", hops)
        sender = f"topic:{topic}/{agent}"
        # Each subscriber is a pair with the publisher: those whose conversation with
        # it is at its bound are skipped (decided here, on the loop, where the counts
        # live; the subscriber list is read the same way the job reads it).
        rows = await self.store.fetchall(
            "SELECT agent_id FROM subscriptions WHERE topic = ? AND agent_id != ?", (topic, agent)
        )
        refused: dict[str, Refusal] = {}
        for r in rows:
            refusal = self.conversations.admit_message(agent, r["agent_id"])
            if refusal is not None:
                refused[r["agent_id"]] = refusal
        caps = {a: self.budgets.automatic_cap(a) for ref in refused.values() for a in ref.pair}

        def job(db: Any) -> tuple[list[str], list[Event]]:
            subs = [
                r[0]
                for r in db.execute(
                    "SELECT agent_id FROM subscriptions WHERE topic = ? AND agent_id != ? "
                    "ORDER BY agent_id",
                    (topic, agent),
                )
                if supervisor.exists(db, r[0])
            ]
            held = [sub for sub in subs if sub in refused]
            subs = [sub for sub in subs if sub not in refused]
            published = insert(
                db,
                agent,
                "topic.published",
                {
                    "topic": topic,
                    "subscribers": subs,
                    "text": text[:300],
                    **({"held_back": held} if held else {}),
                },
                caused_by=caused_by,
                source=source,
            )
            events = [published]
            for sub in subs:
                _msg, ev = inbox.enqueue_job(sub, sender, text, source, published.id, hops=hops)(db)
                events.append(ev)
            for sub in held:
                if refused[sub].tripped:
                    events += trip_job(
                        db, refused[sub], self.cfg, agent, caps, published.id, "legion:fleet"
                    )
            return subs, events

        subs, _ = await self.store.writer.run(job, on_commit=lambda r: self.bus.deliver(r[1]))
        out: dict[str, Any] = {"topic": topic, "delivered_to": subs}
        if refused:
            out["held_back"] = sorted(refused)
            out["note"] = (
                "not delivered to "
                + ", ".join(sorted(refused))
                + ": "
                + next(iter(refused.values())).sentence()
            )
        elif not subs:
            out["note"] = "nobody subscribes to this topic yet"
        return out


def _check_topic(topic: str) -> None:
    if not TOPIC.match(topic):
        raise InvalidParams(
            f"invalid topic {topic!r}",
            hint="use lowercase letters, digits and . _ / -, e.g. news/ai",
        )


def _check_text(text: str) -> None:
    if not text.strip():
        raise InvalidParams("the message is empty", hint="say what you need")
    if len(text) > MAX_TEXT:
        raise InvalidParams(
            f"the message is {len(text)} characters; the limit is {MAX_TEXT}",
            hint="put long material in shared memory (shared/...) and send its path",
        )


def forget_subscriptions(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's topic subscriptions go."""
    db.execute("DELETE FROM subscriptions WHERE agent_id = ?", (agent,))
    return {}
