"""One session: one trigger (a message) run to completion.

Build the prompt, stream the model, run its tool calls (independent calls
concurrently), feed the results back, and repeat until the model answers
without calling a tool. Every step is an event, each `caused_by` the step
that led to it. Guards end a session on their own: `max_turns`, loop
detection (the same call, or the same error, `loop_repeats` times), the
agent's daily token/cost budget (which also pauses the agent, with the
reason), and the volume bound of the conversation that started the session.
Loop detection keys on the canonical call: the tool that really runs
(`tool_invoke` unwrapped) and its arguments parsed and normalised, so a call
repeated in another surface form is still the same call.

An attempt is counted once the model is about to be asked (litellm loaded, the
first request of the session): a restart before that, e.g. during the import,
costs the message no attempt (see inbox.py).

A session's end (its row, the message's status, the conversation rows and the
closing events) is one write: a crash before it leaves the message
`processing`, to be delivered again after restart; never half-recorded.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog

from legion.config import AgentsConfig
from legion.daemon.agents import inbox, ledger, prompt, supervisor
from legion.daemon.agents.activity import AgentState
from legion.daemon.agents.budgets import Budgets, Guards
from legion.daemon.agents.conversation import (
    Refusal,
    agent_sender,
    peer_of,
    sender_agent,
    trip_job,
)
from legion.daemon.agents.inbox import Message
from legion.daemon.agents.model import AgentRecord, State
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.llm.client import ModelClient
from legion.daemon.llm.types import ToolCall, Usage
from legion.daemon.store.database import Store
from legion.errors import LegionError, ModelUnavailable
from legion.tool import ToolContext, ToolResult

log = structlog.get_logger("legion.session")

# Coalesce streamed deltas into one event per this many seconds or characters.
DELTA_INTERVAL = 0.1
DELTA_CHARS = 400
SHUTDOWN_REASON = "the daemon was stopping; the message is delivered again when it starts"
# Event payloads quote tool results up to this size; the model gets all of it.
RESULT_PREVIEW = 4000


class ToolRunner(Protocol):
    """What a session needs of the tools: the prompt's schemas and names, and a
    call run with the caller's context (the registry, behind the kernel context)."""

    def prompt_schemas(self) -> list[dict[str, Any]]: ...

    def names(self) -> Any: ...

    async def run(self, call: ToolCall, ctx: ToolContext, time_limit: float) -> ToolResult: ...


class Recall(Protocol):
    """Memory as a session uses it: what to remind the agent of for this message."""

    async def context(self, agent: str, text: str, budget: int) -> str: ...


class ConversationGuard(Protocol):
    """The fleet's bound on agent-to-agent conversations, as a session meets it."""

    def admit_call(self, peer: str, agent: str) -> Refusal | None: ...

    def admit_message(self, sender: str, to: str) -> Refusal | None: ...

    def caps_of(self, refusal: Refusal) -> dict[str, int]: ...

    async def trip(self, refusal: Refusal, by: str, caused_by: int | None) -> None: ...


WorkCheck = Callable[[str], Awaitable[str | None]]


@dataclass
class Kit:
    """What every session uses, built once by the composition root."""

    store: Store
    bus: EventBus
    agents: Supervisor
    models: ModelClient
    budgets: Budgets
    tools: ToolRunner
    memory: Recall
    conversations: ConversationGuard
    config: AgentsConfig
    # memory.context_tokens: the default budget of recalled memory in a prompt.
    memory_tokens: int
    # Asked before a session ends: "does this agent still own work?" Each returns
    # a sentence naming the work, or None (the task board is one).
    work_checks: list[WorkCheck] = field(default_factory=list)

    async def owned_work(self, agent_id: str) -> str | None:
        for check in self.work_checks:
            found = await check(agent_id)
            if found:
                return found
        return None


class _Deltas:
    """Streamed text and reasoning, coalesced into a few events per second.

    A use is `async with`: a ticker flushes what waits every DELTA_INTERVAL,
    so text a model streams before a long pause is shown at once, not when
    (or if) the next chunk comes."""

    def __init__(self, session: Session, caused_by: int) -> None:
        self.session = session
        self.caused_by = caused_by
        self.parts: dict[str, list[str]] = {"text": [], "reasoning": []}
        self.size = 0
        self.since = time.monotonic()
        self._lock = anyio.Lock()  # one flush at a time: events keep the stream's order
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> _Deltas:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._tick)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        # The ticker alone is ended here; whatever the body raised (a model
        # error, a cancellation) goes on as it is, not wrapped in a group.
        await self._tg.__aexit__(None, None, None)
        if exc[0] is None:
            await self.flush()

    async def _tick(self) -> None:
        while True:
            await anyio.sleep(DELTA_INTERVAL)
            if self.size and time.monotonic() - self.since >= DELTA_INTERVAL:
                await self.flush()

    async def add(self, kind: str, text: str) -> None:
        self.session.state.activity = "reasoning" if kind == "reasoning" else "thinking"
        self.parts[kind].append(text)
        self.size += len(text)
        if self.size >= DELTA_CHARS or time.monotonic() - self.since >= DELTA_INTERVAL:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            for kind, event_kind in (("reasoning", "model.reasoning"), ("text", "model.delta")):
                if self.parts[kind]:
                    text = "".join(self.parts[kind])
                    self.parts[kind].clear()
                    await self.session.emit(event_kind, {"text": text}, self.caused_by)
            self.size = 0
            self.since = time.monotonic()


class _Turns:
    """What the turn loop keeps between turns: the loop guards' counts."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.nudged = False


class Session:
    def __init__(self, kit: Kit, state: AgentState, rec: AgentRecord, msg: Message) -> None:
        self.kit = kit
        self.state = state
        self.rec = rec
        self.msg = msg
        self.guards: Guards = kit.budgets.guards(rec)
        self.id = 0
        self.start_event = 0
        self.usage = Usage()
        self.turns = 0
        # A schedule may ask for another model for its runs.
        self.ref = msg.model or rec.model
        self.model = self.ref
        self.source = f"agent:{rec.id}"
        self.tools = kit.tools
        # The agent whose message started this session (directly or by a topic), for
        # the conversation bound; None for a person or a trigger.
        self.peer = peer_of(msg.sender)
        if self.peer == rec.id:
            self.peer = None
        self.counted = False
        # The session was ended by the conversation bound: the note said it all.
        self.bounded = False
        self.new_rows: list[dict[str, Any]] = []

    async def emit(self, kind: str, data: dict[str, Any], caused_by: int | None) -> Event:
        return await self.kit.bus.emit(
            self.rec.id, kind, data, caused_by=caused_by, source=self.source
        )

    async def run(self) -> None:
        await self._open()
        outcome: tuple[str, str, str | None] = ("failed", "the session did not finish", None)
        with anyio.CancelScope() as scope:
            self.state.session_scope = scope
            if self.state.shutdown:
                scope.cancel()  # the daemon began stopping while this session opened
            try:
                outcome = await self._converse()
            except ModelUnavailable as exc:
                outcome = ("failed", exc.message, None)
            except LegionError as exc:
                outcome = ("failed", exc.message, None)
        self.state.session_scope = None
        if scope.cancelled_caught and self.state.shutdown:
            outcome = ("shutdown", SHUTDOWN_REASON, None)
        elif scope.cancelled_caught:
            outcome = ("interrupted", self.state.interrupt_reason or "interrupted", None)
        with anyio.CancelScope(shield=True):
            await self._close(*outcome)

    async def _open(self) -> None:
        rec, msg = self.rec, self.msg
        resolved = self.kit.models.resolved(self.ref)

        def job(db: Any) -> Event:
            self.id = ledger.open_session(db, rec.id, msg.id, self.ref)
            inbox.attach_session(db, msg.id, self.id)
            return insert(
                db,
                rec.id,
                "session.started",
                {
                    "session": self.id,
                    "message_id": msg.id,
                    "trigger": "message",
                    "model": self.ref,
                    "resolved_model": resolved,
                    "attempt": msg.attempts + 1,
                    "delivery": msg.deliveries + 1,
                },
                caused_by=msg.event_id,
                source=self.source,
            )

        ev = await self.kit.store.writer.run(job, on_commit=self.kit.bus.deliver)
        self.start_event = ev.id

    # -- the turn loop, step by step ------------------------------------------------

    async def _converse(self) -> tuple[str, str, str | None]:
        g = self.guards
        await self._count_delivery()
        messages = await self._prompt()
        schemas = self.tools.prompt_schemas()
        seen = _Turns()
        cause = self.start_event
        for turn in range(1, g.max_turns + 1):
            stop = await self._may_continue()
            if stop is not None:
                return "failed", stop, None
            self.turns = turn
            completion, resp = await self._ask(turn, messages, schemas, cause)
            if not completion.tool_calls:
                note = await self._before_ending(turn, seen, resp)
                if note is None:
                    return "done", "", completion.text
                self._append(messages, note)
                cause = resp
                continue
            looped = await self._loop_guard(seen, completion.tool_calls, resp)
            if looped is not None:
                return "failed", looped, None
            for r in await self._run_tools(completion.tool_calls, resp):
                self._append(messages, r.as_message())
                if not r.ok:
                    seen.errors[r.content] += 1
            repeated = [e for e, n in seen.errors.items() if n >= g.loop_repeats]
            if repeated:
                reason = f"loop detected: the same tool error {g.loop_repeats} times"
                await self.emit("guard.loop", {"reason": reason, "error": repeated[0][:500]}, resp)
                return "failed", reason, None
            cause = resp
        reason = f"max_turns reached ({g.max_turns} model turns without a final answer)"
        await self.emit("guard.max_turns", {"reason": reason}, self.start_event)
        return "failed", reason, None

    def _append(self, messages: list[dict[str, Any]], row: dict[str, Any]) -> None:
        """A row of the conversation: sent with the next turn, kept in history."""
        messages.append(row)
        self.new_rows.append(row)

    async def _prompt(self) -> list[dict[str, Any]]:
        """System prompt (with recalled memory), recent history, and the message."""
        rec = self.rec
        history = await ledger.history(self.kit.store, rec.id, self.guards.history_tokens)
        user = prompt.user_message(self.msg.sender, self.msg.body)
        system = prompt.system_prompt(rec.id, rec.system_prompt)
        budget = rec.settings.get("memory_context_tokens", self.kit.memory_tokens)
        if budget:
            recalled = await self.kit.memory.context(rec.id, self.msg.body, budget)
            if recalled:
                system = f"{system}\n\n{recalled}"
                await self.emit("memory.recalled", {"chars": len(recalled)}, self.start_event)
        self.new_rows = [user]
        return [{"role": "system", "content": system}, *history, user]

    async def _may_continue(self) -> str | None:
        """The guards checked before each model call: the daily budget (which also
        pauses the agent) and the conversation bound. The reason to stop, or None."""
        rec, g = self.rec, self.guards
        over = self.kit.budgets.over_budget(rec.id, g)
        if over is not None:
            guard = await self.emit("guard.budget", {"reason": over}, self.start_event)
            await self.kit.budgets.pause_for(rec.id, over, caused_by=guard.id)
            return over
        if self.peer is not None:
            refusal = self.kit.conversations.admit_call(self.peer, rec.id)
            if refusal is not None:
                await self._bounded(refusal)
                return refusal.sentence()
        return None

    async def _ask(
        self, turn: int, messages: list[dict[str, Any]], schemas: list[dict[str, Any]], cause: int
    ) -> tuple[Any, int]:
        """One model turn, streamed: the completion and its `model.response` event id.
        The assistant's message is appended to the conversation."""
        self.state.activity = "thinking"
        request: dict[str, Any] = {
            "turn": turn,
            "model": self.ref,
            "messages": len(messages),
            "prompt_tokens_estimate": prompt.estimate(messages, schemas),
            "tools": len(schemas),
        }
        if not self.counted:
            request["attempt"] = await self._count_attempt()
        req = await self.emit("model.request", request, cause)

        async def relay(kind: str, data: dict[str, Any], _req: int = req.id) -> None:
            if kind == "model.retry":
                self.state.activity = f"retrying ({data.get('status')})"
            await self.emit(kind, data, _req)

        models = self.kit.models
        async with _Deltas(self, req.id) as deltas:
            completion = await models.complete(
                self.ref, messages, schemas, on_delta=deltas.add, emit=relay
            )
        completion = models.repair(completion, self.tools.names())
        self.usage.add(completion.usage)
        self.model = completion.model
        self.kit.budgets.charge(self.rec.id, completion.usage)
        calls = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls
        ]
        resp = await self.emit(
            "model.response",
            {
                "turn": turn,
                "model": completion.model,
                "text": completion.text,
                "reasoning": completion.reasoning,
                "tool_calls": calls,
                "finish_reason": completion.finish_reason,
                "usage": completion.usage.as_dict(),
                "repaired": completion.repaired,
            },
            req.id,
        )
        if completion.repaired:
            await self.emit(
                "model.repaired",
                {
                    "turn": turn,
                    "tool_calls": calls,
                    "note": "the model wrote its tool calls as JSON text; they were run as calls",
                },
                resp.id,
            )
        assistant: dict[str, Any] = {"role": "assistant", "content": completion.text}
        if calls:
            assistant["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
        self._append(messages, assistant)
        return completion, resp.id

    async def _before_ending(self, turn: int, seen: _Turns, resp: int) -> dict[str, Any] | None:
        """The model answered without a tool call. If the agent still owns work (a
        task in doing), one synthetic turn asks it to finish or hand it back: that
        note is returned; None lets the session end with the answer."""
        # No nudge on the last allowed turn: it would turn a good answer into a
        # max_turns failure.
        if seen.nudged or turn == self.guards.max_turns:
            return None
        nudge = await self.kit.owned_work(self.rec.id)
        if nudge is None:
            return None
        seen.nudged = True
        await self.emit("session.nudged", {"turn": turn, "work": nudge}, resp)
        return {
            "role": "user",
            "content": f"[legion] Before you end: {nudge} "
            "Finish it now, or hand it back, then give your final answer.",
        }

    async def _loop_guard(self, seen: _Turns, calls: list[ToolCall], resp: int) -> str | None:
        """The same call `loop_repeats` times ends the session: the reason, or None."""
        g = self.guards
        for c in calls:
            seen.calls[canonical_call(c.name, c.arguments)] += 1
        looped = [k for k, n in seen.calls.items() if n >= g.loop_repeats]
        if not looped:
            return None
        reason = (
            f"loop detected: the same tool call ({looped[0].split(':', 1)[0]}) "
            f"{g.loop_repeats} times"
        )
        await self.emit("guard.loop", {"reason": reason, "call": looped[0]}, resp)
        return reason

    async def _count_delivery(self) -> None:
        """The session is about to work on the message (litellm is ready: a
        restart during its import is nobody's fault): count a delivery, durably,
        so a message that ends the daemon before the model is asked is given up."""
        await self.kit.models.load()
        mid = self.msg.id
        await self.kit.store.writer.run(lambda db: inbox.count_delivery(db, mid))
        self.msg.deliveries += 1

    async def _count_attempt(self) -> int:
        """The model is about to be asked for this message: count the attempt, durably,
        before the request goes out. litellm is loaded first (a no-op once it is), so a
        daemon killed during the import has not spent one."""
        await self.kit.models.load()
        mid = self.msg.id
        self.msg.attempts = await self.kit.store.writer.run(lambda db: inbox.count_attempt(db, mid))
        self.counted = True
        return self.msg.attempts

    async def _bounded(self, refusal: Refusal) -> None:
        """The conversation this session belongs to is at its bound: no more model calls."""
        self.bounded = True
        if refusal.tripped:
            await self.kit.conversations.trip(refusal, self.rec.id, self.start_event)
        else:
            await self.emit(
                "guard.conversation",
                {
                    **refusal.data(self.kit.config),
                    "tripped": False,
                    "note": "the session stopped before its next model call",
                },
                self.start_event,
            )

    async def _run_tools(self, calls: list[ToolCall], caused_by: int) -> list[ToolResult]:
        results: list[ToolResult | None] = [None] * len(calls)
        self.state.activity = "-> " + ", ".join(c.name for c in calls)

        async def one(i: int, call: ToolCall) -> None:
            data: dict[str, Any] = {
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
            if call.name == "tool_invoke":
                # Say which registry tool runs, so attach and events name it.
                data["invokes"] = _invoked(call.arguments)
            ev = await self.emit("tool.call", data, caused_by)
            ctx = ToolContext(
                agent_id=self.rec.id, session_id=self.id, call_event=ev.id, hops=self.msg.hops
            )
            result = await self.tools.run(call, ctx, self.guards.tool_timeout)
            results[i] = result
            await self.emit(
                "tool.result",
                {
                    "call_id": call.id,
                    "name": call.name,
                    "ok": result.ok,
                    "result": result.content[:RESULT_PREVIEW],
                    "truncated": len(result.content) > RESULT_PREVIEW,
                    "duration_ms": result.duration_ms,
                    "error_kind": result.error_kind,
                },
                ev.id,
            )

        async with anyio.create_task_group() as tg:
            for i, call in enumerate(calls):
                tg.start_soon(one, i, call)
        return [r for r in results if r is not None]

    # -- the end ------------------------------------------------------------------------

    async def _close_for_shutdown(self) -> None:
        """The daemon is stopping: the session is recorded as ended (`shutdown`) and the
        message is left `processing`, so the next start delivers it again (with a
        `message.redelivered` event), as after a crash; nothing is replied or routed."""
        usage = self.usage

        def job(db: Any) -> Event:
            now = now_iso()
            ledger.close_session(
                db,
                self.id,
                status="shutdown",
                reason=SHUTDOWN_REASON,
                turns=self.turns,
                usage=usage,
                model=self.model,
                ended_at=now,
            )
            return insert(
                db,
                self.rec.id,
                "session.ended",
                {
                    "session": self.id,
                    "status": "shutdown",
                    "reason": SHUTDOWN_REASON,
                    "turns": self.turns,
                    "model": self.model,
                    "usage": usage.as_dict(),
                    "message_id": self.msg.id,
                },
                caused_by=self.start_event,
                source=self.source,
            )

        try:
            await self.kit.store.writer.run(job, on_commit=self.kit.bus.deliver)
        except LegionError as exc:
            log.error(
                "could not record a session cut off by shutdown", session=self.id, error=exc.message
            )
        self.state.activity = "idle"

    def _route_reply(
        self,
        db: Any,
        to: str,
        reply: str,
        cause: int,
        max_hops: int,
        refusal: Refusal | None,
        caps: dict[str, int],
    ) -> list[Event]:
        """In the session's closing transaction: the reply into the asking agent's
        inbox (it is sent exactly when the session is recorded as done)."""
        hops = self.msg.hops + 1
        if hops > max_hops:
            return [
                insert(
                    db,
                    self.rec.id,
                    "guard.conversation",
                    {
                        "to": to,
                        "hops": hops,
                        "max_hops": max_hops,
                        "note": "the reply was not delivered: the conversation reached "
                        "agents.max_hops",
                    },
                    caused_by=cause,
                    source=self.source,
                )
            ]
        if not supervisor.exists(db, to):
            return [
                insert(
                    db,
                    self.rec.id,
                    "message.undeliverable",
                    {"to": to, "reason": f"{to} no longer exists"},
                    caused_by=cause,
                    source=self.source,
                )
            ]
        if refusal is not None:
            cfg = self.kit.config
            if refusal.tripped:
                return trip_job(db, refusal, cfg, self.rec.id, caps, cause, "legion:fleet")
            return [
                insert(
                    db,
                    self.rec.id,
                    "message.undeliverable",
                    {"to": to, "reason": refusal.sentence(), "pair": list(refusal.pair)},
                    caused_by=cause,
                    source=self.source,
                )
            ]
        _msg, ev = inbox.enqueue_job(
            to,
            agent_sender(self.rec.id),
            reply,
            self.source,
            cause,
            hops=hops,
            reply_to=self.msg.id,
        )(db)
        return [ev]

    def _tell_failure(self, db: Any, to: str, reason: str, cause: int, cap: int) -> list[Event]:
        """The asking agent learns that no answer is coming (as a notice from Legion,
        which is not answered back)."""
        if not supervisor.exists(db, to):
            return []
        text = (
            f"[legion] {self.rec.id} could not answer your message ({reason}); "
            "no reply is coming. Try again later, or do without it."
        )
        _msg, ev = inbox.enqueue_automatic_job(to, "legion:fleet", text, self.source, cap, cause)(
            db
        )
        return [ev]

    async def _close(self, status: str, reason: str, reply: str | None) -> None:
        if status == "shutdown":
            await self._close_for_shutdown()
            return
        rec, msg = self.rec, self.msg
        idle = status == "done" and reply is not None and _is_idle(reply)
        # Replies to another agent go back to its inbox; a courtesy-only one
        # ("Thanks!") would only start a round of politeness, so it counts as IDLE.
        to_agent = sender_agent(msg.sender)
        courtesy = (
            to_agent is not None
            and status == "done"
            and reply is not None
            and not idle
            and _is_courtesy(reply)
        )
        idle = idle or courtesy
        max_hops = self.kit.config.max_hops
        msg_status = "idle" if idle else status
        # The reply's place in the conversation bound is taken here, on the loop, where
        # the counts live (the job below runs in the writer's thread). A reply the hops
        # guard or a gone agent stops is not counted.
        refusal: Refusal | None = None
        caps: dict[str, int] = {}
        if (
            msg_status == "done"
            and to_agent is not None
            and reply
            and msg.hops + 1 <= max_hops
            and to_agent in self.kit.agents.agents
        ):
            refusal = self.kit.conversations.admit_message(rec.id, to_agent)
            if refusal is not None and refusal.tripped:
                caps = self.kit.conversations.caps_of(refusal)
        cap = self.kit.budgets.automatic_cap(to_agent) if to_agent else 0
        kept = self.new_rows if status == "done" else []
        usage = self.usage

        def job(db: Any) -> list[Event]:
            now = now_iso()
            ledger.close_session(
                db,
                self.id,
                status=status,
                reason=reason,
                turns=self.turns,
                usage=usage,
                model=self.model,
                ended_at=now,
            )
            inbox.finish(
                db,
                msg.id,
                status=msg_status,
                reply=None if idle else reply,
                error=reason or None,
                done_at=now,
            )
            ledger.add_history(db, rec.id, self.id, kept, now)
            ended = insert(
                db,
                rec.id,
                "session.ended",
                {
                    "session": self.id,
                    "status": status,
                    "reason": reason,
                    "turns": self.turns,
                    "model": self.model,
                    "usage": usage.as_dict(),
                    "message_id": msg.id,
                },
                caused_by=self.start_event,
                source=self.source,
            )
            kind, data = _closing(msg.id, msg_status, reply, reason, courtesy=courtesy)
            closing = insert(db, rec.id, kind, data, caused_by=ended.id, source=self.source)
            events = [ended, closing]
            if msg_status == "done" and to_agent is not None and reply:
                events += self._route_reply(
                    db, to_agent, reply, closing.id, max_hops, refusal, caps
                )
            elif msg_status == "failed" and to_agent is not None and not self.bounded:
                events += self._tell_failure(db, to_agent, reason, closing.id, cap)
            return events

        try:
            await self.kit.store.writer.run(job, on_commit=self.kit.bus.deliver)
        except LegionError as exc:
            # Nothing was recorded (e.g. disk full): the message stays
            # `processing` and is delivered again after the next restart.
            log.error("could not record the end of a session", session=self.id, error=exc.message)
        self.state.activity = "idle"
        if rec.state is State.RUNNING and status == "failed":
            log.info("session failed", agent=rec.id, session=self.id, reason=reason)


def _closing(
    message_id: int, status: str, reply: str | None, reason: str, *, courtesy: bool
) -> tuple[str, dict[str, Any]]:
    """The event that ends a message: replied, idle (and why), failed or interrupted."""
    if status == "done":
        return "message.replied", {"message_id": message_id, "reply": reply}
    if status == "idle":
        note = (
            "a courtesy-only reply to an agent counts as IDLE; nothing was sent"
            if courtesy
            else "the agent answered IDLE; nothing was sent"
        )
        return "message.idle", {"message_id": message_id, "note": note}
    return f"message.{status}", {"message_id": message_id, "error": reason}


def _courtesy_words() -> re.Pattern[str]:
    phrases = (
        "thanks?( a lot| so much)?",
        "thank you( so much| very much)?",
        "thx",
        "ty",
        "you'?re( very)? welcome",
        "no problem",
        "no worries",
        "got it",
        "ok(ay)?",
        "great",
        "perfect",
        "sounds good",
        "will do",
        "noted",
        "acknowledged",
        "cheers",
        "(i'?m )?(glad|happy) to help",
        "any ?time",
        "my pleasure",
        "understood",
        "roger",
        "appreciated?",
        "much appreciated",
        "awesome",
        "have a (great|nice|good) (day|one)",
        "take care",
        "you too",
        "likewise",
    )
    return re.compile(r"^(" + "|".join(phrases) + r")$")


COURTESY = _courtesy_words()


def _is_courtesy(reply: str) -> bool:
    """Only pleasantries, no content: every sentence is a thank-you or an ok."""
    text = reply.strip().lower()
    if not text or len(text) > 160 or any(c.isdigit() for c in text):
        return False
    parts = [p.strip() for p in re.split(r"[.!?,;:\n]+|\s[-\u2013\u2014]\s", text)]
    parts = [re.sub(r"[^a-z' ]+", "", p).strip() for p in parts]
    parts = [p for p in parts if p]
    return bool(parts) and all(COURTESY.match(p) for p in parts)


def _parsed(arguments: Any) -> Any:
    """Arguments as a value: a JSON string parsed (an empty one is no arguments)."""
    if isinstance(arguments, str):
        text = arguments.strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            return text
    return {} if arguments is None else arguments


def canonical_call(name: str, arguments: Any) -> str:
    """The key the loop guard counts: the tool that really runs and its arguments as
    canonical JSON. `tool_invoke(name=X, arguments=...)` is the call of X, whether its
    arguments come as an object or as a JSON string spaced any way."""
    args = _parsed(arguments)
    # The registry refuses tool_invoke invoking itself; unwrapping a few levels keeps
    # the key stable even so.
    for _ in range(4):
        if name != "tool_invoke" or not isinstance(args, dict):
            break
        inner = args.get("name")
        if not isinstance(inner, str):
            break
        name, args = inner, _parsed(args.get("arguments"))
    try:
        text = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(args)
    return f"{name}:{text}"


def _is_idle(reply: str) -> bool:
    return reply.strip().rstrip(".").strip() == prompt.IDLE


def _invoked(arguments: str) -> str | None:
    try:
        name = json.loads(arguments).get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
