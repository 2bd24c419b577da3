"""`legion attach` for a person: the live transcript of an agent.

Prose streams in as it is written (rendered as markdown), reasoning shows as
a dim block while the model thinks, tool calls and results are timestamped
lines, and each session closes with its usage. Imported only for human output.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text

from legion.cli.render import event_line

PREVIEW = 300


def _clock(ev: dict[str, Any]) -> str:
    ts = str(ev.get("ts", ""))
    return ts[11:19] if len(ts) >= 19 else ts


class Transcript:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.text = ""
        self.reasoning = ""
        self.busy = False

    def _render(self) -> Group:
        parts: list[Any] = []
        if self.reasoning:
            parts.append(Text(self.reasoning, style="dim italic"))
        if self.text:
            parts.append(Markdown(self.text))
        return Group(*parts)

    def _stream(self) -> None:
        if self.live is None:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=12, transient=False
            )
            self.live.start()
        else:
            self.live.update(self._render())

    def _settle(self) -> None:
        """End the streaming region, leaving what it showed on screen."""
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None
        self.text = ""
        self.reasoning = ""

    def show(self, ev: dict[str, Any]) -> None:
        kind, data = ev["kind"], ev.get("data") or {}
        at = _clock(ev)
        if kind == "model.delta":
            self.text += data.get("text", "")
            self._stream()
            return
        if kind == "model.reasoning":
            self.reasoning += data.get("text", "")
            self._stream()
            return
        if kind == "model.response":
            if not self.text and not self.reasoning and (data.get("text") or data.get("reasoning")):
                # Replayed history has no deltas before it: show the whole answer.
                self.text = data.get("text", "")
                self.reasoning = data.get("reasoning", "")
                self._stream()
            self._settle()
            return
        self._settle()
        out = self.console.print
        if kind == "message.received":
            out(
                f"[dim]{at}[/dim] [bold cyan]» {escape(str(data.get('sender')))}[/bold cyan] "
                f"{escape(str(data.get('text', '')))}",
                highlight=False,
            )
        elif kind == "session.started":
            self.busy = True
            out(
                f"[dim]{at} ── session {data.get('session')} on {data.get('resolved_model')} "
                f"(attempt {data.get('attempt')})[/dim]"
            )
        elif kind == "tool.call":
            via = f" → {data['invokes']}" if data.get("invokes") else ""
            out(
                f"[dim]{at}[/dim] [yellow]→ {data.get('name')}{escape(via)}[/yellow] "
                f"{_short(data.get('arguments', ''))}",
                highlight=False,
            )
        elif kind == "tool.result":
            mark = "[green]✓[/green]" if data.get("ok") else "[red]✗[/red]"
            out(
                f"[dim]{at}[/dim] {mark} {data.get('name')} "
                f"[dim]{data.get('duration_ms', 0):.0f} ms[/dim] {_short(data.get('result', ''))}",
                highlight=False,
            )
        elif kind == "session.ended":
            self.busy = False
            u = data.get("usage") or {}
            status = data.get("status")
            style = "dim" if status == "done" else "red"
            reason = f": {data.get('reason')}" if data.get("reason") else ""
            out(
                f"[{style}]{at} ── {status}{reason} · {data.get('turns')} turns · "
                f"{u.get('total_tokens', 0)} tokens"
                + (f" · ${u['cost']:.4f}" if u.get("cost") else "")
                + f"[/{style}]"
            )
        elif kind == "message.idle":
            out(f"[dim]{at} (answered IDLE: nothing sent)[/dim]")
        elif kind == "tool.edited":
            out(
                f"[dim]{at}[/dim] [bold]✎ {escape(str(data.get('name')))}[/bold] "
                f"{data.get('mode')} edit, v{data.get('version')} "
                f"[green]+{data.get('added')}[/green] [red]-{data.get('removed')}[/red] "
                f"[dim]{data.get('before_hash')} → {data.get('after_hash')}[/dim]",
                highlight=False,
            )
            # The diff as a block, coloured like `git diff`.
            out(
                Syntax(
                    data.get("diff") or "", "diff", theme="ansi_dark", background_color="default"
                )
            )
        elif kind == "tool.built":
            ok = data.get("ok")
            mark = "[green]built[/green]" if ok else "[red]does not build[/red]"
            out(
                f"[dim]{at}[/dim] [bold]⚙ {escape(str(data.get('name')))}[/bold] {mark} "
                f"v{data.get('version')} self-test {data.get('selftest')}"
                + (f": {escape(str(data.get('problem')))}" if data.get("problem") else ""),
                highlight=False,
            )
        elif kind in ("message.replied", "model.request"):
            pass  # the reply was streamed above; a request is implied by what follows
        elif kind in (
            "model.retry",
            "model.fallback",
            "model.error",
            "model.skipped",
            "guard.loop",
            "guard.max_turns",
            "guard.budget",
            "message.failed",
            "model.repaired",
        ):
            out(
                f"[dim]{at}[/dim] [magenta]{kind}[/magenta] {_short(json.dumps(data))}",
                highlight=False,
            )
        else:
            out(event_line(ev), highlight=False)

    def close(self) -> None:
        self._settle()


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v)
    s = s.replace("\n", " ")
    return escape(s if len(s) <= PREVIEW else s[: PREVIEW - 1] + "…")
