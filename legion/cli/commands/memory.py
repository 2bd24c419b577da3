"""`legion memory ls|cat|write|rm|search|stats`: an agent's memory from the shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from legion.cli.commands import subcommand
from legion.cli.context import CommandContext
from legion.errors import InvalidParams


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "memory",
        parents=[common],
        help="read and write an agent's memory",
        description="An agent's memory: its own entries and shared/ ones.",
    )
    msub = p.add_subparsers(dest="memory_command", metavar="SUBCOMMAND", required=True)

    c = subcommand(
        msub,
        common,
        "ls",
        "list entries",
        "List an agent's entries (and shared/ ones) under a prefix.",
        ls,
    )
    c.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    c.add_argument("--limit", type=int, default=200, metavar="N", help="at most N (default 200)")

    subcommand(msub, common, "cat", "print an entry", "Print one entry's content.", cat, "path")

    c = subcommand(
        msub,
        common,
        "write",
        "write an entry",
        "Write an entry (replacing it unless --append or --create).",
        write,
        "path",
    )
    c.add_argument("text", metavar="TEXT", help="the content; '-' reads it from stdin")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to the end of the entry")
    mode.add_argument("--create", action="store_true", help="fail if the entry exists (exit 5)")
    c.add_argument("--tag", action="append", metavar="TAG", help="a tag; repeatable")

    subcommand(msub, common, "rm", "delete an entry", "Delete one entry.", rm, "path")

    c = subcommand(
        msub,
        common,
        "search",
        "search an agent's memory",
        "Search by words (FTS5); with --semantic, by meaning too (hybrid). The "
        "result says which mode answered and why.",
        search,
        "query",
    )
    c.add_argument("--semantic", action="store_true", help="hybrid: meaning and words")
    c.add_argument("--limit", type=int, default=10, metavar="N", help="at most N (default 10)")
    c.add_argument("--prefix", default="", metavar="PREFIX", help="only paths under PREFIX")

    c = msub.add_parser(
        "stats",
        parents=[common],
        help="memory statistics",
        description="Entries, bytes, quotas, the embedder and the backfill.",
    )
    c.add_argument("id", metavar="ID", nargs="?", help="one agent (default: all)")
    c.set_defaults(handler=stats)


def ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(
        ctx.call("memory.list", {"agent": args.id, "prefix": args.prefix, "limit": args.limit}),
        "memory_list",
    )
    return 0


def cat(args: argparse.Namespace, ctx: CommandContext) -> int:
    entry = ctx.call("memory.read", {"agent": args.id, "path": args.path})
    if ctx.json:
        ctx.emit_json(entry)
    else:
        sys.stdout.write(entry["content"] + ("" if entry["content"].endswith("\n") else "\n"))
    return 0


def write(args: argparse.Namespace, ctx: CommandContext) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text:
        raise InvalidParams("nothing to write", hint="give some text, or pipe it with '-'")
    mode = "append" if args.append else "create" if args.create else "replace"
    params: dict[str, Any] = {"agent": args.id, "path": args.path, "content": text, "mode": mode}
    if args.tag:
        params["tags"] = args.tag
    result = ctx.call("memory.write", params)
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(
            f"wrote {result['path']} ({result['bytes']} bytes"
            + (", shared" if result["shared"] else "")
            + ")"
        )
    return 0


def rm(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("memory.delete", {"agent": args.id, "path": args.path})
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(f"deleted {args.path}")
    return 0


def search(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(
        ctx.call(
            "memory.search",
            {
                "agent": args.id,
                "query": args.query,
                "semantic": args.semantic,
                "limit": args.limit,
                "prefix": args.prefix,
            },
        ),
        "memory_search",
    )
    return 0


def stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("memory.stats", {"agent": args.id} if args.id else {}), "memory_stats")
    return 0
