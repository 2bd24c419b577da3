"""`daemon.*`: liveness, introspection and the method catalogue."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from legion import __version__
from legion.config import Config
from legion.daemon.agents.runtime import Runtime
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.llm.client import ModelClient
from legion.daemon.memory.service import Memory
from legion.daemon.plugins import Plugins
from legion.daemon.rpc.dispatch import Context, NoParams, Registry
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.daemon.tools.registry import Registry as ToolRegistry
from legion.daemon.tools.sandbox import Sandbox
from legion.daemon.watchers.service import Watchers
from legion.paths import Paths
from legion.redact import Redactor, secrets_of


class RpcStats(Protocol):
    def statistics(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Deps:
    """What this method group uses (built by the composition root)."""

    agents: Supervisor
    bus: EventBus
    config: Config
    config_path: Path | None
    memory: Memory
    models: ModelClient
    paths: Paths
    plugins: Plugins
    rpc: RpcStats | None
    runtime: Runtime
    sandbox: Sandbox
    scheduler: Scheduler
    started_at: float
    store: Store
    tools: ToolRegistry
    watchers: Watchers


def register(registry: Registry, s: Deps) -> None:
    # `info` reports what providers, plugins and the sandbox say about
    # themselves (URLs, last errors): any of it may quote a key. Built once,
    # from the config this daemon runs with.
    redactor = Redactor(secrets_of(s.config))

    async def ping(ctx: Context, p: NoParams) -> dict[str, Any]:
        """Answer at once: a liveness check that touches nothing."""
        return {"pong": True}

    async def info(ctx: Context, p: NoParams) -> dict[str, Any]:
        """The daemon's version, home, store build, agents, events and clients."""
        shown: dict[str, Any] = redactor.value(await _info())
        return shown

    async def _info() -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "started_at": s.started_at,
            "uptime_s": round(time.time() - s.started_at, 3),
            "python": sys.version.split()[0],
            "platform": platform.platform(terse=True),
            "home": str(s.paths.home),
            "socket": str(s.paths.socket),
            "config": {
                "path": str(s.config_path or s.paths.config),
                "loaded": (s.config_path or s.paths.config).exists(),
            },
            "database": s.store.describe(),
            "agents": {"total": len(s.agents.agents), "by_state": s.agents.counts()},
            "events": {
                **s.bus.statistics(),
                **await event_log.counts(s.store),
                "retention_days": s.config.events.retention_days,
                "max_rows": s.config.events.max_rows,
            },
            "rpc": s.rpc.statistics() if s.rpc else {},
            "models": s.models.describe(),
            "memory": await s.memory.stats(),
            "sessions": {"run": s.runtime.sessions_run, "draining": s.runtime.draining},
            "schedules": s.scheduler.statistics(),
            "watchers": {
                "running": len(s.watchers._scopes),
                "observations": s.watchers.observations,
                "fires": s.watchers.fires,
            },
            "sandbox": s.sandbox.describe(),
            "tools": {
                "total": len(s.tools.entries),
                "in_prompt": len(s.tools.prompt),
                "authored": len(s.tools.authored.tools),
                "prompt_schema_bytes": len(
                    json.dumps(s.tools.prompt_schemas(), separators=(",", ":"))
                ),
            },
            "plugins": {
                st: sum(1 for p in s.plugins.info.values() if p.status == st)
                for st in ("loaded", "failed", "disabled")
            },
        }

    async def methods(ctx: Context, p: NoParams) -> list[dict[str, Any]]:
        """Every RPC method with its summary, signature and parameter schema."""
        return [m.describe() for m in sorted(registry.methods.values(), key=lambda m: m.name)]

    registry.add("daemon.ping", ping)
    registry.add("daemon.info", info)
    registry.add("daemon.methods", methods)
