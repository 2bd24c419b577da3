"""`legion cron`, `legion heartbeat`, `legion watch`: how agents wake by themselves."""

from __future__ import annotations

import argparse
import json
from typing import Any

from legion.cli.commands import subcommand
from legion.cli.context import CommandContext
from legion.errors import InvalidParams

KINDS = ["http_poll", "cmd_watch", "file_watch", "process_watch", "tcp_probe"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "cron",
        parents=[common],
        help="an agent's schedules",
        description="Schedules: cron expressions, intervals, one-shot times.",
    )
    c_sub = p.add_subparsers(dest="cron_command", metavar="SUBCOMMAND", required=True)
    subcommand(c_sub, common, "ls", "list schedules", "An agent's schedules.", cron_ls)
    c = subcommand(
        c_sub,
        common,
        "add",
        "add a schedule",
        "Add a schedule: one of --cron, "
        "--every or --at. PROMPT is what the agent is told at each run.",
        cron_add,
        "prompt",
    )
    when = c.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--cron",
        metavar="EXPR",
        help="5 fields (min hour day month weekday), or 6 with seconds first",
    )
    when.add_argument("--every", metavar="DURATION", help="an interval: 30s, 15m, 2h, 1d")
    when.add_argument("--at", metavar="TIME", help="one time, ISO 8601")
    c.add_argument(
        "--missed",
        choices=["skip", "run_once", "run_all"],
        default="run_once",
        help="runs missed while the daemon was down or the agent stopped (default run_once)",
    )
    c.add_argument(
        "--missed-cap",
        type=int,
        default=10,
        metavar="N",
        help="with run_all: at most N late runs (default 10)",
    )
    c.add_argument("--model", metavar="ALIAS", help="run these sessions on another model")
    subcommand(c_sub, common, "rm", "remove a schedule", "Remove a schedule.", cron_rm, "schedule")
    subcommand(
        c_sub,
        common,
        "run-now",
        "run a schedule now",
        "Deliver a schedule's run now, outside its plan.",
        cron_run_now,
        "schedule",
    )

    p = sub.add_parser(
        "heartbeat",
        parents=[common],
        help="show or set an agent's heartbeat",
        description="Show an agent's heartbeat, or set it (DURATION: 30s, 10m, "
        "1h) or turn it off. A heartbeat calls the model only when something "
        "is new for the agent.",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("every", metavar="DURATION|off", nargs="?")
    p.set_defaults(handler=heartbeat)

    p = sub.add_parser(
        "watch",
        parents=[common],
        help="an agent's watchers",
        description="Watchers observe files, URLs, commands, processes and "
        "ports without spending tokens, and wake the agent when their "
        "trigger fires.",
    )
    w_sub = p.add_subparsers(dest="watch_command", metavar="SUBCOMMAND", required=True)
    subcommand(w_sub, common, "ls", "list watchers", "An agent's watchers.", watch_ls)
    c = subcommand(
        w_sub,
        common,
        "add",
        "add a watcher",
        "Add a watcher. CONFIG is JSON: "
        'http_poll {"url": ...}, cmd_watch {"command": ...}, file_watch {"path": '
        '...}, process_watch {"name": ...} or {"pid": ...}, tcp_probe {"port": ...}.',
        watch_add,
        "kind",
        "config",
    )
    c.add_argument(
        "--trigger",
        metavar="EXPR",
        help="when to act, e.g. 'status != 200' (default: a change per kind)",
    )
    c.add_argument(
        "--action",
        default="wake",
        metavar="ACTION",
        help="wake (default), silent, message:AGENT, task:LANE or tool:NAME",
    )
    c.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds between observations (default 60)",
    )
    c.add_argument(
        "--min-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="at most one action per S seconds (default 60)",
    )
    subcommand(w_sub, common, "rm", "remove a watcher", "Remove a watcher.", watch_rm, "watcher")
    t = w_sub.add_parser(
        "test",
        parents=[common],
        help="try a trigger on a sample",
        description="Evaluate a trigger against a sample observation "
        "(JSON), installing nothing. Exit 0 fired, 1 not fired.",
    )
    t.add_argument("trigger", metavar="TRIGGER")
    t.add_argument("observation", metavar="OBSERVATION")
    t.add_argument("--previous", metavar="JSON", help="the previous observation")
    t.set_defaults(handler=watch_test)


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParams(
            f"{what} must be a number, got {text!r}",
            hint=f"`legion {'cron' if what == 'schedule' else 'watch'} ls ID` lists them",
        ) from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidParams(
            f"{what} is not valid JSON: {exc}",
            hint='e.g. \'{"url": "http://127.0.0.1:8080/health"}\'',
        ) from None


def cron_ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("cron.list", {"agent": args.id}), "schedules_table")
    return 0


def cron_add(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {
        "agent": args.id,
        "prompt": args.prompt,
        "missed": args.missed,
        "missed_cap": args.missed_cap,
        "cron": args.cron,
        "every": args.every,
        "at": args.at,
    }
    if args.model:
        params["model"] = args.model
    ctx.show(ctx.call("cron.add", params), "schedule_line")
    return 0


def cron_rm(args: argparse.Namespace, ctx: CommandContext) -> int:
    sid = _number(args.schedule, "schedule")
    ctx.show(ctx.call("cron.remove", {"agent": args.id, "schedule": sid}), "done_line")
    return 0


def cron_run_now(args: argparse.Namespace, ctx: CommandContext) -> int:
    sid = _number(args.schedule, "schedule")
    ctx.show(ctx.call("cron.run_now", {"agent": args.id, "schedule": sid}), "done_line")
    return 0


def heartbeat(args: argparse.Namespace, ctx: CommandContext) -> int:
    if args.every is None:
        doc = ctx.call("heartbeat.get", {"agent": args.id})
    else:
        every = None if args.every.lower() == "off" else args.every
        doc = ctx.call("heartbeat.set", {"agent": args.id, "every": every})
    ctx.show(doc, "heartbeat_line")
    return 0


def watch_ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("watch.list", {"agent": args.id}), "watchers_table")
    return 0


def watch_add(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {
        "agent": args.id,
        "kind": args.kind,
        "config": _json(args.config, "CONFIG"),
        "action": args.action,
        "interval": args.interval,
        "min_interval": args.min_interval,
    }
    if args.trigger:
        params["trigger"] = args.trigger
    ctx.show(ctx.call("watch.add", params), "watcher_line")
    return 0


def watch_rm(args: argparse.Namespace, ctx: CommandContext) -> int:
    wid = _number(args.watcher, "watcher")
    ctx.show(ctx.call("watch.remove", {"agent": args.id, "watcher": wid}), "done_line")
    return 0


def watch_test(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {
        "trigger": args.trigger,
        "observation": _json(args.observation, "OBSERVATION"),
    }
    if args.previous:
        params["previous"] = _json(args.previous, "--previous")
    doc = ctx.call("watch.test", params)
    ctx.show(doc, "done_line")
    return 0 if doc["fired"] else 1
