"""The composition root: every service built, in dependency order, in one place.

`assemble` builds the whole daemon from a config and an open store and returns
it fully built: each service got what it uses in its constructor, nothing is
assigned afterwards, and nothing else in the package builds a service. The
order below is the dependency order; where two services need each other one
side depends on a narrow Protocol or listens for an event (see each
constructor's docstring, and docs/architecture.md).

`Legion.run` starts the background services inside one task group (the
daemon's task tree: cancelled and awaited together). `open_legion` is the
in-process daemon: store, services and background work, with no home lock,
no socket and no signal handling; the daemon (app.py) adds those around it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from legion.config import Config
from legion.daemon.agents import definitions, ledger, retention
from legion.daemon.agents import inbox as inbox_rows
from legion.daemon.agents import proposals as proposal_rows
from legion.daemon.agents.activity import Activity
from legion.daemon.agents.budgets import Budgets
from legion.daemon.agents.conversation import Conversations
from legion.daemon.agents.fleet import Fleet
from legion.daemon.agents.inbox import Inbox
from legion.daemon.agents.messaging import Messaging, forget_subscriptions
from legion.daemon.agents.proposals import Proposals
from legion.daemon.agents.reflection import Reflection
from legion.daemon.agents.runtime import Runtime
from legion.daemon.agents.session import Kit
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.llm.client import KNOWN_PROVIDERS, ModelClient
from legion.daemon.memory import embedders
from legion.daemon.memory import records as memory_records
from legion.daemon.memory.backfill import Backfill
from legion.daemon.memory.service import Memory
from legion.daemon.methods import Host, add_plugin_methods
from legion.daemon.methods import agents as agent_methods
from legion.daemon.methods import daemon as daemon_methods
from legion.daemon.methods import events as event_methods
from legion.daemon.methods import memory as memory_methods
from legion.daemon.methods import messages as message_methods
from legion.daemon.methods import prompts as prompt_methods
from legion.daemon.methods import schedules as schedule_methods
from legion.daemon.methods import tasks as task_methods
from legion.daemon.methods import tools as tool_methods
from legion.daemon.plugins import Plugins
from legion.daemon.rpc import dispatch
from legion.daemon.rpc.server import RpcServer
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.store.database import Store
from legion.daemon.tasks.board import Board, cancel_owned
from legion.daemon.tools import kernel, meta
from legion.daemon.tools.authored import AuthoredTools
from legion.daemon.tools.context import Kernel, ToolCalls
from legion.daemon.tools.registry import Registry
from legion.daemon.tools.sandbox import Sandbox
from legion.daemon.tools.stats import Stats
from legion.daemon.watchers.service import Watchers
from legion.errors import ConfigError, LegionError
from legion.paths import Paths

log = structlog.get_logger("legion.daemon")


@dataclass(kw_only=True)
class Legion:
    """The assembled daemon: every service, fully built."""

    config: Config
    paths: Paths
    config_path: Path | None
    store: Store
    bus: EventBus
    plugins: Plugins
    agents: Supervisor
    models: ModelClient
    sandbox: Sandbox
    stats: Stats
    authored: AuthoredTools
    registry: Registry
    activity: Activity
    budgets: Budgets
    inbox: Inbox
    memory: Memory
    backfill: Backfill | None
    board: Board
    fleet: Fleet
    messaging: Messaging
    scheduler: Scheduler
    watchers: Watchers
    proposals: Proposals
    reflection: Reflection
    calls: ToolCalls
    runtime: Runtime
    methods: dispatch.Registry
    rpc: RpcServer
    started_at: float = field(default_factory=time.time)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Every background service, in one task group, until cancelled. Each is
        started (and has said so) before the next, and before `started`."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.stats.run)
            await tg.start(self.fleet.run)
            await tg.start(self.runtime.run)
            await tg.start(self.scheduler.run)
            await tg.start(self.watchers.run)
            await tg.start(self.calls.run_actions)
            if self.backfill is not None:
                await tg.start(self.backfill.run)
            tg.start_soon(
                retention.keep, self.store, self.config.events, self.config.agents.history_keep
            )
            task_status.started()

    def close(self) -> None:
        self.sandbox.close()


async def assemble(
    paths: Paths,
    config: Config,
    store: Store,
    defs: Sequence[definitions.Definition] = (),
    config_path: Path | None = None,
) -> Legion:
    """Build every service in dependency order; restore and declare the agents."""
    cfg = config
    if not store.driver.vec_available:
        log.error(
            "sqlite-vec could not be loaded; vector search is unavailable", notes=store.driver.notes
        )
    bus = EventBus(store.writer, queue_size=cfg.events.subscriber_queue)
    plugins = Plugins(
        cfg.plugins.disabled,
        reserved_tools={t.name for t in [*kernel.KERNEL, *meta.PROMPT, *meta.REGISTRY]},
        reserved_kinds={"cmd_watch", "file_watch"},
        reserved_providers={"mock", *KNOWN_PROVIDERS, *cfg.providers},
    )
    added = plugins.load()
    models = ModelClient(cfg, added.providers)
    # A destroyed agent's rows in other tables are removed by their owners, in the
    # destroy's own transaction.
    agents = Supervisor(
        store,
        bus,
        default_model=cfg.agents.default_model,
        departures=[
            inbox_rows.forget_agent,
            ledger.forget_agent,
            forget_subscriptions,
            proposal_rows.forget_agent,
            memory_records.forget_owner,
            cancel_owned,
        ],
    )
    await agents.restore()
    await declare(agents, models, cfg, defs)

    sandbox = Sandbox(cfg.tools.sandbox, paths)
    await sandbox.prepare()
    stats = Stats(store, cfg.tools.stats_window)
    authored = AuthoredTools(store, bus, sandbox, cfg.tools)
    await authored.load()
    registry = Registry(
        [*kernel.PROMPT, *meta.PROMPT],
        [*kernel.REGISTRY, *meta.REGISTRY],
        added.tools,
        authored,
        stats,
        tool_timeout=cfg.guards.tool_timeout,
        sandbox_timeout=cfg.tools.sandbox.timeout,
        plugin_settings=cfg.plugins.settings,
    )

    activity = Activity()
    budgets = Budgets(store, agents, cfg.guards)
    inbox = Inbox(store, bus, agents, budgets)

    embedder = embedders.make(cfg, models)
    backfill = (
        Backfill(
            store,
            bus,
            embedder,
            batch=cfg.memory.backfill_batch,
            backoff_max=cfg.memory.backfill_backoff_max,
        )
        if embedder is not None and store.driver.vec_available
        else None
    )
    memory = Memory(
        store, bus, cfg.memory, embedder, embedders.describe(embedder, cfg), backfill=backfill
    )
    await memory.prepare()

    board = Board(store, bus, agents, inbox)
    # The counts of the conversation bound, rebuilt from what is durable; shared by
    # messaging (which checks them) and the fleet (a spawn's first message counts).
    conversations = Conversations(cfg.agents)
    await conversations.load(store)
    messaging = Messaging(cfg.agents, store, bus, agents, inbox, budgets, conversations)
    fleet = Fleet(
        cfg.agents,
        paths.home,
        store,
        bus,
        agents,
        models,
        board,
        inbox,
        activity,
        conversations,
    )
    scheduler = Scheduler(store, bus, agents, models, inbox, board)
    watchers = Watchers(
        store, bus, agents, inbox, board, registry, sandbox, cfg.tools.sandbox, added.watcher_kinds
    )
    proposals = Proposals(store, bus, agents)
    reflection = Reflection(store, bus, agents, models, budgets, memory, board, registry, proposals)
    calls = ToolCalls(
        registry,
        Kernel(
            agents=agents,
            activity=activity,
            budgets=budgets,
            models=models,
            memory=memory,
            board=board,
            fleet=fleet,
            messaging=messaging,
            scheduler=scheduler,
            watchers=watchers,
            tools=registry,
            reflection=reflection,
        ),
        bus,
        cfg.guards.tool_timeout,
    )
    kit = Kit(
        store=store,
        bus=bus,
        agents=agents,
        models=models,
        budgets=budgets,
        tools=calls,
        memory=memory,
        conversations=messaging,
        config=cfg.agents,
        memory_tokens=cfg.memory.context_tokens,
        # The session-close nudge: a session may not end quietly while its
        # agent still has a task in doing.
        work_checks=[board.doing],
    )
    runtime = Runtime(kit, activity)

    methods = dispatch.Registry()
    rpc = RpcServer(methods, bus, cfg.rpc, paths.socket)
    legion = Legion(
        config=cfg,
        paths=paths,
        config_path=config_path,
        store=store,
        bus=bus,
        plugins=plugins,
        agents=agents,
        models=models,
        sandbox=sandbox,
        stats=stats,
        authored=authored,
        registry=registry,
        activity=activity,
        budgets=budgets,
        inbox=inbox,
        memory=memory,
        backfill=backfill,
        board=board,
        fleet=fleet,
        messaging=messaging,
        scheduler=scheduler,
        watchers=watchers,
        proposals=proposals,
        reflection=reflection,
        calls=calls,
        runtime=runtime,
        methods=methods,
        rpc=rpc,
    )
    _register_methods(legion, added.rpc_methods)
    return legion


def _register_methods(d: Legion, plugin_methods: list[tuple[str, Any]]) -> None:
    """The RPC adapters, each given what its group uses."""
    m = d.methods
    daemon_methods.register(
        m,
        daemon_methods.Deps(
            agents=d.agents,
            bus=d.bus,
            config=d.config,
            config_path=d.config_path,
            memory=d.memory,
            models=d.models,
            paths=d.paths,
            plugins=d.plugins,
            rpc=d.rpc,
            runtime=d.runtime,
            sandbox=d.sandbox,
            scheduler=d.scheduler,
            started_at=d.started_at,
            store=d.store,
            tools=d.registry,
            watchers=d.watchers,
        ),
    )
    agent_methods.register(
        m,
        agent_methods.Deps(
            activity=d.activity,
            agents=d.agents,
            board=d.board,
            fleet=d.fleet,
            messaging=d.messaging,
            models=d.models,
            scheduler=d.scheduler,
        ),
    )
    event_methods.register(
        m, event_methods.Deps(agents=d.agents, bus=d.bus, config=d.config, store=d.store)
    )
    message_methods.register(
        m, message_methods.Deps(agents=d.agents, inbox=d.inbox, runtime=d.runtime, store=d.store)
    )
    memory_methods.register(m, memory_methods.Deps(agents=d.agents, memory=d.memory))
    task_methods.register(m, task_methods.Deps(agents=d.agents, board=d.board))
    schedule_methods.register(
        m, schedule_methods.Deps(agents=d.agents, scheduler=d.scheduler, watchers=d.watchers)
    )
    tool_methods.register(
        m,
        tool_methods.Deps(
            agents=d.agents,
            calls=d.calls,
            plugins=d.plugins,
            sandbox=d.sandbox,
            tool_timeout=d.config.guards.tool_timeout,
            tools=d.registry,
        ),
    )
    prompt_methods.register(m, prompt_methods.Deps(reflection=d.reflection))

    def host(plugin: str) -> Host:
        return Host(plugin, d.agents, d.inbox, d.bus, d.config.plugins.settings.get(plugin, {}))

    add_plugin_methods(m, plugin_methods, host)


async def declare(
    sup: Supervisor, models: ModelClient, config: Config, defs: Sequence[definitions.Definition]
) -> None:
    """The agents of the definition files: spawned, or updated to match the file."""
    for d in defs:
        source = f"definition:{d.path}"
        try:
            models.resolve(d.model or config.agents.default_model)
        except LegionError as exc:
            raise ConfigError(f"{d.path}: {exc.message}", hint=exc.hint) from None
        settings: dict[str, Any] = {"guards": d.guards} if d.guards else {}
        if d.memory_context_tokens is not None:
            settings["memory_context_tokens"] = d.memory_context_tokens
        if d.id in sup.agents:
            # What the agent's lifecycle saved (ttl, terminate_on, a self-destruct
            # request) is not the file's to drop.
            kept = {
                k: v
                for k, v in sup.agents[d.id].settings.items()
                if k in ("expires_at", "terminate_on", "ending")
            }
            settings = {**kept, **settings}
            await sup.update(
                d.id,
                model=d.model,
                system_prompt=d.system,
                definition=d.path,
                settings=settings,
                source=source,
            )
        else:
            await sup.spawn(
                d.id,
                model=d.model,
                system_prompt=d.system or "",
                parent=d.parent,
                definition=d.path,
                settings=settings,
                source=source,
            )


@asynccontextmanager
async def open_legion(
    paths: Paths,
    config: Config,
    defs: Sequence[definitions.Definition] = (),
    config_path: Path | None = None,
) -> AsyncIterator[Legion]:
    """An in-process daemon: the store opened, every service built and its background
    work running, for tests and the Python API. No home lock, socket or signals:
    call it on a home no daemon is using. On exit the work is cancelled and awaited,
    and the store closed (queued writes committed)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    store = await Store.open(paths.db, config.store)
    try:
        legion = await assemble(paths, config, store, defs, config_path)
        try:
            error: Exception | None = None
            async with anyio.create_task_group() as tg:
                await tg.start(legion.run)
                try:
                    yield legion
                except Exception as exc:
                    # The caller's own error comes out as it is, not wrapped in
                    # the task group's ExceptionGroup.
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
            if error is not None:
                raise error
        finally:
            legion.close()
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
