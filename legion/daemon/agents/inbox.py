"""The durable inbox: messages are written before anyone is told they arrived.

A message is `queued` once committed (only then does `tell` get its id), is
`processing` while a session works on it, and ends `done` (answered), `idle`
(answered with IDLE, which the daemon drops), `failed` (with the reason), or
`interrupted`. A message left `processing` by a crash is queued again at the
next start, so a message that crashes the daemon cannot crash it forever:
- `attempts` counts the sessions that asked the model (the session counts it,
  durably, just before its first request); after `MAX_ATTEMPTS` the message
  fails with the reason. A restart before the model was asked (during the
  litellm import, say) costs no attempt;
- `deliveries` counts the sessions that got as far as working on it (litellm
  ready, the prompt about to be built); after `MAX_DELIVERIES` (restarts
  before the model was ever asked, e.g. a message whose prompt crashes the
  daemon) it fails too. A restart while litellm is still being imported
  costs neither: it is not the message's doing.

`Inbox` is the one delivery path: a person's `tell`, an agent's message,
and automatic triggers (schedules, watchers, task nudges) all come through
it, and the wake-up that follows is nobody's to remember: the runtime
listens for `message.received` on the bus, which every committed delivery
publishes (including those written inside another service's transaction
with `enqueue_job`). The module also owns the `messages` table: every read
and write of it is a function here.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import structlog

from legion.daemon.agents import ledger
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.model import State
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.errors import Conflict, NotFound, Timeout, Unavailable

log = structlog.get_logger("legion.inbox")

MAX_ATTEMPTS = 3
MAX_DELIVERIES = 10
FINAL = frozenset({"done", "idle", "failed", "interrupted"})


class Message(msgspec.Struct):
    id: int
    agent: str
    sender: str
    body: str
    status: str
    attempts: int
    event_id: int | None
    session_id: int | None
    reply: str | None
    error: str | None
    created_at: str
    started_at: str | None
    done_at: str | None
    # A model for this message's session other than the agent's (from a schedule).
    model: str | None = None
    # Agent-to-agent hops that led here (0: from a person or a trigger), and the
    # message this one answers: the conversation-loop guard reads both.
    hops: int = 0
    reply_to: int | None = None
    # Times taken from the inbox (attempts: times the model was asked).
    deliveries: int = 0

    @classmethod
    def from_row(cls, r: Any) -> Message:
        return cls(
            r["id"],
            r["agent_id"],
            r["sender"],
            r["body"],
            r["status"],
            r["attempts"],
            r["event_id"],
            r["session_id"],
            r["reply"],
            r["error"],
            r["created_at"],
            r["started_at"],
            r["done_at"],
            r["model"],
            r["hops"],
            r["reply_to"],
            r["deliveries"],
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL


def enqueue_job(
    agent: str,
    sender: str,
    body: str,
    source: str,
    caused_by: int | None = None,
    model: str | None = None,
    *,
    hops: int = 0,
    reply_to: int | None = None,
) -> Any:
    """A write job: store the message and its `message.received` event together."""

    def job(db: Any) -> tuple[Message, Event]:
        now = now_iso()
        mid = db.execute(
            "INSERT INTO messages (agent_id, sender, body, status, created_at, model, hops, "
            "reply_to) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
            (agent, sender, body, now, model, hops, reply_to),
        ).lastrowid
        data: dict[str, Any] = {"message_id": mid, "sender": sender, "text": body}
        if hops:
            data["hops"] = hops
        if reply_to is not None:
            data["reply_to"] = reply_to
        ev = insert(db, agent, "message.received", data, caused_by=caused_by, source=source)
        db.execute("UPDATE messages SET event_id = ? WHERE id = ?", (ev.id, mid))
        row = db.execute("SELECT * FROM messages WHERE id = ?", (mid,)).fetchone()
        return Message.from_row(row), ev

    return job


# Senders whose messages are automatic triggers (not a person, not another agent).
AUTOMATIC_SQL = (
    "(sender LIKE 'cron:%' OR sender = 'heartbeat' OR sender LIKE 'watcher:%' "
    "OR sender LIKE 'legion:%')"
)


def enqueue_automatic_job(
    agent: str,
    sender: str,
    body: str,
    source: str,
    cap: int,
    caused_by: int | None = None,
    model: str | None = None,
) -> Any:
    """Like enqueue_job, for automatic triggers: past `cap` automatic messages
    waiting or running for this agent, the trigger is dropped and a
    `trigger.dropped` warning event is recorded instead (in the same
    transaction, so the count cannot race)."""

    def job(db: Any) -> tuple[Message | None, Event]:
        waiting = db.execute(
            "SELECT count(*) FROM messages WHERE agent_id = ? AND status IN "
            f"('queued', 'processing') AND {AUTOMATIC_SQL}",
            (agent,),
        ).fetchone()[0]
        if waiting >= cap:
            return None, insert(
                db,
                agent,
                "trigger.dropped",
                {
                    "sender": sender,
                    "in_flight": waiting,
                    "cap": cap,
                    "text": body[:300],
                    "hint": "the agent is behind on automatic work; raise "
                    "guards.max_concurrent_sessions or make its schedules less frequent",
                },
                caused_by=caused_by,
                source=source,
            )
        msg, ev = enqueue_job(agent, sender, body, source, caused_by, model)(db)
        return msg, ev

    return job


def claim_job(agent: str) -> Any:
    """A write job: take the oldest queued message, or give up on a poisoned one."""

    def job(db: Any) -> tuple[Message | None, list[Event]]:
        events: list[Event] = []
        while True:
            row = db.execute(
                "SELECT * FROM messages WHERE agent_id = ? AND status = 'queued' "
                "ORDER BY id LIMIT 1",
                (agent,),
            ).fetchone()
            if row is None:
                return None, events
            msg = Message.from_row(row)
            error = None
            if msg.attempts >= MAX_ATTEMPTS:
                error = (
                    f"gave up after {msg.attempts} attempts: the daemon stopped during "
                    "each of them, after the model was asked"
                )
            elif msg.deliveries >= MAX_DELIVERIES:
                error = (
                    f"gave up after {msg.deliveries} deliveries: the daemon stopped each "
                    "time before the model was asked (look in the daemon's log for why)"
                )
            if error is not None:
                db.execute(
                    "UPDATE messages SET status = 'failed', error = ?, done_at = ? WHERE id = ?",
                    (error, now_iso(), msg.id),
                )
                events.append(
                    insert(
                        db,
                        agent,
                        "message.failed",
                        {"message_id": msg.id, "error": error},
                        caused_by=msg.event_id,
                        source="daemon",
                    )
                )
                continue
            # Neither an attempt nor a delivery yet: the session counts a delivery
            # once litellm is ready and an attempt when it asks the model.
            db.execute(
                "UPDATE messages SET status = 'processing', started_at = ? WHERE id = ?",
                (now_iso(), msg.id),
            )
            msg.status = "processing"
            return msg, events

    return job


def requeue_interrupted_job() -> Any:
    """At start-up: whatever a crash left `processing` is delivered again."""

    def job(db: Any) -> list[Event]:
        rows = db.execute(
            "SELECT id, agent_id, event_id, attempts, deliveries FROM messages "
            "WHERE status = 'processing'"
        ).fetchall()
        events = []
        for r in rows:
            db.execute("UPDATE messages SET status = 'queued' WHERE id = ?", (r["id"],))
            ledger.mark_crashed(db, r["id"])
            events.append(
                insert(
                    db,
                    r["agent_id"],
                    "message.redelivered",
                    {
                        "message_id": r["id"],
                        "attempts": r["attempts"],
                        "deliveries": r["deliveries"],
                    },
                    caused_by=r["event_id"],
                    source="daemon",
                )
            )
        return events

    return job


async def get(store: Any, message_id: int) -> Message | None:
    row = await store.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))
    return Message.from_row(row) if row else None


async def listing(store: Any, agent: str, status: str | None, limit: int) -> list[Message]:
    sql = "SELECT * FROM messages WHERE agent_id = ?"
    args: list[Any] = [agent]
    if status:
        sql += " AND status = ?"
        args.append(status)
    rows = await store.fetchall(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
    return [Message.from_row(r) for r in reversed(rows)]


async def queued_counts(store: Any) -> dict[str, int]:
    rows = await store.fetchall(
        "SELECT agent_id, count(*) AS n FROM messages "
        "WHERE status IN ('queued', 'processing') GROUP BY agent_id"
    )
    return {r["agent_id"]: r["n"] for r in rows}


async def agent_messages_since(store: Store, since: str) -> list[Any]:
    """Messages from another agent or a topic since `since` (the conversation
    bound's message counts): agent_id, sender, created_at."""
    return await store.fetchall(
        "SELECT agent_id, sender, created_at FROM messages WHERE created_at >= ? AND "
        "(sender LIKE 'agent:%' OR sender LIKE 'topic:%') ORDER BY id",
        (since,),
    )


def attach_session(db: Any, message_id: int, session_id: int) -> None:
    db.execute("UPDATE messages SET session_id = ? WHERE id = ?", (session_id, message_id))


def finish(
    db: Any, message_id: int, *, status: str, reply: str | None, error: str | None, done_at: str
) -> None:
    db.execute(
        "UPDATE messages SET status = ?, reply = ?, error = ?, done_at = ? WHERE id = ?",
        (status, reply, error, done_at, message_id),
    )


def count_delivery(db: Any, message_id: int) -> None:
    db.execute("UPDATE messages SET deliveries = deliveries + 1 WHERE id = ?", (message_id,))


def count_attempt(db: Any, message_id: int) -> int:
    db.execute("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (message_id,))
    return int(
        db.execute("SELECT attempts FROM messages WHERE id = ?", (message_id,)).fetchone()[0]
    )


def prune(db: Any, cutoff: str, chunk: int) -> int:
    """One chunk of retention: finished messages done before the cutoff (queued and
    processing ones are never removed, however old)."""
    return int(
        db.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE done_at < ? "
            "AND status NOT IN ('queued', 'processing') LIMIT ?)",
            (cutoff, chunk),
        ).rowcount
    )


# The events that end a message: whoever waits for its reply is woken by them.
ENDED = ("message.replied", "message.idle", "message.failed", "message.interrupted")


class Inbox:
    """Every delivery into an agent's durable inbox, and waiting for its answer."""

    def __init__(self, store: Store, bus: EventBus, agents: Supervisor, budgets: Budgets) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        self.budgets = budgets
        self._done: dict[int, anyio.Event] = {}
        self.closing = False
        bus.listen(ENDED, self._ended)

    async def tell(
        self, agent_id: str, text: str, *, sender: str = "user", source: str = "rpc"
    ) -> tuple[Message, Event]:
        """A person's (or a client's) message: the id is the receipt, given once durable."""
        self.agents.get(agent_id)
        result: tuple[Message, Event] = await self.store.writer.run(
            enqueue_job(agent_id, sender, text, source), on_commit=self._published
        )
        return result

    async def deliver(
        self,
        to: str,
        sender: str,
        text: str,
        *,
        hops: int,
        source: str,
        caused_by: int | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """An agent's message (or a spawn's first one), with the hops that led to it."""
        job = enqueue_job(to, sender, text, source, caused_by, hops=hops, reply_to=reply_to)
        msg: Message
        msg, _ = await self.store.writer.run(job, on_commit=self._published)
        return msg

    async def deliver_automatic(
        self,
        agent_id: str,
        sender: str,
        text: str,
        *,
        source: str,
        caused_by: int | None = None,
        model: str | None = None,
    ) -> Message | None:
        """An automatic trigger (heartbeat, cron, watcher), within the agent's in-flight
        cap; None when it was dropped (recorded as a `trigger.dropped` event)."""
        job = self.automatic_job(
            agent_id, sender, text, source=source, caused_by=caused_by, model=model
        )
        msg: Message | None
        msg, ev = await self.store.writer.run(job, on_commit=self._published)
        if msg is None:
            log.warning(
                "automatic trigger dropped: too many in flight",
                agent=agent_id,
                sender=sender,
                cap=ev.data["cap"],
            )
        return msg

    def automatic_job(
        self,
        agent_id: str,
        sender: str,
        text: str,
        *,
        source: str,
        caused_by: int | None = None,
        model: str | None = None,
    ) -> Any:
        """The same delivery as a job, for a service that writes it in its own
        transaction (a fire and its record, a task and its nudge); its events go
        to the bus through the caller's commit like any other."""
        return enqueue_automatic_job(
            agent_id, sender, text, source, self.budgets.automatic_cap(agent_id), caused_by, model
        )

    def _published(self, result: tuple[Any, Event]) -> None:
        self.bus.deliver(result[1])

    async def get(self, message_id: int) -> Message | None:
        return await get(self.store, message_id)

    async def listing(self, agent: str, status: str | None, limit: int) -> list[Message]:
        return await listing(self.store, agent, status, limit)

    async def wait(self, message_id: int, within: float) -> Message:
        """The message once it has ended (replied, idle, failed, interrupted). Refused
        at once, with what to do, when it cannot end soon: its agent is paused or
        stopped, or the daemon is stopping."""
        # Register before reading: a session that ends between the read and the
        # wait still finds someone to wake.
        done = self._done.setdefault(message_id, anyio.Event())
        msg = await get(self.store, message_id)
        if msg is None or msg.final:
            if not done.is_set():
                self._done.pop(message_id, None)
            if msg is None:
                raise NotFound(
                    f"no message {message_id}",
                    hint="message ids come from `legion tell`; old ones are pruned with the events",
                )
            return msg
        # A refusal leaves the registration: another client may wait on the same
        # message, and the entry goes when the message ends.
        self._check_answerable(msg)
        with anyio.move_on_after(within):
            await done.wait()
        msg = await get(self.store, message_id)
        assert msg is not None
        if not msg.final:
            self._check_answerable(msg)
        if not msg.final:
            raise Timeout(
                f"no reply to message {message_id} within {within:g}s; it is {msg.status} "
                "and will still be answered",
                hint=f"wait again (`legion wait {message_id}`), or follow it with "
                f"`legion attach {msg.agent}`",
                data={"message_id": message_id, "status": msg.status},
            )
        return msg

    def _check_answerable(self, msg: Message) -> None:
        if self.closing:
            raise Unavailable(
                f"the daemon is stopping: message {msg.id} is {msg.status} and is answered "
                "after it starts again",
                hint=f"`legion wait {msg.id}` once the daemon runs again",
                kind="shutting_down",
                data={"message_id": msg.id, "status": msg.status},
            )
        rec = self.agents.agents.get(msg.agent)
        if msg.status == "queued" and rec is not None and rec.state is not State.RUNNING:
            raise Conflict(
                f"{msg.agent} is {rec.state.value}: message {msg.id} waits in its inbox and "
                f"is answered after `legion resume {msg.agent}`",
                hint=f"`legion resume {msg.agent}`, then `legion wait {msg.id}`",
                kind="agent_not_running",
                data={"message_id": msg.id, "status": msg.status, "state": rec.state.value},
            )

    def close(self) -> None:
        """The daemon is stopping: every waiter is answered now (with the message id
        to wait for after the restart), and no new wait blocks."""
        self.closing = True
        for done in self._done.values():
            done.set()

    def _ended(self, ev: Event) -> None:
        done = self._done.pop(int(ev.data.get("message_id") or 0), None)
        if done is not None:
            done.set()


def forget_agent(db: Any, agent: str, now: str) -> dict[str, Any]:
    """Inside a destroy: the agent's messages go (their events are archived)."""
    db.execute("DELETE FROM messages WHERE agent_id = ?", (agent,))
    return {}
