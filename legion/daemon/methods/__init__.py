"""RPC method groups: thin, typed adapters over the daemon's services.

Each module exposes `register(registry, services)`. Handlers decode nothing
by hand (the registry hands them a typed params struct) and hold no state.
"""

from __future__ import annotations

from legion.daemon.methods import agents, daemon, events, memory, messages, schedules, tasks
from legion.daemon.rpc.dispatch import Registry
from legion.daemon.services import Services


def build_registry(services: Services) -> Registry:
    registry = Registry()
    for group in (daemon, agents, events, messages, memory, tasks, schedules):
        group.register(registry, services)
    return registry
