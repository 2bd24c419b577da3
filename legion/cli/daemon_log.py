"""What the CLI says when the daemon is gone: what happened, and where to look.

The daemon logs to stderr: under systemd that is the journal, and a daemon
started by hand often has it redirected to `HOME/daemon.log` (the test
fixtures do exactly that). When that file exists and is readable, its last
error lines are shown with the message, because the reason the daemon went
away is usually the last thing it logged.

Standard library only, and nothing is read unless the daemon is unreachable:
the CLI's start-up path must stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path

from legion.errors import DaemonUnreachable

LOG_NAME = "daemon.log"
# How much of the log's end is read, and how much of it shown.
TAIL_BYTES = 64 * 1024
MAX_LINES = 5
MAX_LINE_CHARS = 300
JOURNAL = "journalctl -u legion -n 50"


def last_errors(path: Path) -> list[str]:
    """The last error lines of a daemon log (JSON or console format, or the
    traceback of a crash), newest last; [] when there is no readable log."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    found: list[str] = []
    for raw in tail.splitlines():
        line = _error_line(raw.strip())
        if line:
            found.append(line[:MAX_LINE_CHARS])
    return found[-MAX_LINES:]


def _error_line(line: str) -> str | None:
    if not line:
        return None
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if str(doc.get("level", "")).lower() not in ("error", "critical", "exception"):
                return None
            text = f"{doc.get('timestamp', '')} {doc.get('level')}: {doc.get('event', '')}"
            exc = doc.get("exception")
            if isinstance(exc, str) and exc.strip():
                text += f" ({exc.strip().splitlines()[-1]})"
            return text.strip()
    lowered = line.lower()
    if (
        "[error" in lowered
        or "[critical" in lowered
        or line.startswith("Traceback")
        or ("error" in lowered and ":" in line)
        or "killed" in lowered
    ):
        return line
    return None


def where_to_look(log: Path | None) -> str:
    """One sentence naming the places the daemon's own account can be found."""
    places = []
    if log is not None and log.exists():
        places.append(f"the daemon log {log}")
    places.append(f"`{JOURNAL}` if systemd runs it")
    return "see why in " + ", or ".join(places)


def unreachable(message: str, hint: str, log: Path | None) -> DaemonUnreachable:
    """A DaemonUnreachable carrying the log's last errors (shown by the CLI,
    and in `data.log_errors` with --json)."""
    data: dict[str, object] = {}
    if log is not None and log.exists():
        data["log"] = str(log)
        data["log_errors"] = last_errors(log)
    return DaemonUnreachable(message, hint=hint, data=data)
