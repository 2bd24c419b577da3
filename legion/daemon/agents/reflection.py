"""Self-reflection: an agent looks back at its own work and learns from it.

`reflect(scope, focus)` gathers material from the store (one session's
conversation and tool calls, a day of sessions, tool figures, the board) plus
a listing of the agent's memory, asks the agent's own model for ONE JSON
object, and writes what it says back where each part belongs:

- lessons -> memory entries `lessons/DATE-SLUG.md`, tagged `lesson`;
- tool verdicts -> the note shown with a tool's statistics;
- follow-up tasks -> the agent's own board, lane `reflection`;
- memory consolidation -> duplicates merged into one entry, stale ones tagged;
- a prompt change -> a *proposal* that a person reviews (`legion prompt ID`).

An agent never rewrites its own system prompt: a proposal reaches the prompt
only through `accept`, which is an RPC method (a person's), not a tool. Every
output is bounded, and an item that cannot be applied (a tool that does not
exist, a shared or missing entry) is reported back, not raised: the rest
still lands.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from legion.daemon.agents import ledger
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.model import MAX_SYSTEM_PROMPT, AgentRecord
from legion.daemon.agents.proposals import Proposals
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.llm.client import ModelClient
from legion.daemon.memory.service import Memory
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.daemon.tasks.board import Board
from legion.daemon.tools.registry import Registry
from legion.errors import Conflict, InvalidParams, LegionError, NotFound
from legion.tool import ToolError
from legion.validation import problem

Scope = Literal["last_session", "day", "tools", "tasks"]
SCOPES: tuple[str, ...] = ("last_session", "day", "tools", "tasks")

# The material is cut to fit a small local model's context (8k tokens and up)
# with room left for the answer; the prompt says when it was cut.
MATERIAL_CHARS = 9_000
MEMORY_CHARS = 3_000
# A prompt proposal replaces the whole prompt, so the model must see all of it:
# past this size it is shown cut and proposals are refused.
PROMPT_CHARS = 6_000
# One turn, tool result or listing line of the material.
ITEM_CHARS = 400
# What one reflection may write; the rest is dropped and reported.
MAX_LESSONS = 10
MAX_VERDICTS = 10
MAX_TASKS = 5
MAX_MERGES = 10
MAX_STALE = 20
# A reflection is one model call over a long prompt: slower than a tool call.
REFLECT_TIMEOUT = 600.0

SHAPE = (
    '{"lessons": ["..."], "tool_verdicts": [{"tool": "NAME", "verdict": '
    '"healthy|watch|degraded", "note": "..."}], "tasks": [{"title": "...", "body": "..."}], '
    '"prompt_proposal": null, "memory": {"merge": [{"paths": ["a.md", "b.md"], '
    '"into": "a.md", "content": "..."}], "stale": ["old.md"]}}'
)

# The critique template. It asks for JSON only (small models add prose
# otherwise; the parser still digs the object out of prose or a fence), keeps
# every key optional so "nothing to say" is a valid answer, and says what each
# key is FOR, so the model does not pad lessons with a summary of events.
TEMPLATE = """\
You are the agent "{agent}" in Legion, reviewing your own recent work to do better next time.
What you review: {scope_help}.{focus}

Answer with ONE JSON object and nothing else, shaped like this (every key is optional;
leave out what you have nothing useful to say about):
{shape}

- lessons: at most {max_lessons} short, specific rules for the future ("when X, do Y",
  "avoid Z because ..."). Not a summary of what happened. Each is saved to your memory.
- tool_verdicts: at most {max_verdicts}, only for tools named in the material: healthy,
  watch or degraded, with a one-line note saying why. Shown with the tool's statistics.
- tasks: at most {max_tasks} follow-ups that really need doing; each goes on your board.
- prompt_proposal: null, unless your system prompt itself led you wrong. Then "text" is
  the WHOLE new system prompt and "rationale" says why. A person reviews it; nothing
  changes until they accept it.{prompt_note}
- memory.merge: your entries that say the same thing: "paths" to combine, "into" the
  path to keep, "content" the merged text. Only your own entries, never shared/ ones.
- memory.stale: paths of your entries that are out of date or never used (see how often
  and how recently each was read).
{cut}
{material}"""

SCOPE_HELP = {
    "last_session": "your most recent finished session: its conversation and tool calls",
    "day": "your sessions of the last 24 hours and the tool calls that failed",
    "tools": "the tools you called recently, your use of them and how they are doing",
    "tasks": "your task board: what is open, doing, blocked, stuck or overdue",
}

NOTE = "you cannot change it yourself; reflect(...) can propose a change that a person reviews"


# -- what the model answers ---------------------------------------------------------
# Unknown keys are ignored (models add some); a wrong type is refused naming the field.


class Verdict(msgspec.Struct):
    tool: str
    verdict: Literal["healthy", "watch", "degraded"]
    note: str = ""


class FollowUp(msgspec.Struct):
    title: str
    body: str = ""


class Proposal(msgspec.Struct):
    text: str
    rationale: str = ""


class Merge(msgspec.Struct):
    paths: list[str]
    into: str
    content: str


class Consolidation(msgspec.Struct):
    merge: list[Merge] | None = None
    stale: list[str] | None = None


class Critique(msgspec.Struct):
    lessons: list[str] | None = None
    tool_verdicts: list[Verdict] | None = None
    tasks: list[FollowUp] | None = None
    prompt_proposal: Proposal | None = None
    memory: Consolidation | None = None


_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.S)
# Local reasoning models often think aloud in the content, braces included.
_THINK = re.compile(r"<think>.*?</think>", re.S)


def extract(text: str) -> dict[str, Any] | None:
    """The JSON object in a model's answer: the whole text, a fenced block, or the
    first object embedded in prose."""
    body = _THINK.sub("", text).strip()
    for candidate in [body, *(m.group(1).strip() for m in _FENCE.finditer(body))]:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(body) if ch == "{"][:50]
    for i in starts:
        try:
            data, _ = decoder.raw_decode(body, i)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def parse(text: str) -> Critique:
    data = extract(text)
    if data is None:
        said = (
            f"the model answered: {clip(text, 200)!r}"
            if text.strip()
            else "the model's answer was empty"
        )
        raise ToolError(
            f"the reflection was not a JSON object ({said})",
            hint=f"call reflect again; the answer must be one JSON object shaped like {SHAPE}",
            kind="bad_reflection",
        )
    try:
        return msgspec.convert(data, Critique, strict=False)
    except msgspec.ValidationError as exc:
        where, _kind, detail = problem(str(exc))
        # Every key may be null; saying so in each message only distracts.
        detail = detail.replace(" | null", "")
        if where.endswith(".verdict"):
            detail += " (use healthy, watch or degraded)"
        raise ToolError(
            f"the reflection's {where or 'object'!s} is wrong: {detail}",
            hint=f"call reflect again; the answer must be shaped like {SHAPE}",
            kind="bad_reflection",
        ) from None


def clip(text: Any, size: int = ITEM_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return s or "lesson"


class _Lines:
    """Lines up to a size; remembers whether anything was left out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.used = 0
        self.cut = False

    def add(self, line: str) -> None:
        if self.cut or self.used + len(line) + 1 > self.limit:
            self.cut = True
            return
        self.lines.append(line)
        self.used += len(line) + 1

    def text(self) -> str:
        return "\n".join(self.lines)


def _json(raw: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _tool_name(result: dict[str, Any], call: dict[str, Any]) -> str:
    # A tool_invoke call names the registry tool it ran in its tool.call event.
    return str(call.get("invokes") or result.get("name") or call.get("name") or "?")


def _tool_args(call: dict[str, Any], size: int) -> str:
    raw = call.get("arguments", "")
    if call.get("invokes"):
        # Show what the invoked tool got, not tool_invoke's wrapper around it.
        inner = _json(raw).get("arguments")
        raw = json.dumps(inner) if isinstance(inner, dict) else raw
    return clip(raw, size)


def _turn(m: dict[str, Any]) -> str:
    role = m.get("role", "?")
    content = m.get("content") or ""
    if role == "assistant":
        calls = [
            f"{(c.get('function') or {}).get('name')}"
            f"({clip((c.get('function') or {}).get('arguments', ''), 150)})"
            for c in m.get("tool_calls") or []
            if isinstance(c, dict)
        ]
        said = clip(content) if content else ""
        return "assistant: " + said + (" -> calls " + ", ".join(calls) if calls else "")
    if role == "tool":
        return f"tool {m.get('name')}: {clip(content, 250)}"
    return f"{role}: {clip(content)}"


class Reflection:
    """Reflections and the prompt proposals they make."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        agents: Supervisor,
        models: ModelClient,
        budgets: Budgets,
        memory: Memory,
        board: Board,
        tools: Registry,
        proposals: Proposals,
    ) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        self.models = models
        self.budgets = budgets
        self.memory = memory
        self.board = board
        self.tools = tools
        self.proposals = proposals

    # -- reflect ------------------------------------------------------------------

    async def reflect(
        self, agent: str, scope: str, focus: str | None, *, session_id: int, caused_by: int | None
    ) -> dict[str, Any]:
        s = self
        if scope not in SCOPES:
            raise ToolError(
                f"unknown scope {scope!r}",
                hint=f"use one of: {', '.join(SCOPES)}",
                kind="bad_arguments",
            )
        rec = s.agents.get(agent)
        over = s.budgets.over_budget(agent, s.budgets.guards(rec))
        if over is not None:
            raise ToolError(
                f"cannot reflect now: {over}",
                hint="a reflection spends the same daily budget as your sessions; "
                "it resets at midnight UTC, or a person can raise the agent's "
                "daily_tokens / daily_cost guard",
                kind="budget",
            )
        source = f"reflection:{agent}"
        material, cut = await self._material(rec, scope, session_id)
        whole = len(rec.system_prompt) <= PROMPT_CHARS
        messages = [
            {"role": "user", "content": self._prompt(rec, scope, focus, material, cut, whole)}
        ]

        async def relay(kind: str, data: dict[str, Any]) -> None:
            await s.bus.emit(agent, kind, data, caused_by=caused_by, source=source)

        async def ignore(kind: str, text: str) -> None:
            return None

        completion = await s.models.complete(rec.model, messages, [], on_delta=ignore, emit=relay)
        s.budgets.charge(agent, completion.usage)
        usage = completion.usage.as_dict()
        try:
            critique = parse(completion.text)
        except ToolError as exc:
            await s.bus.emit(
                agent,
                "reflection.failed",
                {
                    "scope": scope,
                    "error": str(exc),
                    "answer": clip(completion.text, 1000),
                    "usage": usage,
                },
                caused_by=caused_by,
                source=source,
            )
            raise
        summary = await self._apply(
            rec, critique, whole, session_id=session_id, caused_by=caused_by, source=source
        )
        summary = {"scope": scope, "focus": focus, **summary, "usage": usage}
        ev = await s.bus.emit(
            agent, "reflection.completed", summary, caused_by=caused_by, source=source
        )
        return {**summary, "event": ev.id}

    def _prompt(
        self, rec: AgentRecord, scope: str, focus: str | None, material: str, cut: bool, whole: bool
    ) -> str:
        shown = rec.system_prompt if whole else rec.system_prompt[:PROMPT_CHARS]
        prompt_note = (
            ""
            if whole
            else ("\n  Your prompt is too long to show whole here: do not propose a change.")
        )
        body = (
            f"## Your system prompt ({len(rec.system_prompt)} characters"
            + ("" if whole else ", cut")
            + ")\n"
            + (shown or "(empty)")
            + "\n\n"
            + material
        )
        return TEMPLATE.format(
            agent=rec.id,
            scope_help=SCOPE_HELP[scope],
            focus=f"\nFocus on: {clip(focus, 500)}" if focus and focus.strip() else "",
            shape=SHAPE,
            max_lessons=MAX_LESSONS,
            max_verdicts=MAX_VERDICTS,
            max_tasks=MAX_TASKS,
            prompt_note=prompt_note,
            cut=("(Some material was cut to fit; judge what is shown.)\n" if cut else ""),
            material=body,
        )

    # -- material -----------------------------------------------------------------

    async def _material(self, rec: AgentRecord, scope: str, session_id: int) -> tuple[str, bool]:
        lines = _Lines(MATERIAL_CHARS)
        if scope == "last_session":
            await self._last_session(rec.id, session_id, lines)
        elif scope == "day":
            await self._day(rec.id, session_id, lines)
        elif scope == "tools":
            await self._tools(rec.id, lines)
        else:
            await self._tasks(rec.id, lines)
        memory = _Lines(MEMORY_CHARS)
        await self._memory(rec.id, memory)
        text = f"## {scope.replace('_', ' ')}\n{lines.text()}\n\n## Your memory\n{memory.text()}"
        return text, lines.cut or memory.cut

    async def _last_session(self, agent: str, current: int, out: _Lines) -> None:
        store = self.store
        row = await ledger.last_finished(store, agent, current)
        if row is None:
            raise ToolError(
                "you have no finished session to reflect on yet",
                hint="reflect on scope 'day', 'tools' or 'tasks' instead, or "
                "after this session has ended",
                kind="bad_arguments",
            )
        sid = row["id"]
        out.add(
            f"Session {sid} ({row['started_at']} to {row['ended_at']}): {row['status']}"
            + (f" ({row['reason']})" if row["reason"] else "")
            + f"; {row['turns']} turns; "
            f"{row['prompt_tokens'] + row['completion_tokens']} tokens; model {row['model']}"
        )
        if row["body"] is not None:
            out.add(f"It answered a message from {row['sender']}: {clip(row['body'])}")
        history = await ledger.session_history(store, agent, sid)
        if history:
            out.add("Conversation:")
            for h in history:
                out.add("  " + _turn(_json(h)))
        else:
            out.add("(no conversation was kept: the session did not finish)")
        results = await event_log.tool_results_of_session(store, agent, sid, 100)
        if results:
            out.add("Tool calls:")
        for r in results:
            res, call = _json(r["result"]), _json(r["call"])
            ok = "ok" if res.get("ok") else f"FAILED ({res.get('error_kind') or 'error'})"
            # The conversation above already quotes the results.
            said = "" if history else f": {clip(res.get('result', ''), 200)}"
            out.add(
                f"  {_tool_name(res, call)}({_tool_args(call, 150)}) -> {ok} in "
                f"{res.get('duration_ms')} ms{said}"
            )

    async def _day(self, agent: str, current: int, out: _Lines) -> None:
        store = self.store
        since = (
            (datetime.now(UTC) - timedelta(days=1))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        rows = await ledger.started_since(store, agent, since, 60)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        out.add(
            f"{len(rows)} sessions since {since}"
            + (": " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) if rows else "")
            + f"; {sum(r['tokens'] for r in rows)} tokens"
        )
        for r in rows:
            now = " (this one)" if r["id"] == current else ""
            out.add(
                f"  session {r['id']}{now} at {r['started_at'][11:16]}: {r['status']}"
                + (f" ({clip(r['reason'], 150)})" if r["reason"] else "")
                + f", {r['turns']} turns, {r['tokens']} tokens"
                + (f"; from {r['sender']}: {clip(r['body'], 120)}" if r["body"] else "")
            )
        failed = await event_log.failed_tool_results(store, agent, since, 30)
        out.add(
            f"Failed tool calls: {len(failed)}" + (" (the newest 30)" if len(failed) == 30 else "")
        )
        for r in failed:
            res, call = _json(r["result"]), _json(r["call"])
            out.add(
                f"  {r['ts'][11:16]} {_tool_name(res, call)}({_tool_args(call, 120)}): "
                f"{clip(res.get('result', ''), 200)}"
            )

    async def _tools(self, agent: str, out: _Lines) -> None:
        reg = self.tools
        rows = await event_log.tool_results(self.store, agent, 500)
        mine: dict[str, dict[str, Any]] = {}
        for r in rows:
            res, call = _json(r["result"]), _json(r["call"])
            m = mine.setdefault(_tool_name(res, call), {"calls": 0, "failed": 0, "error": ""})
            m["calls"] += 1
            if not res.get("ok"):
                m["failed"] += 1
                m["error"] = m["error"] or clip(res.get("result", ""), 200)
        if not mine:
            out.add("You called no tools recently.")
        for name, m in sorted(mine.items(), key=lambda kv: -kv[1]["calls"])[:20]:
            line = f"{name}: your calls {m['calls']}, failed {m['failed']}"
            if m["error"]:
                line += f" (latest error: {m['error']})"
            if name in reg.entries:
                st = reg.summary(name)
                line += (
                    f". Everyone: {st['calls']} calls, {st['failures']} failed, "
                    f"{st['misuses']} with bad arguments, p50 {st['p50_ms']} ms, "
                    f"p95 {st['p95_ms']} ms, verdict {st['verdict']}"
                    + (f" ({st['why']})" if st["why"] else "")
                    + (f"; note: {clip(st['note'], 150)}" if st["note"] else "")
                )
            else:
                line += ". It is not in the registry (any more)."
            out.add(line)

    async def _tasks(self, agent: str, out: _Lines) -> None:
        from legion.daemon.tasks import queries

        board = self.board
        tasks = await board.listing(agent)
        out.add(f"Tasks on your board: {len(tasks)}")
        for t in tasks[:80]:
            blockers = ", ".join(b["task"] for b in t["blocked_by"])
            out.add(
                f"  {t['task']} [{t['status']}] {clip(t['title'], 150)}"
                + (f"; lane {t['lane']}" if t["lane"] else "")
                + (f"; priority {t['priority']}" if t["priority"] else "")
                + (f"; due {t['due']}" if t["due"] else "")
                + (f"; blocked by {blockers}" if blockers else "")
                + f"; {t['status']} since {t['status_changed_at']}"
            )
        found = await queries.query(board, agent, ["stuck_in_doing", "overdue", "orphans"])
        for preset, hits in found.items():
            if hits:
                out.add(f"{preset.replace('_', ' ')}: " + ", ".join(h["task"] for h in hits))

    async def _memory(self, agent: str, out: _Lines) -> None:
        entries = await self.memory.listing(agent, "", 200)
        # The head of each entry, read without counting as an access: reflection
        # must not make every entry look recently used.
        heads = await self.memory.heads(agent, 120, 200)
        own = [e for e in entries if not e["shared"]]
        shared = len(entries) - len(own)
        out.add(
            f"Your entries: {len(own)}"
            + (f" (shared/ entries: {shared}, not yours to merge or mark)" if shared else "")
        )
        for e in own:
            out.add(
                f"  {e['path']} ({e['bytes']} bytes, read {e['access_count']} times, last "
                f"read {(e['accessed_at'] or 'never')[:10]}, updated {e['updated_at'][:10]}"
                + (f", tags {', '.join(e['tags'])}" if e["tags"] else "")
                + f"): {clip(heads.get(e['path'], ''), 120)}"
            )

    # -- applying -----------------------------------------------------------------

    async def _apply(
        self,
        rec: AgentRecord,
        c: Critique,
        whole: bool,
        *,
        session_id: int,
        caused_by: int | None,
        source: str,
    ) -> dict[str, Any]:
        s = self
        agent = rec.id
        skipped: list[str] = []

        def bounded(items: list[Any] | None, limit: int, what: str) -> list[Any]:
            items = items or []
            if len(items) > limit:
                skipped.append(f"{len(items) - limit} {what} beyond the first {limit} dropped")
            return items[:limit]

        lessons: list[str] = []
        day = datetime.now(UTC).date().isoformat()
        for text in bounded(c.lessons, MAX_LESSONS, "lessons"):
            if not text.strip():
                continue
            try:
                lessons.append(await self._lesson(agent, day, text.strip(), source, caused_by))
            except LegionError as exc:
                skipped.append(f"lesson {clip(text, 60)!r}: {exc.message}")

        verdicts: list[dict[str, str]] = []
        for v in bounded(c.tool_verdicts, MAX_VERDICTS, "tool verdicts"):
            if v.tool not in s.tools.entries:
                skipped.append(f"verdict on {v.tool!r}: there is no tool by that name")
                continue
            s.tools.stats.annotate(
                v.tool, f"{v.verdict}: {clip(v.note, 300)} (reflection by {agent})"
            )
            verdicts.append({"tool": v.tool, "verdict": v.verdict})

        tasks: list[str] = []
        for t in bounded(c.tasks, MAX_TASKS, "tasks"):
            try:
                view = await s.board.create(
                    agent,
                    clip(t.title, 200),
                    body=t.body[:4000],
                    lane="reflection",
                    source=source,
                    caused_by=caused_by,
                )
                tasks.append(str(view["task"]))
            except LegionError as exc:
                skipped.append(f"task {clip(t.title, 60)!r}: {exc.message}")

        proposal: int | None = None
        p = c.prompt_proposal
        if p is not None:
            text = p.text.strip()
            why = (
                "it was empty"
                if not text
                else "your prompt was too long to be shown whole"
                if not whole
                else "it is the same as your current prompt"
                if text == rec.system_prompt.strip()
                else f"it is longer than {MAX_SYSTEM_PROMPT} characters"
                if len(text) > MAX_SYSTEM_PROMPT
                else None
            )
            if why:
                skipped.append(f"prompt proposal: {why}")
            else:
                proposal = await self.proposals.propose(
                    rec, text, p.rationale.strip()[:2000], session_id or None, caused_by, source
                )

        memory = c.memory or Consolidation()
        merged: list[dict[str, Any]] = []
        for m in bounded(memory.merge, MAX_MERGES, "memory merges"):
            try:
                merged.append(await self._merge(agent, m, source, caused_by))
            except LegionError as exc:
                skipped.append(f"merge into {m.into!r}: {exc.message}")
        staled: list[str] = []
        for path in bounded(memory.stale, MAX_STALE, "stale marks"):
            try:
                if await self._stale(agent, path, source, caused_by):
                    staled.append(path)
            except LegionError as exc:
                skipped.append(f"stale {path!r}: {exc.message}")

        return {
            "lessons": lessons,
            "verdicts": verdicts,
            "tasks": tasks,
            "proposal": proposal,
            "merged": merged,
            "staled": staled,
            "skipped": skipped,
        }

    async def _lesson(
        self, agent: str, day: str, text: str, source: str, caused_by: int | None
    ) -> str:
        known = await self.memory.find_own(agent, "lessons/", text)
        if known is not None:
            raise Conflict(f"already learned: {known}", hint="nothing to do", kind="lesson_known")
        base = f"lessons/{day}-{slug(text)}"
        for n in range(1, 10):
            path = f"{base}.md" if n == 1 else f"{base}-{n}.md"
            try:
                entry, _ = await self.memory.write(
                    agent,
                    path,
                    text,
                    mode="create",
                    tags=["lesson"],
                    source=source,
                    caused_by=caused_by,
                )
            except Conflict:
                continue
            return str(entry.path)
        raise Conflict(
            "too many lessons with the same words today", hint="word the lesson differently"
        )

    async def _own(self, agent: str, paths: list[str]) -> dict[str, Any]:
        """The agent's own entries among `paths` (read without counting an access)."""
        return await self.memory.peek(agent, paths)

    async def _merge(
        self, agent: str, m: Merge, source: str, caused_by: int | None
    ) -> dict[str, Any]:
        from legion.daemon.memory.service import SHARED_PREFIX, check_path

        into = check_path(m.into)
        paths = list(dict.fromkeys(check_path(p) for p in m.paths))
        if not m.content.strip():
            raise InvalidParams("the merged content is empty", hint="give the merged text")
        if into.startswith(SHARED_PREFIX) or any(p.startswith(SHARED_PREFIX) for p in paths):
            raise Conflict(
                "shared/ entries belong to everyone; reflection merges only your own entries",
                hint="leave shared/ entries out of merges",
            )
        found = await self._own(agent, [*paths, into])
        missing = [p for p in paths if p not in found]
        if missing:
            raise NotFound(
                f"no entry at {', '.join(missing)}",
                hint="merge only paths listed under 'Your memory'",
            )
        if into in found and into not in paths:
            # Writing over an entry that is not part of the merge would lose it.
            raise Conflict(
                f"{into} exists and is not among the merged paths",
                hint="list it in paths to merge it too, or merge into a new path",
            )
        tags = sorted({t for p in paths for t in json.loads(found[p]["tags"])} - {"stale"})
        await self.memory.write(
            agent, into, m.content, mode="replace", tags=tags, source=source, caused_by=caused_by
        )
        removed = []
        for p in paths:
            if p != into:
                await self.memory.delete(agent, p, source=source, caused_by=caused_by)
                removed.append(p)
        return {"into": into, "removed": removed}

    async def _stale(self, agent: str, path: str, source: str, caused_by: int | None) -> bool:
        from legion.daemon.memory.service import SHARED_PREFIX, check_path

        path = check_path(path)
        if path.startswith(SHARED_PREFIX):
            raise Conflict(
                "shared/ entries belong to everyone; reflection marks only your own",
                hint="leave shared/ entries out",
            )
        row = (await self._own(agent, [path])).get(path)
        if row is None:
            raise NotFound(f"no entry at {path}", hint="mark only paths listed under 'Your memory'")
        tags = json.loads(row["tags"])
        if "stale" in tags:
            return False
        await self.memory.write(
            agent,
            path,
            row["content"],
            mode="replace",
            tags=[*tags, "stale"],
            source=source,
            caused_by=caused_by,
        )
        return True
