"""The daemon: startup -> serve -> shutdown.

One event loop owns every service. Startup takes the home lock, opens the
store (migrations), has the composition root (root.py) build every service
(restoring the agents and declaring those of the definition files), starts
their background work and the RPC server; only then does it tell systemd
READY=1. This module builds nothing itself: it runs what the root built.
The first SIGTERM or SIGINT starts a graceful shutdown: stop accepting,
give in-flight requests `daemon.shutdown_grace` seconds, cancel the rest,
drain the writer, release the lock. A second SIGINT forces it at once.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import structlog

from legion import __version__
from legion.config import Config, resolve_path
from legion.daemon import systemd
from legion.daemon.agents import definitions
from legion.daemon.lock import HomeLock, prepare_socket
from legion.daemon.log import configure as configure_logging
from legion.daemon.root import Legion, assemble
from legion.daemon.store.database import Store
from legion.errors import EXIT_INTERRUPTED, EXIT_OK, LegionError
from legion.paths import Paths
from legion.redact import Redactor, secrets_of
from legion.redact import install as install_redactor

log = structlog.get_logger("legion.daemon")


class Daemon:
    def __init__(
        self, paths: Paths, config: Config, agent_paths: list[Path], config_path: Path | None = None
    ) -> None:
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
                legion = await assemble(self.paths, self.config, store, defs, self.config_path)
                try:
                    return await self._serve(legion)
                finally:
                    legion.close()
            finally:
                self.paths.socket.unlink(missing_ok=True)
                # Writes already queued are committed, but a writer stuck on a
                # locked or dead disk must not hold the exit hostage.
                limit = 2.0 if self.forced else self.config.daemon.shutdown_grace
                with anyio.move_on_after(limit, shield=True) as scope:
                    await store.close()
                if scope.cancelled_caught:
                    log.error(
                        "the store did not close in time; queued writes may be lost", waited_s=limit
                    )
        finally:
            lock.release()

    async def _serve(self, legion: Legion) -> int:
        cfg = self.config
        store, bus, sup, server = legion.store, legion.bus, legion.agents, legion.rpc
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_signals, tg.cancel_scope)
            await tg.start(legion.run)
            await tg.start(server.serve)
            interval = systemd.watchdog_interval()
            if interval:
                tg.start_soon(self._watchdog, store, interval)
            await bus.emit(
                None,
                "daemon.started",
                {
                    "version": __version__,
                    "pid": os.getpid(),
                    "agents": sup.counts(),
                    "sqlite": store.driver.describe(),
                },
            )
            systemd.notify(
                f"READY=1\nSTATUS=serving {len(sup.agents)} agents\nMAINPID={os.getpid()}"
            )
            log.info(
                "daemon ready",
                version=__version__,
                home=str(self.paths.home),
                socket=str(self.paths.socket),
                agents=sup.counts(),
                sqlite=store.driver.name,
                vec=store.driver.vec_version,
            )
            # After READY, not before: start-up stays fast, and the first message
            # or cron run awaits this same import instead of paying for its own.
            tg.start_soon(legion.models.warm)

            await self._stop.wait()
            systemd.notify("STOPPING=1")
            log.info("shutting down", grace_s=cfg.daemon.shutdown_grace)
            server.stop_accepting()
            # Whoever waits for a reply is answered now, with the message id to wait
            # for after the restart; running sessions are cut off at once and
            # recorded (`session.ended`, status `shutdown`): their messages are
            # delivered again at the next start, as after a crash.
            legion.inbox.close()
            # Bounded: a stuck disk must not stall the shutdown on this record.
            with anyio.move_on_after(1.0):
                await bus.emit(
                    None,
                    "daemon.stopping",
                    {"in_flight": server.in_flight, "sessions": legion.runtime.running},
                )
            with anyio.move_on_after(cfg.daemon.shutdown_grace) as scope:
                await legion.runtime.shutdown()
                await server.wait_idle()
            if scope.cancelled_caught:
                log.warning(
                    "work outlived the grace period; cancelling it",
                    sessions_still_recording=legion.runtime.running,
                    requests_in_flight=server.in_flight,
                    grace_s=cfg.daemon.shutdown_grace,
                )
            tg.cancel_scope.cancel()
        log.info("daemon stopped")
        return EXIT_INTERRUPTED if self.forced else EXIT_OK

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self._signals += 1
                if self._signals == 1:
                    log.info(
                        "signal received; stopping gracefully", signal=signal.Signals(signum).name
                    )
                    self._stop.set()
                elif signum == signal.SIGINT:
                    log.warning("second SIGINT: forcing shutdown")
                    self.forced = True
                    scope.cancel()

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

    async def run_then_exit() -> int:
        code = await daemon.run()
        # Everything is durable and closed (the store, the lock, the socket): exit
        # here, inside the loop. The event loop's teardown would join its executor
        # threads (litellm's import or its callbacks, still busy after a stop right
        # after start) and the interpreter's would unwind litellm's import graph:
        # seconds, with nothing left to save.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    try:
        return anyio.run(run_then_exit)
    except LegionError as exc:
        log.error("daemon cannot start", error=exc.message, hint=exc.hint)
        raise
