"""A small synchronous JSON-RPC client for the daemon's Unix socket.

Standard library only: the one-shot commands (`legion ps --json`) must start
fast, so this is a blocking socket, `json`, and nothing else.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from legion import protocol
from legion.errors import (
    DaemonUnreachable,
    LegionError,
    PermissionDenied,
    Timeout,
)


class Client:
    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonUnreachable(
                f"no Legion daemon is listening on {self.path} ({exc.strerror})",
                hint="start it with `legion daemon` (or `systemctl start legion`); if it runs "
                "elsewhere, pass --home/--socket or set LEGION_HOME/LEGION_SOCKET",
            ) from None
        except PermissionError:
            sock.close()
            raise PermissionDenied(
                f"permission denied on {self.path}",
                hint="run the command as the user the daemon runs as "
                "(e.g. `sudo -u legion legion ...`)",
            ) from None
        except OSError as exc:
            sock.close()
            raise DaemonUnreachable(f"cannot connect to {self.path}: {exc}",
                                    hint="check that the daemon is running") from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request, its result (or the daemon's error raised as LegionError)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        req_id = next(self._ids)
        self._send(protocol.request(method, params, req_id))
        while True:
            msg = self.receive()
            if msg.get("id") == req_id or ("id" in msg and msg["id"] is None and "error" in msg):
                if "error" in msg:
                    raise LegionError.from_rpc(msg["error"])
                return msg.get("result")
            if "method" in msg:
                # A notification that arrived while waiting: keep it for the stream.
                self.notifications.append(msg)

    def receive(self, timeout: float | bool | None = False) -> dict[str, Any]:
        """The next message from the daemon (`timeout=False` keeps the current one)."""
        assert self._sock is not None
        if timeout is not False:
            self._sock.settimeout(timeout)
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise Timeout("the daemon did not answer in time",
                              hint="it may be overloaded; check `journalctl -u legion`") from None
            except OSError as exc:
                raise DaemonUnreachable(f"connection to the daemon failed: {exc}",
                                        hint="check that the daemon is still running") from None
            if not chunk:
                raise DaemonUnreachable("the daemon closed the connection",
                                        hint="it may have stopped; check `legion info`")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg = json.loads(line)
        if isinstance(msg, list):  # batch replies are not used by this client
            raise LegionError("unexpected batch reply")
        assert isinstance(msg, dict)
        return msg

    def notifications_stream(self) -> Iterator[dict[str, Any]]:
        """Notifications, forever (until the daemon ends the stream or goes away)."""
        while self.notifications:
            yield self.notifications.pop(0)
        while True:
            msg = self.receive(None)
            if "method" in msg:
                yield msg

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise DaemonUnreachable(f"cannot send to the daemon: {exc}",
                                    hint="check that the daemon is still running") from None
