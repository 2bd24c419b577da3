"""`legion tasks ls|add|show|move|note|done|query|graph|burndown`: boards from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from legion.cli.context import CommandContext

STATUSES = ["open", "doing", "blocked", "done", "cancelled"]
PRESETS = ["blocked", "stuck_in_doing", "overdue", "upcoming", "with_notes_not_done",
           "orphans", "longest_chain", "all"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tasks", parents=[common], help="an agent's task board",
                       description="An agent's task board. TASK is a number on that board, "
                       "or N@AGENT for another agent's task.")
    t = p.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND", required=True)

    c = t.add_parser("ls", parents=[common], help="list tasks",
                     description="List a board's tasks, unfinished first.")
    c.add_argument("id", metavar="ID")
    c.add_argument("--status", choices=STATUSES, help="only tasks with this status")
    c.add_argument("--lane", metavar="LANE", help="only tasks in this lane")
    c.set_defaults(handler=ls)

    c = t.add_parser("add", parents=[common], help="add a task",
                     description="Add a task to an agent's board (no inbox message is sent; "
                     "use `legion tell` to ask the agent to work on it).")
    c.add_argument("id", metavar="ID")
    c.add_argument("title", metavar="TITLE")
    c.add_argument("--body", default="", metavar="TEXT", help="details")
    c.add_argument("--lane", default="", metavar="LANE", help="a free-form lane")
    c.add_argument("--priority", type=int, default=0, metavar="N", help="higher comes first")
    c.add_argument("--due", metavar="DATE", help="ISO date or time, e.g. 2026-12-01")
    c.add_argument("--blocked-by", action="append", default=[], metavar="TASK",
                   help="a task that must be done first (N or N@AGENT); repeatable")
    c.set_defaults(handler=add)

    c = t.add_parser("show", parents=[common], help="show one task",
                     description="One task: body, blockers, dependents, notes, history.")
    c.add_argument("id", metavar="ID")
    c.add_argument("task", metavar="TASK")
    c.set_defaults(handler=show)

    c = t.add_parser("move", parents=[common], help="change a task's status",
                     description="Move a task to another status. A task with unfinished "
                     "blockers cannot go to open, doing or done (exit 5).")
    c.add_argument("id", metavar="ID")
    c.add_argument("task", metavar="TASK")
    c.add_argument("status", metavar="STATUS", choices=STATUSES,
                   help=f"one of: {', '.join(STATUSES)}")
    c.add_argument("--note", metavar="TEXT", help="a note to add with the move")
    c.set_defaults(handler=move)

    c = t.add_parser("note", parents=[common], help="add a note to a task",
                     description="Add a note to a task's timeline.")
    c.add_argument("id", metavar="ID")
    c.add_argument("task", metavar="TASK")
    c.add_argument("text", metavar="TEXT")
    c.set_defaults(handler=note)

    c = t.add_parser("done", parents=[common], help="complete a task",
                     description="Mark a task done; the tasks it blocked are unblocked and "
                     "their owners woken.")
    c.add_argument("id", metavar="ID")
    c.add_argument("task", metavar="TASK")
    c.set_defaults(handler=done)

    c = t.add_parser("query", parents=[common], help="ask preset questions of a board",
                     description="Presets, several at once: " + ", ".join(PRESETS) + ".")
    c.add_argument("id", metavar="ID")
    c.add_argument("presets", metavar="PRESET", nargs="+", choices=PRESETS)
    c.set_defaults(handler=query)

    c = t.add_parser("graph", parents=[common], help="draw the dependency tree",
                     description="The board's tasks as a tree of what blocks what, across "
                     "boards.")
    c.add_argument("id", metavar="ID")
    c.set_defaults(handler=graph)

    c = t.add_parser("burndown", parents=[common], help="draw open vs done over time",
                     description="Open (unfinished) and done tasks over time, drawn in the "
                     "terminal.")
    c.add_argument("id", metavar="ID")
    c.set_defaults(handler=burndown)


def ls(args: argparse.Namespace, ctx: CommandContext) -> int:
    params: dict[str, Any] = {"agent": args.id}
    if args.status:
        params["status"] = args.status
    if args.lane is not None:
        params["lane"] = args.lane
    ctx.show(ctx.call("tasks.list", params), "tasks_table")
    return 0


def add(args: argparse.Namespace, ctx: CommandContext) -> int:
    params = {"agent": args.id, "title": args.title, "body": args.body, "lane": args.lane,
              "priority": args.priority, "due": args.due, "blocked_by": args.blocked_by}
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
    ctx.show(ctx.call("tasks.note", {"agent": args.id, "task": args.task, "text": args.text}),
             "task_line")
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
