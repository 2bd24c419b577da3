"""A plugin with one of each extension point, for the tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litellm.llms.custom_llm import CustomLLM

from legion.plugin import PluginHost, RpcMethod, ToolContext, WatcherKind, hookimpl, tool


@tool(keywords=["probe", "echo", "settings"])
def probe_echo(text: str, ctx: ToolContext) -> dict[str, Any]:
    """Echo text back, with the plugin's settings."""
    return {"text": text, "greeting": ctx.settings.get("greeting", "none")}


class CounterConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    start: int = 0


_ticks = itertools.count()


async def count(cfg: CounterConfig) -> dict[str, Any]:
    return {"n": cfg.start + next(_ticks)}


class ProbeModel(CustomLLM):
    async def astreaming(
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        yield {
            "text": f"probe model {model} says hi",
            "is_finished": False,
            "finish_reason": "",
            "usage": None,
            "index": 0,
            "tool_use": None,
        }
        yield {
            "text": "",
            "is_finished": True,
            "finish_reason": "stop",
            "index": 0,
            "tool_use": None,
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }


class PingParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    word: str


async def ping(params: PingParams, host: PluginHost) -> dict[str, Any]:
    return {"echo": params.word, "agents": len(host.agents())}


@hookimpl
def legion_tools() -> list[Any]:
    return [probe_echo]


@hookimpl
def legion_watcher_kinds() -> list[WatcherKind]:
    return [WatcherKind("counter", CounterConfig, count, "changed(n)", "counts up")]


@hookimpl
def legion_model_providers() -> dict[str, Any]:
    return {"probe": ProbeModel()}


@hookimpl
def legion_rpc_methods() -> list[RpcMethod]:
    return [RpcMethod("probe.ping", ping, PingParams, "echo a word")]


@hookimpl
def legion_transports() -> list[Any]:
    return ["probe-transport"]
