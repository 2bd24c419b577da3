"""`legion memory ls|cat|write|rm|search|stats`: an agent's memory from the shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import InvalidParams


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("memory", parents=[common], help="read and write an agent's memory",
                       description="An agent's memory: its own entries and shared/ ones.")
    msub = p.add_subparsers(dest="memory_command", metavar="SUBCOMMAND", required=True)

    c = msub.add_parser("ls", parents=[common], help="list entries",
                        description="List an agent's entries (and shared/ ones) under a prefix.")
    c.add_argument("id", metavar="ID")
    c.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    c.add_argument("--limit", type=int, default=200, metavar="N", help="at most N (default 200)")
    c.set_defaults(handler=ls)

    c = msub.add_parser("cat", parents=[common], help="print an entry",
                        description="Print one entry's content.")
    c.add_argument("id", metavar="ID")
    c.add_argument("path", metavar="PATH")
    c.set_defaults(handler=cat)

    c = msub.add_parser("write", parents=[common], help="write an entry",
                        description="Write an entry (replacing it unless --append or --create).")
    c.add_argument("id", metavar="ID")
    c.add_argument("path", metavar="PATH")
    c.add_argument("text", metavar="TEXT", help="the content; '-' reads it from stdin")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to the end of the entry")
    mode.add_argument("--create", action="store_true", help="fail if the entry exists (exit 5)")
    c.add_argument("--tag", action="append", metavar="TAG", help="a tag; repeatable")
    c.set_defaults(handler=write)

    c = msub.add_parser("rm", parents=[common], help="delete an entry",
                        description="Delete one entry.")
    c.add_argument("id", metavar="ID")
    c.add_argument("path", metavar="PATH")
    c.set_defaults(handler=rm)

    c = msub.add_parser("search", parents=[common], help="search an agent's memory",
                        description="Search by words (FTS5); with --semantic, by meaning too "
                        "(hybrid). The result says which mode answered and why.")
    c.add_argument("id", metavar="ID")
    c.add_argument("query", metavar="QUERY")
    c.add_argument("--semantic", action="store_true", help="hybrid: meaning and words")
    c.add_argument("--limit", type=int, default=10, metavar="N", help="at most N (default 10)")
    c.add_argument("--prefix", default="", metavar="PREFIX", help="only paths under PREFIX")
    c.set_defaults(handler=search)

    c = msub.add_parser("stats", parents=[common], help="memory statistics",
                        description="Entries, bytes, quotas, the embedder and the backfill.")
    c.add_argument("id", metavar="ID", nargs="?", help="one agent (default: all)")
    c.set_defaults(handler=stats)


def ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("memory.list", {"agent": args.id, "prefix": args.prefix,
                                      "limit": args.limit}), "memory_list")
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
        print(f"wrote {result['path']} ({result['bytes']} bytes"
              + (", shared" if result["shared"] else "") + ")")
    return 0


def rm(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("memory.delete", {"agent": args.id, "path": args.path})
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(f"deleted {args.path}")
    return 0


def search(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("memory.search", {"agent": args.id, "query": args.query,
                                        "semantic": args.semantic, "limit": args.limit,
                                        "prefix": args.prefix}), "memory_search")
    return 0


def stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("memory.stats", {"agent": args.id} if args.id else {}), "memory_stats")
    return 0
