"""tell, wait, interrupt, messages: talking to agents."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, InvalidParams

STATUSES = ["queued", "processing", "done", "idle", "failed", "interrupted"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tell",
        parents=[common],
        help="send a message to an agent",
        description="Deliver a message to an agent's durable inbox. The "
        "message id is printed once the message is stored. With --wait, "
        "print the reply (exit 1 if the message failed).",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("text", metavar="TEXT", help="the message; '-' reads it from stdin")
    p.add_argument("--wait", action="store_true", help="wait for the reply and print it")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="with --wait: give up waiting after S seconds (exit 6; the message "
        "is still answered later). Default 300",
    )
    p.set_defaults(handler=tell)

    p = sub.add_parser(
        "wait",
        parents=[common],
        help="wait for a message's reply",
        description="Wait until a message is answered (or fails) and print the reply.",
    )
    p.add_argument("message_id", metavar="MESSAGE_ID", type=int)
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="give up after S seconds (exit 6). Default 300",
    )
    p.set_defaults(handler=wait)

    p = sub.add_parser(
        "interrupt",
        parents=[common],
        help="cancel an agent's running session",
        description="Cancel the session an agent is running now; its message "
        "ends `interrupted`. The agent stays running and takes the next message.",
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=interrupt)

    p = sub.add_parser(
        "messages",
        parents=[common],
        help="list an agent's inbox",
        description="An agent's recent messages with their status and reply.",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("--status", choices=STATUSES, help="only messages with this status")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    p.set_defaults(handler=messages)


def tell(args: argparse.Namespace, ctx: CommandContext) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise InvalidParams("the message is empty", hint="give some text, or pipe it with '-'")
    with ctx.client(timeout=30.0) as client:
        sent = client.call("agents.tell", {"id": args.id, "text": text})
        if sent.get("note"):
            print(f"note: {sent['note']}", file=sys.stderr)
        if not args.wait:
            if ctx.json:
                ctx.emit_json({k: sent[k] for k in ("message_id", "status", "note")})
            else:
                print(f"message {sent['message_id']} queued for {args.id}")
            return EXIT_OK
        client.timeout = args.timeout + 30.0
        try:
            result = client.call(
                "messages.wait", {"message_id": sent["message_id"], "timeout": args.timeout}
            )
        except KeyboardInterrupt:
            print(
                f"\nmessage {sent['message_id']} is stored and will still be answered; "
                f"`legion wait {sent['message_id']}` picks it up again",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    return _show_reply(ctx, result)


def wait(args: argparse.Namespace, ctx: CommandContext) -> int:
    with ctx.client(timeout=args.timeout + 30.0) as client:
        result = client.call(
            "messages.wait", {"message_id": args.message_id, "timeout": args.timeout}
        )
    return _show_reply(ctx, result)


def _show_reply(ctx: CommandContext, result: dict[str, Any]) -> int:
    ok = result["status"] in ("done", "idle")
    if ctx.json:
        ctx.emit_json(
            {
                k: result.get(k)
                for k in ("message_id", "status", "reply", "error", "usage", "session")
            }
        )
        return EXIT_OK if ok else EXIT_ERROR
    if result["status"] == "done":
        print(result["reply"])
    elif result["status"] == "idle":
        print(f"({result['agent']} answered IDLE: no reply)", file=sys.stderr)
    else:
        print(
            f"error: message {result['message_id']} {result['status']}: {result['error']}",
            file=sys.stderr,
        )
        print(f"hint: `legion events {result['agent']}` shows what happened", file=sys.stderr)
    return EXIT_OK if ok else EXIT_ERROR


def interrupt(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.call("agents.interrupt", {"id": args.id})
    if ctx.json:
        ctx.emit_json(result)
    else:
        print(f"interrupted {args.id}'s session" if result["interrupted"] else result["note"])
    return EXIT_OK


def messages(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"agent": args.id, "limit": args.limit}
    if args.status:
        params["status"] = args.status
    ctx.show(ctx.call("messages.list", params), "messages")
    return EXIT_OK
