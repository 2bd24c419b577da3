"""The `legion` command: an argparse tree over small command modules.

Contract (docs/cli.md): `--json` everywhere, errors on stderr with a hint,
exit codes 0 ok, 1 error, 2 usage, 3 daemon unreachable, 4 not found,
5 invalid state / conflict, 6 timeout, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from legion import __version__
from legion.cli.commands import (
    agents,
    config_cmd,
    daemon_cmd,
    events,
    memory,
    messages,
    prompt,
    schedules,
    tasks,
    tools,
)
from legion.cli.context import CommandContext
from legion.errors import EXIT_ERROR, EXIT_INTERRUPTED, LegionError

GROUPS = (daemon_cmd, agents, messages, events, memory, tasks, schedules, tools, prompt, config_cmd)


def build_parser() -> argparse.ArgumentParser:
    # Options accepted both before and after the command name: `legion --json ps`
    # and `legion ps --json` mean the same.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output: one JSON document (streams: one JSON object per line)",
    )
    common.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="Legion home (default: $LEGION_HOME, then ~/.legion)",
    )
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="daemon socket (default: $LEGION_SOCKET, then HOME/daemon.sock)",
    )

    parser = argparse.ArgumentParser(
        prog="legion",
        description="Legion hosts a fleet of long-lived LLM agents in one daemon. "
        "With no command: `legion ps`.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 daemon unreachable, 4 not found, "
        "5 invalid state, 6 timeout, 130 interrupted. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"legion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "handler", None) is not None and hasattr(args, "pairs"):
        # `legion tools run NAME --agent X key=value`: pairs may follow options.
        args.pairs += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    ctx = CommandContext.from_args(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        handler = agents.ps
        args.state = None
    try:
        return int(handler(args, ctx) or 0)
    except LegionError as exc:
        _report(exc, ctx.json)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `legion events x | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug in the CLI itself; say so plainly
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            "hint: this is a bug in Legion's CLI; please report it with the command you ran",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _report(exc: LegionError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": exc.to_rpc()}), file=sys.stderr)
        return
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    errors = exc.extra.get("log_errors")
    if errors:
        # The daemon went away: its last words are usually the reason.
        print(f"last errors in {exc.extra.get('log')}:", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
