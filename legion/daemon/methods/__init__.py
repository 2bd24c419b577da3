"""RPC method groups: thin, typed adapters over the daemon's services.

Each module exposes `Deps` (what the group uses) and `register(registry, deps)`.
Handlers decode nothing by hand (the registry hands them a typed params struct)
and hold no state. Plugin methods get a `PluginHost`, never the services.
"""

from __future__ import annotations

from typing import Any

from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.methods.messages import MAX_TEXT
from legion.daemon.rpc.dispatch import NoParams, Registry
from legion.errors import InvalidParams
from legion.plugin import RpcMethod


class Host:
    """The daemon as a plugin's RPC method sees it (legion.plugin.PluginHost)."""

    def __init__(
        self, plugin: str, agents: Supervisor, inbox: Inbox, bus: EventBus, settings: dict[str, Any]
    ) -> None:
        self.plugin = plugin
        self._agents = agents
        self._inbox = inbox
        self._bus = bus
        self._settings = settings

    def agents(self) -> list[dict[str, Any]]:
        return [
            {"id": a.id, "state": a.state.value, "model": a.model, "parent": a.parent}
            for a in self._agents.agents.values()
        ]

    async def tell(self, agent: str, text: str, *, sender: str) -> int:
        # A plugin often relays someone else's words (a chat bridge): the same bounds
        # as `agents.tell`.
        if not text.strip() or len(text) > MAX_TEXT:
            raise InvalidParams(
                f"a message must have 1 to {MAX_TEXT} characters; this one has {len(text)}",
                hint="split a long text, or put it in memory and send its path",
            )
        if not sender.strip() or len(sender) > 200:
            raise InvalidParams("a sender is 1 to 200 characters", hint='e.g. "chat:alice"')
        msg, _ = await self._inbox.tell(agent, text, sender=sender, source=f"plugin:{self.plugin}")
        return msg.id

    async def emit(self, kind: str, data: dict[str, Any], *, agent: str | None = None) -> int:
        ev = await self._bus.emit(agent, kind, data, source=f"plugin:{self.plugin}")
        return ev.id

    def settings(self) -> dict[str, Any]:
        return self._settings


def add_plugin_methods(registry: Registry, methods: list[tuple[str, RpcMethod]], host: Any) -> None:
    """Plugin methods, each called with its plugin's host; a built-in name is never
    shadowed. `host(plugin)` makes the PluginHost of one plugin."""
    for plugin, m in methods:
        if m.name in registry.methods:
            continue

        plugin_host = host(plugin)

        async def handler(ctx: Any, p: Any, _m: RpcMethod = m, _h: Any = plugin_host) -> Any:
            return await _m.handler(p, _h)

        handler.__doc__ = m.summary or m.handler.__doc__
        registry.add(m.name, handler, m.params or NoParams)
