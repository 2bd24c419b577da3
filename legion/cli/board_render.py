"""Human output for task boards: tables, a dependency tree, a burndown chart."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from legion.cli.render import ago, console, show

STYLE = {"open": "cyan", "doing": "yellow", "blocked": "red", "done": "green", "cancelled": "dim"}


def _status(s: str) -> str:
    return f"[{STYLE.get(s, '')}]{s}[/{STYLE.get(s, '')}]"


def _label(t: dict[str, Any]) -> str:
    return f"{t['task']} {_status(t['status'])} {escape(t['title'])}"


def tasks_table(tasks: list[dict[str, Any]]) -> None:
    if not tasks:
        console.print("no tasks.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("TASK", "STATUS", "TITLE", "LANE", "PRI", "DUE", "BLOCKED BY", "CHANGED"):
        table.add_column(col)
    for t in tasks:
        table.add_row(
            t["task"],
            _status(t["status"]),
            escape(t["title"]),
            t["lane"] or "-",
            str(t["priority"]),
            t["due"] or "-",
            ", ".join(b["task"] for b in t["blocked_by"]) or "-",
            ago(t["status_changed_at"]),
        )
    show(table)


def task_line(t: dict[str, Any]) -> None:
    blockers = ", ".join(b["task"] for b in t["blocked_by"])
    console.print(_label(t) + (f" [dim](blocked by {blockers})[/dim]" if blockers else ""))


def task_detail(t: dict[str, Any]) -> None:
    task_line(t)
    console.print(
        f"[dim]owner {t['owner']} · created by {escape(t['creator'])} · lane "
        f"{escape(t['lane'] or '-')} · priority {t['priority']} · due {escape(t['due'] or '-')}"
        "[/dim]"
    )
    if t.get("body"):
        console.print(escape(t["body"]))
    for key, title in (("blocked_by", "blocked by"), ("dependents", "blocks")):
        if t.get(key):
            console.print(f"[bold]{title}[/bold]: " + ", ".join(_label(x) for x in t[key]))
    for n in t.get("notes", []):
        console.print(f"[dim]{n['at'][:16]} {n['author']}:[/dim] {escape(n['text'])}")
    if t.get("history"):
        console.print(
            "[dim]history: "
            + " → ".join(f"{h['status']} ({h['by']})" for h in t["history"])
            + "[/dim]"
        )


def task_query(doc: dict[str, Any]) -> None:
    for preset, tasks in doc.items():
        console.print(f"[bold]{preset}[/bold] ({len(tasks)})")
        for t in tasks:
            console.print("  " + _label(t))


def task_graph(doc: dict[str, Any]) -> None:
    nodes = {n["task"]: n for n in doc["nodes"]}
    blockers: dict[str, list[str]] = {}
    dependents: set[str] = set()
    for e in doc["edges"]:
        blockers.setdefault(e["task"], []).append(e["blocked_by"])
        dependents.add(e["blocked_by"])
    if not nodes:
        console.print("no tasks.")
        return
    root = Tree("[bold]tasks[/bold] [dim](each task above what blocks it)[/dim]")

    def grow(branch: Tree, ref: str, path: set[str]) -> None:
        node = branch.add(_label(nodes[ref]))
        for b in blockers.get(ref, []):
            if b not in path:
                grow(node, b, path | {b})

    # Roots: tasks nothing depends on (the ends of the chains).
    for ref in nodes:
        if ref not in dependents:
            grow(root, ref, {ref})
    console.print(root)


def burndown(doc: dict[str, Any]) -> None:
    points = doc["points"]
    if not points:
        console.print("no task history yet.")
        return
    top = max(max(p["open"], p["done"]) for p in points) or 1
    width = 18
    console.print(
        f"[bold]{doc['owner']}[/bold] · one row per {doc['bucket']} · "
        "[yellow]█ open[/yellow] [green]█ done[/green]"
    )
    for p in points:
        o = round(p["open"] / top * width)
        d = round(p["done"] / top * width)
        console.print(
            f"[dim]{p['at'][5:16].replace('T', ' ')}[/dim] "
            f"[yellow]{'█' * o}[/yellow]{' ' * (width - o)} {p['open']:>3} open  "
            f"[green]{'█' * d}[/green]{' ' * (width - d)} {p['done']:>3} done"
        )


def schedules_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no schedules.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "KIND", "SPEC", "NEXT", "LAST", "MISSED", "PROMPT"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["schedule"]),
            r["kind"],
            r["spec"],
            r["next_fire"] or "-",
            r["last_fire"] or "-",
            r["missed"],
            escape(r["prompt"] if not console.is_terminal else r["prompt"][:50]),
        )
    show(table)


def schedule_line(r: dict[str, Any]) -> None:
    console.print(f"schedule {r['schedule']}: {r['kind']} {r['spec']} · next {r['next_fire']}")


def heartbeat_line(doc: dict[str, Any]) -> None:
    hb = doc.get("heartbeat")
    if not hb:
        console.print(f"{doc['agent']}: heartbeat off")
        return
    console.print(f"{doc['agent']}: heartbeat every {hb['spec']}s · next {hb['next_fire']}")


def watchers_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no watchers.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "KIND", "TRIGGER", "ACTION", "EVERY", "RUNNING", "LAST FIRED"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["watcher"]),
            r["kind"],
            escape(r["trigger"]),
            r["action"],
            f"{r['interval']:g}s",
            "yes" if r["running"] else "no",
            r["last_fired_at"] or "-",
        )
    show(table)


def watcher_line(r: dict[str, Any]) -> None:
    console.print(
        f"watcher {r['watcher']}: {r['kind']} · trigger {escape(r['trigger'])} · {r['action']}"
    )


def done_line(doc: dict[str, Any]) -> None:
    console.print(", ".join(f"{k}: {v}" for k, v in doc.items()))
