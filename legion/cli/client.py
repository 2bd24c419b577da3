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
from legion.cli.daemon_log import unreachable, where_to_look
from legion.errors import (
    DaemonUnreachable,
    LegionError,
    PermissionDenied,
    Timeout,
)

_START = "start it with `legion daemon` (or `systemctl start legion`)"


class Client:
    def __init__(self, path: Path, timeout: float | None = 30.0, log: Path | None = None) -> None:
        self.path = path
        self.timeout = timeout
        # The daemon's log file, if it has one: quoted when the daemon is gone.
        self.log = log
        self._method = ""
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
        except FileNotFoundError:
            sock.close()
            raise unreachable(
                f"no Legion daemon is listening on {self.path} (the socket does not exist)",
                hint=f"{_START}; if it runs elsewhere, pass --home/--socket or set "
                "LEGION_HOME/LEGION_SOCKET" + self._if_it_died(),
                log=self.log,
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise unreachable(
                f"no Legion daemon is listening on {self.path} (the socket is there but "
                "nothing accepts on it: the daemon stopped without removing it, or crashed)",
                hint=f"{_START}; {where_to_look(self.log)}",
                log=self.log,
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
            raise unreachable(
                f"cannot connect to the daemon on {self.path}: {exc.strerror}",
                hint=f"{_START} if it is not running; {where_to_look(self.log)}",
                log=self.log,
            ) from None
        self._sock = sock

    def _if_it_died(self) -> str:
        # A missing socket usually means "never started", unless there is a log
        # saying otherwise: then point at it.
        return (
            f"; if it was running, {where_to_look(self.log)}"
            if self.log is not None and self.log.exists()
            else ""
        )

    def _gone(self, what: str) -> DaemonUnreachable:
        """The daemon went away while this client was talking to it."""
        during = f" before answering {self._method}" if self._method else ""
        return unreachable(
            f"the daemon {what}{during}: it stopped, crashed or was restarted",
            hint=f"{where_to_look(self.log)}; `legion info` shows whether it is back "
            "(the request may or may not have taken effect)",
            log=self.log,
        )

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
        self._method = method
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
                raise Timeout(
                    "the daemon did not answer in time",
                    hint=f"it may be overloaded; {where_to_look(self.log)}",
                ) from None
            except OSError as exc:
                raise self._gone(f"reset the connection ({exc.strerror})") from None
            if not chunk:
                raise self._gone("closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise LegionError(
                f"the daemon sent a line that is not JSON ({exc})",
                hint="the socket may belong to something else than a Legion "
                "daemon; check --socket / LEGION_SOCKET",
            ) from None
        if not isinstance(msg, dict):  # batch replies are not used by this client
            raise LegionError(
                f"unexpected reply from the daemon: {line[:200]!r}",
                hint="the socket may belong to something else than a Legion "
                "daemon; check --socket / LEGION_SOCKET",
            )
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
            raise self._gone(f"closed the connection ({exc.strerror})") from None
