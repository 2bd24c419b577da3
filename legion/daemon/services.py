"""The daemon's services, passed explicitly to whatever needs them.

No process-global singletons: tests can run several daemons side by side,
and each method group sees exactly the services it is handed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from legion.config import Config
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.store.database import Store
from legion.paths import Paths

if TYPE_CHECKING:
    from legion.daemon.agents.fleet import Fleet
    from legion.daemon.agents.reflection import Reflection
    from legion.daemon.agents.runtime import Runtime
    from legion.daemon.llm.client import ModelClient
    from legion.daemon.memory.service import Memory
    from legion.daemon.plugins import Plugins
    from legion.daemon.rpc.server import RpcServer
    from legion.daemon.schedule.scheduler import Scheduler
    from legion.daemon.tasks.board import Board
    from legion.daemon.tools.registry import Registry
    from legion.daemon.tools.sandbox import Sandbox
    from legion.daemon.watchers.service import Watchers


@dataclass
class Services:
    config: Config
    paths: Paths
    store: Store
    bus: EventBus
    agents: Supervisor
    models: ModelClient
    # The config file in force (HOME/config.toml unless --config said otherwise).
    config_path: Path | None = None
    started_at: float = field(default_factory=time.time)
    rpc: RpcServer | None = None
    # Set once the runtime exists (it needs the services it is part of).
    runtime: Runtime = None  # type: ignore[assignment]
    memory: Memory = None  # type: ignore[assignment]
    board: Board = None  # type: ignore[assignment]
    scheduler: Scheduler = None  # type: ignore[assignment]
    watchers: Watchers = None  # type: ignore[assignment]
    plugins: Plugins = None  # type: ignore[assignment]
    sandbox: Sandbox = None  # type: ignore[assignment]
    tools: Registry = None  # type: ignore[assignment]
    fleet: Fleet = None  # type: ignore[assignment]
    reflection: Reflection = None  # type: ignore[assignment]
