"""One daemon per home: an flock on the home's lock file, and stale-socket repair."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from pathlib import Path

import structlog

from legion.errors import Conflict
from legion.paths import Paths, check_socket_path

log = structlog.get_logger("legion.daemon")


class HomeLock:
    """Held for the daemon's whole life; the kernel drops it if the process dies,
    so a crashed daemon never leaves a lock behind."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._fd: int | None = None

    def acquire(self) -> None:
        home = self.paths.home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if home.stat().st_uid == os.getuid():
            home.chmod(0o700)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Conflict(
                f"another Legion daemon (pid {holder}) is already running on {home}",
                hint=f"stop it first (`systemctl stop legion` or `kill {holder}`), or give "
                "this one its own home with --home",
                kind="daemon_running",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def prepare_socket(path: Path) -> None:
    """Make the socket path bindable: its directory 0700, and any stale socket gone.

    A socket file that still answers belongs to a live daemon (perhaps of
    another home pointed at the same --socket) and is never taken over.
    """
    check_socket_path(path)
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
    elif parent.stat().st_mode & 0o077:
        log.warning(
            "socket directory is readable by others; 0700 is recommended",
            directory=str(parent),
            mode=oct(parent.stat().st_mode & 0o777),
        )
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise Conflict(
            f"{path} exists and is not a socket",
            hint="remove it, or choose another path with --socket",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("replaced stale socket left by an earlier daemon", socket=str(path))
        return
    finally:
        probe.close()
    raise Conflict(
        f"another daemon is listening on {path}",
        hint="stop it, or choose another path with --socket",
        kind="daemon_running",
    )
