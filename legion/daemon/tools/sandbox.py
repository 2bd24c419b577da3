"""The sandbox: agent-written tools and cmd_watch commands run here, never in the daemon.

Every run is a fresh subprocess (`python -I sandbox_runner.py`) with:
- a scrubbed environment: PATH, LANG, HOME/TMPDIR in the working directory,
  plus only the variables the tool declared *and* `tools.sandbox.env_allow`
  lets through; none of the daemon's credentials;
- resource limits: CPU seconds, address space, open files, file size, no core
  dumps, and processes (RLIMIT_NPROC for a non-root daemon; a pids cgroup
  where one is writable);
- a working directory per agent (HOME/work/AGENT), the only place it may write;
- its own session, so a wall-clock timeout kills the whole process group.

On top of that, the strongest isolation the machine has (`level`):
- `bubblewrap`: `bwrap` with every namespace unshared, a read-only root, the
  daemon's home hidden, only the working directory writable, no network
  unless the tool declares it;
- `namespaces`: a new user + network namespace (no network unless declared);
- `process`: the above limits, plus the runner's audit hook (writes outside the
  working directory, reading the daemon's home or other processes' /proc
  entries, starting processes, sockets and ctypes are refused) - Python-level
  checks, so a tool written in Python is held by them; a native extension is
  not, and a command is held only by the limits.

`legion info` reports the level in force. A crash, a timeout or a memory
blow-up comes back as a structured error; the daemon is never at risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import structlog

from legion.config import SandboxConfig
from legion.errors import ConfigError
from legion.paths import Paths

log = structlog.get_logger("legion.sandbox")

RUNNER = Path(__file__).with_name("sandbox_runner.py")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
LEVELS = ("bubblewrap", "namespaces", "process")
# Threads a run may start on top of its processes (both count as tasks for the
# pids cgroup and RLIMIT_NPROC): asyncio resolves names in a thread, and tools
# use thread pools.
PIDS_SLACK = 8


class CGroup:
    """A pids cgroup per run, where the machine lets the daemon make one
    (cgroup v1 `pids` hierarchy, or a delegated v2 subtree): a fork bomb then
    stops at pids.max whatever the daemon's uid, and a kill reaches every
    process of the run even if it left the process group."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.version = 0
        self._ids = itertools.count(1)

    def setup(self) -> str:
        with contextlib.suppress(OSError):
            return self._setup()
        return ""

    def _setup(self) -> str:
        own = {parts[1]: parts[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
               if len(parts := line.split(":", 2)) == 3}
        v1 = Path("/sys/fs/cgroup/pids")
        if "pids" in own and v1.is_dir() and os.access(v1, os.W_OK):
            parent = v1 / own["pids"].lstrip("/")
            self._reap(parent)
            base = parent / f"legion-sandbox-{os.getpid()}"
            base.mkdir(exist_ok=True)
            self.base, self.version = base, 1
            return "cgroup v1 pids"
        root = Path("/sys/fs/cgroup")
        if "" in own and (root / "cgroup.controllers").exists():
            mine = root / own[""].lstrip("/")
            if "pids" not in (mine / "cgroup.controllers").read_text().split():
                return ""
            if not os.access(mine, os.W_OK):
                return ""
            # v2's no-internal-process rule: move the daemon into a leaf first.
            leaf = mine / "daemon"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (mine / "cgroup.subtree_control").write_text("+pids")
            self.base, self.version = mine, 2
            return "cgroup v2 pids"
        return ""

    def _reap(self, parent: Path) -> None:
        """Remove what daemons that died without a clean shutdown left behind."""
        for stale in parent.glob("legion-sandbox-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                for run in stale.glob("run-*"):
                    self.kill(run)
                with contextlib.suppress(OSError):
                    stale.rmdir()

    def create(self, pids_max: int) -> Path | None:
        if self.base is None:
            return None
        try:
            path = self.base / f"run-{next(self._ids)}"
            path.mkdir()
            (path / "pids.max").write_text(str(pids_max))
            return path
        except OSError:
            return None

    def kill(self, path: Path | None) -> None:
        if path is None:
            return
        with contextlib.suppress(OSError):
            if (path / "cgroup.kill").exists():
                (path / "cgroup.kill").write_text("1")
        for _ in range(50):
            try:
                pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            path.rmdir()

    def close(self) -> None:
        if self.base is not None and self.version == 1:
            with contextlib.suppress(OSError):
                for child in self.base.iterdir():
                    if child.is_dir():
                        self.kill(child)
                self.base.rmdir()


class Sandbox:
    def __init__(self, cfg: SandboxConfig, paths: Paths) -> None:
        self.cfg = cfg
        self.paths = paths
        self.level = "process"
        self.layers: list[str] = []
        self.notes: list[str] = []
        self.cgroup = CGroup()
        self.runs = 0
        # A model may ask for many calls at once, and many agents run together:
        # each run is a process, so they take turns beyond this many.
        self.max_parallel = cfg.max_parallel or 2 * (os.cpu_count() or 2)
        self.slots = anyio.Semaphore(self.max_parallel)

    # -- start-up --------------------------------------------------------------------

    async def prepare(self) -> None:
        """Find the strongest level this machine supports (each probed for real)."""
        self.paths.home.joinpath("work").mkdir(mode=0o700, exist_ok=True)
        found = {"process": True}
        bwrap = shutil.which("bwrap")
        if bwrap and self.cfg.level in ("auto", "bubblewrap"):
            found["bubblewrap"] = await self._probe("bubblewrap")
            if not found["bubblewrap"]:
                self.notes.append("bwrap is installed but cannot create namespaces here")
        elif not bwrap:
            self.notes.append("bubblewrap (bwrap) is not installed")
        # Each probe starts a process: start-up pays only for what may be used.
        if self.cfg.level == "namespaces" or (
                self.cfg.level in ("auto", "bubblewrap") and not found.get("bubblewrap")):
            found["namespaces"] = await self._probe("namespaces")
            if not found["namespaces"]:
                self.notes.append("user namespaces are not available to this user")
        if self.cfg.level == "auto":
            self.level = next(lv for lv in LEVELS if found.get(lv))
        elif found.get(self.cfg.level):
            self.level = self.cfg.level
        else:
            raise ConfigError(
                f"tools.sandbox.level = {self.cfg.level!r} is not available on this machine",
                hint=f"{'; '.join(self.notes) or 'probe failed'}; use level = \"auto\" to take "
                     "the strongest available")
        cg = await anyio.to_thread.run_sync(self.cgroup.setup)
        self.layers = ["rlimits", "scrubbed-env", "workdir", "process-group", "audit-hook"]
        if os.geteuid() != 0:
            # RLIMIT_NPROC binds only a non-root user (root is exempt).
            self.layers.append("nproc")
        if cg:
            self.layers.append(cg)
        elif os.geteuid() == 0:
            self.notes.append("running as root without a writable pids cgroup: a command's "
                              "process count is held only by its timeout; run the daemon as its "
                              "own user (see legion.service)")
        if self.level != "process":
            self.layers.append(self.level)
        log.info("sandbox ready", level=self.level, layers=self.layers, notes=self.notes)

    async def _probe(self, level: str) -> bool:
        workdir = self.workdir(None)
        try:
            res = await self._run({"mode": "probe"}, level=level, workdir=workdir, network=False,
                                  env=[], time_limit=10, processes=0)
        except OSError:
            return False
        return bool(res.get("ok"))

    def close(self) -> None:
        self.cgroup.close()

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {"level": self.level, "layers": self.layers, "notes": self.notes,
                "limits": {"cpu_seconds": c.cpu_seconds, "memory_mb": c.memory_mb,
                           "open_files": c.open_files, "processes": c.processes,
                           "file_size_mb": c.file_size_mb, "timeout": c.timeout},
                "runs": self.runs, "max_parallel": self.max_parallel}

    def workdir(self, agent: str | None) -> Path:
        path = self.paths.home / "work" / (agent or "_cli")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / ".tmp").mkdir(mode=0o700, exist_ok=True)
        return path

    # -- runs ------------------------------------------------------------------------

    async def run_tool(self, mode: str, *, name: str, source: str, entry: str, agent: str | None,
                       args: dict[str, Any] | None = None, network: bool = False,
                       env: list[str] | None = None, time_limit: float | None = None
                       ) -> dict[str, Any]:
        """Build or call an agent-written tool; always a dict with `ok`."""
        req = {"mode": mode, "name": name, "source": source, "entry": entry,
               "args": args or {}}
        return await self._run(req, level=self.level, workdir=self.workdir(agent),
                               network=network, env=env or [],
                               time_limit=min(time_limit or self.cfg.timeout, self.cfg.timeout),
                               processes=self.cfg.processes)

    async def run_command(self, argv: list[str], *, agent: str | None, time_limit: float,
                          env: list[str] | None = None, cwd: str | None = None,
                          processes: int = 32) -> dict[str, Any]:
        """A command (cmd_watch): {exit_code, stdout, stderr, timed_out}."""
        workdir = self.workdir(agent)
        req = {"mode": "exec", "argv": argv}
        return await self._run(req, level=self.level, workdir=workdir, network=True,
                               env=env or [], time_limit=time_limit, processes=processes,
                               cwd=cwd)

    async def _run(self, req: dict[str, Any], *, level: str, workdir: Path, network: bool,
                   env: list[str], time_limit: float, processes: int,
                   cwd: str | None = None) -> dict[str, Any]:
        async with self.slots:
            return await self._run_one(req, level=level, workdir=workdir, network=network,
                                       env=env, time_limit=time_limit, processes=processes,
                                       cwd=cwd)

    async def _run_one(self, req: dict[str, Any], *, level: str, workdir: Path, network: bool,
                       env: list[str], time_limit: float, processes: int,
                       cwd: str | None) -> dict[str, Any]:
        c = self.cfg
        self.runs += 1
        req = {**req, "workdir": str(cwd or workdir), "network": network,
               "output_bytes": c.output_bytes - 1024,
               "namespaces": level == "namespaces",
               "deny_read": [str(self.paths.home)],
               "limits": {"cpu_seconds": c.cpu_seconds, "memory_mb": c.memory_mb,
                          "open_files": c.open_files, "processes": processes,
                          "threads": PIDS_SLACK,
                          "file_size_mb": c.file_size_mb}}
        argv = [sys.executable, "-I", str(RUNNER)]
        if level == "bubblewrap":
            argv = self._bwrap(workdir, network, cwd, private_tmp=req["mode"] != "exec") + argv
        allowed = set(c.env_allow)
        environ = {"PATH": os.environ.get("PATH", BASE_PATH), "LANG": "C.UTF-8",
                   "HOME": str(workdir), "TMPDIR": str(workdir / ".tmp")}
        # Locale and clock settings carry no secret and change what commands print.
        environ.update({k: os.environ[k] for k in ("TZ", "LC_ALL") if k in os.environ})
        environ.update({k: os.environ[k] for k in env if k in allowed and k in os.environ})
        group = self.cgroup.create(processes + PIDS_SLACK)
        procs_file = str(group / "cgroup.procs") if group else None

        def join_cgroup() -> None:
            # Runs in the child between fork and exec: plain syscalls only.
            if procs_file:
                fd = os.open(procs_file, os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)

        limit = c.output_bytes
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=environ, cwd=str(workdir),
                start_new_session=True, preexec_fn=join_cgroup if procs_file else None)
        except OSError:
            self.cgroup.kill(group)
            raise
        timed_out = False
        # Filled as output arrives, so a run killed at its timeout still shows
        # what it printed.
        out, err = bytearray(), bytearray()
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            with anyio.move_on_after(time_limit) as scope:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.write(json.dumps(req).encode())
                    await proc.stdin.drain()
                    proc.stdin.close()
                await asyncio.gather(_read(proc.stdout, out, limit),
                                     _read(proc.stderr, err, limit), proc.wait())
            timed_out = scope.cancelled_caught
        finally:
            # The whole group, always: what a run started must not outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(self.cgroup.kill, group)
            with anyio.CancelScope(shield=True):
                await proc.wait()
        code = proc.returncode
        if level == "bubblewrap" and code is not None and code > 128:
            # bwrap reports its child's death by signal N as exit status 128 + N.
            code = -(code - 128)
        if req["mode"] == "exec":
            return {"exit_code": None if timed_out else code,
                    "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
                    "timed_out": timed_out}
        return self._outcome(code, bytes(out), bytes(err), timed_out, time_limit)

    def _outcome(self, code: int | None, out: bytes, err: bytes, timed_out: bool,
                 timeout: float) -> dict[str, Any]:
        c = self.cfg
        if timed_out:
            return {"ok": False, "kind": "timeout",
                    "error": f"the tool ran longer than {timeout:g}s and was killed, with every "
                             "process it started",
                    "hint": "make it do less per call, or find what it waits on"}
        if code == 0:
            try:
                result = json.loads(out)
                if isinstance(result, dict) and "ok" in result:
                    return result
            except ValueError:
                pass
            return {"ok": False, "kind": "crash", "error": "the tool's result was lost "
                    f"(output not understood): {err.decode(errors='replace')[-300:]}"}
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and out == b""):
            if code == -signal.SIGXCPU:
                return {"ok": False, "kind": "cpu",
                        "error": f"the tool used more than {c.cpu_seconds}s of CPU time and was "
                                 "stopped", "hint": "look for an endless loop"}
            return {"ok": False, "kind": "killed",
                    "error": "the tool was killed (signal 9), most likely for using more than "
                             f"{c.memory_mb} MB of memory or too many processes",
                    "hint": "use less memory or fewer processes"}
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return {"ok": False, "kind": "crash", "error": f"the tool crashed ({name})"}
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        if any("MemoryError" in line for line in tail):
            return {"ok": False, "kind": "memory",
                    "error": f"the tool ran out of memory (limit {c.memory_mb} MB)",
                    "hint": "process the data in smaller pieces"}
        return {"ok": False, "kind": "crash",
                "error": f"the tool's process exited with {code}: {' | '.join(tail)[-400:]}"}

    def _bwrap(self, workdir: Path, network: bool, cwd: str | None,
               private_tmp: bool) -> list[str]:
        home = str(self.paths.home)
        argv = ["bwrap", "--die-with-parent", "--unshare-all", "--ro-bind", "/", "/",
                "--dev", "/dev", "--proc", "/proc"]
        if private_tmp:
            # A tool gets an empty /tmp; a command (cmd_watch) observes the real
            # one, read-only like the rest of the system.
            argv += ["--tmpfs", "/tmp"]
        # The daemon's home (database, config, socket) is hidden; only this
        # agent's working directory is put back, writable.
        argv += ["--tmpfs", home, "--bind", str(workdir), str(workdir)]
        if network:
            argv.append("--share-net")
        return [*argv, "--chdir", cwd or str(workdir), "--"]


async def _read(stream: asyncio.StreamReader, kept: bytearray, limit: int) -> None:
    """All of a stream, keeping only the first `limit` bytes: a chatty run
    cannot make the daemon hold its output."""
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
