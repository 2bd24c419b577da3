"""Shared helper for the benchmarks: a Legion daemon in a throw-away home.

`BenchDaemon` starts `python -m legion --home HOME daemon` in a fresh temp
home, waits for it to be ready the way systemd does (it binds an AF_UNIX
datagram socket, passes it as $NOTIFY_SOCKET, and waits for the daemon's
"READY=1" datagram; no fixed sleeps), and on exit stops it with SIGTERM
(SIGKILL if it will not go) and deletes the home. Use it as a context manager
and the cleanup runs on errors and Ctrl-C too.

Also here: a tiny synchronous JSON-RPC helper for setup work, and a way to
make SIGTERM/SIGHUP behave like Ctrl-C so `finally` blocks run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class DaemonError(RuntimeError):
    pass


def interrupt_on_term() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, so cleanup runs for them too."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def console_script() -> Path | None:
    """The installed `legion` console script, if there is one."""
    for candidate in (Path(sys.executable).parent / "legion", REPO / ".venv" / "bin" / "legion"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class BenchDaemon:
    """A daemon in a temp home. `with BenchDaemon() as d: ... d.socket ...`"""

    def __init__(
        self, python: str | None = None, config: str | Callable[[Path], str] | None = None
    ) -> None:
        """`config`: optional text of HOME/config.toml, written before the daemon
        starts; a callable gets the home (to name files inside it) and returns it."""
        self.python = python or sys.executable
        self.config = config
        self.home: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.ready_s: float | None = None
        self.ready_timeout = READY_TIMEOUT
        self._notify: socket.socket | None = None
        self._log: Any = None
        self._final_log = ""

    # -- paths ------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        assert self.home is not None
        return self.home / "daemon.sock"

    @property
    def log_path(self) -> Path:
        assert self.home is not None
        return self.home / "daemon.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> BenchDaemon:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        # /tmp/lgb-XXXXXXXX: short, so HOME/daemon.sock stays far below the
        # 107-byte limit on Unix socket paths.
        self.home = Path(tempfile.mkdtemp(prefix="lgb-", dir="/tmp"))
        # The notify socket lives beside the home, not in it: the daemon
        # chmods its home to 0700 and owns what is inside.
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.bind(str(self.home) + ".notify")
        if self.config is not None:
            text = self.config(self.home) if callable(self.config) else self.config
            (self.home / "config.toml").write_text(text, encoding="utf-8")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._launch(time.perf_counter())

    def _launch(self, t0: float) -> None:
        assert self.home is not None and self._notify is not None
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.home) + ".notify"
        for var in ("LEGION_HOME", "LEGION_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(var, None)
        self.proc = subprocess.Popen(
            [self.python, "-m", "legion", "--home", str(self.home), "daemon"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.home),
            # Its own session: a Ctrl-C in the terminal reaches only the
            # benchmark, which then stops the daemon itself, in order.
            start_new_session=True,
        )
        self._wait_ready(t0)

    def _wait_ready(self, t0: float) -> None:
        assert self.proc is not None and self._notify is not None
        deadline = t0 + self.ready_timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise DaemonError(
                    f"the daemon sent no READY=1 within {self.ready_timeout:g}s\n{self.log_tail()}"
                )
            # Wake on a datagram, or every 0.2 s to notice a daemon that died
            # before saying anything (it would never send READY=1).
            readable, _, _ = select.select([self._notify], [], [], min(remaining, 0.2))
            if readable:
                msg = self._notify.recv(65536).decode(errors="replace")
                if "READY=1" in msg.splitlines():
                    self.ready_s = time.perf_counter() - t0
                    return
            elif self.proc.poll() is not None:
                raise DaemonError(
                    f"the daemon exited with code {self.proc.returncode} before it was ready\n"
                    f"{self.log_tail()}"
                )

    def restart(self) -> float:
        """Stop the daemon with SIGTERM and start it again in the same home,
        which is kept. Returns the seconds from SIGTERM to the old process's
        exit; `ready_s` becomes the new start's time to READY=1. The log is
        appended to."""
        assert self.proc is not None and self._notify is not None and self.home is not None
        try:
            proc = self.proc
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise DaemonError(f"the daemon ignored SIGTERM for {STOP_TIMEOUT:g}s") from None
            stopped_s = time.perf_counter() - t0
            self.exit_code = proc.returncode
            self._relaunch(time.perf_counter())
        except BaseException:
            self.stop()
            raise
        return stopped_s

    def kill9_restart(self) -> float:
        """SIGKILL the daemon and start it again in the same home; seconds
        from the kill to READY=1 of the new start."""
        assert self.proc is not None
        try:
            t0 = time.perf_counter()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.exit_code = self.proc.returncode
            self._relaunch(t0)
        except BaseException:
            self.stop()
            raise
        return time.perf_counter() - t0

    def _relaunch(self, t0: float) -> None:
        assert self._notify is not None and self.home is not None
        self.proc = None
        # Drop what the old process said on its way out (STOPPING=1 ...).
        self._notify.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while self._notify.recv(65536):
                pass
        self._notify.setblocking(True)
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._launch(t0)

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed; then remove the home. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        print(
                            f"warning: daemon pid {proc.pid} ignored SIGTERM for "
                            f"{STOP_TIMEOUT:g}s; killing it",
                            file=sys.stderr,
                        )
                        proc.kill()
                        proc.wait()
            except BaseException:
                # A second Ctrl-C while we wait: do not leave the daemon behind.
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
                raise
            finally:
                self.exit_code = proc.returncode
                self._cleanup_files()
        else:
            self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.home is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.home) + ".notify")
            self._final_log = self.log_tail()
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    # -- inspection -----------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        if self.home is None:
            return self._final_log
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Log lines at warning level or above (JSON logs: one object per line)."""
        if self.home is None:
            return []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                if line.strip():
                    out.append(line)
                continue
            if isinstance(doc, dict) and doc.get("level") in ("warning", "error", "critical"):
                out.append(line)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    # -- a small synchronous client for setup ------------------------------------------

    def wait_warm(self, timeout: float = 60) -> float:
        """Wait until the daemon's background litellm warm-up is done (it takes
        a core for ~3 s after READY), so a floor is not measured beside it.
        Returns the seconds waited."""
        t0 = time.perf_counter()
        while not self.call("daemon.info")["models"]["litellm_loaded"]:
            if time.perf_counter() - t0 > timeout:
                raise DaemonError(f"litellm was not loaded {timeout:g}s after READY")
            time.sleep(0.05)
        return time.perf_counter() - t0

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.call_many([(method, params)])[0]

    def call_many(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Send every request at once on one connection (the daemon runs them
        concurrently), then collect the results in order. Raises on any error."""
        ids = itertools.count(1)
        lines = []
        for method, params in calls:
            msg: dict[str, Any] = {"jsonrpc": "2.0", "id": next(ids), "method": method}
            if params is not None:
                msg["params"] = params
            lines.append(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        results: dict[int, Any] = {}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(str(self.socket))
            sock.sendall(b"".join(lines))
            buf = b""
            while len(results) < len(calls):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise DaemonError("the daemon closed the connection")
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for line in complete:
                    reply = json.loads(line)
                    if "error" in reply:
                        raise DaemonError(f"RPC error: {reply['error']}")
                    results[reply["id"]] = reply["result"]
        return [results[i + 1] for i in range(len(calls))]

    def spawn_agents(self, n: int, prefix: str = "bench") -> None:
        self.call_many([("agents.spawn", {"id": f"{prefix}-{i:04d}"}) for i in range(n)])


class Conn:
    """One connection to the daemon (a blocking socket), one request at a time."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.rfile = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Send one request; return the whole reply (result or error)."""
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        line = self.rfile.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("the daemon closed the connection")
        reply = json.loads(line)
        if reply.get("id") != self.next_id:
            raise RuntimeError(
                f"reply for id {reply.get('id')}, expected {self.next_id}: {line[:200]!r}"
            )
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        # shutdown() first: it wakes a thread blocked in recv() on this socket.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.rfile.close()
        self.sock.close()


# -- /proc readings of a process (the daemon) -------------------------------------------


def proc_status(pid: int, key: str) -> int:
    """A numeric field of /proc/PID/status (VmRSS is in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread: wake-ups."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def print_problems(problems: list[str]) -> None:
    if problems:
        print(f"daemon log warnings/errors ({len(problems)}):")
        for line in problems[:10]:
            print(f"  {line}")


def run(main: Callable[[], int]) -> None:
    """The scripts' entry point: exit 130 on Ctrl-C, after their clean-up ran."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; daemon stopped and temp home removed", file=sys.stderr)
        sys.exit(130)
