"""The daemon: startup -> serve -> shutdown.

One event loop owns every service. Startup takes the home lock, opens the
store (migrations), restores the agents, declares the agents from definition
files, and starts the RPC server; only then does it tell systemd READY=1.
The first SIGTERM or SIGINT starts a graceful shutdown: stop accepting,
give in-flight requests `daemon.shutdown_grace` seconds, cancel the rest,
drain the writer, release the lock. A second SIGINT forces it at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import structlog

from legion import __version__
from legion.config import Config, resolve_path
from legion.daemon import systemd
from legion.daemon.agents import definitions
from legion.daemon.agents.fleet import Fleet
from legion.daemon.agents.reflection import Reflection
from legion.daemon.agents.runtime import Runtime
from legion.daemon.agents.supervisor import Supervisor
from legion.daemon.events import EventBus
from legion.daemon.llm.client import KNOWN_PROVIDERS, ModelClient
from legion.daemon.lock import HomeLock, prepare_socket
from legion.daemon.log import configure as configure_logging
from legion.daemon.memory import embedders
from legion.daemon.memory.backfill import Backfill
from legion.daemon.memory.service import Memory
from legion.daemon.methods import build_registry
from legion.daemon.plugins import Plugins
from legion.daemon.rpc.server import RpcServer
from legion.daemon.schedule.scheduler import Scheduler
from legion.daemon.services import Services
from legion.daemon.store import event_log
from legion.daemon.store.database import Store
from legion.daemon.tasks.board import Board
from legion.daemon.tools import kernel, meta
from legion.daemon.tools.authored import AuthoredTools
from legion.daemon.tools.registry import Registry
from legion.daemon.tools.sandbox import Sandbox
from legion.daemon.tools.stats import Stats
from legion.daemon.watchers.service import Watchers
from legion.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, LegionError
from legion.paths import Paths
from legion.redact import Redactor, secrets_of
from legion.redact import install as install_redactor

log = structlog.get_logger("legion.daemon")


class Daemon:
    def __init__(self, paths: Paths, config: Config, agent_paths: list[Path],
                 config_path: Path | None = None) -> None:
        self.paths = paths
        self.config = config
        self.config_path = config_path
        self.agent_paths = agent_paths
        self.forced = False
        self._stop = anyio.Event()
        self._signals = 0

    async def run(self) -> int:
        # Fail on bad definitions before touching anything.
        defs = definitions.load(self.agent_paths)
        lock = HomeLock(self.paths)
        lock.acquire()
        try:
            prepare_socket(self.paths.socket)
            store = await Store.open(self.paths.db, self.config.store)
            try:
                return await self._serve(store, defs)
            finally:
                self.paths.socket.unlink(missing_ok=True)
                # Writes already queued are committed, but a writer stuck on a
                # locked or dead disk must not hold the exit hostage.
                limit = 2.0 if self.forced else self.config.daemon.shutdown_grace
                with anyio.move_on_after(limit, shield=True) as scope:
                    await store.close()
                if scope.cancelled_caught:
                    log.error("the store did not close in time; queued writes may be lost",
                              waited_s=limit)
        finally:
            lock.release()

    async def _serve(self, store: Store, defs: list[definitions.Definition]) -> int:
        cfg = self.config
        if not store.driver.vec_available:
            log.error("sqlite-vec could not be loaded; vector search is unavailable",
                      notes=store.driver.notes)
        bus = EventBus(store.writer, queue_size=cfg.events.subscriber_queue)
        plugins = Plugins(
            cfg.plugins.disabled,
            reserved_tools={t.name for t in [*kernel.KERNEL, *meta.PROMPT, *meta.REGISTRY]},
            reserved_kinds={"cmd_watch", "file_watch"},
            reserved_providers={"mock", *KNOWN_PROVIDERS, *cfg.providers})
        added = plugins.load()
        sup = Supervisor(store, bus, default_model=cfg.agents.default_model)
        await sup.restore()
        await self._declare(sup, defs, added.providers)
        services = Services(config=cfg, paths=self.paths, store=store, bus=bus, agents=sup,
                            models=ModelClient(cfg, added.providers),
                            config_path=self.config_path, plugins=plugins)
        services.sandbox = Sandbox(cfg.tools.sandbox, self.paths)
        await services.sandbox.prepare()
        stats = Stats(store, cfg.tools.stats_window)
        authored = AuthoredTools(store, bus, services.sandbox, cfg.tools)
        await authored.load()
        services.tools = Registry(services, [*kernel.PROMPT, *meta.PROMPT],
                                  [*kernel.REGISTRY, *meta.REGISTRY], added.tools, authored, stats)
        services.runtime = Runtime(services)
        services.fleet = Fleet(services)
        services.reflection = Reflection(services)
        embedder = embedders.make(cfg, services.models)
        services.memory = Memory(store, bus, cfg.memory, embedder,
                                 embedders.describe(embedder, cfg))
        await services.memory.prepare()
        services.board = Board(store, bus, sup, services.runtime.delivered,
                               services.runtime.automatic_cap)
        # The session-close nudge: a session may not end quietly while its agent
        # still has a task in doing.
        services.runtime.work_checks.append(services.board.doing)
        services.scheduler = Scheduler(services)
        services.watchers = Watchers(services, added.watcher_kinds)
        server = RpcServer(build_registry(services, added.rpc_methods), bus, cfg.rpc,
                           self.paths.socket)
        services.rpc = server

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_signals, tg.cancel_scope)
            await tg.start(stats.run)
            await tg.start(services.fleet.run)
            await tg.start(services.runtime.run)
            await tg.start(services.scheduler.run)
            await tg.start(services.watchers.run)
            if embedder is not None and services.memory.vec_available:
                backfill = Backfill(services.memory, store, embedder,
                                    batch=cfg.memory.backfill_batch,
                                    backoff_max=cfg.memory.backfill_backoff_max)
                services.memory.backfill = backfill
                await tg.start(backfill.run)
            await tg.start(server.serve)
            tg.start_soon(self._retention, store)
            interval = systemd.watchdog_interval()
            if interval:
                tg.start_soon(self._watchdog, store, interval)
            await bus.emit(None, "daemon.started",
                           {"version": __version__, "pid": os.getpid(), "agents": sup.counts(),
                            "sqlite": store.driver.describe()})
            systemd.notify(
                f"READY=1\nSTATUS=serving {len(sup.agents)} agents\nMAINPID={os.getpid()}"
            )
            log.info("daemon ready", version=__version__, home=str(self.paths.home),
                     socket=str(self.paths.socket), agents=sup.counts(),
                     sqlite=store.driver.name, vec=store.driver.vec_version)
            # After READY, not before: start-up stays fast, and the first message
            # or cron run awaits this same import instead of paying for its own.
            tg.start_soon(services.models.warm)

            await self._stop.wait()
            systemd.notify("STOPPING=1")
            log.info("shutting down", grace_s=cfg.daemon.shutdown_grace)
            server.stop_accepting()
            # Bounded: a stuck disk must not stall the shutdown on this record.
            with anyio.move_on_after(1.0):
                await bus.emit(None, "daemon.stopping", {"in_flight": server.in_flight})
            with anyio.move_on_after(cfg.daemon.shutdown_grace) as scope:
                # Running sessions finish (or, cut off below, are delivered
                # again after the restart); no new one starts.
                await services.runtime.wait_idle()
                await server.wait_idle()
            if scope.cancelled_caught:
                log.warning("in-flight requests outlived the grace period; cancelling them",
                            in_flight=server.in_flight)
            tg.cancel_scope.cancel()
        services.sandbox.close()
        log.info("daemon stopped")
        return EXIT_INTERRUPTED if self.forced else EXIT_OK

    async def _declare(self, sup: Supervisor, defs: list[definitions.Definition],
                       providers: dict[str, Any]) -> None:
        models = ModelClient(self.config, providers)
        for d in defs:
            source = f"definition:{d.path}"
            try:
                models.resolve(d.model or self.config.agents.default_model)
            except LegionError as exc:
                raise ConfigError(f"{d.path}: {exc.message}", hint=exc.hint) from None
            settings: dict[str, Any] = {"guards": d.guards} if d.guards else {}
            if d.memory_context_tokens is not None:
                settings["memory_context_tokens"] = d.memory_context_tokens
            if d.id in sup.agents:
                # What the agent's lifecycle saved (ttl, terminate_on, a self-destruct
                # request) is not the file's to drop.
                kept = {k: v for k, v in sup.agents[d.id].settings.items()
                        if k in ("expires_at", "terminate_on", "ending")}
                settings = {**kept, **settings}
                await sup.update(d.id, model=d.model, system_prompt=d.system,
                                 definition=d.path, settings=settings, source=source)
            else:
                await sup.spawn(d.id, model=d.model, system_prompt=d.system or "",
                                parent=d.parent, definition=d.path, settings=settings,
                                source=source)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self._signals += 1
                if self._signals == 1:
                    log.info("signal received; stopping gracefully",
                             signal=signal.Signals(signum).name)
                    self._stop.set()
                elif signum == signal.SIGINT:
                    log.warning("second SIGINT: forcing shutdown")
                    self.forced = True
                    scope.cancel()

    async def _retention(self, store: Store) -> None:
        cfg = self.config.events
        while True:
            try:
                removed = await event_log.prune(store, cfg.retention_days, cfg.max_rows,
                                                self.config.agents.history_keep)
                if removed:
                    log.info("pruned old events", removed=removed)
            except LegionError as exc:
                log.warning("event retention failed; will retry", error=exc.message)
            await anyio.sleep(cfg.prune_interval)

    async def _watchdog(self, store: Store, interval: float) -> None:
        # Pinging from the loop proves the loop runs; checking the writer proves
        # the store can still commit. Either stuck -> no ping -> systemd restarts us.
        while True:
            if store.writer.alive():
                systemd.notify("WATCHDOG=1")
            await anyio.sleep(interval)


def main(paths: Paths, config: Config, agents: list[str], config_path: Path | None = None) -> int:
    """Run the daemon in the foreground until a signal stops it."""
    install_redactor(Redactor(secrets_of(config)))
    configure_logging(config.log.level, config.log.format)
    os.umask(0o077)
    agent_paths = [resolve_path(config, p) for p in config.daemon.agents]
    agent_paths += [Path(p).expanduser().absolute() for p in agents]
    daemon = Daemon(paths, config, agent_paths, config_path)
    try:
        return anyio.run(daemon.run)
    except LegionError as exc:
        log.error("daemon cannot start", error=exc.message, hint=exc.hint)
        raise
