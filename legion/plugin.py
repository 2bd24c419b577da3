"""Legion's plugin API: every extension point, declared in one place.

A plugin is a Python module (or object) with functions marked `@hookimpl`
whose names match the specifications below. Third parties publish it under
the `legion.plugins` entry-point group; the daemon discovers it at start:

    # pyproject.toml of the plugin package
    [project.entry-points."legion.plugins"]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    from legion.plugin import ToolContext, hookimpl, tool

    @tool(keywords=["weather"])
    async def forecast(city: str, ctx: ToolContext) -> dict:
        '''Tomorrow's forecast for a city.'''
        key = ctx.settings.get("api_key")  # from [plugins.settings.my_plugin]
        ...

    @hookimpl
    def legion_tools():
        return [forecast]

Legion's own starter tools and watcher kinds are registered through these
same hooks, so the API is exercised by the project itself. A plugin that
fails to import, or whose hook raises, is reported by `legion plugins` and
skipped; it never stops the daemon. docs/plugins.md documents every hook
(a test checks it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pluggy

from legion.tool import Tool, ToolContext, ToolError, tool

PROJECT = "legion"
ENTRY_POINT_GROUP = "legion.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginHost",
    "RpcMethod",
    "Tool",
    "ToolContext",
    "ToolError",
    "WatcherKind",
    "hookimpl",
    "hookspec",
    "tool",
]


class PluginHost(Protocol):
    """What a plugin's RPC method may ask of the daemon: a small, stable surface,
    never the daemon's internals (which change between releases)."""

    def agents(self) -> list[dict[str, Any]]:
        """Every agent: id, state, model and parent."""
        ...

    async def tell(self, agent: str, text: str, *, sender: str) -> int:
        """Deliver a message to an agent's durable inbox; returns the message id.
        `sender` names who it is from (e.g. "chat:alice")."""
        ...

    async def emit(self, kind: str, data: dict[str, Any], *, agent: str | None = None) -> int:
        """Record an event (the plugin's name is its source); returns its id."""
        ...

    def settings(self) -> dict[str, Any]:
        """The plugin's own `[plugins.settings.NAME]` table."""
        ...


@dataclass
class WatcherKind:
    """A kind of watcher: how it observes, without a model.

    `config` is a msgspec Struct (declare `forbid_unknown_fields=True` so a
    typo is refused); `poll(cfg)` is awaited every interval and returns a
    dict of plain fields that the watcher's trigger reads; `default_trigger`
    is used when the watcher names none, e.g. "changed(value)".
    """

    name: str
    config: type[Any]
    poll: Callable[[Any], Awaitable[dict[str, Any]]]
    default_trigger: str
    description: str = ""


@dataclass
class RpcMethod:
    """A JSON-RPC method a plugin adds. `name` must be `PLUGIN.method` (the
    plugin's own namespace); `params` is a msgspec Struct (or None for no
    params); `handler(params, host)` is awaited with a `PluginHost` and returns
    JSON data."""

    name: str
    handler: Callable[[Any, Any], Awaitable[Any]]
    params: type[Any] | None = None
    summary: str = ""


class Specs:
    """The hook specifications. Every hook takes no arguments and returns
    what the plugin contributes; pluggy collects the results of all plugins."""

    @hookspec
    def legion_tools(self) -> list[Tool]:  # type: ignore[empty-body]
        """Tools for the global registry (made with `@tool`). They are not in
        any prompt: agents find them with `tool_search` and call them with
        `tool_invoke`. The plugin's `[plugins.settings.NAME]` table reaches
        each call as `ctx.settings`."""

    @hookspec
    def legion_watcher_kinds(self) -> list[WatcherKind]:  # type: ignore[empty-body]
        """Watcher kinds, usable in `watch_add`/`legion watch add` by name."""

    @hookspec
    def legion_model_providers(self) -> dict[str, Any]:  # type: ignore[empty-body]
        """Model providers: {name: litellm CustomLLM instance}. A provider
        named `acme` makes references like `acme/some-model` valid anywhere
        a model is named (aliases, agents, `--model`)."""

    @hookspec
    def legion_rpc_methods(self) -> list[RpcMethod]:  # type: ignore[empty-body]
        """JSON-RPC methods, namespaced `PLUGIN.method`; listed by
        `daemon.methods` like the built-in ones."""

    @hookspec
    def legion_transports(self) -> list[Any]:  # type: ignore[empty-body]
        """Reserved for transports (ways to reach agents besides the Unix
        socket, e.g. chat bridges). Collected and listed by `legion plugins`,
        not yet started by the daemon."""
