"""Every model call goes through here, and through litellm.

- Model references: an alias (`smart`) names one reference or an ordered
  fallback chain; a reference is `PROVIDER/MODEL`, where PROVIDER is a
  `[providers.NAME]` block or a litellm provider used with its defaults
  (`anthropic/claude-...` with ANTHROPIC_API_KEY in the environment).
- Streaming: text deltas, reasoning deltas and tool-call fragments are
  normalised; the caller gets deltas through a callback and a `Completion`.
- A completion needs its finish reason from the provider. A reply that is
  not a completion (an HTML page, broken JSON, a stream of only `[DONE]`) or a
  stream cut before its end is a provider error like any other, never an
  empty or truncated answer. (litellm makes up `finish_reason="stop"` when a
  stream simply ends, so the check reads what the provider really said.)
- Failures: 408/425/429/5xx, connection errors, timeouts, stalled streams and
  invalid replies are retried with capped exponential backoff (honouring a
  sane Retry-After); each provider has a circuit breaker; when a target gives
  up, the next one in the chain is tried. Every retry, skip and fallback is
  reported as an event; error text is redacted before it is.
- litellm is imported lazily, off the event loop, with the local cost map:
  nothing else in Legion pays for it. The daemon warms it in the background
  right after READY (`warm`); a call made meanwhile awaits that same import.
"""

from __future__ import annotations

# asyncio, not anyio, at this one edge: litellm is asyncio-only, and its import runs
# in a thread whose concurrent.futures result is awaited with asyncio.wrap_future.
import asyncio
import concurrent.futures
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import structlog

from legion.config import Config, ProviderConfig
from legion.daemon.llm.breaker import Breaker, Permit
from legion.daemon.llm.repair import repair
from legion.daemon.llm.types import Completion, ToolCall, Usage
from legion.errors import InvalidParams, LegionError, ModelUnavailable
from legion.redact import Redactor, secrets_of

log = structlog.get_logger("legion.llm")

# litellm provider prefixes usable without a [providers] block.
KNOWN_PROVIDERS = frozenset(
    {
        "openai",
        "anthropic",
        "ollama",
        "ollama_chat",
        "lm_studio",
        "hosted_vllm",
        "gemini",
        "mistral",
        "groq",
        "deepseek",
        "openrouter",
        "together_ai",
        "bedrock",
        "vertex_ai",
        "azure",
        "xai",
        "cohere",
        "fireworks_ai",
        "mock",
    }
)
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ALIAS_DEPTH = 8

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
Delta = Callable[[str, str], Awaitable[None]]

_import_lock = threading.Lock()


def litellm_module() -> Any:
    """Import litellm once, quietly, with its bundled cost map (no network)."""
    with _import_lock:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import logging

        import litellm

        from legion.daemon.llm import offline

        if not getattr(litellm, "_legion_ready", False):
            litellm.suppress_debug_info = True
            litellm.telemetry = False
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            offline.register()
            litellm._legion_ready = True
        return litellm


# The one import of this process (a failed one is tried again by the next caller).
_import: dict[str, concurrent.futures.Future[Any]] = {}


async def import_litellm() -> Any:
    """litellm, imported once per process in a background thread; every caller
    (the warm-up, a message, a cron run, an embedder) awaits the same import.

    The thread is a daemon thread of our own rather than a worker of anyio's
    pool: a worker cannot be abandoned, so a daemon stopped during the import
    would wait seconds at exit for a module nobody needs any more.
    """
    fut = _import.get("litellm")
    if fut is None or (fut.done() and fut.exception() is not None):
        fut = _import["litellm"] = concurrent.futures.Future()
        # Running from the start: a cancelled waiter cannot cancel the import for the others.
        fut.set_running_or_notify_cancel()

        def work(target: concurrent.futures.Future[Any] = fut) -> None:
            try:
                target.set_result(litellm_module())
            except BaseException as exc:  # handed to the awaiting task, which reports it
                target.set_exception(exc)

        threading.Thread(target=work, name="litellm import", daemon=True).start()
    return await asyncio.wrap_future(fut)


WARM_UP_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "noop",
            "description": "does nothing",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]


class Target:
    """One concrete model to call: a provider and a model name on it."""

    def __init__(
        self, ref: str, provider: str, cfg: ProviderConfig, model: str, base_dir: str = ""
    ) -> None:
        self.ref = ref
        self.provider = provider
        self.cfg = cfg
        self.model = model
        self.base_dir = base_dir

    @property
    def script(self) -> str:
        """mock/script's file, relative to the config file's directory."""
        from pathlib import Path

        path = Path(self.cfg.script or "").expanduser()
        return str(path if path.is_absolute() else Path(self.base_dir) / path)

    def call_kwargs(self) -> dict[str, Any]:
        import httpx

        kind = self.cfg.kind
        prefix = "openai" if kind == "openai_compatible" else kind
        kw: dict[str, Any] = {
            "model": f"{prefix}/{self.model}",
            "timeout": httpx.Timeout(self.cfg.timeout, connect=self.cfg.connect_timeout),
            **self.cfg.params,
        }
        if kind == "mock" and self.cfg.script:
            kw["api_base"] = self.script
        elif self.cfg.api_base:
            kw["api_base"] = self.cfg.api_base
        if self.cfg.api_key:
            kw["api_key"] = self.cfg.api_key
        elif kind == "openai_compatible":
            kw["api_key"] = "not-needed"  # local servers ignore it; the client insists on one
        return kw


class ModelClient:
    def __init__(self, cfg: Config, plugin_providers: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        # litellm CustomLLM handlers from plugins, by provider name.
        self.plugin_providers = dict(plugin_providers or {})
        # The built-in offline provider answers in-process: no server to protect.
        self.providers: dict[str, ProviderConfig] = {
            "mock": ProviderConfig(kind="mock", concurrency=256)
        }
        self.providers.update(cfg.providers)
        b = cfg.models.breaker
        self.breakers = {
            name: Breaker(
                name, failures=b.failures, cooldown=b.cooldown, cooldown_max=b.cooldown_max
            )
            for name in self.providers
        }
        self.limits = {name: anyio.Semaphore(p.concurrency) for name, p in self.providers.items()}
        self.calls = 0
        self._litellm: Any = None
        # Set once litellm is imported and has made its first call (see load()).
        self._ready = False
        self._loading = anyio.Lock()
        # Providers echo keys in their errors ("Incorrect API key provided: sk-...").
        self.redactor = Redactor(secrets_of(cfg))

    # -- resolution -------------------------------------------------------------

    def resolve(self, ref: str, _depth: int = 0) -> list[Target]:
        """An alias or reference -> the ordered chain of concrete targets."""
        if _depth > MAX_ALIAS_DEPTH:
            raise InvalidParams(
                f"model alias {ref!r} refers to itself in a loop",
                hint="check [models.aliases] in config.toml",
            )
        aliases = self.cfg.models.aliases
        if ref in aliases:
            entry = aliases[ref]
            chain: list[Target] = []
            for item in [entry] if isinstance(entry, str) else entry:
                chain.extend(self.resolve(item, _depth + 1))
            return chain
        provider, sep, model = ref.partition("/")
        if not sep or not model:
            raise self._unknown(ref)
        if provider in self.providers:
            return [Target(ref, provider, self.providers[provider], model, self.cfg.base_dir)]
        if provider in KNOWN_PROVIDERS or provider in self.plugin_providers:
            cfg = ProviderConfig(kind=provider)
            self.providers[provider] = cfg
            self.breakers[provider] = Breaker(
                provider,
                failures=self.cfg.models.breaker.failures,
                cooldown=self.cfg.models.breaker.cooldown,
                cooldown_max=self.cfg.models.breaker.cooldown_max,
            )
            self.limits[provider] = anyio.Semaphore(cfg.concurrency)
            return [Target(ref, provider, cfg, model)]
        raise self._unknown(ref)

    def _unknown(self, ref: str) -> InvalidParams:
        aliases = sorted(self.cfg.models.aliases)
        return InvalidParams(
            f"unknown model {ref!r}",
            hint=f"use an alias ({', '.join(aliases)}) or PROVIDER/MODEL where PROVIDER is a "
            f"[providers.NAME] block ({', '.join(sorted(self.providers))}) or a litellm "
            "provider such as anthropic, openai, ollama",
            candidates=aliases,
            kind="unknown_model",
        )

    def _register_plugins(self) -> None:
        if not self.plugin_providers:
            return
        names = set(self.plugin_providers)
        self._litellm.custom_provider_map = [
            p for p in self._litellm.custom_provider_map if p.get("provider") not in names
        ] + [{"provider": n, "custom_handler": h} for n, h in self.plugin_providers.items()]

    def resolved(self, ref: str) -> str:
        """The concrete model an alias resolves to first, for `ps` (or why not)."""
        try:
            return self.resolve(ref)[0].ref
        except LegionError as exc:
            return f"unresolved: {exc.message}"

    # -- litellm ----------------------------------------------------------------

    async def load(self) -> Any:
        """litellm, ready for calls: imported (see `import_litellm`), plugins
        registered, and one call made to the in-process `mock/echo` model (no
        network, no tokens, not counted), because litellm's first streamed
        completion sets up more (~0.6 s here). Every caller awaits the same
        work, so a message's attempt, counted after this, is never spent on it."""
        if self._ready:
            return self._litellm
        async with self._loading:
            if not self._ready:
                module = await import_litellm()
                if self._litellm is None:
                    self._litellm = module
                    self._register_plugins()
                await self._first_call()
                self._ready = True
        return self._litellm

    async def _first_call(self) -> None:
        async def ignore(_kind: str, _text: str) -> None:
            return None

        try:
            # With a tool: litellm imports its tool handling (MCP included,
            # ~0.5 s) on the first call that has tools.
            await self._stream(
                self.resolve("mock/echo")[0],
                [{"role": "user", "content": "warm-up"}],
                WARM_UP_TOOLS,
                ignore,
            )
        except Exception as exc:  # only the first real call is slower for it
            log.info("litellm warm-up call failed", error=self.describe_error(exc))

    async def warm(self) -> None:
        """Import litellm in the background, so the first call does not wait on it."""
        started = time.monotonic()
        try:
            await self.load()
        except Exception as exc:  # the first real call reports it properly
            log.warning(
                "litellm warm-up failed; the first model call will retry the import",
                error=self.redactor.text(str(exc)),
            )
            return
        log.info("litellm ready", took_s=round(time.monotonic() - started, 2))

    # -- calling ----------------------------------------------------------------

    async def complete(
        self,
        ref: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        on_delta: Delta,
        emit: Emit,
    ) -> Completion:
        """One model turn, with retries, breakers and fallbacks."""
        chain = self.resolve(ref)
        await self.load()
        retry = self.cfg.models.retry
        failures: list[str] = []
        for n, target in enumerate(chain):
            breaker = self.breakers[target.provider]
            for attempt in range(1, retry.attempts + 1):
                permit = breaker.admit()
                if permit is None:
                    failures.append(
                        f"{target.ref}: circuit open (retry in {breaker.retry_in():.1f}s)"
                    )
                    await emit(
                        "model.skipped",
                        {
                            "target": target.ref,
                            "reason": "circuit open",
                            "breaker": breaker.describe(),
                        },
                    )
                    break
                try:
                    result = await self._attempt(target, breaker, permit, messages, tools, on_delta)
                except Exception as exc:
                    status, retry_after = _classify(exc)
                    message = self.describe_error(exc)
                    retryable = status in RETRYABLE_STATUS or status is None
                    failures.append(f"{target.ref}: {message}")
                    if not retryable or attempt == retry.attempts:
                        await emit(
                            "model.error",
                            {
                                "target": target.ref,
                                "status": status,
                                "error": message,
                                "attempt": attempt,
                                "retryable": retryable,
                            },
                        )
                        break
                    wait = _backoff(attempt, retry.backoff, retry.backoff_max, retry_after)
                    if wait is None:  # told to wait longer than we are willing to
                        asked = _asked(retry_after)
                        failures[-1] += (
                            f" (the provider asked to wait {asked}, longer than "
                            f"models.retry.backoff_max = {retry.backoff_max:g}s)"
                        )
                        await emit(
                            "model.error",
                            {
                                "target": target.ref,
                                "status": status,
                                "error": message,
                                "attempt": attempt,
                                "retryable": True,
                                # JSON has no Infinity: finite seconds, or null for "forever".
                                "retry_after": (
                                    retry_after
                                    if retry_after is not None and math.isfinite(retry_after)
                                    else None
                                ),
                                "note": f"the provider asked to wait {asked}, longer than "
                                "models.retry.backoff_max; this target is given up",
                            },
                        )
                        break
                    await emit(
                        "model.retry",
                        {
                            "target": target.ref,
                            "status": status,
                            "error": message,
                            "attempt": attempt,
                            "wait_s": round(wait, 3),
                        },
                    )
                    await anyio.sleep(wait)
                    continue
                self.calls += 1
                return result
            if n + 1 < len(chain):
                await emit(
                    "model.fallback",
                    {
                        "from": target.ref,
                        "to": chain[n + 1].ref,
                        "reason": failures[-1] if failures else "",
                    },
                )
        raise ModelUnavailable(
            f"no model could answer for {ref!r}: " + "; ".join(failures[-3:]),
            hint="check the provider (is the server up? is the key set?), or add a fallback "
            "to the alias in [models.aliases]; `legion info --json` shows each provider's "
            "circuit",
        )

    async def _attempt(
        self,
        target: Target,
        breaker: Breaker,
        permit: Permit,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_delta: Delta,
    ) -> Completion:
        """One call under its breaker permit, which ends whatever happens."""
        try:
            async with self.limits[target.provider]:
                result = await self._stream(target, messages, tools, on_delta)
        except Exception as exc:
            breaker.failure(permit, self.describe_error(exc))
            raise
        else:
            breaker.success(permit)
            return result
        finally:
            # Cancelled (an interrupt, a stop, a timeout scope) or any other
            # BaseException: no verdict on the provider, but the trial is over.
            breaker.release(permit)

    def describe_error(self, exc: BaseException) -> str:
        """An error's text as events, logs and the failed message may show it."""
        return self.redactor.text(_describe(exc))

    async def _stream(
        self,
        target: Target,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_delta: Delta,
    ) -> Completion:
        litellm = self._litellm
        kwargs = target.call_kwargs()
        if tools:
            kwargs["tools"] = tools
        with anyio.fail_after(target.cfg.timeout):
            return await self._consume(litellm, target, kwargs, messages, on_delta)

    async def _consume(
        self,
        litellm: Any,
        target: Target,
        kwargs: dict[str, Any],
        messages: list[dict[str, Any]],
        on_delta: Delta,
    ) -> Completion:
        stream = await litellm.acompletion(
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_retries=0,
            num_retries=0,
            **kwargs,
        )
        text: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish = ""
        chunks = 0
        size = 0
        bounds = self.cfg.models
        usage = Usage()
        iterator = stream.__aiter__()
        while True:
            try:
                with anyio.fail_after(target.cfg.stall_timeout):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise StreamStalled(target.cfg.stall_timeout) from None
            chunks += 1
            size += _chunk_chars(chunk)
            if size > bounds.max_reply_chars:
                # A stream that never ends would grow memory and the event log
                # until the call's timeout.
                raise ReplyTooLarge(
                    f"more than {bounds.max_reply_chars:,} characters (models.max_reply_chars)"
                )
            if getattr(chunk, "usage", None):
                usage = _usage(chunk.usage)
            think = getattr(chunk, "reasoning_content", None)
            if not chunk.choices:
                if think:
                    reasoning.append(think)
                    await on_delta("reasoning", think)
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            think = getattr(delta, "reasoning_content", None) or think
            if think:
                reasoning.append(think)
                await on_delta("reasoning", think)
            if delta.content:
                text.append(delta.content)
                await on_delta("text", delta.content)
            for tc in getattr(delta, "tool_calls", None) or []:
                if (tc.index or 0) not in calls and len(calls) >= bounds.max_tool_calls:
                    raise ReplyTooLarge(
                        f"more than {bounds.max_tool_calls} tool calls in one "
                        "turn (models.max_tool_calls)"
                    )
                slot = calls.setdefault(tc.index or 0, {"id": "", "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
        said = _provider_finish(stream, finish)
        if not said:
            raise InvalidReply(sum(len(t) for t in text), len(calls), chunks)
        usage.cost = _cost(litellm, kwargs["model"], usage)
        tool_calls = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(calls.items())
        ]
        return Completion(
            text="".join(text),
            reasoning="".join(reasoning),
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=usage,
            model=target.ref,
        )

    def repair(self, completion: Completion, tool_names: set[str]) -> Completion:
        """Turn a tool call written as JSON text into a real one (see repair.py)."""
        if completion.tool_calls or not completion.text:
            return completion
        fixed = repair(completion.text, tool_names)
        if fixed is None:
            return completion
        return Completion(
            text="",
            reasoning=completion.reasoning,
            tool_calls=fixed,
            finish_reason="tool_calls",
            usage=completion.usage,
            model=completion.model,
            repaired=True,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "litellm_loaded": self._ready,
            "litellm_loading": "litellm" in _import and not _import["litellm"].done(),
            "calls": self.calls,
            "aliases": dict(self.cfg.models.aliases),
            "providers": {
                name: {
                    "kind": p.kind,
                    "api_base": p.api_base,
                    "concurrency": p.concurrency,
                    "circuit": self.breakers[name].describe(),
                }
                for name, p in self.providers.items()
            },
        }


class StreamStalled(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the stream stalled: no data for {seconds:g}s")


class ReplyTooLarge(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(f"the reply was cut off by Legion: {what} (a runaway or broken provider?)")


class InvalidReply(Exception):
    """The provider's answer was not a whole completion: nothing said it finished."""

    def __init__(self, chars: int, calls: int, chunks: int) -> None:
        if chars or calls:
            what = f"{chars} characters" + (f" and {calls} tool calls" if calls else "")
            text = (
                f"the reply ended before the model finished: no finish reason after "
                f"{what} (the connection closed early?)"
            )
        else:
            text = (
                "the provider's reply was not a completion: the stream ended without "
                "a finish reason or any content (an error page, broken JSON or an "
                "empty stream?)"
            )
        super().__init__(text)
        self.chunks = chunks


def _chunk_chars(chunk: Any) -> int:
    """Characters of text, reasoning and tool arguments one chunk carries."""
    n = len(getattr(chunk, "reasoning_content", None) or "")
    for choice in getattr(chunk, "choices", None) or []:
        delta = choice.delta
        n += len(delta.content or "") + len(getattr(delta, "reasoning_content", None) or "")
        for tc in getattr(delta, "tool_calls", None) or []:
            n += len((tc.function.arguments or "") if tc.function else "")
    return n


def _provider_finish(stream: Any, seen: str) -> str | None:
    """The finish reason the provider itself sent ("" when it sent none).

    litellm's stream wrapper ends every stream with a chunk saying "stop",
    whether or not the provider said so (a stream cut mid-way, an HTML page,
    `data: [DONE]` alone); the provider's own word is kept on the wrapper.
    Providers reached another way (no such attribute) are judged by the chunks.
    """
    if hasattr(stream, "received_finish_reason"):
        own = getattr(stream, "received_finish_reason", None) or getattr(
            stream, "intermittent_finish_reason", None
        )
        return str(own) if own else ""
    return seen


def _classify(exc: BaseException) -> tuple[int | None, float | None]:
    """(HTTP status or None for connection-level trouble, Retry-After seconds)."""
    if isinstance(exc, StreamStalled | TimeoutError):
        return 408, None
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    retry_after = None
    for source in (exc, getattr(exc, "original_exception", None), exc.__cause__):
        headers = _headers(source)
        if headers:
            raw = headers.get("retry-after") or headers.get("Retry-After")
            if raw:
                retry_after = _parse_retry_after(str(raw))
                break
    if retry_after is None:
        # litellm folds some provider errors into its message text only.
        m = re.search(r"retry[- ]after[\"':= ]+([0-9.]+|inf(?:inity)?)", str(exc), re.I)
        if m:
            retry_after = _parse_retry_after(m.group(1))
    return status, retry_after


def _headers(source: Any) -> dict[str, Any] | None:
    if source is None:
        return None
    for attr in ("litellm_response_headers", "headers"):
        h = getattr(source, attr, None)
        if h:
            return dict(h)
    response = getattr(source, "response", None)
    h = getattr(response, "headers", None)
    return dict(h) if h else None


def _parse_retry_after(raw: str) -> float | None:
    """Seconds to wait, `math.inf` for "longer than anyone would", None to ignore.

    Seconds or an HTTP date, as the RFC says; `Infinity` or an absurd number
    means the provider will not have us back soon (the target is given up). A
    negative, NaN or unreadable value says nothing: our own backoff applies.
    """
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            value = max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if math.isnan(value) or value < 0:
        return None
    return value


def _asked(seconds: float | None) -> str:
    return f"{seconds:g}s" if seconds is not None and math.isfinite(seconds) else "forever"


def _backoff(attempt: int, base: float, cap: float, retry_after: float | None) -> float | None:
    if retry_after is not None:
        return retry_after if retry_after <= cap else None  # inf is never <= cap
    return float(min(cap, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # litellm prefixes its class names; keep the first line, bounded.
    return text.splitlines()[0][:300]


def _usage(raw: Any) -> Usage:
    details = getattr(raw, "completion_tokens_details", None)
    reasoning = getattr(details, "reasoning_tokens", 0) if details else 0
    return Usage(
        prompt_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
        reasoning_tokens=int(reasoning or 0),
    )


def _cost(litellm: Any, model: str, usage: Usage) -> float:
    try:
        prompt, completion = litellm.cost_per_token(
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
        return float(prompt + completion)
    except Exception:
        return 0.0  # litellm has no price for this model (local, mock)


def tool_schema_bytes(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps(tools, separators=(",", ":")))
