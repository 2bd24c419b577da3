"""The wire contract shared by the CLI and the daemon.

JSON-RPC 2.0, one JSON document per line, over a Unix socket. This module is
on the CLI's start-up path, so it uses the standard library only; the daemon
decodes parameters into typed msgspec structs on its side
(`legion/daemon/rpc/dispatch.py`).
"""

from __future__ import annotations

import json
from typing import Any

JSONRPC = "2.0"

# A request line longer than this is refused without being parsed.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024

# Notifications the daemon sends on a connection that subscribed to events.
NOTIFY_EVENT = "events.event"
NOTIFY_LAGGED = "events.lagged"
NOTIFY_END = "events.end"

AGENT_STATES = ("running", "paused", "stopped", "terminated")


def request(method: str, params: dict[str, Any] | None = None, id: int | str | None = 1) -> bytes:
    """Encode one request (or a notification when `id` is None) as a line."""
    msg: dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
    if params is not None:
        msg["params"] = params
    if id is not None:
        msg["id"] = id
    return encode(msg)


def encode(msg: Any) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> Any:
    return json.loads(line)
