"""What a tool call costs: in-daemon tools, registry search, and the sandbox.

Starts a daemon in a temp home and drives it over JSON-RPC from this
process, one request at a time on one connection:

1. `tools.run` of the starter tool `now`, which runs inside the daemon:
   `--calls` round trips (the RPC floor plus a tiny tool).
2. `tools.search` with a few realistic queries, `--searches` times each.
3. An agent-written tool: an agent on a scripted model (`mock/script`) calls
   `tool_write` to create `add(a, b)` (one message: agents.tell +
   messages.wait; the build runs the source once in the sandbox), then
   `--sandbox-calls` `tools.run` calls of `add` for that agent. Each one is
   a fresh sandbox subprocess (`python -I sandbox_runner.py`, under `bwrap`
   at the bubblewrap level). The time of the build is reported two ways:
   tool_write's `duration_ms` from its `tool.result` event, and the
   `tool.call` -> `tool.built` event timestamps; the whole message's round
   trip is given too.
   References, from this process once the daemon has stopped, as many runs
   as `--sandbox-calls`: `python -I -c pass` (the interpreter's start-up),
   `bwrap ... python -I -c pass` with the daemon's bwrap options (when bwrap
   is installed), and the same `add` call through legion's `Sandbox.run_tool`
   in this small process, at the same level but without the per-run pids
   cgroup. From these the sandbox call's p50 is split into interpreter
   start-up, the runner's own imports and work, and what the daemon adds.
4. From `daemon.info`: the sandbox level in force and its layers, and the
   tool schemas every prompt carries (bytes, how many tools, of how many in
   the registry).

`--level` sets `[tools.sandbox] level` (default: the daemon's own default,
"auto": the strongest level the machine has), so the per-call cost of each
level can be compared; a level the machine lacks makes the daemon refuse to
start.

    .venv/bin/python benchmarks/tool_calls.py [--calls 200] [--sandbox-calls 50]
        [--searches 50] [--level auto|process|namespaces|bubblewrap]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import BenchDaemon, Conn, DaemonError, interrupt_on_term, pct, print_problems, run

CALL_TIMEOUT = 60.0  # socket timeout of one RPC
QUERIES = ("fetch a web page", "write a tool", "schedule a daily job", "watch a file")
AGENT = "toolsmith"
WARM_AGENT = "warmup"
ADD_SOURCE = "def add(a: int, b: int) -> int:\n    return a + b\n"
# The scripted model's tape: the first model call writes the tool, the second
# answers. TOML basic strings take the JSON escapes used here.
TAPE = (
    '[[turn]]\ntool_calls = [{ name = "tool_write", arguments = { name = "add", '
    'source = "def add(a: int, b: int) -> int:\\n    return a + b\\n" } }]\n\n'
    '[[turn]]\ntext = "ok"\n'
)
LEVELS = ("auto", "process", "namespaces", "bubblewrap")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Tool call costs: tools.run of the in-daemon tool `now`, tools.search, "
        "and an agent-written tool run in the sandbox (a fresh subprocess per call)."
    )
    p.add_argument(
        "--calls",
        type=int,
        default=200,
        metavar="N",
        help="tools.run calls of `now` (default: 200)",
    )
    p.add_argument(
        "--searches",
        type=int,
        default=50,
        metavar="N",
        help="tools.search calls per query (default: 50)",
    )
    p.add_argument(
        "--sandbox-calls",
        type=int,
        default=50,
        metavar="N",
        help="tools.run calls of the agent-written tool, and runs of each "
        "reference command (default: 50)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        metavar="N",
        help="unmeasured calls before each series (default: 5)",
    )
    p.add_argument(
        "--level",
        choices=LEVELS,
        default=None,
        help="set [tools.sandbox] level (default: not set, i.e. auto)",
    )
    args = p.parse_args()
    if min(args.calls, args.searches, args.sandbox_calls) < 1 or args.warmup < 0:
        p.error("--calls, --searches and --sandbox-calls must be >= 1, --warmup >= 0")
    return args


class RpcError(DaemonError):
    pass


class Client(Conn):
    """A connection whose calls return results and raise the daemon's errors."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, CALL_TIMEOUT)

    def result(self, method: str, params: dict[str, Any] | None) -> Any:
        reply = self.call(method, params)
        if "error" in reply:
            err = reply["error"]
            raise RpcError(f"{method}: {err.get('message')} ({err.get('data')})")
        return reply["result"]

    def tell_wait(self, agent: str, text: str) -> dict[str, Any]:
        """agents.tell, then messages.wait until the message is final."""
        mid = self.result("agents.tell", {"id": agent, "text": text})["message_id"]
        deadline = time.perf_counter() + CALL_TIMEOUT
        while True:
            reply = self.call("messages.wait", {"message_id": mid, "timeout": 10})
            if "result" in reply:
                out: dict[str, Any] = reply["result"]
                return out
            if (reply["error"].get("data") or {}).get(
                "kind"
            ) != "timeout" or time.perf_counter() > deadline:
                raise RpcError(f"messages.wait: {reply['error']}")


@dataclass
class Series:
    name: str
    times: list[float] = field(default_factory=list)  # seconds, as seen by this process
    inner: list[float] = field(default_factory=list)  # the daemon's duration_ms, in seconds
    wall: float = 0.0
    errors: int = 0
    first_error: str = ""
    parent_cpu: float | None = None  # CPU seconds of the daemon (or this process) in the series
    child_cpu: float | None = None  # of the children it reaped (the sandbox runs)

    def error(self, text: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or text


def proc_cpu(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of a process, in seconds (Linux /proc).
    The second is the CPU of its children that it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def timed(
    name: str, n: int, warmup: int, one: Callable[[Series], None], pid: int | None = None
) -> Series:
    """`warmup` unmeasured calls of `one`, then `n` measured ones, back to back."""
    scratch = Series(name)
    for _ in range(warmup):
        one(scratch)
    s = Series(name)
    s.errors, s.first_error = scratch.errors, scratch.first_error
    cpu0 = proc_cpu(pid) if pid else None
    t0 = time.perf_counter()
    for _ in range(n):
        one(s)
    s.wall = time.perf_counter() - t0
    if pid and cpu0:
        cpu1 = proc_cpu(pid)
        s.parent_cpu, s.child_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return s


def tool_run(c: Client, params: dict[str, Any], expect: Any = None) -> Callable[[Series], None]:
    """One tools.run; a failure, or a result other than `expect` (if given), is an error."""

    def one(s: Series) -> None:
        t0 = time.perf_counter()
        res = c.result("tools.run", params)
        s.times.append(time.perf_counter() - t0)
        s.inner.append(res["duration_ms"] / 1e3)
        if not res["ok"]:
            s.error(f"{res['error_kind']}: {res['error']}")
        elif expect is not None and res["result"] != expect:
            s.error(f"returned {res['result']!r}, expected {expect!r}")

    return one


def search(c: Client, query: str, hits: list[str]) -> Callable[[Series], None]:
    def one(s: Series) -> None:
        t0 = time.perf_counter()
        res = c.result("tools.search", {"query": query, "limit": 5})
        s.times.append(time.perf_counter() - t0)
        hits[:] = [r["name"] for r in res["results"]]

    return one


def command(argv: list[str], cwd: Path) -> Callable[[Series], None]:
    def one(s: Series) -> None:
        t0 = time.perf_counter()
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd, check=False
        )
        s.times.append(time.perf_counter() - t0)
        if done.returncode:
            s.error(f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}")

    return one


def local_sandbox(home: Path, level: str, loop: asyncio.AbstractEventLoop) -> Any:
    """legion's Sandbox class in this process, at `level`, in a scratch home. No
    prepare(): no per-run pids cgroup (that would put this process's own
    cgroup to use); only the bwrap binary is looked up, as prepare() does."""
    from legion.config import SandboxConfig
    from legion.daemon.tools.sandbox import Sandbox
    from legion.paths import Paths

    (home / "work").mkdir(mode=0o700, parents=True, exist_ok=True)
    sandbox = Sandbox(SandboxConfig(), Paths(home, home / "daemon.sock"))
    sandbox.level = level  # what prepare() would have chosen; cfg.level is read only there
    if level == "bubblewrap" and not loop.run_until_complete(sandbox._find_bwrap()):
        raise SystemExit(f"no bwrap confines a run here: {sandbox.notes}")
    return sandbox


def sandbox_call(loop: asyncio.AbstractEventLoop, sandbox: Any) -> Callable[[Series], None]:
    """The same `add` call as the daemon makes it, through Sandbox.run_tool here."""

    def one(s: Series) -> None:
        t0 = time.perf_counter()
        res = loop.run_until_complete(
            sandbox.run_tool(
                "call",
                name="add",
                source=ADD_SOURCE,
                entry="add",
                agent=AGENT,
                args={"a": 1, "b": 2},
            )
        )
        s.times.append(time.perf_counter() - t0)
        if not res.get("ok") or res.get("value") != 3:
            s.error(f"{res.get('kind')}: {res.get('error')}")

    return one


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


HEADER = (
    f"{'what':<40} {'calls':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
    f"{'max ms':>8} {'calls/s':>8} {'in-daemon p50':>13} {'parent CPU/call':>15} "
    f"{'child CPU/call':>14} {'errors':>6}"
)


def row(s: Series) -> str:
    n = len(s.times)
    inner = f"{ms(statistics.median(s.inner))} ms" if s.inner else "-"
    dcpu = f"{ms(s.parent_cpu / n)} ms" if s.parent_cpu is not None else "-"
    ccpu = f"{ms(s.child_cpu / n)} ms" if s.child_cpu is not None else "-"
    return (
        f"{s.name:<40} {n:>5} {ms(statistics.median(s.times)):>8} "
        f"{ms(pct(s.times, 95)):>8} {ms(pct(s.times, 99)):>8} {ms(max(s.times)):>8} "
        f"{n / s.wall:>8.0f} {inner:>13} {dcpu:>15} {ccpu:>14} {s.errors:>6}"
    )


def config_text(home: Path, level: str | None) -> str:
    """HOME/config.toml: the scripted provider `s`, and the sandbox level if asked."""
    script = home / "s.toml"
    script.write_text(TAPE, encoding="utf-8")
    text = (
        f'[providers.s]\nkind = "mock"\nscript = "{script}"\n\n'
        '[models.aliases]\nlocal = "mock/echo"\ns = "s/script"\n'
    )
    if level is not None:
        text += f'\n[tools.sandbox]\nlevel = "{level}"\n'
    return text


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    t_start = time.perf_counter()
    print(
        f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{os.uname().sysname} {os.uname().release}; one connection, one request in flight; "
        f"{args.warmup} unmeasured calls before each series"
    )
    series: dict[str, Series] = {}

    def report(key: str, s: Series) -> None:
        series[key] = s
        print(row(s), flush=True)

    level = args.level
    with (
        BenchDaemon(config=lambda home: config_text(home, level)) as d,
        contextlib.closing(Client(d.socket)) as c,
    ):
        info = d.call("daemon.info")
        start_tools, level_used = info["tools"], info["sandbox"]["level"]
        print(
            f"daemon  : pid {d.pid}, ready in {d.ready_s:.3f}s (the sandbox probes run before "
            f"READY=1), home {d.home}; [tools.sandbox] level = "
            f"{args.level or '(not set: auto)'}"
        )
        print()
        print(HEADER)
        print("-" * len(HEADER))
        # 1. a tool that runs inside the daemon
        report(
            "now",
            timed(
                "tools.run now (in-daemon starter)",
                args.calls,
                args.warmup,
                tool_run(c, {"name": "now", "args": {}}),
                d.pid,
            ),
        )

        # 2. registry search
        found: dict[str, list[str]] = {}
        for q in QUERIES:
            found[q] = []
            report(
                q,
                timed(
                    f"tools.search {q!r}", args.searches, args.warmup, search(c, q, found[q]), d.pid
                ),
            )

        # 3. an agent-written tool, written by an agent on the scripted model
        d.call_many(
            [("agents.spawn", {"id": WARM_AGENT}), ("agents.spawn", {"id": AGENT, "model": "s"})]
        )
        t0 = time.perf_counter()
        c.tell_wait(WARM_AGENT, "hello")  # pays the daemon's lazy litellm import
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        reply = c.tell_wait(AGENT, "write an add tool")
        tell_s = time.perf_counter() - t0
        if reply["status"] != "done":
            raise SystemExit(
                f"the tool_write message ended {reply['status']}: {reply.get('error')}"
            )
        events = c.result(
            "events.list",
            {"agent": AGENT, "kinds": ["tool.call", "tool.result", "tool.built"], "limit": 20},
        )
        by_kind = {e["kind"]: e for e in events}
        if set(by_kind) != {"tool.call", "tool.result", "tool.built"}:
            raise SystemExit(f"expected tool.call/result/built events, got {sorted(by_kind)}")
        built = by_kind["tool.built"]["data"]
        if not built["ok"]:
            raise SystemExit(f"tool_write did not build add: {built['problem']}")
        write_ms = by_kind["tool.result"]["data"]["duration_ms"]
        build_ts = (_ts(by_kind["tool.built"]["ts"]) - _ts(by_kind["tool.call"]["ts"])) * 1e3
        runs_before = d.call("daemon.info")["sandbox"]["runs"]
        report(
            "add",
            timed(
                f"tools.run add (sandbox: {level_used})",
                args.sandbox_calls,
                args.warmup,
                tool_run(c, {"name": "add", "args": {"a": 1, "b": 2}, "agent": AGENT}, expect=3),
                d.pid,
            ),
        )
        check = c.result("tools.run", {"name": "add", "args": {"a": 1, "b": 2}, "agent": AGENT})
        end = d.call("daemon.info")
        runs = end["sandbox"]["runs"] - runs_before
        stats = c.result("tools.stats", {"name": "add"})["tools"][0]
        prompt_names = c.result("tools.list", {})["prompt"]
        problems = d.log_problems()

    # References, from this process; the daemon is stopped by now.
    me = os.getpid()
    with tempfile.TemporaryDirectory(prefix="lgb-ref-", dir="/tmp") as tmp:
        ref = Path(tmp)
        bare = [sys.executable, "-I", "-c", "pass"]
        report(
            "python",
            timed(
                "ref: python -I -c pass", args.sandbox_calls, args.warmup, command(bare, ref), me
            ),
        )
        loop = asyncio.new_event_loop()
        home = ref / "home"
        try:
            probe = local_sandbox(home, "bubblewrap", loop) if level_used == "bubblewrap" else None
        except SystemExit:
            probe = None
        if probe is not None:
            # The options a tool call gets (no network, a private /tmp).
            workdir = str(probe.workdir(AGENT))
            wrapped = (
                probe.policy.bwrap(
                    probe.bwrap,
                    tool=True,
                    workdir=workdir,
                    network=False,
                    cwd=workdir,
                    tmp_mb=probe._tmp_mb(),
                    sized=probe.bwrap_sized,
                )
                + bare
            )
            report(
                "bwrap",
                timed(
                    "ref: bwrap ... python -I -c pass",
                    args.sandbox_calls,
                    args.warmup,
                    command(wrapped, ref),
                    me,
                ),
            )
        try:
            report(
                "local",
                timed(
                    f"ref: Sandbox.run_tool here ({level_used})",
                    args.sandbox_calls,
                    args.warmup,
                    sandbox_call(loop, local_sandbox(home, level_used, loop)),
                    me,
                ),
            )
        finally:
            loop.close()
    print(
        "  p50..max: one round trip as this process saw it (tools.run: RPC + tool); in-daemon "
        "p50: the call's duration_ms, as the daemon's registry measured it"
    )
    print(
        "  parent CPU/call: utime+stime of the daemon (tools.* rows) or of this process (ref "
        "rows) over the series, / calls;"
    )
    print(
        "  child CPU/call: the same for the children they reaped: the sandbox runs"
        + (
            " (at the bubblewrap level the tool's process is reaped inside bwrap's pid "
            "namespace and is not counted)"
            if level_used == "bubblewrap"
            else ""
        )
    )
    for s in series.values():
        if s.first_error:
            print(f"first error in {s.name}: {s.first_error}")
    print()
    sb = end["sandbox"]
    p50 = {k: statistics.median(s.times) * 1e3 for k, s in series.items()}
    wrap = p50["bwrap"] - p50["python"] if level_used == "bubblewrap" and "bwrap" in p50 else 0.0
    print(
        f"sandbox call, p50 {p50['add']:.1f} ms over RPC: python -I start-up "
        f"{p50['python']:.1f} ms"
        + (f" + bwrap {wrap:.1f} ms" if wrap else "")
        + f"; the runner's own imports and work {p50['local'] - p50['python'] - wrap:.1f} ms "
        f"(Sandbox.run_tool here {p50['local']:.1f} ms, less those); in the daemon "
        f"{p50['add'] - p50['local']:.1f} ms more (RPC, "
        + ("the per-run pids cgroup, " if any(x.startswith("cgroup") for x in sb["layers"]) else "")
        + "forking the daemon)"
    )
    print(
        f"tool_write of add: built ok, self-test {built['selftest']}; its duration_ms "
        f"(registry: parse + sandbox build run + save) {write_ms:.1f} ms; tool.call -> "
        f"tool.built event ts {build_ts:.0f} ms (1 ms res.)"
    )
    print(
        f"  the whole message (agents.tell + messages.wait: 2 scripted model calls and "
        f"tool_write) {tell_s * 1e3:.1f} ms; the warm-up message before it (the daemon's "
        f"litellm import) {warm_s:.2f}s"
    )
    print(
        f"add: {runs} sandbox runs for {args.sandbox_calls + args.warmup + 1} calls; the last "
        f"returned {check['result']!r}; the daemon's tools.stats for add: {stats['calls']} "
        f"calls, p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, {stats['verdict']}"
    )
    print("search hits (top 5):")
    for q, names in found.items():
        print(f"  {q!r:<24} -> {', '.join(names)}")
    print()
    print(
        f"sandbox : level {sb['level']}; layers {', '.join(sb['layers'])}"
        + (f"; notes: {'; '.join(sb['notes'])}" if sb["notes"] else "")
    )
    lim = sb["limits"]
    print(
        f"          limits {lim['cpu_seconds']}s CPU, {lim['memory_mb']} MB, "
        f"{lim['open_files']} files, {lim['processes']} processes, timeout {lim['timeout']:g}s; "
        f"{sb['runs']} runs in all (start-up probes and the build included)"
    )
    print(
        f"prompt  : {start_tools['in_prompt']} tool schemas in every prompt, "
        f"{start_tools['prompt_schema_bytes']} B as compact JSON "
        f"(~{start_tools['prompt_schema_bytes'] // 4} tokens at 4 chars a token), of "
        f"{start_tools['total']} tools in the registry ({end['tools']['total']} at the end, "
        f"{end['tools']['authored']} agent-written)"
    )
    print(f"          in the prompt: {', '.join(prompt_names)}")
    if level_used != "bubblewrap":
        print(f"note    : the daemon's level is {level_used}: no bwrap reference row")
    print()
    print(
        f"daemon stopped (exit code {d.exit_code}); temp home removed; "
        f"total {time.perf_counter() - t_start:.1f}s"
    )
    print_problems(problems)
    return 0


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    run(main)
