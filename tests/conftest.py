"""Fixtures that run the real daemon on a temporary home.

The daemon is a real subprocess (`python -m legion daemon`) with a real
SQLite database and a real Unix socket. Readiness is awaited the way systemd
awaits it: the fixture binds a NOTIFY_SOCKET and waits for READY=1, so no
test sleeps to guess when the daemon is up.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- kernel isolation ---------------------------------------------------------------------

# Where the machine offers neither bubblewrap nor user namespaces, the daemon
# refuses agent-written code by default. Tests marked `needs_isolation` (they
# write tools or run cmd_watch commands under the default config) are then
# skipped with the probe's reason; the weak level's own tests still run.
_PROBE = """
import asyncio, json, shutil, sys, tempfile
from pathlib import Path
from legion.config import SandboxConfig
from legion.daemon.tools.sandbox import Sandbox
from legion.paths import Paths
home = Path(tempfile.mkdtemp(prefix="lg-probe-"))
sb = Sandbox(SandboxConfig(allow_weak=True), Paths(home, home / "daemon.sock"))
sb.cgroup.setup = lambda: ""  # no cgroup of the test run's is touched
asyncio.run(sb.prepare())
print(json.dumps({"level": sb.level, "notes": sb.notes}))
shutil.rmtree(home, ignore_errors=True)
"""
_isolation: dict[str, str] = {}


def kernel_isolation() -> tuple[str, str]:
    """(level the daemon's "auto" picks here, why there is no strong one or '')."""
    if not _isolation:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        try:
            found = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            found = {"level": "process", "notes": [f"the probe failed: {done.stderr[-300:]}"]}
        _isolation["level"] = found["level"]
        _isolation["why"] = (
            ""
            if found["level"] != "process"
            else (
                "no kernel isolation on this machine (neither bubblewrap nor user namespaces), so "
                "the daemon refuses agent-written code by default: "
                + "; ".join(n for n in found["notes"] if "bwrap" in n or "namespaces" in n)
            )
        )
    return _isolation["level"], _isolation["why"]


def pytest_report_header() -> str:
    level, why = kernel_isolation()
    return f"legion sandbox: {level}" + (f" ({why})" if why else "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    marked = [i for i in items if i.get_closest_marker("needs_isolation")]
    if marked and (why := kernel_isolation()[1]):
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=why))


def short_tmpdir(prefix: str = "lg-") -> Path:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class RawClient:
    """A bare socket speaking newline-delimited JSON, for protocol-level tests."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def recv(self) -> Any:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("daemon closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def call(self, method: str, params: Any = None, id: Any = 1) -> Any:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        while True:
            reply = self.recv()
            if isinstance(reply, list) or "method" not in reply:
                return reply

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """One real daemon process on its own home."""

    def __init__(
        self,
        home: Path,
        *,
        config: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.args = args or []
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "daemon.log"
        self.notify_path = home.parent / f"{home.name}.notify"
        if config is not None:
            home.mkdir(parents=True, exist_ok=True)
            (home / "config.toml").write_text(config)

    @property
    def socket(self) -> Path:
        return self.home / "daemon.sock"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGION_")}
        env.update(self.extra_env)
        return env

    def start(self, *, wait: bool = True) -> Daemon:
        self.home.mkdir(parents=True, exist_ok=True)
        self.notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.notify_path))
        env = self.env()
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "legion", "--home", str(self.home), "daemon", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO,
        )
        log.close()
        self.notifications: list[str] = []
        self._notify = notify
        if wait:
            self.wait_for_notify("READY=1")
        return self

    def wait_for_notify(self, what: str, timeout: float = START_TIMEOUT) -> str:
        """Block until the daemon sends an sd_notify datagram containing `what`."""
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._notify], [], [], 0.2)
            if ready:
                msg = self._notify.recv(4096).decode()
                self.notifications.append(msg)
                if what in msg:
                    return msg
            elif self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} before {what}:\n{self.log()}"
                )
        raise AssertionError(f"daemon did not send {what} in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._drain_notify()
        return rc

    def _drain_notify(self) -> None:
        """Keep what the daemon said on its way out, then close the socket."""
        self._notify.setblocking(False)
        while True:
            try:
                self.notifications.append(self._notify.recv(4096).decode())
            except BlockingIOError:
                break
        self._notify.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._drain_notify()

    def cli(self, *args: str, input: str | None = None, timeout: float = 30) -> Result:
        return run_cli(
            "--home", str(self.home), *args, input=input, timeout=timeout, env=self.env()
        )

    def cli_json(self, *args: str) -> Any:
        res = self.cli(*args, "--json")
        assert res.code == 0, res.err
        return json.loads(res.out)

    def client(self) -> RawClient:
        return RawClient(self.socket)

    def rpc(self, method: str, params: Any = None) -> Any:
        c = self.client()
        try:
            return c.call(method, params)
        finally:
            c.close()


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


def run_cli(
    *args: str, input: str | None = None, timeout: float = 30, env: dict[str, str] | None = None
) -> Result:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGION_")}
    proc = subprocess.run(
        [sys.executable, "-m", "legion", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return Result(proc)


@pytest.fixture
def home() -> Iterator[Path]:
    base = short_tmpdir()
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_daemon(home: Path) -> Iterator[Any]:
    """A factory: make_daemon(config=..., args=[...]) -> started Daemon. All are
    stopped at teardown."""
    started: list[Daemon] = []

    def make(
        *,
        config: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        at: Path | None = None,
    ) -> Daemon:
        d = Daemon(at or home, config=config, args=args, env=env)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


@pytest.fixture
def daemon(make_daemon: Any) -> Daemon:
    d: Daemon = make_daemon()
    return d
