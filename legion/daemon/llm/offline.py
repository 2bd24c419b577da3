"""Offline models as real litellm custom providers.

`mock/echo` answers every call with a deterministic reply that names what it
received: the embedded default, so a fresh install works with no key.

`mock/script` plays a scripted conversation from a TOML file (its provider's
`script`), one `[[turn]]` per model call:

    [[turn]]
    reasoning = "I should look at the clock."   # streamed as reasoning deltas
    text = "Checking."                          # streamed as text deltas
    tool_calls = [{ name = "now", arguments = { timezone = "UTC" } }]

    [[turn]]
    error = 429            # fail this call with an HTTP status...
    retry_after = 0.2      # ...and a Retry-After (seconds)

    [[turn]]
    delay = 2.0            # wait before the first chunk
    stall = true           # stream a little, then go silent forever
    tool_calls = [{ name = "now", raw_arguments = "{not json" }]

    [[turn]]
    text = "again"
    repeat = true          # this turn plays on every later call
    usage = { prompt_tokens = 500, completion_tokens = 500 }

The position in the script is kept in `<script>.state`, so a daemon that is
killed mid-conversation resumes the tape where it was. Every call's messages
are appended to `<script>.log` (JSON lines), so tests can check what the
model was shown.

Both go through `litellm.acompletion` like any real provider: the same
streaming wrapper, the same exceptions, the same usage objects.
"""

# litellm types `astreaming` as a coroutine returning an iterator, but calls it as
# an async generator (as its own custom providers are written); its error class
# is untyped. Hence:
# mypy: disable-error-code="override,no-untyped-call,attr-defined,unreachable"
from __future__ import annotations

# asyncio, not anyio: these are litellm custom providers, called by litellm's own
# asyncio code.
import asyncio
import fcntl
import json
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litellm.llms.custom_llm import CustomLLM, CustomLLMError

CHUNK = 12  # characters per streamed text chunk


def _chunk(
    text: str = "",
    *,
    finish: str = "",
    usage: dict[str, int] | None = None,
    tool: dict[str, Any] | None = None,
    reasoning: str | None = None,
) -> Any:
    out: dict[str, Any] = {
        "text": text,
        "is_finished": bool(finish),
        "finish_reason": finish,
        "usage": usage,
        "index": 0,
        "tool_use": tool,
    }
    if reasoning is not None:
        out["provider_specific_fields"] = {"reasoning_content": reasoning}
    return out


def _estimate(messages: list[Any]) -> int:
    return max(1, sum(len(json.dumps(m, default=str)) for m in messages) // 4)


def _last_user(messages: list[Any]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class EchoModel(CustomLLM):
    async def astreaming(
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        optional = kwargs.get("optional_params") or {}
        tools = optional.get("tools") or []
        said = _last_user(messages)
        reply = (
            f'I received: "{said}" '
            f"({len(messages)} messages in context, {len(tools)} tools available)"
        )
        for i in range(0, len(reply), CHUNK):
            yield _chunk(reply[i : i + CHUNK])
        usage = {"prompt_tokens": _estimate(messages), "completion_tokens": len(reply) // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        yield _chunk(finish="stop", usage=usage)


class ScriptModel(CustomLLM):
    async def astreaming(
        self, model: str, messages: list[Any], api_base: str, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if not api_base:
            raise CustomLLMError(
                400, "mock/script needs a script: set `script` in its [providers.NAME] block"
            )
        path = Path(api_base)
        turn = _next_turn(path, messages)
        if turn is None:
            text = "(the script has no more turns)"
            yield _chunk(text)
            yield _chunk(
                finish="stop",
                usage={
                    "prompt_tokens": _estimate(messages),
                    "completion_tokens": 8,
                    "total_tokens": 8,
                },
            )
            return
        if turn.get("delay"):
            await asyncio.sleep(float(turn["delay"]))
        if turn.get("error"):
            status = int(turn["error"])
            err = CustomLLMError(status, turn.get("message", f"scripted error {status}"))
            if turn.get("retry_after") is not None:
                err.headers = {"retry-after": str(turn["retry_after"])}
            raise err
        reasoning = turn.get("reasoning", "")
        for i in range(0, len(reasoning), CHUNK):
            yield _chunk(reasoning=reasoning[i : i + CHUNK])
        text = turn.get("text", "")
        for i in range(0, len(text), CHUNK):
            yield _chunk(text[i : i + CHUNK])
            if turn.get("stall") and i >= CHUNK:
                await asyncio.Event().wait()  # silence: the caller's stall timeout must act
        if turn.get("stall"):
            await asyncio.Event().wait()
        for n, call in enumerate(turn.get("tool_calls", [])):
            args = call.get("raw_arguments")
            if args is None:
                args = json.dumps(call.get("arguments", {}))
            tool = {
                "id": call.get("id", f"call_{n}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": args},
                "index": n,
            }
            yield _chunk(tool=tool)
        usage = dict(turn.get("usage") or {})
        usage.setdefault("prompt_tokens", _estimate(messages))
        usage.setdefault("completion_tokens", max(1, (len(text) + len(reasoning)) // 4))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = "tool_calls" if turn.get("tool_calls") else "stop"
        yield _chunk(finish=finish, usage=usage)


def _next_turn(path: Path, messages: list[Any]) -> dict[str, Any] | None:
    """Take the next turn of the tape (file-locked, so concurrent calls each get one)."""
    try:
        turns = tomllib.loads(path.read_text()).get("turn", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CustomLLMError(400, f"mock/script cannot read {path}: {exc}") from None
    state = path.with_name(path.name + ".state")
    with open(state, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        raw = fh.read().strip()
        pos = json.loads(raw)["pos"] if raw else 0
        turn = turns[pos] if pos < len(turns) else None
        if turn is not None and not turn.get("repeat"):
            pos += 1
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pos": pos}))
    with open(path.with_name(path.name + ".log"), "a") as log:
        log.write(json.dumps({"messages": messages}, default=str) + "\n")
    return turn


def register() -> None:
    """Add the `mock` provider to litellm (idempotent)."""
    import litellm

    handlers = {"echo": EchoModel(), "script": ScriptModel()}

    class Router(CustomLLM):
        async def astreaming(self, model: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            name = model.split("/", 1)[-1]
            handler = handlers.get(name)
            if handler is None:
                raise CustomLLMError(
                    404, f"unknown offline model mock/{name}: use mock/echo or mock/script"
                )
            async for chunk in handler.astreaming(model, *args, **kwargs):
                yield chunk

    litellm.custom_provider_map = [
        p for p in litellm.custom_provider_map if p.get("provider") != "mock"
    ] + [{"provider": "mock", "custom_handler": Router()}]
