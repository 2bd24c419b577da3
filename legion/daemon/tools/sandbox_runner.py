"""The sandbox's inside: run as `python -I sandbox_runner.py`, never imported.

The daemon writes one JSON request to stdin. This script confines itself
(at the `namespaces` level: new namespaces, the private view of the files,
PID 1 of its own pid namespace; at every level: resource limits, no
capabilities, Landlock, seccomp; see sandbox_kernel.py), then either
execs a command (`exec`, for cmd_watch) or loads an agent-written tool and
builds it (`build`: the schema from its signature, its self-test)
or calls it (`call`). The result is one JSON object on the original stdout;
the tool's own prints are captured into it, so nothing it writes can forge a
result.

Only the standard library, msgspec and sandbox_kernel.py (loaded by path)
are used: this script starts once per call and must stay quick to load. It
is a file run by path, not a module of the legion package, so nothing of
the daemon is imported into the sandbox.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import traceback
from typing import Any

OUTPUT_LIMIT = 16 * 1024
# Audit events that start or replace processes.
PROCESS_EVENTS = {
    "os.fork",
    "os.forkpty",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
    "os.kill",
    "os.killpg",
    "pty.spawn",
}
# Audit events whose first argument is a path the call changes.
PATH_WRITE_EVENTS = {
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "os.truncate",
    "os.utime",
    "shutil.rmtree",
    "os.chflags",
    "os.lchflags",
    "os.setxattr",
    "os.removexattr",
    "shutil.move",
    "shutil.copytree",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def main() -> None:
    out_fd = os.dup(1)
    req = json.loads(sys.stdin.buffer.read() or b"{}")
    try:
        notes = confine(req, out_fd)
    except Exception as exc:
        if req.get("mode") == "exec":
            # A command's result is its exit status: never report success.
            os.write(2, f"legion sandbox: cannot start the command: {exc}\n".encode())
            os._exit(126)
        emit(out_fd, {"ok": False, "kind": "sandbox", "error": f"cannot confine the run: {exc}"})
        return
    if req["mode"] == "probe":
        emit(out_fd, {"ok": True, "notes": notes, "uid": os.getuid()})
        return
    if req["mode"] == "exec":
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        argv = req["argv"]
        try:
            os.execvpe(argv[0], argv, os.environ)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]!r}: {exc}\n".encode())
            os._exit(127)
    # The tool's prints go into the result, and fd 1 to /dev/null, so only this
    # script can write the result line.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    captured = io.StringIO()
    sys.stdout = captured
    result = run_tool(req, captured)
    # What the tool printed shares the result's budget, so both always fit.
    result["stdout"] = captured.getvalue()[-min(OUTPUT_LIMIT, req.get("output_bytes", 0) // 8) :]
    emit(out_fd, result)


def emit(fd: int, obj: dict[str, Any]) -> None:
    data = json.dumps(obj, default=str).encode()
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# -- confinement ---------------------------------------------------------------------


def load_kernel() -> Any:
    """sandbox_kernel.py, from beside this script (run by path with -I, so
    its directory is not on sys.path, and nothing else of legion is loaded)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_kernel.py")
    spec = importlib.util.spec_from_file_location("legion_sandbox_kernel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def confine(req: dict[str, Any], out_fd: int) -> list[str]:
    """Each layer in turn; what the kernel enforces is set up last, in an
    order where each step still has the rights it needs."""
    notes: list[str] = []
    kernel = load_kernel()
    network = bool(req.get("network"))
    limits = req["limits"]
    processes = limits["processes"] > 0
    view = req.get("view")
    if view is not None:
        kernel.unshare(network)
        notes += ["user-ns", "mount-ns", "pid-ns", "ipc-ns", "uts-ns"]
        notes += [] if network else ["net-ns"]
        # From here this is PID 1 of the run; the first process waits for it.
        kernel.become_init(out_fd)
        notes += kernel.build_view(
            hide=view["hide"],
            keep=view["keep"],
            workdir=view["workdir"],
            private_tmp=view["private_tmp"],
            mask=view["mask"],
            tmp_mb=view["tmp_mb"],
            # The run's own tasks, its threads, and PID 1.
            pids=limits["processes"] + limits.get("threads", 0) + 2,
        )
    os.chdir(req["workdir"])
    os.umask(0o077)
    mb = 1024 * 1024
    _limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
    _limit(resource.RLIMIT_AS, limits["memory_mb"] * mb)
    _limit(resource.RLIMIT_NOFILE, limits["open_files"])
    _limit(resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb)
    _limit(resource.RLIMIT_CORE, 0)
    notes.append("rlimits")
    if os.geteuid() != 0:
        # RLIMIT_NPROC counts every task of the user, the daemon's threads too:
        # the allowance is what runs now plus what the tool may start.
        _limit(
            resource.RLIMIT_NPROC,
            user_tasks(os.getuid()) + limits["processes"] + limits.get("threads", 0),
        )
        notes.append("nproc")
    kernel.drop_capabilities()
    notes.append("no-capabilities")
    policy = req.get("landlock")
    if policy is not None:
        note = kernel.landlock(
            read=policy["read"],
            write=policy["write"],
            network=network,
            scope_unix=policy["scope_unix"],
        )
        notes += [note] if note else []
    if view is not None:
        # PID 1 stays a small init: it starts the run as its child (a plain
        # process, to which signals and rlimits apply as anywhere) and, when
        # that ends, ends too, and with it everything left in the namespace.
        worker = os.fork()
        if worker != 0:
            kernel.seccomp(network=network, processes=True)
            os.close(out_fd)
            for fd in (0, 1):
                os.close(fd)
            kernel.leave_like(worker, init=True)
    note = kernel.seccomp(network=network, processes=processes)
    notes += [note] if note else []
    kernel.forget_ctypes()
    return notes


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    _soft, cur_hard = resource.getrlimit(which)
    hard = soft if hard is None else hard
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def user_tasks(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return count


class Guard:
    """An audit hook: Python-level checks that hold even without namespaces.

    Writes must stay inside the working directory; the daemon's home and other
    processes' /proc entries cannot be read; processes, sockets and ctypes are
    refused unless the tool declared it needs them. A refusal is a
    PermissionError in the tool, which the agent sees with its reason.
    """

    def __init__(self, req: dict[str, Any]) -> None:
        self.workdir = os.path.realpath(req["workdir"])
        self.deny = [os.path.realpath(p) for p in req.get("deny_read", [])]
        self.network = bool(req.get("network"))
        self.processes = req["limits"]["processes"] > 0
        self.self_proc = f"/proc/{os.getpid()}"
        self.active = False

    def inside(self, path: Any) -> bool:
        real = os.path.realpath(os.fsdecode(path))
        return (
            real == self.workdir
            or real.startswith(self.workdir + os.sep)
            or real in ("/dev/null", "/dev/zero", "/dev/urandom")
        )

    def readable(self, path: Any) -> bool:
        if self.inside(path):
            return True
        real = os.path.realpath(os.fsdecode(path))
        if real.startswith("/proc/") and not real.startswith((self.self_proc + "/", "/proc/self/")):
            parts = real.split("/")
            if len(parts) > 2 and parts[2].isdigit():
                return False
        return not any(real == d or real.startswith(d + os.sep) for d in self.deny)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, bytes, os.PathLike)):
                return
            writing = any(c in str(mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
            if writing and not self.inside(path):
                raise PermissionError(
                    f"writing {os.fsdecode(path)!r} is not allowed: a tool may "
                    f"write only inside its working directory {self.workdir}"
                )
            if not self.readable(path):
                raise PermissionError(
                    f"reading {os.fsdecode(path)!r} is not allowed in the sandbox"
                )
        elif event in PATH_WRITE_EVENTS:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not self.inside(arg):
                    raise PermissionError(
                        f"{event} on {os.fsdecode(arg)!r} is not allowed: "
                        f"only inside {self.workdir}"
                    )
        elif event in PROCESS_EVENTS:
            if not self.processes:
                raise PermissionError(
                    f"{event}: starting processes is not allowed in the "
                    "sandbox (a person may allow some with "
                    "tools.sandbox.processes in config.toml)"
                )
        elif (
            event == "socket.__new__" and not self.network and len(args) > 1 and (args[1] != 1)
        ):  # AF_UNIX: the daemon's socket is refused below
            # Said here because the kernel (seccomp) refuses socket() with a
            # bare EACCES that tells the agent nothing.
            raise PermissionError(
                "network access is not allowed; a tool that needs it must "
                "be written with network=true"
            )
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            if not self.network:
                raise PermissionError(
                    "network access is not allowed; a tool that needs it must "
                    "be written with network=true"
                )
            sock, addr = args[0], args[1] if len(args) > 1 else None
            if isinstance(addr, (str, bytes)) and not self.readable(addr):
                raise PermissionError("connecting to the daemon's socket is not allowed")
            del sock
        elif event == "import" and args and args[0] in ("ctypes", "_ctypes", "cffi"):
            raise PermissionError(f"importing {args[0]} is not allowed in the sandbox")
        elif event in ("ctypes.dlopen", "ctypes.dlsym", "sys.addaudithook"):
            raise PermissionError(f"{event} is not allowed in the sandbox")


# -- tools ---------------------------------------------------------------------------


def run_tool(req: dict[str, Any], captured: io.StringIO) -> dict[str, Any]:
    import inspect

    name, filename = req["name"], f"<tool {req['name']}>"
    try:
        import typing  # noqa: F401  (resolved annotations may need it)

        import msgspec
    except ImportError as exc:
        return {"ok": False, "kind": "sandbox", "error": f"the sandbox cannot import: {exc}"}
    guard = Guard(req)
    sys.addaudithook(guard)
    guard.active = True
    ns: dict[str, Any] = {"__name__": f"legion_tool_{name}", "__file__": filename}
    try:
        code = compile(req["source"], filename, "exec")
        exec(code, ns)
    except MemoryError:
        return memory_error(req)
    except BaseException as exc:
        return {
            "ok": False,
            "kind": "build",
            "error": f"importing the tool failed: {type(exc).__name__}: {exc}",
            "traceback": tool_traceback(exc, filename),
        }
    fn = ns.get(req["entry"])
    if not callable(fn):
        return {
            "ok": False,
            "kind": "build",
            "error": f"the source defines no function {req['entry']!r}",
        }
    try:
        args_type = signature_struct(fn, name, msgspec)
    except Exception as exc:
        return {
            "ok": False,
            "kind": "build",
            "error": f"the signature cannot be typed: {exc}",
            "hint": "annotate every parameter with a JSON type: str, int, float, bool, "
            "list[...], dict[str, ...], or a Literal",
        }
    if req["mode"] == "build":
        schema = msgspec.json.schema(args_type)
        defs = schema.pop("$defs", {})
        ref = schema.get("$ref", "")
        if ref:
            schema = defs.pop(ref.rsplit("/", 1)[-1])
        schema.pop("title", None)
        if defs:
            schema["$defs"] = defs
        out: dict[str, Any] = {
            "ok": True,
            "schema": schema,
            "doc": inspect.getdoc(fn) or "",
            "selftest": "none",
        }
        test = ns.get("test")
        if callable(test):
            try:
                value = test()
                if inspect.isawaitable(value):
                    _await(value)
                out["selftest"] = "passed"
            except MemoryError:
                return memory_error(req)
            except BaseException as exc:
                out["selftest"] = "failed"
                out["ok"] = False
                out["kind"] = "selftest"
                out["error"] = f"the self-test failed: {type(exc).__name__}: {exc}"
                out["traceback"] = tool_traceback(exc, filename)
        return out
    try:
        kwargs = msgspec.structs.asdict(msgspec.convert(req["args"], args_type, strict=False))
    except msgspec.ValidationError as exc:
        return {"ok": False, "kind": "bad_arguments", "error": str(exc)}
    try:
        value = fn(**kwargs)
        if inspect.isawaitable(value):
            value = _await(value)
        text = json.dumps(value, default=str)
        limit = req.get("output_bytes", 256 * 1024) * 3 // 4
        if len(text) > limit:
            # Cut, and say so: the model sees the start and knows it is partial.
            return {
                "ok": True,
                "value": text[:limit],
                "truncated": True,
                "note": f"the result was {len(text)} bytes; only the first {limit} are shown",
            }
        return {"ok": True, "value": json.loads(text)}
    except MemoryError:
        return memory_error(req)
    except RecursionError as exc:
        return {
            "ok": False,
            "kind": "exception",
            "error": f"RecursionError: {exc}",
            "traceback": tool_traceback(exc, filename),
        }
    except BaseException as exc:
        return {
            "ok": False,
            "kind": "exception",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": tool_traceback(exc, filename),
        }


def _await(value: Any) -> Any:
    # asyncio costs ~18 ms to import: only async tools pay for it.
    import asyncio

    async def wrap() -> Any:
        return await value

    return asyncio.run(wrap())


def signature_struct(fn: Any, name: str, msgspec: Any) -> Any:
    import inspect
    import typing

    hints = typing.get_type_hints(fn)
    fields: list[Any] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"*{pname} parameters cannot be described to a model")
        tp = hints.get(pname, Any)
        if param.default is inspect.Parameter.empty:
            fields.append((pname, tp))
        else:
            fields.append((pname, tp, param.default))
    struct = msgspec.defstruct(f"{name}_args", fields, forbid_unknown_fields=True, kw_only=True)
    msgspec.json.schema(struct)  # raises for types JSON cannot carry
    return struct


def memory_error(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": False,
        "kind": "memory",
        "error": f"the tool ran out of memory (limit {req['limits']['memory_mb']} MB)",
        "hint": "process the data in smaller pieces",
    }


def tool_traceback(exc: BaseException, filename: str) -> str:
    """Only the tool's own frames: line numbers the agent can pass to tool_edit."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    lines = [f"line {f.lineno}, in {f.name}" for f in frames[-5:]]
    return "; ".join(lines)


if __name__ == "__main__":
    main()
