"""events (the persisted log) and attach (the live stream)."""

from __future__ import annotations

import argparse
from typing import Any

from legion import protocol
from legion.cli.context import CommandContext
from legion.errors import EXIT_INTERRUPTED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "events",
        parents=[common],
        help="show an agent's recorded events",
        description="Show recorded events, oldest first (the newest --limit). "
        "Without ID: every agent's and the daemon's.",
    )
    p.add_argument("id", metavar="ID", nargs="?", help="agent id")
    p.add_argument(
        "--kind",
        action="append",
        metavar="K",
        help="only this kind; globs allowed (agent.*); repeatable",
    )
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    page = p.add_mutually_exclusive_group()
    page.add_argument(
        "--after",
        type=int,
        metavar="EVENT_ID",
        help="the oldest --limit events after this id (paging forward)",
    )
    page.add_argument(
        "--before",
        type=int,
        metavar="EVENT_ID",
        help="the newest --limit events before this id (paging back)",
    )
    p.set_defaults(handler=events)

    p = sub.add_parser(
        "attach",
        parents=[common],
        help="stream an agent's events live",
        description="Replay an agent's recent events, then stream new ones "
        "until Ctrl-C (or until the agent is destroyed).",
    )
    p.add_argument("id", metavar="ID", help="agent id")
    p.add_argument("--kind", action="append", metavar="K", help="only this kind; repeatable")
    p.add_argument(
        "--replay",
        type=int,
        metavar="N",
        help="events replayed first (default: the daemon's events.replay)",
    )
    p.set_defaults(handler=attach)


def events(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.id:
        params["agent"] = args.id
    if args.kind:
        params["kinds"] = args.kind
    if args.after is not None:
        params["after_id"] = args.after
    if args.before is not None:
        params["before_id"] = args.before
    ctx.show(ctx.call("events.list", params), "events")
    return 0


def attach(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"agent": args.id}
    if args.kind:
        params["kinds"] = args.kind
    if args.replay is not None:
        params["replay"] = args.replay
    if ctx.json:
        return _attach_json(ctx, params)
    return _attach_human(ctx, args.id, params)


def _attach_json(ctx: CommandContext, params: dict[str, Any]) -> int:
    with ctx.client(timeout=30.0) as client:
        client.call("events.subscribe", params)
        try:
            for note in client.notifications_stream():
                method, body = note.get("method"), note.get("params") or {}
                if method == protocol.NOTIFY_EVENT:
                    ctx.emit_line(body["event"])
                elif method == protocol.NOTIFY_LAGGED:
                    ctx.emit_line({"lagged": body})
                elif method == protocol.NOTIFY_END:
                    return 0
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return 0


def _attach_human(ctx: CommandContext, agent: str, params: dict[str, Any]) -> int:
    """Ctrl-C while the agent works interrupts its session; Ctrl-C when it is
    idle (or a second Ctrl-C) detaches."""
    from legion.cli import render
    from legion.cli.transcript import Transcript

    view = Transcript(render.console)
    interrupted = False
    with ctx.client(timeout=30.0) as client:
        client.call("events.subscribe", params)
        while True:
            try:
                for note in client.notifications_stream():
                    method, body = note.get("method"), note.get("params") or {}
                    if method == protocol.NOTIFY_EVENT:
                        view.show(body["event"])
                        if body["event"]["kind"] == "session.ended":
                            interrupted = False
                    elif method == protocol.NOTIFY_LAGGED:
                        render.console.print(
                            f"[yellow]… missed {body['missed']} events "
                            f"(after #{body['after_id']})[/yellow]"
                        )
                    elif method == protocol.NOTIFY_END:
                        view.close()
                        render.console.print(f"[dim]stream ended: {body.get('reason')}[/dim]")
                        return 0
            except KeyboardInterrupt:
                view.close()
                if not view.busy or interrupted:
                    return EXIT_INTERRUPTED
                interrupted = True
                ctx.call("agents.interrupt", {"id": agent})
                render.console.print(
                    "[yellow]interrupting the session (Ctrl-C again to detach)[/yellow]"
                )
