"""Human output with rich. Imported only when a command renders for a person,
so `--json` and scripted paths never pay for rich."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
if not console.is_terminal:
    # Piped or redirected: a script reads this. Long lines stay whole (no wrap at
    # 80 columns) and tables print as plain columns (see `show`).
    console.soft_wrap = True

_STATE_STYLE = {"running": "green", "paused": "yellow", "stopped": "red", "terminated": "dim"}


def ago(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    secs = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return f"{max(secs, 0)}s ago"


# Past this many rows a table is printed as plain columns: rich measures every
# cell, which takes over half a second for a fleet of 1,000 agents.
PLAIN_ROWS = 200


def _plain(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [headers, *rows] if headers else list(rows)
    if not table:
        return
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        " ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def _cell_text(cell: Any) -> str:
    """A cell as plain text on one line: markup rendered away, newlines folded."""
    from rich.text import Text

    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return " ".join(text.split("\n"))


def show(table: Table) -> None:
    """A table for a person on a terminal; for a pipe or a file, plain columns with
    every value whole and one row a line, so a script can read them."""
    if console.is_terminal:
        console.print(table)
        return
    columns = table.columns
    headers = tuple(_cell_text(c.header) for c in columns) if table.show_header else ()
    cells = [[_cell_text(x) for x in c._cells] for c in columns]
    _plain(headers, list(zip(*cells, strict=True)))


def _agent_rows(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Agent rows (id, state, ...): the state coloured; plain columns for a big fleet."""
    if len(rows) > PLAIN_ROWS:
        _plain(headers, rows)
        return
    table = Table(box=None, header_style="bold")
    for col in headers:
        table.add_column(col)
    for row in rows:
        style = _STATE_STYLE.get(row[1], "")
        table.add_row(row[0], f"[{style}]{row[1]}[/{style}]", *(escape(c) for c in row[2:]))
    show(table)


def agents_table(agents: list[dict[str, Any]]) -> None:
    if not agents:
        console.print("no agents. Create one with [bold]legion spawn ID[/bold].")
        return
    headers = (
        "ID",
        "STATE",
        "ACTIVITY",
        "MODEL",
        "QUEUED",
        "TASKS d/o/b",
        "PARENT",
        "UPDATED",
        "REASON",
    )
    rows: list[tuple[str, ...]] = []
    for a in agents:
        model = a["model"]
        resolved = a.get("resolved_model")
        if resolved and resolved != model:
            model = f"{model} -> {resolved}"
        rows.append(
            (
                a["id"],
                a["state"],
                a.get("activity", "idle"),
                model,
                str(a.get("queued", 0)),
                _counts(a.get("tasks")),
                a.get("parent") or "-",
                ago(a.get("updated_at")),
                a.get("state_reason") or "",
            )
        )
    _agent_rows(headers, rows)


def agents_tree(agents: list[dict[str, Any]]) -> None:
    if not agents:
        console.print("no agents. Create one with [bold]legion spawn ID[/bold].")
        return
    headers = ("AGENT", "STATE", "ACTIVITY", "MODEL", "QUEUED", "ENDS")
    rows: list[tuple[str, ...]] = []
    # open_at[d]: the branch at depth d has more siblings below, so its line goes on.
    open_at: dict[int, bool] = {}
    for i, a in enumerate(agents):
        depth = a.get("depth", 0)
        # A child is drawn under its parent; the last of its siblings closes the branch.
        last = _last_sibling(agents, i)
        open_at[depth] = not last
        rails = "".join("│  " if open_at.get(d) else "   " for d in range(1, depth))
        prefix = (rails + ("└─ " if last else "├─ ")) if depth else ""
        settings = a.get("settings") or {}
        ends = settings.get("expires_at") or (
            "on " + ", ".join(f"{k}={v}" for k, v in settings["terminate_on"].items())
            if settings.get("terminate_on")
            else ""
        )
        rows.append(
            (
                prefix + a["id"],
                a["state"],
                a.get("activity", "idle"),
                a["model"],
                str(a.get("queued", 0)),
                ends or "-",
            )
        )
    _agent_rows(headers, rows)


def _last_sibling(agents: list[dict[str, Any]], i: int) -> bool:
    depth = agents[i].get("depth", 0)
    for b in agents[i + 1 :]:
        if b.get("depth", 0) <= depth:
            return bool(b.get("depth", 0) < depth)
    return True


def graveyard_list(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("the graveyard is empty.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ARCHIVE", "AGENT", "PARENT", "ENDED", "REASON"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["archive_id"]),
            r["agent"],
            r["record"].get("parent") or "-",
            ago(r["destroyed_at"]),
            escape(r["reason"] or ""),
        )
    show(table)


def graveyard_show(doc: dict[str, Any]) -> None:
    rec = doc["record"]
    console.print(
        f"[bold]{doc['agent']}[/bold] (archive {doc['archive_id']}), ended "
        f"{ago(doc['destroyed_at'])}: {escape(doc['reason'] or 'no reason given')}",
        highlight=False,
    )
    console.print(
        f"[dim]model {escape(str(rec.get('model')))}, parent {rec.get('parent') or '-'}, "
        f"created {rec.get('created_at')}; {doc['events_total']} events archived, "
        f"the last {len(doc['events'])} below[/dim]",
        highlight=False,
    )
    events(doc["events"])


def _counts(tasks: dict[str, int] | None) -> str:
    if not tasks:
        return "-"
    return f"{tasks['doing']}/{tasks['open']}/{tasks['blocked']}"


def event_line(ev: dict[str, Any]) -> str:
    ts = ev["ts"][11:23] if len(ev.get("ts", "")) >= 23 else ev.get("ts", "")
    data = ev.get("data") or {}
    detail = " ".join(f"{k}={_short(v)}" for k, v in data.items() if v not in (None, "", {}, []))
    who = ev.get("agent") or "daemon"
    return f"[dim]{ts}[/dim] [cyan]#{ev['id']}[/cyan] {who} [bold]{ev['kind']}[/bold] {detail}"


def _short(v: Any) -> str:
    s = str(v)
    if not console.is_terminal:
        return escape(s)  # a script gets the whole value
    return escape(s if len(s) <= 60 else s[:57] + "...")


def events(evs: list[dict[str, Any]]) -> None:
    if not evs:
        console.print("no events.")
    for ev in evs:
        console.print(event_line(ev), highlight=False)


def messages(msgs: list[dict[str, Any]]) -> None:
    if not msgs:
        console.print("no messages.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "STATUS", "FROM", "SENT", "TEXT / REPLY"):
        table.add_column(col)
    for m in msgs:
        outcome = m.get("reply") or m.get("error") or ""
        table.add_row(
            str(m["message_id"]),
            m["status"],
            m["sender"],
            ago(m["created_at"]),
            _short(outcome or "-"),
        )
    show(table)


def memory_list(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.print("no memory entries.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("PATH", "BYTES", "UPDATED", "READ", "READS", "EMBEDDED"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e["path"],
            str(e["bytes"]),
            ago(e["updated_at"]),
            ago(e["accessed_at"]),
            str(e["access_count"]),
            "yes" if e["embedded"] else "no",
        )
    show(table)


def memory_search(doc: dict[str, Any]) -> None:
    console.print(
        f"[dim]mode: {escape(doc['mode'])}"
        + (f" — {escape(doc['note'])}" if doc["note"] else "")
        + "[/dim]"
    )
    if not doc["results"]:
        console.print("no matches.")
    for hit in doc["results"]:
        via = "+".join(hit.get("via", []))
        sim = f" sim={hit['similarity']}" if "similarity" in hit else ""
        console.print(
            f"[bold]{escape(hit['path'])}[/bold] [dim]({via}{sim})[/dim]", highlight=False
        )
        console.print(f"  {escape(hit['snippet'])}", highlight=False)


def memory_stats(doc: dict[str, Any]) -> None:
    q = doc["quota"]
    rows = [
        ("entries", f"{doc['entries']} ({doc['shared_entries']} shared), {doc['bytes']} bytes"),
        (
            "quota",
            f"{q['max_entries']} entries, {q['max_bytes']} bytes, "
            f"{q['max_entry_bytes']} bytes per entry (per agent)",
        ),
        ("embedder", doc["embedder"]),
        ("vector search", "on" if doc["vector_search"] else "off"),
        ("pending embeddings", str(doc["pending_embeddings"])),
    ]
    if "backfill" in doc:
        b = doc["backfill"]
        rows.append(
            (
                "backfill",
                f"{b['state']}, {b['embedded']} embedded"
                + (f", last error: {b['last_error']}" if b["last_error"] else ""),
            )
        )
    if doc["decay_half_life_days"]:
        rows.append(("decay", f"half-life {doc['decay_half_life_days']:g} days"))
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, escape(v))  # plain text: a hint like `legion[embed]` is not markup
    show(table)


def info(doc: dict[str, Any]) -> None:
    db = doc["database"]
    ev = doc["events"]
    rpc = doc.get("rpc", {})
    by_state = ", ".join(f"{k} {v}" for k, v in doc["agents"]["by_state"].items())
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("version", f"legion {doc['version']} (python {doc['python']})"),
        ("daemon", f"pid {doc['pid']}, up {int(doc['uptime_s'])}s"),
        ("home", doc["home"]),
        ("socket", doc["socket"]),
        (
            "config",
            f"{doc['config']['path']}"
            + ("" if doc["config"]["loaded"] else " (absent: embedded defaults)"),
        ),
        (
            "database",
            f"{db['path']} ({db['size_bytes'] // 1024} KiB, synchronous={db['synchronous']})",
        ),
        ("sqlite", f"{db['driver']} ({db['module']}) sqlite {db['sqlite_version']}"),
        (
            "sqlite-vec",
            db["vec_version"] or "[red]unavailable[/red]: " + escape("; ".join(db["notes"])),
        ),
        ("agents", f"{doc['agents']['total']} ({by_state})"),
        (
            "events",
            f"{ev['count']} kept, last id {ev['last_id']}, "
            f"retention {ev['retention_days']:g} days / {ev['max_rows']} rows",
        ),
        (
            "clients",
            f"{rpc.get('connections', 0)} connected, {rpc.get('subscriptions', 0)} streaming",
        ),
    ]
    mem = doc.get("memory")
    if mem:
        backfill = mem.get("backfill", {})
        rows.append(
            (
                "memory",
                f"{mem['entries']} entries, embedder {escape(mem['embedder'])}, "
                f"{mem['pending_embeddings']} waiting to be embedded"
                + (f", backfill {backfill['state']}" if backfill else ""),
            )
        )
    sb = doc.get("sandbox")
    if sb:
        rows.extend(sandbox_rows(sb))
    tl = doc.get("tools")
    if tl:
        pl = doc.get("plugins", {})
        rows.append(
            (
                "tools",
                f"{tl['total']} ({tl['in_prompt']} in every prompt, "
                f"{tl['prompt_schema_bytes']} bytes of schemas; {tl['authored']} written by "
                f"agents); plugins {pl.get('loaded', 0)} loaded"
                + (f", [red]{pl['failed']} failed[/red]" if pl.get("failed") else ""),
            )
        )
    models = doc.get("models", {}).get("providers", {})
    opened = [name for name, p in models.items() if p["circuit"]["state"] != "closed"]
    if opened:
        rows.append(("circuits", "[red]open: " + ", ".join(opened) + "[/red]"))
    for k, v in rows:
        table.add_row(k, str(v))
    show(table)


_VERDICT_STYLE = {"healthy": "green", "watch": "yellow", "degraded": "red"}


def _verdict(v: str) -> str:
    return f"[{_VERDICT_STYLE.get(v, 'white')}]{v}[/]"


def _first_sentence(text: str, limit: int = 70) -> str:
    cut = text.split(". ", 1)[0]
    if not console.is_terminal:
        return cut  # a script gets the whole sentence
    return cut if len(cut) <= limit else cut[: limit - 1] + "…"


def tools_list(doc: dict[str, Any]) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "KIND", "PROMPT", "VERDICT", "CALLS", "DESCRIPTION"):
        table.add_column(col, overflow="fold" if col == "DESCRIPTION" else "ellipsis")
    for t in doc["tools"]:
        kind = t["kind"] + (f":{t['plugin']}" if t.get("plugin") else "")
        if t.get("status") == "broken":
            kind += " [red](broken)[/red]"
        table.add_row(
            t["name"],
            kind,
            "yes" if t["in_prompt"] else "",
            _verdict(t["verdict"]),
            str(t["calls"]),
            escape(_first_sentence(t["description"])),
        )
    show(table)
    console.print(
        f"[dim]{len(doc['tools'])} tools; in every prompt: {', '.join(doc['prompt'])}[/dim]"
    )


def tools_search(doc: dict[str, Any]) -> None:
    if not doc["results"]:
        console.print(f"no tool matches {escape(repr(doc['query']))}.")
        return
    for hit in doc["results"]:
        console.print(
            f"[bold]{hit['name']}[/bold] [dim]({hit['kind']}, score {hit['score']}, "
            f"{hit['verdict']})[/dim]",
            highlight=False,
        )
        console.print(f"  {escape(hit['description'])}", highlight=False)
        if "signature" in hit:
            console.print(f"  [cyan]{escape(hit['signature'])}[/cyan]", highlight=False)


def tool_show(doc: dict[str, Any]) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    st = doc["stats"]
    rows = [
        ("name", doc["name"]),
        ("kind", doc["kind"] + (f" ({doc['plugin']})" if doc.get("plugin") else "")),
        ("description", escape(doc["description"])),
        ("signature", escape(doc.get("signature", ""))),
        ("keywords", ", ".join(doc["keywords"]) or "-"),
        ("verdict", _verdict(st["verdict"]) + (f" ({st['why']})" if st["why"] else "")),
        ("calls", f"{st['calls']} ({st['failures']} failed, {st['misuses']} bad arguments)"),
        (
            "latency",
            "-"
            if st["p50_ms"] is None
            else f"p50 {st['p50_ms']} / p95 {st['p95_ms']} / p99 {st['p99_ms']} / "
            f"max {st['max_ms']} ms",
        ),
    ]
    if "author" in doc:
        rows += [
            ("author", f"{doc['author']} (maintainer {doc['maintainer']})"),
            ("version", f"{doc['version']} {doc['content_hash']}"),
            (
                "status",
                doc["status"] + (f": {escape(doc['problem'])}" if doc.get("problem") else ""),
            ),
        ]
    if doc.get("details"):
        rows.append(("details", escape(doc["details"])))
    for k, v in rows:
        table.add_row(k, str(v))
    show(table)
    if "source" in doc:
        console.print(f"\n[bold]source[/bold] [dim]({doc['total_lines']} lines)[/dim]")
        console.print(escape(doc["source"]), highlight=False)
    for v in doc.get("versions", []):
        console.print(
            f"[dim]v{v['version']} {v['mode']} by {v['agent']} "
            f"+{v['added']}/-{v['removed']} {ago(v['at'])}[/dim]"
        )


def tools_stats(doc: dict[str, Any]) -> None:
    rows = [t for t in doc["tools"] if t["calls"]]
    if not rows:
        console.print("no tool has been called yet.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "VERDICT", "CALLS", "FAILED", "P50 ms", "P95 ms", "P99 ms", "MAX ms"):
        table.add_column(col)
    for t in rows:
        table.add_row(
            t["name"],
            _verdict(t["verdict"]),
            str(t["calls"]),
            str(t["failures"]),
            *(str(t[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        )
    show(table)


def plugins(doc: dict[str, Any]) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("PLUGIN", "STATUS", "SOURCE", "ADDS"):
        table.add_column(col, overflow="fold" if col == "ADDS" else "ellipsis")
    for p in doc["plugins"]:
        adds = []
        for key, label in (
            ("tools", "tools"),
            ("watcher_kinds", "watcher kinds"),
            ("providers", "providers"),
            ("rpc_methods", "methods"),
        ):
            if p[key]:
                adds.append(f"{label}: {', '.join(p[key])}")
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]"}.get(
            p["status"], f"[dim]{p['status']}[/]"
        )
        table.add_row(
            p["name"],
            status,
            p["source"],
            escape(p["error"]) if p["error"] else "; ".join(adds) or "-",
        )
    show(table)
    sb = doc["sandbox"]
    console.print(f"[dim]sandbox: {sb['level']} ({', '.join(sb['layers'])})[/dim]")


def sandbox_rows(sb: dict[str, Any]) -> list[tuple[str, str]]:
    """The sandbox's level, each mechanism in force or missing (and why), and
    a loud line where agent-written code is refused or weak."""
    from rich.markup import escape

    level = sb["level"]
    head = f"[red]{level}[/red]" if level == "process" else f"[green]{level}[/green]"
    rows = [
        (
            "sandbox",
            head
            + (
                " [red bold]REFUSING agent-written tools and commands[/]"
                if sb.get("refusing")
                else ""
            ),
        )
    ]
    mechs = sb.get("mechanisms")
    if mechs:
        on = [
            m["name"] + (f" ({m['detail']})" if m["detail"] else "") for m in mechs if m["active"]
        ]
        off = [
            f"{m['name']}: {m['detail']}" if m["detail"] else m["name"]
            for m in mechs
            if not m["active"]
        ]
        rows.append(("  in force", escape(", ".join(on))))
        if off:
            rows.append(("  missing", f"[yellow]{escape('; '.join(off))}[/yellow]"))
    else:
        rows[0] = ("sandbox", head + f" ({', '.join(sb['layers'])})")
    for note in sb.get("notes", []):
        loud = note.startswith(("WEAK", "REFUSING"))
        rows.append(("  note", f"[red]{escape(note)}[/red]" if loud else escape(note)))
    return rows


def prompt_show(doc: dict[str, Any]) -> None:
    from rich.panel import Panel

    agent = doc["agent"]
    console.print(
        Panel(
            escape(doc["system_prompt"]) or "[dim](empty)[/dim]",
            title_align="left",
            title=f"{agent}: system prompt ({doc['chars']} characters)",
        )
    )
    if doc.get("definition"):
        console.print(f"[dim]declared in {escape(doc['definition'])}[/dim]")
    pending = doc.get("pending")
    if pending:
        console.print(
            f"\n[bold]pending proposal {pending['id']}[/bold] "
            f"({pending['chars']} characters, {ago(pending['created_at'])})"
            + (
                " [yellow]the prompt has changed since it was made[/yellow]"
                if pending["base_changed"]
                else ""
            )
        )
        if pending["rationale"]:
            console.print(f"why: {escape(pending['rationale'])}")
        console.print(
            f"[dim]legion prompt {agent} diff | accept | reject [--note TEXT][/dim]",
            highlight=False,
        )
    else:
        console.print("\nno pending proposal.")
    decided = [p for p in doc["proposals"] if p["status"] != "pending"]
    if not decided:
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "STATUS", "BY", "DECIDED", "CHARS", "WHY / NOTE"):
        table.add_column(col, overflow="fold" if col == "WHY / NOTE" else "ellipsis")
    for p in decided:
        style = "green" if p["status"] == "accepted" else "dim"
        why = " / ".join(escape(x) for x in (p["rationale"], p["decision_note"]) if x)
        table.add_row(
            str(p["id"]),
            f"[{style}]{p['status']}[/{style}]",
            p["decided_by"] or "-",
            ago(p["decided_at"]),
            str(p["chars"]),
            why or "-",
        )
    show(table)


def prompt_diff(doc: dict[str, Any]) -> None:
    from rich.syntax import Syntax

    def show(text: str) -> None:
        if not text:
            console.print("[dim](no difference)[/dim]")
            return
        console.print(
            Syntax(text, "diff", theme="ansi_dark", background_color="default", word_wrap=True)
        )

    console.print(f"[bold]proposal {doc['proposal']}[/bold] for {doc['agent']} ({doc['status']})")
    if doc["rationale"]:
        console.print(f"why: {escape(doc['rationale'])}")
    show(doc["diff"])
    if doc["base_changed"] and doc["status"] == "pending":
        console.print(
            "[yellow]the prompt has changed since this proposal was made; against "
            "the current prompt it reads:[/yellow]"
        )
        show(doc["current_diff"])


def prompt_decision(doc: dict[str, Any]) -> None:
    if doc["status"] == "accepted":
        console.print(
            f"accepted proposal {doc['proposal']}: {doc['agent']}'s system prompt is "
            f"now {doc['chars']} characters"
        )
    else:
        console.print(
            f"rejected proposal {doc['proposal']}: {doc['agent']}'s system prompt is unchanged"
        )
    for w in doc.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")
