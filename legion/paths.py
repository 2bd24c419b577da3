"""Where Legion keeps things.

Home resolution: `--home`, then `$LEGION_HOME`, then `~/.legion`. Everything
the daemon owns lives under the home: the database, the socket (unless
`--socket`/`$LEGION_SOCKET` says otherwise), the lock and the config file.
"""

from __future__ import annotations

import os
from pathlib import Path

from legion.errors import InvalidParams

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class Paths:
    # A plain class, not a dataclass: `dataclasses` pulls in `inspect`, a few
    # milliseconds on every CLI start.
    __slots__ = ("home", "socket")

    def __init__(self, home: Path, socket: Path) -> None:
        self.home = home
        self.socket = socket

    def __repr__(self) -> str:
        return f"Paths(home={self.home!r}, socket={self.socket!r})"

    @property
    def db(self) -> Path:
        return self.home / "legion.db"

    @property
    def lock(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def config(self) -> Path:
        return self.home / "config.toml"


def resolve(home: str | os.PathLike[str] | None = None, socket: str | None = None) -> Paths:
    """Resolve the home and socket from arguments, then environment, then defaults."""
    raw_home = home or os.environ.get("LEGION_HOME") or "~/.legion"
    home_path = Path(raw_home).expanduser().absolute()
    raw_socket = socket or os.environ.get("LEGION_SOCKET")
    sock = Path(raw_socket).expanduser().absolute() if raw_socket else home_path / "daemon.sock"
    return Paths(home=home_path, socket=sock)


def check_socket_path(path: Path) -> None:
    """Refuse a socket path the kernel cannot bind, with a way out."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise InvalidParams(
            f"socket path is {len(os.fsencode(path))} bytes long; Unix sockets allow "
            f"{MAX_SOCKET_PATH}: {path}",
            hint="pass a shorter --socket PATH (or set LEGION_SOCKET), "
            "e.g. /run/user/$UID/legion.sock",
            kind="socket_path_too_long",
        )
