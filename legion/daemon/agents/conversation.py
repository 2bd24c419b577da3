"""The volume bound on conversations between agents.

`agents.max_hops` bounds one chain (a message, its reply, the reply to that),
but two agents can start chain after chain. This bounds the volume instead:
per unordered pair of agents, the messages that went from one into the
other's inbox (agent_message, replies routed back, a spawn's first message,
topic deliveries from one to the other) and the model calls of the sessions
those messages started, each within a sliding window of
`agents.conversation_window` seconds.

Checking and counting is one synchronous step (no await in between), so
messages racing from concurrent tool calls or sessions cannot pass the bound
together. When either count is at its bound, the next message or model call
trips it: the pair is closed for one whole window from then (so it starts
afresh when it reopens, instead of trickling one message per expiry), a
`guard.conversation` event is recorded and both agents get a note from
`legion:fleet`. Notes are not counted and cannot be answered to the peer
(replies to Legion go nowhere, and a message to the peer is refused while
closed).

The counts are rebuilt at start from the messages and sessions tables (and
closures from the `guard.conversation` events), so a restart does not reset
them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from legion.daemon.agents import inbox, ledger, supervisor
from legion.daemon.events import Event, insert
from legion.daemon.store import event_log

if TYPE_CHECKING:
    from legion.config import AgentsConfig

NOTE_SENDER = "legion:fleet"


AGENT = "agent:"


def agent_sender(agent: str) -> str:
    return f"{AGENT}{agent}"


def sender_agent(sender: str) -> str | None:
    return sender[len(AGENT) :] if sender.startswith(AGENT) else None


def pair_of(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def peer_of(sender: str) -> str | None:
    """The agent behind a message's sender: `agent:X`, or `topic:T/X` (X published)."""
    if sender.startswith("agent:"):
        return sender[len("agent:") :]
    if sender.startswith("topic:") and "/" in sender:
        return sender.rsplit("/", 1)[1]
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class _Pair:
    messages: deque[float] = field(default_factory=deque)
    calls: deque[float] = field(default_factory=deque)
    closed_until: float = 0.0
    closed_by: str = "messages"


@dataclass(frozen=True)
class Refusal:
    """Why a message or model call between a pair was not allowed."""

    pair: tuple[str, str]
    # "messages" or "model_calls": the bound that closed the pair.
    bound: str
    messages: int
    model_calls: int
    reopens_at: float
    # True for the one refusal that closed the pair: it records the event and
    # sends the notes; later refusals while closed only say so.
    tripped: bool

    def data(self, cfg: AgentsConfig) -> dict[str, Any]:
        return {
            "pair": list(self.pair),
            "bound": self.bound,
            "messages": self.messages,
            "model_calls": self.model_calls,
            "limits": {
                "messages": cfg.conversation_messages,
                "model_calls": cfg.conversation_model_calls,
                "window_s": cfg.conversation_window,
            },
            "reopens_at": _iso(self.reopens_at),
        }

    def sentence(self) -> str:
        a, b = self.pair
        what = (
            f"{self.messages} messages"
            if self.bound == "messages"
            else f"{self.model_calls} model calls"
        )
        return (
            f"the conversation between {a} and {b} reached its bound ({what} within "
            f"agents.conversation_window); nothing more is delivered between them until "
            f"{_iso(self.reopens_at)}"
        )


class Conversations:
    def __init__(self, cfg: AgentsConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.pairs: dict[tuple[str, str], _Pair] = {}

    @property
    def on(self) -> bool:
        return bool(self.cfg.conversation_messages or self.cfg.conversation_model_calls)

    def _pair(self, a: str, b: str, now: float) -> _Pair:
        p = self.pairs.setdefault(pair_of(a, b), _Pair())
        edge = now - self.cfg.conversation_window
        for q in (p.messages, p.calls):
            while q and q[0] <= edge:
                q.popleft()
        return p

    def _admit(self, a: str, b: str, kind: str) -> Refusal | None:
        if not self.on:
            return None
        now = self.clock()
        p = self._pair(a, b, now)
        key = pair_of(a, b)
        if p.closed_until > now:
            return Refusal(
                key, p.closed_by, len(p.messages), len(p.calls), p.closed_until, tripped=False
            )
        # Each kind trips on its own bound (the session of the last message allowed
        # may still think); once closed, both kinds are refused.
        c = self.cfg
        bound = c.conversation_messages if kind == "messages" else c.conversation_model_calls
        count = len(p.messages if kind == "messages" else p.calls)
        full = kind if bound and count >= bound else None
        if full is not None:
            p.closed_until = now + c.conversation_window
            p.closed_by = full
            return Refusal(key, full, len(p.messages), len(p.calls), p.closed_until, tripped=True)
        (p.messages if kind == "messages" else p.calls).append(now)
        return None

    def admit_message(self, sender: str, to: str) -> Refusal | None:
        """Count one message from `sender` to `to`, or refuse it (check and count in one
        step: nothing can slip in between)."""
        return self._admit(sender, to, "messages")

    def admit_call(self, peer: str, agent: str) -> Refusal | None:
        """Count one model call of a session that a message from `peer` started in
        `agent`, or refuse it."""
        return self._admit(peer, agent, "model_calls")

    def count_message(self, sender: str, to: str) -> None:
        """Count a message that is delivered regardless (a spawn's first message)."""
        if self.on:
            now = self.clock()
            self._pair(sender, to, now).messages.append(now)

    def counts(self, a: str, b: str) -> dict[str, Any]:
        now = self.clock()
        p = self._pair(a, b, now)
        return {
            "messages": len(p.messages),
            "model_calls": len(p.calls),
            "closed_until": _iso(p.closed_until) if p.closed_until > now else None,
        }

    # -- persistence ------------------------------------------------------------------

    async def load(self, store: Any) -> None:
        """Rebuild the counts of the current window from what is durable."""
        if not self.on:
            return
        now = self.clock()
        since = _iso(now - self.cfg.conversation_window)
        for r in await inbox.agent_messages_since(store, since):
            peer = peer_of(r["sender"])
            if peer is not None and peer != r["agent_id"]:
                self._pair(peer, r["agent_id"], now).messages.append(_ts(r["created_at"]))
        for r in await ledger.agent_sessions_since(store, since):
            peer = peer_of(r["sender"])
            if peer is not None and peer != r["agent_id"]:
                q = self._pair(peer, r["agent_id"], now).calls
                q.extend([_ts(r["started_at"])] * int(r["turns"] or 0))
        for data in await event_log.closed_conversations_since(store, since):
            until = _ts(data["reopens_at"])
            if until > now and len(data.get("pair", [])) == 2:
                p = self._pair(data["pair"][0], data["pair"][1], now)
                if until > p.closed_until:
                    p.closed_until, p.closed_by = until, str(data.get("bound", "messages"))
        for p in self.pairs.values():
            for q in (p.messages, p.calls):
                ordered = sorted(q)
                q.clear()
                q.extend(ordered)


def trip_job(
    db: Any,
    refusal: Refusal,
    cfg: AgentsConfig,
    by: str,
    caps: dict[str, int],
    cause: int | None,
    source: str,
) -> list[Event]:
    """Inside a write job: the `guard.conversation` event (in the log of `by`, whose
    message or model call tripped the bound) and a note to both agents."""
    guard = insert(db, by, "guard.conversation", refusal.data(cfg), caused_by=cause, source=source)
    events = [guard]
    for agent in refusal.pair:
        other = refusal.pair[1] if agent == refusal.pair[0] else refusal.pair[0]
        if not supervisor.exists(db, agent):
            continue
        text = (
            f"[legion] Your conversation with {other} has reached its bound "
            f"({refusal.messages} messages and {refusal.model_calls} model calls "
            f"recently); nothing more is delivered between you until "
            f"{_iso(refusal.reopens_at)}. Do not message {other} again now: finish with "
            "what you have. This note needs no answer (answer IDLE)."
        )
        _msg, ev = inbox.enqueue_automatic_job(
            agent, NOTE_SENDER, text, source, caps.get(agent, 1), guard.id
        )(db)
        events.append(ev)
    return events
