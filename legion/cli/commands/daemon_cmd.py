"""`legion daemon` (run in the foreground) and `legion info`.

`legion daemon` is the process boundary between client and server: it is
the one CLI command that loads the daemon package, and it does so lazily,
after argument parsing, so no other command pays for it (a test checks).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from legion.cli.context import CommandContext


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "daemon",
        parents=[common],
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground (what systemd starts). "
        "SIGTERM or Ctrl-C stops it gracefully; a second Ctrl-C forces it.",
    )
    p.add_argument(
        "--agents",
        action="append",
        default=[],
        metavar="PATH",
        help="agent definition file or directory to declare at start; repeatable "
        "(adds to daemon.agents in config.toml)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: HOME/config.toml; absent: embedded defaults)",
    )
    p.set_defaults(handler=run_daemon)

    p = sub.add_parser(
        "info",
        parents=[common],
        help="show the daemon's state",
        description="Version, home, socket, sqlite build and sqlite-vec "
        "version, agents, events and connected clients.",
    )
    p.set_defaults(handler=info)


def run_daemon(args: argparse.Namespace, ctx: CommandContext) -> int:
    from legion import config

    cfg_path = Path(args.config).expanduser() if args.config else ctx.paths.config
    cfg = config.load(cfg_path, required=bool(args.config))
    app = importlib.import_module("legion.daemon.app")
    return int(app.main(ctx.paths, cfg, args.agents, cfg_path))


def info(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("daemon.info"), "info")
    return 0
