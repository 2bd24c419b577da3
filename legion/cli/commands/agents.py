"""ps, spawn, pause, resume, stop, destroy, graveyard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import InvalidParams
from legion.protocol import AGENT_STATES


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ps",
        parents=[common],
        help="list agents",
        description="List agents with their state and model.",
    )
    p.add_argument(
        "--state",
        choices=[s for s in AGENT_STATES if s != "terminated"],
        help="only agents in this state",
    )
    p.add_argument("--tree", action="store_true", help="show parents and their children as a tree")
    p.set_defaults(handler=ps)

    p = sub.add_parser(
        "spawn",
        parents=[common],
        help="create an agent",
        description="Create an agent. It starts running.",
    )
    p.add_argument("id", metavar="ID", help="agent id: a-z, 0-9, '-', '_', starting with a letter")
    p.add_argument("--model", metavar="ALIAS", help="model alias (default: agents.default_model)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--system", metavar="TEXT", help="system prompt")
    g.add_argument(
        "--system-file", metavar="FILE", help="read the system prompt from FILE ('-' for stdin)"
    )
    p.add_argument(
        "--parent",
        metavar="ID",
        help="parent agent (its caps apply: agents.max_depth, agents.max_children)",
    )
    p.add_argument(
        "--ttl", metavar="DURATION", help="end the agent after DURATION (30m, 2h, 1d, or seconds)"
    )
    p.add_argument(
        "--terminate-on",
        metavar="JSON",
        help="end the agent when a condition holds: "
        """'{"task_done": "3@boss"}' or '{"sessions": 5}'""",
    )
    p.add_argument("--message", metavar="TEXT", help="a first message for the agent")
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

    p = sub.add_parser(
        "destroy",
        parents=[common],
        help="archive an agent to the graveyard",
        description="Archive an agent (record and events) to the graveyard, "
        "or delete it for good with --purge.",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "--purge",
        action="store_true",
        help="delete the record and events; nothing goes to the graveyard",
    )
    p.add_argument("--reason", default="", help="why (recorded in the event)")
    p.set_defaults(handler=destroy)

    p = sub.add_parser(
        "graveyard",
        parents=[common],
        help="archived agents",
        description="Agents that were destroyed or ended (ttl, terminate_on, "
        "self-destruct), with their records and events.",
    )
    gsub = p.add_subparsers(dest="graveyard_command", metavar="SUBCOMMAND", required=True)
    c = gsub.add_parser(
        "ls",
        parents=[common],
        help="list archived agents",
        description="List archived agents: id, when and why they ended.",
    )
    c.add_argument("id", metavar="ID", nargs="?", help="only archives of this agent id")
    c.set_defaults(handler=graveyard_ls)
    c = gsub.add_parser(
        "show",
        parents=[common],
        help="show one archived agent",
        description="One archived agent: its record, why it ended, and its last events.",
    )
    c.add_argument("id", metavar="ID", help="agent id (its latest archive) or archive number")
    c.add_argument(
        "--events", type=int, default=50, metavar="N", help="the last N events (default 50)"
    )
    c.set_defaults(handler=graveyard_show)


def ps(args: argparse.Namespace, ctx: CommandContext) -> int:
    if getattr(args, "tree", False):
        rows = ctx.call("agents.tree")
        if getattr(args, "state", None):
            rows = [r for r in rows if r["state"] == args.state]
        ctx.show(rows, "agents_tree")
        return 0
    params = {"state": args.state} if getattr(args, "state", None) else {}
    ctx.show(ctx.call("agents.list", params), "agents_table")
    return 0


def graveyard_ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("agents.graveyard", {"agent": args.id} if args.id else {}), "graveyard_list")
    return 0


def graveyard_show(args: argparse.Namespace, ctx: CommandContext) -> int:
    key = {"archive_id": int(args.id)} if args.id.isdigit() else {"agent": args.id}
    ctx.show(ctx.call("agents.graveyard_show", {**key, "events": args.events}), "graveyard_show")
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
    if args.ttl:
        params["ttl"] = args.ttl
    if args.terminate_on:
        try:
            params["terminate_on"] = json.loads(args.terminate_on)
        except json.JSONDecodeError:
            raise InvalidParams(
                "--terminate-on is not JSON", hint="""e.g. --terminate-on '{"sessions": 5}'"""
            ) from None
    if args.message:
        params["message"] = args.message
    result = ctx.call("agents.spawn", params)
    _done(ctx, result, f"spawned {args.id} ({result['agent']['model']}), running")
    return 0


def transition(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call(f"agents.{args.action}", {"id": args.id, "reason": args.reason})
    also = [a for a in result.get("stopped", []) if a != args.id]
    _done(
        ctx,
        result,
        f"{args.id}: {result['event']['data']['from']} -> "
        f"{result['agent']['state']}" + (f" (stopped with it: {', '.join(also)})" if also else ""),
    )
    return 0


def destroy(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("agents.destroy", {"id": args.id, "purge": args.purge, "reason": args.reason})
    data = result["event"]["data"]
    msg = (
        f"purged {args.id} ({data['events_removed']} events deleted)"
        if args.purge
        else f"archived {args.id} to the graveyard (archive {data['archive_id']}, "
        f"{data['events_archived']} events)"
    )
    also = [a for a in result.get("destroyed", []) if a != args.id]
    if also:
        msg += f"; its descendants went with it: {', '.join(also)}"
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
        raise InvalidParams(
            f"cannot read --system-file {path}: {exc}",
            hint="pass a readable UTF-8 text file, or --system TEXT",
        ) from None
