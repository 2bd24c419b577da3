"""`legion tools ls|search|show|stats|run|rm` and `legion plugins`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import EXIT_ERROR, InvalidParams

KINDS = ("kernel", "builtin", "starter", "plugin", "authored")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tools",
        parents=[common],
        help="the tool registry",
        description="Every tool agents can use: kernel tools, the tool-writing "
        "tools, starter and plugin tools, and tools agents wrote themselves.",
    )
    tsub = p.add_subparsers(dest="tools_command", metavar="SUBCOMMAND", required=True)

    c = tsub.add_parser(
        "ls",
        parents=[common],
        help="list tools",
        description="List every tool with its kind, verdict and calls.",
    )
    c.add_argument("--kind", choices=KINDS, help="only tools of this kind")
    c.set_defaults(handler=ls)

    c = tsub.add_parser(
        "search",
        parents=[common],
        help="search tools",
        description="Ranked search over names, descriptions and keywords: "
        "what an agent's tool_search sees.",
    )
    c.add_argument("query", metavar="QUERY", nargs="+")
    c.add_argument("--limit", type=int, default=10, metavar="N", help="at most N (default 10)")
    c.add_argument("--kind", choices=KINDS, help="only tools of this kind")
    c.set_defaults(handler=search)

    c = tsub.add_parser(
        "show",
        parents=[common],
        help="show one tool",
        description="One tool: description, parameters, statistics; for an "
        "agent-written tool also its numbered source and recent edits.",
    )
    c.add_argument("name", metavar="NAME")
    c.set_defaults(handler=show)

    c = tsub.add_parser(
        "stats",
        parents=[common],
        help="tool statistics",
        description="Calls, failures, latency p50/p95/p99/max and the verdict "
        "(healthy, watch, degraded) per tool.",
    )
    c.add_argument("name", metavar="NAME", nargs="?", help="one tool (default: all used)")
    c.set_defaults(handler=stats)

    c = tsub.add_parser(
        "run",
        parents=[common],
        help="run a tool from the shell",
        description="Run any registry tool directly, no model involved. Arguments are "
        "KEY=VALUE pairs; a VALUE that parses as JSON (numbers, true, lists, objects, "
        '"quoted") is taken as JSON, anything else as a string. Exit 1 if the tool fails.',
    )
    c.add_argument("name", metavar="NAME")
    c.add_argument("pairs", metavar="KEY=VALUE", nargs="*")
    c.add_argument("--args", metavar="JSON", help="all arguments as one JSON object")
    c.add_argument(
        "--agent",
        metavar="ID",
        help="the agent the tool acts for (kernel tools "
        "need one; agent-written tools run in its working directory)",
    )
    c.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after SECONDS")
    c.set_defaults(handler=run)

    c = tsub.add_parser(
        "rm",
        parents=[common],
        help="delete an agent-written tool",
        description="Delete a tool an agent wrote, with its versions. Starter "
        "and plugin tools cannot be deleted (disable the plugin instead).",
    )
    c.add_argument("name", metavar="NAME")
    c.set_defaults(handler=rm)

    p = sub.add_parser(
        "plugins",
        parents=[common],
        help="list plugins",
        description="Loaded, failed and disabled plugins: where each came from "
        "and what it adds; and the sandbox level in force.",
    )
    p.set_defaults(handler=plugins)


def ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {"kind": args.kind} if args.kind else {}
    ctx.show(ctx.call("tools.list", params), "tools_list")
    return 0


def search(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"query": " ".join(args.query), "limit": args.limit}
    if args.kind:
        params["kind"] = args.kind
    ctx.show(ctx.call("tools.search", params), "tools_search")
    return 0


def show(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tools.show", {"name": args.name}), "tool_show")
    return 0


def stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {"name": args.name} if args.name else {}
    ctx.show(ctx.call("tools.stats", params), "tools_stats")
    return 0


def run(args: argparse.Namespace, ctx: CommandContext) -> int:
    values: dict[str, Any] = {}
    if args.args:
        try:
            values = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise InvalidParams(
                f"--args is not valid JSON: {exc.msg}",
                hint='e.g. --args \'{"url": "http://localhost:8080"}\'',
            ) from None
        if not isinstance(values, dict):
            raise InvalidParams("--args must be a JSON object", hint="e.g. --args '{\"x\": 1}'")
    values.update(parse_pairs(args.pairs))
    params: dict[str, Any] = {"name": args.name, "args": values}
    if args.agent:
        params["agent"] = args.agent
    if args.timeout:
        params["timeout"] = args.timeout
    result = ctx.call("tools.run", params, timeout=(args.timeout or 3600) + 30)
    if ctx.json:
        ctx.emit_json(result)
    elif result["ok"]:
        value = result["result"]
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    else:
        print(f"error: {result['error']}", file=sys.stderr)
        if result.get("hint"):
            print(f"hint: {result['hint']}", file=sys.stderr)
    return 0 if result["ok"] else EXIT_ERROR


def rm(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("tools.delete", {"name": args.name})
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(f"deleted {result['deleted']} (it was at version {result['version']})")
    return 0


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidParams(
                f"{pair!r} is not KEY=VALUE",
                hint="e.g. legion tools run http_get url=http://localhost:8080",
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def plugins(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("plugins.list"), "plugins")
    return 0
