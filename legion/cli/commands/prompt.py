"""`legion prompt ID [show|diff|accept|reject]`: review an agent's proposed prompt changes."""

from __future__ import annotations

import argparse
from typing import Any

from legion.cli.context import CommandContext
from legion.errors import InvalidParams

ACTIONS = ("show", "diff", "accept", "reject")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "prompt",
        parents=[common],
        help="review an agent's system prompt and its proposals",
        description="An agent's system prompt, and the changes it proposed by reflecting. "
        "An agent never changes its own prompt: a person accepts or rejects each proposal. "
        "show (the default): the prompt and the proposals; diff: the pending proposal as a "
        "diff; accept: make it the prompt; reject: drop it. Exit 4 when there is no such "
        "(or no pending) proposal, 5 when it was already decided.",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "action",
        metavar="ACTION",
        nargs="?",
        choices=ACTIONS,
        default="show",
        help="show (default), diff, accept or reject",
    )
    p.add_argument(
        "--proposal", type=int, metavar="N", help="this proposal (default: the pending one)"
    )
    p.add_argument("--note", metavar="TEXT", help="why (kept with an accept or a reject)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"agent": args.id}
    if args.action == "show":
        if args.proposal is not None or args.note is not None:
            raise InvalidParams(
                "show takes neither --proposal nor --note",
                hint=f"legion prompt {args.id} diff --proposal N shows one proposal",
            )
        ctx.show(ctx.call("prompts.show", params), "prompt_show")
        return 0
    if args.proposal is not None:
        params["proposal"] = args.proposal
    if args.action == "diff":
        if args.note is not None:
            raise InvalidParams(
                "--note goes with accept or reject",
                hint=f"legion prompt {args.id} reject --note TEXT",
            )
        ctx.show(ctx.call("prompts.diff", params), "prompt_diff")
        return 0
    if args.note is not None:
        params["note"] = args.note
    ctx.show(ctx.call(f"prompts.{args.action}", params), "prompt_decision")
    return 0
