"""`legion tasks ls|add|show|move|note|done|query|graph|burndown`: boards from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from legion.cli.commands import subcommand
from legion.cli.context import CommandContext

STATUSES = ["open", "doing", "blocked", "done", "cancelled"]
PRESETS = [
    "blocked",
    "stuck_in_doing",
    "overdue",
    "upcoming",
    "with_notes_not_done",
    "orphans",
    "longest_chain",
    "all",
]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tasks",
        parents=[common],
        help="an agent's task board",
        description="An agent's task board. TASK is a number on that board, "
        "or N@AGENT for another agent's task.",
    )
    t = p.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND", required=True)

    c = subcommand(t, common, "ls", "list tasks", "List a board's tasks, unfinished first.", ls)
    c.add_argument("--status", choices=STATUSES, help="only tasks with this status")
    c.add_argument("--lane", metavar="LANE", help="only tasks in this lane")

    c = subcommand(
        t,
        common,
        "add",
        "add a task",
        "Add a task to an agent's board (no inbox "
        "message is sent; use `legion tell` to ask the agent to work on it).",
        add,
        "title",
    )
    c.add_argument("--body", default="", metavar="TEXT", help="details")
    c.add_argument("--lane", default="", metavar="LANE", help="a free-form lane")
    c.add_argument("--priority", type=int, default=0, metavar="N", help="higher comes first")
    c.add_argument("--due", metavar="DATE", help="ISO date or time, e.g. 2026-12-01")
    c.add_argument(
        "--blocked-by",
        action="append",
        default=[],
        metavar="TASK",
        help="a task that must be done first (N or N@AGENT); repeatable",
    )

    subcommand(
        t,
        common,
        "show",
        "show one task",
        "One task: body, blockers, dependents, notes, history.",
        show,
        "task",
    )

    c = subcommand(
        t,
        common,
        "move",
        "change a task's status",
        "Move a task to another "
        "status. A task with unfinished blockers cannot go to open, doing or done "
        "(exit 5).",
        move,
        "task",
    )
    c.add_argument(
        "status", metavar="STATUS", choices=STATUSES, help=f"one of: {', '.join(STATUSES)}"
    )
    c.add_argument("--note", metavar="TEXT", help="a note to add with the move")

    subcommand(
        t,
        common,
        "note",
        "add a note to a task",
        "Add a note to a task's timeline.",
        note,
        "task",
        "text",
    )
    subcommand(
        t,
        common,
        "done",
        "complete a task",
        "Mark a task done; the tasks it blocked are unblocked and their owners woken.",
        done,
        "task",
    )

    c = subcommand(
        t,
        common,
        "query",
        "ask preset questions of a board",
        "Presets, several at once: " + ", ".join(PRESETS) + ".",
        query,
    )
    c.add_argument("presets", metavar="PRESET", nargs="+", choices=PRESETS)

    subcommand(
        t,
        common,
        "graph",
        "draw the dependency tree",
        "The board's tasks as a tree of what blocks what, across boards.",
        graph,
    )
    subcommand(
        t,
        common,
        "burndown",
        "draw open vs done over time",
        "Open (unfinished) and done tasks over time, drawn in the terminal.",
        burndown,
    )


def ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"agent": args.id}
    if args.status:
        params["status"] = args.status
    if args.lane is not None:
        params["lane"] = args.lane
    ctx.show(ctx.call("tasks.list", params), "tasks_table")
    return 0


def add(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {
        "agent": args.id,
        "title": args.title,
        "body": args.body,
        "lane": args.lane,
        "priority": args.priority,
        "due": args.due,
        "blocked_by": args.blocked_by,
    }
    ctx.show(ctx.call("tasks.create", params), "task_line")
    return 0


def show(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tasks.get", {"agent": args.id, "task": args.task}), "task_detail")
    return 0


def move(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {"agent": args.id, "task": args.task, "status": args.status}
    if args.note:
        params["note"] = args.note
    ctx.show(ctx.call("tasks.update", params), "task_line")
    return 0


def note(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(
        ctx.call("tasks.note", {"agent": args.id, "task": args.task, "text": args.text}),
        "task_line",
    )
    return 0


def done(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tasks.complete", {"agent": args.id, "task": args.task}), "task_line")
    return 0


def query(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tasks.query", {"agent": args.id, "presets": args.presets}), "task_query")
    return 0


def graph(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tasks.graph", {"agent": args.id}), "task_graph")
    return 0


def burndown(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.show(ctx.call("tasks.burndown", {"agent": args.id}), "burndown")
    return 0
