"""RPC method groups: thin, typed adapters over the daemon's services.

Each module exposes `register(registry, services)`. Handlers decode nothing
by hand (the registry hands them a typed params struct) and hold no state.
"""

from __future__ import annotations

from typing import Any

from legion.daemon.methods import (
    agents,
    daemon,
    events,
    memory,
    messages,
    prompts,
    schedules,
    tasks,
    tools,
)
from legion.daemon.rpc.dispatch import NoParams, Registry
from legion.daemon.services import Services
from legion.plugin import RpcMethod


def build_registry(services: Services,
                   plugin_methods: list[tuple[str, RpcMethod]] | None = None) -> Registry:
    registry = Registry()
    for group in (daemon, agents, events, messages, memory, tasks, schedules, tools, prompts):
        group.register(registry, services)
    for _plugin, m in plugin_methods or []:
        if m.name in registry.methods:
            continue  # a built-in method is never shadowed

        async def handler(ctx: Any, p: Any, _m: RpcMethod = m) -> Any:
            return await _m.handler(p, services)

        handler.__doc__ = m.summary or m.handler.__doc__
        registry.add(m.name, handler, m.params or NoParams)
    return registry
