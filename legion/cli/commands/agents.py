"""ps, spawn, pause, resume, stop, destroy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import InvalidParams
from legion.protocol import AGENT_STATES


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ps", parents=[common], help="list agents",
                       description="List agents with their state and model.")
    p.add_argument("--state", choices=[s for s in AGENT_STATES if s != "terminated"],
                   help="only agents in this state")
    p.set_defaults(handler=ps)

    p = sub.add_parser("spawn", parents=[common], help="create an agent",
                       description="Create an agent. It starts running.")
    p.add_argument("id", metavar="ID", help="agent id: a-z, 0-9, '-', '_', starting with a letter")
    p.add_argument("--model", metavar="ALIAS", help="model alias (default: agents.default_model)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--system", metavar="TEXT", help="system prompt")
    g.add_argument("--system-file", metavar="FILE", help="read the system prompt from FILE "
                   "('-' for stdin)")
    p.add_argument("--parent", metavar="ID", help="parent agent")
    p.set_defaults(handler=spawn)

    for action, text in (
        ("pause", "pause an agent (no sessions; its inbox keeps filling)"),
        ("resume", "resume a paused or stopped agent"),
        ("stop", "stop an agent (sessions, schedules and watchers halt)"),
    ):
        p = sub.add_parser(action, parents=[common], help=text, description=text.capitalize() + ".")
        p.add_argument("id", metavar="ID")
        p.add_argument("--reason", default="", help="why (recorded in the event)")
        p.set_defaults(handler=transition, action=action)

    p = sub.add_parser("destroy", parents=[common], help="archive an agent to the graveyard",
                       description="Archive an agent (record and events) to the graveyard, "
                       "or delete it for good with --purge.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--purge", action="store_true", help="delete the record and events; "
                   "nothing goes to the graveyard")
    p.add_argument("--reason", default="", help="why (recorded in the event)")
    p.set_defaults(handler=destroy)


def ps(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {"state": args.state} if getattr(args, "state", None) else {}
    ctx.show(ctx.call("agents.list", params), "agents_table")
    return 0


def spawn(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"id": args.id}
    if args.model:
        params["model"] = args.model
    if args.system is not None:
        params["system"] = args.system
    elif args.system_file:
        params["system"] = _read_prompt(args.system_file)
    if args.parent:
        params["parent"] = args.parent
    result = ctx.call("agents.spawn", params)
    _done(ctx, result, f"spawned {args.id} ({result['agent']['model']}), running")
    return 0


def transition(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call(f"agents.{args.action}", {"id": args.id, "reason": args.reason})
    _done(ctx, result, f"{args.id}: {result['event']['data']['from']} -> "
                       f"{result['agent']['state']}")
    return 0


def destroy(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("agents.destroy",
                      {"id": args.id, "purge": args.purge, "reason": args.reason})
    data = result["event"]["data"]
    msg = (f"purged {args.id} ({data['events_removed']} events deleted)" if args.purge
           else f"archived {args.id} to the graveyard (archive {data['archive_id']}, "
           f"{data['events_archived']} events)")
    _done(ctx, result, msg)
    return 0


def _done(ctx: CommandContext, result: Any, message: str) -> None:
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(message)


def _read_prompt(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"cannot read --system-file {path}: {exc}",
                            hint="pass a readable UTF-8 text file, or --system TEXT") from None
