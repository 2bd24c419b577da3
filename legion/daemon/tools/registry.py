"""The tool registry: one place for every tool, and the one way tools are called.

The prompt carries only the kernel tools and two meta-tools, `tool_search`
and `tool_invoke`: every schema in the prompt is paid for on every turn.
Everything else (more kernel tools, the tool-writing tools, starter and
plugin tools, agent-written tools) is here, found by search and called by
name. A model that calls a registry tool directly by name, as small models
do once they have seen it in a search, is served as if it had used
`tool_invoke`.

Every call, prompt or registry, is recorded in the tool statistics.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from legion.daemon.llm.types import ToolCall
from legion.daemon.tools.authored import Authored, AuthoredTools
from legion.daemon.tools.stats import Stats
from legion.errors import InvalidParams, NotFound, close_matches
from legion.tool import Tool, ToolContext, ToolError, ToolResult, error_text, explain

log = structlog.get_logger("legion.tools")
WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "the",
        "to",
        "of",
        "for",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "or",
        "is",
        "are",
        "be",
        "it",
        "me",
        "my",
        "i",
        "you",
        "your",
        "that",
        "this",
        "what",
        "which",
        "how",
        "do",
        "does",
        "can",
        "use",
        "using",
    }
)
SCHEMA_HITS = 3


def words(text: str) -> list[str]:
    return [_stem(w) for w in WORD.findall(text.lower()) if w not in STOP]


def _stem(w: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


@dataclass
class Entry:
    """A registry tool as agents and people see it."""

    name: str
    kind: str  # kernel | builtin | starter | plugin | authored
    description: str
    keywords: list[str]
    plugin: str | None = None
    tool: Tool | None = None  # in-daemon tools; authored tools run in the sandbox
    details: str = ""
    index: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Weighted words: the name counts most, then keywords, then the description.
        idx: dict[str, float] = {}
        for w in words(self.description + " " + self.details[:400]):
            idx[w] = max(idx.get(w, 0), 1.0)
        for w in words(" ".join(self.keywords)):
            idx[w] = max(idx.get(w, 0), 2.5)
        for w in words(self.name.replace("_", " ")):
            idx[w] = max(idx.get(w, 0), 3.0)
        self.index = idx


class Registry:
    def __init__(
        self,
        prompt: list[Tool],
        builtin: list[Tool],
        plugin_tools: list[tuple[str, Tool]],
        authored: AuthoredTools,
        stats: Stats,
        *,
        tool_timeout: float,
        sandbox_timeout: float,
        plugin_settings: dict[str, dict[str, Any]],
    ) -> None:
        self.tool_timeout = tool_timeout
        self.sandbox_timeout = sandbox_timeout
        self.plugin_settings = plugin_settings
        self.prompt = {t.name: t for t in prompt}
        self.authored = authored
        self.stats = stats
        self.entries: dict[str, Entry] = {}
        for t in prompt:
            self._add(t, "kernel", None)
        for t in builtin:
            self._add(t, "builtin" if t.name.startswith("tool_") else "kernel", None)
        for plugin, t in plugin_tools:
            if t.name in self.entries:
                continue  # the built-in wins; `legion plugins` shows the plugin's list
            self._add(t, "starter" if plugin == "starter" else "plugin", plugin)
        authored.reserved = set(self.entries)
        for a in authored.tools.values():
            if a.name in self.entries:
                # A plugin installed later took the name: the plugin's tool wins,
                # and the agent's is kept (not callable) until renamed or deleted.
                log.warning(
                    "an agent-written tool is hidden by a tool of the same name",
                    tool=a.name,
                    maintainer=a.maintainer,
                    by=self.entries[a.name].plugin or self.entries[a.name].kind,
                )
                continue
            self.refresh(a.name)
        self._schemas = [t.schema() for t in prompt]

    def _add(self, t: Tool, kind: str, plugin: str | None) -> None:
        self.entries[t.name] = Entry(t.name, kind, t.description, t.keywords, plugin, t, t.details)

    def refresh(self, name: str) -> None:
        """Re-index an agent-written tool after a write or an edit."""
        a = self.authored.tools.get(name)
        if a is None:
            self.entries.pop(name, None)
            return
        self.entries[name] = Entry(name, "authored", a.description, a.keywords)

    async def delete(
        self, agent: str | None, name: str, *, source: str, caused_by: int | None = None
    ) -> dict[str, Any]:
        if name not in self.authored.tools and name in self.entries:
            raise InvalidParams(
                f"{name} is a {self.entries[name].kind} tool; only tools "
                "written by agents can be deleted",
                hint="a plugin's tools go when the plugin is uninstalled or "
                "listed in plugins.disabled",
            )
        out = await self.authored.delete(agent, name, source=source, caused_by=caused_by)
        self.refresh(name)
        self.stats.forget(name)
        return out

    # -- what the prompt carries ------------------------------------------------------

    def prompt_schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    def names(self) -> set[str]:
        return set(self.entries)

    # -- search and show --------------------------------------------------------------

    def search(self, query: str, limit: int = 5, kind: str | None = None) -> list[dict[str, Any]]:
        q = words(query)
        scored: list[tuple[float, str]] = []
        for e in self.entries.values():
            if kind and e.kind != kind:
                continue
            if e.name in self.prompt and e.name.startswith("tool_"):
                continue  # the meta-tools are already in every prompt
            score = 0.0
            if query.strip().lower() == e.name:
                score += 10
            for w in q:
                if w in e.index:
                    score += e.index[w]
                else:
                    score += 0.5 * max(
                        (
                            v
                            for k, v in e.index.items()
                            if len(w) >= 3
                            and (k.startswith(w) or (w.startswith(k) and len(k) >= 3))
                        ),
                        default=0,
                    )
            if score <= 0:
                continue
            if self.summary(e.name)["verdict"] == "degraded":
                score *= 0.6
            a = self.authored.tools.get(e.name)
            if a is not None and a.status != "ok":
                score *= 0.5
            scored.append((score, e.name))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [
            self.card(name, schema=i < SCHEMA_HITS, score=score)
            for i, (score, name) in enumerate(scored[:limit])
        ]

    def card(self, name: str, *, schema: bool = True, score: float | None = None) -> dict[str, Any]:
        e = self.get(name)
        stat = self.summary(name)
        out: dict[str, Any] = {
            "name": e.name,
            "kind": e.kind,
            "description": e.description,
            "keywords": e.keywords,
            "in_prompt": name in self.prompt,
        }
        if e.plugin:
            out["plugin"] = e.plugin
        if score is not None:
            out["score"] = round(score, 2)
        out["verdict"] = stat["verdict"]
        out["calls"] = stat["calls"]
        a = self.authored.tools.get(name)
        if a is not None:
            out.update(
                {
                    "author": a.author,
                    "maintainer": a.maintainer,
                    "status": a.status,
                    "version": a.version,
                    "content_hash": a.content_hash,
                }
            )
            if a.problem:
                out["problem"] = a.problem
        if schema:
            out["parameters"] = self.parameters(name)
            out["signature"] = a.signature() if a else (e.tool.signature() if e.tool else name)
        return out

    def parameters(self, name: str) -> dict[str, Any]:
        e = self.get(name)
        if e.tool is not None:
            params: dict[str, Any] = e.tool.schema()["function"]["parameters"]
            return params
        return self.authored.get(name).schema

    def show(self, name: str) -> dict[str, Any]:
        out = self.card(name)
        e = self.entries[name]
        if e.details:
            out["details"] = e.details
        out["stats"] = self.summary(name)
        if name in self.authored.tools:
            out.update(self.authored.read(name))
        return out

    def get(self, name: str) -> Entry:
        e = self.entries.get(name)
        if e is None:
            near = close_matches(name, list(self.entries))
            raise NotFound(
                f"there is no tool named {name!r}",
                hint=("did you mean " + ", ".join(near) + "? " if near else "")
                + "find tools with tool_search(query=...) (from a shell: "
                "legion tools search WORDS)",
                candidates=near,
                kind="unknown_tool",
            )
        return e

    def summary(self, name: str) -> dict[str, Any]:
        """A tool's statistics and verdict, judged against its own timeout."""
        return self.stats.summary(
            name, self._timeout(self.entries[name]) if name in self.entries else None
        )

    def _timeout(self, e: Entry) -> float:
        if e.kind == "authored":
            a = self.authored.tools[e.name]
            return min(a.timeout or 1e9, self.sandbox_timeout)
        return e.tool.timeout if e.tool and e.tool.timeout else self.tool_timeout

    # -- calls ------------------------------------------------------------------------

    async def run(self, call: ToolCall, ctx: ToolContext, time_limit: float) -> ToolResult:
        """Run one call of any tool; never raises for the tool's own failures."""
        if call.name == "tool_invoke":
            return await self._invoke(call, ctx, time_limit)
        start = time.perf_counter()
        e = self.entries.get(call.name)
        if e is None:
            near = close_matches(call.name, list(self.entries))
            return ToolResult(
                call,
                False,
                error_text(
                    f"there is no tool named {call.name!r}",
                    ("did you mean " + ", ".join(near) + "? " if near else "")
                    + "search the registry with tool_search(query=...), then call what it finds "
                    "with tool_invoke(name=..., arguments={...})",
                ),
                0.0,
                "unknown_tool",
                misuse=True,
            )
        if e.tool is not None:
            if e.plugin:
                # A plugin's tool gets the public context alone (never the kernel's
                # services), with its own `[plugins.settings.NAME]` table.
                ctx = ToolContext(
                    agent_id=ctx.agent_id,
                    session_id=ctx.session_id,
                    call_event=ctx.call_event,
                    hops=ctx.hops,
                    settings=self.plugin_settings.get(e.plugin, {}),
                )
            result = await e.tool.invoke(call, ctx, time_limit)
        else:
            result = await self._call_authored(call, ctx, time_limit)
        result.duration_ms = round((time.perf_counter() - start) * 1000, 3)
        self.stats.record(
            call.name,
            result.duration_ms,
            result.ok,
            result.misuse,
            None if result.ok else result.content,
        )
        return result

    async def _invoke(self, call: ToolCall, ctx: ToolContext, time_limit: float) -> ToolResult:
        meta = self.prompt["tool_invoke"]
        try:
            args = meta.parse(call.arguments)
        except ToolError as exc:
            return ToolResult(
                call, False, error_text(str(exc), exc.hint), 0.0, "bad_arguments", misuse=True
            )
        arguments = args.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                return ToolResult(
                    call,
                    False,
                    error_text(
                        "arguments is a string that is not JSON",
                        'pass arguments as an object, e.g. {"name": "http_get", '
                        '"arguments": {"url": "http://..."}}',
                    ),
                    0.0,
                    "bad_arguments",
                )
        if args.name == "tool_invoke":
            return ToolResult(
                call,
                False,
                error_text("tool_invoke cannot invoke itself", "name the tool you want to run"),
                0.0,
                "bad_arguments",
            )
        inner = ToolCall(id=call.id, name=args.name, arguments=json.dumps(arguments))
        result = await self.run(inner, ctx, time_limit)
        return ToolResult(
            call, result.ok, result.content, result.duration_ms, result.error_kind, result.misuse
        )

    async def _call_authored(
        self, call: ToolCall, ctx: ToolContext, time_limit: float
    ) -> ToolResult:
        a: Authored = self.authored.tools[call.name]
        if a.status != "ok":
            mine = ctx.agent_id in (a.author, a.maintainer)
            return ToolResult(
                call,
                False,
                error_text(
                    f"{a.name} does not build: {a.problem}",
                    "fix it with tool_read and tool_edit"
                    if mine
                    else f"ask its maintainer {a.maintainer} to fix it",
                ),
                0.0,
                "broken",
            )
        try:
            raw = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolResult(
                call,
                False,
                error_text(
                    f"the arguments are not valid JSON ({exc.msg} at position {exc.pos})",
                    f"signature: {a.signature()}",
                ),
                0.0,
                "bad_arguments",
                misuse=True,
            )
        if not isinstance(raw, dict):
            return ToolResult(
                call,
                False,
                error_text("the arguments must be a JSON object", f"signature: {a.signature()}"),
                0.0,
                "bad_arguments",
                misuse=True,
            )
        # The sandbox has its own, shorter clock; this one only guards against a
        # runner that never reports.
        with anyio.move_on_after(time_limit + 10):
            res = await self.authored.call(a, raw, ctx.agent_id or None, time_limit)
            if res.get("ok"):
                value = res.get("value")
                content = value if isinstance(value, str) else json.dumps(value, default=str)
                if res.get("truncated"):
                    content = f"{content}\n[legion: {res.get('note')}]"
                return ToolResult(call, True, content, 0.0)
            kind = res.get("kind", "crash")
            if kind == "bad_arguments":
                return ToolResult(
                    call,
                    False,
                    error_text(explain(res.get("error", "")), f"signature: {a.signature()}"),
                    0.0,
                    kind,
                    misuse=True,
                )
            message = res.get("error", "the tool failed")
            if res.get("traceback"):
                message += f" ({res['traceback']})"
            if res.get("stdout"):
                # What it printed before failing is often the best clue.
                message += f"; it printed: {res['stdout'][-500:]}"
            return ToolResult(call, False, error_text(message, res.get("hint", "")), 0.0, kind)
        return ToolResult(
            call, False, error_text(f"{a.name} did not report back", ""), 0.0, "timeout"
        )

    # -- for the CLI and RPC ---------------------------------------------------------

    def listing(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            self.card(n, schema=False)
            for n in sorted(self.entries)
            if kind is None or self.entries[n].kind == kind
        ]

    def check_agent_bound(self, name: str, agent: str | None) -> None:
        """Kernel and builtin tools act for an agent: a shell run must name one."""
        e = self.get(name)
        if (
            agent is None
            and e.kind in ("kernel", "builtin")
            and e.tool is not None
            and e.tool.wants_context
        ):
            raise InvalidParams(
                f"{name} acts for an agent; say which",
                hint=f"legion tools run {name} --agent ID ...",
            )
