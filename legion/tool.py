"""The public tool API: a typed Python function the model can call.

This module is part of the contract (plugins import it through
legion.plugin): it imports nothing from the daemon.

The JSON schema the model sees is derived from the function's signature
(msgspec builds a struct from the parameters, and its schema), and the same
struct validates the model's arguments. A bad call gets an error the model
can act on: which argument, what was expected, the valid values, and the
whole signature, so a small model corrects itself on the next turn.
"""

from __future__ import annotations

import inspect
import json
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, overload

import anyio
import msgspec

from legion.errors import Conflict, InvalidParams, LegionError, NotFound, PermissionDenied
from legion.validation import problem, type_name


class ToolCall(msgspec.Struct):
    id: str
    name: str
    # The raw JSON text the model produced; parsed (and refused) by Tool.parse.
    arguments: str


@dataclass
class ToolContext:
    """What a tool knows about the call: who calls it, from which session.

    This is all a plugin's tool receives. Legion's kernel tools receive a
    KernelContext (legion/daemon/tools/context.py), which adds the services
    they act on; no tool receives the daemon's internals as a whole."""

    agent_id: str
    session_id: int
    # The `tool.call` event of this call: what the tool's own events are caused by.
    call_event: int | None = None
    # The `[plugins.settings.NAME]` table of the plugin that provides the tool.
    settings: dict[str, Any] = field(default_factory=dict)
    # Agent-to-agent hops that led to the message being handled (loop guard).
    hops: int = 0


class ToolError(Exception):
    """A tool's own refusal, reported to the model as the call's result.

    `kind` "bad_arguments" marks the caller's mistake (counted as a misuse in
    the tool statistics, not as the tool failing)."""

    def __init__(self, message: str, hint: str = "", kind: str = "tool_error") -> None:
        super().__init__(message)
        self.hint = hint
        self.kind = kind


# A service's refusals that are the caller's mistake.
CALLER_ERRORS = (InvalidParams, NotFound, Conflict, PermissionDenied)


@dataclass
class ToolResult:
    call: ToolCall
    ok: bool
    content: str
    duration_ms: float
    error_kind: str = ""
    # The caller's mistake (bad arguments, a refused request), not the tool failing:
    # the statistics count it apart, so a misused tool is not marked degraded.
    misuse: bool = False

    def as_message(self) -> dict[str, Any]:
        return {
            "role": "tool",
            "tool_call_id": self.call.id,
            "name": self.call.name,
            "content": self.content,
        }


class Tool:
    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        keywords: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = description or doc.split("\n\n")[0].replace("\n", " ")
        # The rest of the docstring: shown by tool_search/tools show, never in the prompt.
        self.details = doc.split("\n\n", 1)[1].strip() if "\n\n" in doc else ""
        self.timeout = timeout
        # Words tool_search matches besides the name and description.
        self.keywords = [k.lower() for k in keywords]
        self.wants_context = False
        fields: list[Any] = []
        hints = typing.get_type_hints(fn, include_extras=True)
        for pname, param in inspect.signature(fn).parameters.items():
            if pname == "ctx":
                self.wants_context = True
                continue
            tp = hints.get(pname, Any)
            if param.default is inspect.Parameter.empty:
                fields.append((pname, tp))
            else:
                fields.append((pname, tp, param.default))
        self.args_type = msgspec.defstruct(
            f"{self.name}_args", fields, forbid_unknown_fields=True, kw_only=True
        )
        self.is_async = inspect.iscoroutinefunction(fn)

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema sent to the model."""
        params = msgspec.json.schema(self.args_type)
        defs = params.pop("$defs", {})
        ref = params.get("$ref", "")
        if ref:
            params = defs.pop(ref.rsplit("/", 1)[-1])
        params.pop("title", None)
        if defs:
            params["$defs"] = defs
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }

    def signature(self) -> str:
        parts = []
        for f in msgspec.structs.fields(self.args_type):
            if f.required:
                default = ""
            else:
                value = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
                default = f" = {value!r}"
            parts.append(f"{f.name}: {type_name(f.type)}{default}")
        return f"{self.name}({', '.join(parts)})"

    def parse(self, raw: str) -> Any:
        """The model's argument text -> the typed arguments, or a ToolError to show it."""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"the arguments are not valid JSON ({exc.msg} at position {exc.pos})",
                hint=f"send a JSON object, e.g. {self._example()}; signature: {self.signature()}",
                kind="bad_arguments",
            ) from None
        if not isinstance(data, dict):
            raise ToolError(
                f"the arguments must be a JSON object, got {type(data).__name__}",
                hint=f"e.g. {self._example()}; signature: {self.signature()}",
                kind="bad_arguments",
            )
        try:
            return msgspec.convert(data, self.args_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolError(
                explain(str(exc)), hint=f"signature: {self.signature()}", kind="bad_arguments"
            ) from None

    def _example(self) -> str:
        example = {f.name: "..." for f in msgspec.structs.fields(self.args_type) if f.required}
        return json.dumps(example)

    async def invoke(self, call: ToolCall, ctx: ToolContext, default_timeout: float) -> ToolResult:
        start = time.perf_counter()
        timeout = self.timeout or default_timeout
        try:
            args = self.parse(call.arguments)
            kwargs = msgspec.structs.asdict(args)
            if self.wants_context:
                kwargs["ctx"] = ctx
            with anyio.fail_after(timeout):
                if self.is_async:
                    value = await self.fn(**kwargs)
                else:
                    value = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
            content = value if isinstance(value, str) else json.dumps(value, default=str)
            return ToolResult(call, True, content, _ms(start))
        except ToolError as exc:
            return ToolResult(
                call,
                False,
                error_text(str(exc), exc.hint),
                _ms(start),
                exc.kind,
                misuse=exc.kind == "bad_arguments",
            )
        except LegionError as exc:
            # A service's own refusal (not found, conflict, quota...) reaches the model
            # with its hint and candidates: tools need not translate it themselves.
            hint = exc.hint or ""
            if exc.candidates:
                hint = f"{hint} (near: {', '.join(exc.candidates)})".strip()
            return ToolResult(
                call,
                False,
                error_text(exc.message, hint),
                _ms(start),
                exc.kind,
                misuse=isinstance(exc, CALLER_ERRORS),
            )
        except TimeoutError:
            return ToolResult(
                call,
                False,
                error_text(
                    f"{self.name} timed out after {timeout:g}s",
                    "try again with a smaller request, or do without this tool",
                ),
                _ms(start),
                "timeout",
            )
        except Exception as exc:  # a tool's crash is the model's information, not ours
            return ToolResult(
                call, False, error_text(f"{self.name} failed: {exc}", ""), _ms(start), "crash"
            )


@overload
def tool(fn: Callable[..., Any], **options: Any) -> Tool: ...
@overload
def tool(fn: None = None, **options: Any) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None, **options: Any
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: `@tool`, or `@tool(timeout=5, keywords=[...])`, turns a function into a Tool."""
    if fn is None:
        return lambda f: Tool(f, **options)
    return Tool(fn, **options)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def error_text(message: str, hint: str) -> str:
    return json.dumps({"error": message, **({"hint": hint} if hint else {})})


def explain(msg: str) -> str:
    where, kind, detail = problem(msg)
    if kind == "unknown":
        return f"unknown argument {where!r}"
    if kind == "missing":
        return f"missing required argument {where!r}"
    return f"argument {where!r}: {detail}" if where else detail


ToolFn = Callable[..., Awaitable[Any] | Any]
