"""Human output with rich. Imported only when a command renders for a person,
so `--json` and scripted paths never pay for rich."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()

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


def agents_table(agents: list[dict[str, Any]]) -> None:
    if not agents:
        console.print("no agents. Create one with [bold]legion spawn ID[/bold].")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "STATE", "ACTIVITY", "MODEL", "QUEUED", "TASKS d/o/b", "PARENT", "UPDATED",
                "REASON"):
        table.add_column(col)
    for a in agents:
        style = _STATE_STYLE.get(a["state"], "")
        model = a["model"]
        resolved = a.get("resolved_model")
        if resolved and resolved != model:
            model = f"{model} -> {resolved}"
        table.add_row(a["id"], f"[{style}]{a['state']}[/{style}]", a.get("activity", "idle"),
                      model, str(a.get("queued", 0)), _counts(a.get("tasks")),
                      a.get("parent") or "-",
                      ago(a.get("updated_at")), a.get("state_reason") or "")
    console.print(table)


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
        table.add_row(str(m["message_id"]), m["status"], m["sender"], ago(m["created_at"]),
                      _short(outcome or "-"))
    console.print(table)


def memory_list(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.print("no memory entries.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("PATH", "BYTES", "UPDATED", "READ", "READS", "EMBEDDED"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["path"], str(e["bytes"]), ago(e["updated_at"]), ago(e["accessed_at"]),
                      str(e["access_count"]), "yes" if e["embedded"] else "no")
    console.print(table)


def memory_search(doc: dict[str, Any]) -> None:
    console.print(f"[dim]mode: {doc['mode']}" + (f" — {doc['note']}" if doc["note"] else "")
                  + "[/dim]")
    if not doc["results"]:
        console.print("no matches.")
    for hit in doc["results"]:
        via = "+".join(hit.get("via", []))
        sim = f" sim={hit['similarity']}" if "similarity" in hit else ""
        console.print(f"[bold]{escape(hit['path'])}[/bold] [dim]({via}{sim})[/dim]",
                      highlight=False)
        console.print(f"  {escape(hit['snippet'])}", highlight=False)


def memory_stats(doc: dict[str, Any]) -> None:
    q = doc["quota"]
    rows = [
        ("entries", f"{doc['entries']} ({doc['shared_entries']} shared), {doc['bytes']} bytes"),
        ("quota", f"{q['max_entries']} entries, {q['max_bytes']} bytes, "
                  f"{q['max_entry_bytes']} bytes per entry (per agent)"),
        ("embedder", doc["embedder"]),
        ("vector search", "on" if doc["vector_search"] else "off"),
        ("pending embeddings", str(doc["pending_embeddings"])),
    ]
    if "backfill" in doc:
        b = doc["backfill"]
        rows.append(("backfill", f"{b['state']}, {b['embedded']} embedded"
                     + (f", last error: {b['last_error']}" if b["last_error"] else "")))
    if doc["decay_half_life_days"]:
        rows.append(("decay", f"half-life {doc['decay_half_life_days']:g} days"))
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


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
        ("config", f"{doc['config']['path']}" + ("" if doc["config"]["loaded"]
                                                 else " (absent: embedded defaults)")),
        ("database", f"{db['path']} ({db['size_bytes'] // 1024} KiB, "
                     f"synchronous={db['synchronous']})"),
        ("sqlite", f"{db['driver']} ({db['module']}) sqlite {db['sqlite_version']}"),
        ("sqlite-vec", db["vec_version"] or "[red]unavailable[/red]: " + "; ".join(db["notes"])),
        ("agents", f"{doc['agents']['total']} ({by_state})"),
        ("events", f"{ev['count']} kept, last id {ev['last_id']}, "
                   f"retention {ev['retention_days']:g} days / {ev['max_rows']} rows"),
        ("clients", f"{rpc.get('connections', 0)} connected, "
                    f"{rpc.get('subscriptions', 0)} streaming"),
    ]
    mem = doc.get("memory")
    if mem:
        backfill = mem.get("backfill", {})
        rows.append(("memory", f"{mem['entries']} entries, embedder {mem['embedder']}, "
                     f"{mem['pending_embeddings']} waiting to be embedded"
                     + (f", backfill {backfill['state']}" if backfill else "")))
    models = doc.get("models", {}).get("providers", {})
    opened = [name for name, p in models.items() if p["circuit"]["state"] != "closed"]
    if opened:
        rows.append(("circuits", "[red]open: " + ", ".join(opened) + "[/red]"))
    for k, v in rows:
        table.add_row(k, str(v))
    console.print(table)
