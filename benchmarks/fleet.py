"""A fleet in one daemon: 1,000 idle agents, and 100 agents exchanging messages.

1. **idle fleet.** A daemon in a temp home with `[agents] max_agents =
   100000` (the default cap of 1,000 counts every agent). Its RSS (`VmRSS`)
   with 0 agents; `--idle` agents spawned over RPC (`agents.spawn`, all
   requests pipelined over `--connections` connections): spawns per second;
   the RSS again, in total and per agent; the daemon's CPU (utime+stime of
   all its threads, /proc) and wake-ups over `--idle-seconds` with every
   agent idle, in % of one core; then the latency of `legion --home HOME
   ps`, `ps --json` and `ps --tree` (the installed console script, a fresh
   process each run, stdout a pipe, `--ps-runs` runs each; also with 0
   agents, before the spawns; and `ps --json` once more without
   PYTHONUNBUFFERED if the environment sets it), and of the raw RPCs behind
   them: `agents.list` and `agents.tree` (`--list-runs` each, one
   connection).
2. **talkers.** A second daemon, with `[agents] max_hops = 1`, and
   `--talkers` agents on the default model alias `local` = the offline
   `mock/echo`: it answers every message at once, through litellm's real
   streaming path. The agents are spawned with `guards.history_tokens = 0`,
   so every message costs the same however many came before (as in
   session_overhead.py). A warm-up round (two messages per agent, not
   measured) pays the daemon's lazy litellm import. Then `--messages`
   messages in each of four scenarios:

   tell, 1 in flight/agent   each agent has one message at a time: a
                             client coroutine per agent loops `agents.tell`
                             + `messages.wait`; latency = tell sent ->
                             wait answered
   tell, all at once         every `agents.tell` is sent at once
                             (pipelined); a reply counts when its
                             `session.ended` event arrives on an
                             `events.subscribe` connection; latency
                             includes the queue in each agent's inbox
   agent->agent, 1 in flight agent j messages agent j+1 through the
                             `agent_message` tool (`tools.run` with
                             `agent` = the sender): the same code an
                             agent's tool call runs, minus the sender's own
                             model call; the message counts when the
                             target's `session.ended` arrives; the sender
                             sends its next one then
   agent->agent, all at once every `agent_message` is sent at once

   With `max_hops = 1` one agent message is one delivery and one session of
   its target: the target's echo reply would be hop 2, so it is not routed
   back (a `guard.conversation` event records that). With the default
   max_hops of 8 each message would start a ping-pong of 8 sessions.

All clients of part 2 are coroutines in this process (one asyncio loop),
spread over `--connections` connections; a request waiting on the daemon
(`messages.wait`) does not hold up the others on its connection.

    .venv/bin/python benchmarks/fleet.py [--idle 1000] [--talkers 100] [--messages 2000]
        [--idle-seconds 10] [--ps-runs 10] [--list-runs 20] [--connections 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import (
    REPO,
    BenchDaemon,
    Conn,
    DaemonError,
    console_script,
    ctx_switches,
    interrupt_on_term,
    pct,
    print_problems,
    proc_status,
    run,
    threads,
)

CALL_TIMEOUT = 120.0  # socket timeout of one RPC (agents.list of many agents is slow)
WAIT_TIMEOUT = 30.0  # messages.wait's own timeout; a message still running is waited again
DONE_TIMEOUT = 300.0  # longest wait for any one message before the scenario gives up
SETTLE = 2.0  # seconds of quiet before an RSS or idle reading
TEXT = "What time is it in Paris?"
IDLE_CONFIG = "[agents]\nmax_agents = 100000\n"
TALK_CONFIG = "[agents]\nmax_agents = 100000\nmax_hops = 1\n"
WARM_ROUNDS = 2


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="A fleet in one daemon: N idle agents (RSS per agent, idle CPU, `legion ps` "
        "and agents.list latency, spawns/s), then M agents on the instant mock/echo model "
        "exchanging messages (tell -> reply and agent -> agent messages per second)."
    )
    p.add_argument(
        "--idle", type=int, default=1000, metavar="N", help="idle agents in part 1 (default: 1000)"
    )
    p.add_argument(
        "--talkers",
        type=int,
        default=100,
        metavar="N",
        help="agents exchanging messages in part 2 (default: 100)",
    )
    p.add_argument(
        "--messages",
        type=int,
        default=2000,
        metavar="N",
        help="messages in each scenario of part 2 (default: 2000)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="window for the idle CPU reading (default: 10)",
    )
    p.add_argument(
        "--ps-runs",
        type=int,
        default=10,
        metavar="N",
        help="runs of each `legion ps` variant (default: 10)",
    )
    p.add_argument(
        "--list-runs",
        type=int,
        default=20,
        metavar="N",
        help="calls each of agents.list and agents.tree (default: 20)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=10,
        metavar="N",
        help="client connections for the spawns and for part 2 (default: 10)",
    )
    args = p.parse_args()
    if args.idle < 1 or args.talkers < 2 or args.messages < 1:
        p.error("--idle must be >= 1, --talkers >= 2, --messages >= 1")
    if args.idle_seconds <= 0 or min(args.ps_runs, args.list_runs) < 1:
        p.error("--idle-seconds must be > 0, --ps-runs and --list-runs >= 1")
    if not 1 <= args.connections <= 100:
        p.error("--connections must be between 1 and 100")
    return args


# -- /proc ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    return proc_status(pid, "VmRSS")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds < 0.01 else f"{seconds * 1e3:.0f}"


def p50_p95(values: list[float]) -> str:
    return f"p50 {ms(statistics.median(values))} ms, p95 {ms(pct(values, 95))} ms"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


@contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    yield


# -- an asyncio client: many requests in flight on one connection -------------------------


class RpcError(DaemonError):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message')} ({error.get('data')})")
        self.kind = (error.get("data") or {}).get("kind")


class AsyncConn:
    """One connection; requests are matched to replies by id, so any number of
    coroutines may share it. Notifications go to `on_note`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_note: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.on_note = on_note
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls, path: Path, on_note: Callable[[dict[str, Any]], None] | None = None
    ) -> AsyncConn:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=64 << 20)
        return cls(reader, writer, on_note)

    async def _read(self) -> None:
        try:
            while line := await self.reader.readline():
                msg = json.loads(line)
                if "id" in msg and msg["id"] is not None:
                    fut = self.pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif self.on_note is not None:
                    self.on_note(msg)
        except asyncio.CancelledError:
            # Closed by us (or Ctrl-C): whoever waits is cancelled too, quietly.
            for fut in self.pending.values():
                fut.cancel()
            raise
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the daemon closed the connection"))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole reply (result or error)."""
        i = next(self.ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": i, "method": method}
        if params is not None:
            msg["params"] = params
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        self.writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        return await asyncio.wait_for(fut, CALL_TIMEOUT)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.call(method, params)
        if "error" in reply:
            raise RpcError(method, reply["error"])
        return reply["result"]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Ended:
    """`session.ended` events as they arrive on a subscription: message id ->
    (arrival time in this process, session status)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, str]] = {}
        self.waiters: dict[int, asyncio.Future[tuple[float, str]]] = {}
        self.lagged = 0
        self.counts: dict[str, int] = {}

    def note(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "events.lagged":
            # Events were dropped for this slow subscriber: some ends will never
            # be seen, so fail everyone who waits rather than hang.
            self.lagged += msg["params"].get("missed", 0)
            for waiter in self.waiters.values():
                if not waiter.done():
                    waiter.set_exception(DaemonError(f"event subscription lagged: {msg['params']}"))
            return
        if msg.get("method") != "events.event":
            return
        ev = msg["params"]["event"]
        self.counts[ev["kind"]] = self.counts.get(ev["kind"], 0) + 1
        if ev["kind"] != "session.ended":
            return
        got = (time.perf_counter(), ev["data"]["status"])
        mid = ev["data"]["message_id"]
        fut = self.waiters.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(got)
        else:
            self.seen[mid] = got

    async def wait(self, message_id: int) -> tuple[float, str]:
        if message_id in self.seen:
            return self.seen.pop(message_id)
        if self.lagged:
            raise DaemonError("event subscription lagged")
        fut: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.waiters[message_id] = fut
        return await asyncio.wait_for(fut, DONE_TIMEOUT)


# -- part 1: the idle fleet -------------------------------------------------------------


def idle_id(i: int) -> str:
    return f"a{i}"


def talker_id(i: int) -> str:
    return f"b{i}"


async def pipelined(
    path: Path, calls: list[tuple[str, dict[str, Any]]], connections: int
) -> tuple[float, int, str]:
    """Send every call at once, spread over the connections; (wall s, errors, first)."""
    conns = [await AsyncConn.open(path) for _ in range(connections)]
    try:
        await asyncio.gather(*[c.call("daemon.ping") for c in conns])
        t0 = time.perf_counter()
        replies = await asyncio.gather(
            *[conns[k % connections].call(m, p) for k, (m, p) in enumerate(calls)]
        )
        wall = time.perf_counter() - t0
    finally:
        for c in conns:
            await c.close()
    errors = [r["error"].get("message", "") for r in replies if "error" in r]
    return wall, len(errors), errors[0] if errors else ""


def timed_rpc(conn: Conn, method: str, runs: int) -> tuple[list[float], int, int]:
    """(latencies, agents in the last reply, its size in bytes) of `runs` calls."""
    times, size, count = [], 0, 0
    for _ in range(runs):
        t0 = time.perf_counter()
        reply = conn.call(method, {})
        times.append(time.perf_counter() - t0)
        if "error" in reply:
            raise RpcError(method, reply["error"])
        count = len(reply["result"])
        size = len(json.dumps(reply["result"], separators=(",", ":")))
    return times, count, size


# The `legion ps` variants timed; each is a fresh process of the console script.
PS_COMMANDS = {
    "legion ps --json": ["ps", "--json"],
    "legion ps": ["ps"],
    "legion ps --tree": ["ps", "--tree"],
}
# The environment may set PYTHONUNBUFFERED: `ps --json` is then also timed without it.
BUFFERED = "legion ps --json (buffered)"


def legion_argv(home: Path, *words: str) -> list[str]:
    script = console_script()
    return ([str(script)] if script else [sys.executable, "-m", "legion"]) + [
        "--home",
        str(home),
        *words,
    ]


def cli_env(unbuffered: bool = True) -> dict[str, str]:
    drop = {"LEGION_HOME", "LEGION_SOCKET", "NOTIFY_SOCKET"}
    if not unbuffered:
        drop.add("PYTHONUNBUFFERED")
    return {k: v for k, v in os.environ.items() if k not in drop}


def timed_cli(home: Path, agents: int, runs: int) -> dict[str, list[float]]:
    """Each `legion ps` variant `runs` times (and `ps --json` without PYTHONUNBUFFERED,
    if it is set). Every --json output must list `agents` agents."""
    jobs = [(name, legion_argv(home, *words), cli_env()) for name, words in PS_COMMANDS.items()]
    if os.environ.get("PYTHONUNBUFFERED"):
        jobs.append((BUFFERED, legion_argv(home, "ps", "--json"), cli_env(unbuffered=False)))
    out: dict[str, list[float]] = {}
    for name, argv, env in jobs:
        times = out.setdefault(name, [])
        for _ in range(runs):
            t0 = time.perf_counter()
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False
            )
            times.append(time.perf_counter() - t0)
            if done.returncode:
                raise DaemonError(
                    f"{' '.join(argv)} exited {done.returncode}: "
                    f"{done.stderr.decode(errors='replace')[-300:]}"
                )
            if "--json" in argv and len(json.loads(done.stdout)) != agents:
                raise DaemonError(f"{' '.join(argv)} did not list {agents} agents")
    return out


def bytecode() -> str:
    """Whether `legion ps` loads legion from cached bytecode (as cli_startup.py checks)."""
    src = REPO / "legion" / "cli" / "main.py"
    if Path(importlib.util.cache_from_source(str(src))).exists():
        return "legion's bytecode is cached: each `legion ps` loads it"
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return (
        "legion's bytecode is NOT cached"
        + (f" and PYTHONDONTWRITEBYTECODE={flag}" if flag else "")
        + ": every `legion ps` compiles legion's sources again (cli_startup.py "
        "measures both cases)"
    )


QUERY_HEADER = (
    f"{'query':<38} {'runs':>5} {'agents':>6} {'p50 ms':>8} {'p95 ms':>8} "
    f"{'max ms':>8} {'reply KiB':>9}"
)


def query_row(name: str, times: list[float], agents: int, size: int | None) -> str:
    kib = f"{size / 1024:.0f}" if size is not None else "-"
    return (
        f"{name:<38} {len(times):>5} {agents:>6} {statistics.median(times) * 1e3:>8.1f} "
        f"{pct(times, 95) * 1e3:>8.1f} {max(times) * 1e3:>8.1f} {kib:>9}"
    )


def idle_fleet(args: argparse.Namespace, summary: dict[str, str]) -> list[str]:
    n = args.idle
    with BenchDaemon(config=IDLE_CONFIG) as d:
        assert d.home is not None
        info = d.call("daemon.info")
        db = info["database"]
        print(
            f"daemon  : pid {d.pid}, ready in {d.ready_s:.3f}s, home {d.home}; config "
            f"max_agents = 100000"
        )
        print(
            f"store   : {db['driver']} sqlite {db['sqlite_version']}, "
            f"synchronous={db['synchronous']}"
        )
        time.sleep(SETTLE)
        rss0, threads0 = rss_kib(d.pid), threads(d.pid)
        ps0 = timed_cli(d.home, 0, args.ps_runs)

        calls = [("agents.spawn", {"id": idle_id(i)}) for i in range(n)]
        cpu0 = d.cpu_seconds()
        wall, errors, first = asyncio.run(pipelined(d.socket, calls, args.connections))
        spawn_cpu = d.cpu_seconds() - cpu0
        if errors:
            raise DaemonError(f"{errors} of {n} spawns failed, first: {first}")
        total = d.call("daemon.info")["agents"]["total"]
        if total != n:
            raise DaemonError(f"expected {n} agents, daemon.info says {total}")
        print(
            f"spawn   : {n} agents.spawn, all sent at once over {args.connections} "
            f"connections, in {wall:.2f}s = {n / wall:.0f} agents/s; daemon CPU "
            f"{spawn_cpu / wall * 100:.0f}% ({spawn_cpu / n * 1e3:.2f} ms/agent)"
        )
        summary["spawn"] = f"{n / wall:.0f} agents/s"

        time.sleep(SETTLE)
        rss1 = rss_kib(d.pid)
        per = (rss1 - rss0) / n
        print(
            f"RSS     : {mib(rss0)} with 0 agents -> {mib(rss1)} with {n} agents: "
            f"+{mib(rss1 - rss0)} = {per:.1f} KiB/agent; threads {threads0} -> "
            f"{threads(d.pid)}"
        )
        summary["RSS"] = f"{mib(rss1)} total with {n} agents, +{per:.1f} KiB/agent"

        ctx0, cpu0, t0 = ctx_switches(d.pid), d.cpu_seconds(), time.perf_counter()
        time.sleep(args.idle_seconds)
        ctx1, cpu1, t1 = ctx_switches(d.pid), d.cpu_seconds(), time.perf_counter()
        idle_pct = (cpu1 - cpu0) / (t1 - t0) * 100
        print(
            f"idle    : {n} agents, nothing to do, {t1 - t0:.1f}s: daemon CPU "
            f"{idle_pct:.2f}% of one core ({(cpu1 - cpu0) * 1e3:.0f} ms), "
            f"{(ctx1 - ctx0) / (t1 - t0):.1f} wake-ups/s (all threads)"
        )
        summary["idle CPU"] = f"{idle_pct:.2f}% of one core"

        print()
        print(QUERY_HEADER)
        print("-" * len(QUERY_HEADER))
        ps1 = timed_cli(d.home, n, args.ps_runs)
        for name in ps1:
            print(query_row(f"{name}, 0 agents", ps0[name], 0, None))
        for name, times in ps1.items():
            print(query_row(name, times, n, None), flush=True)
        conn = Conn(d.socket, CALL_TIMEOUT)
        try:
            conn.call("daemon.ping", None)
            list_times, list_count, list_size = timed_rpc(conn, "agents.list", args.list_runs)
            print(query_row("agents.list (RPC)", list_times, list_count, list_size), flush=True)
            tree_times, tree_count, tree_size = timed_rpc(conn, "agents.tree", args.list_runs)
            print(query_row("agents.tree (RPC)", tree_times, tree_count, tree_size), flush=True)
        finally:
            conn.close()
        print(
            f"  legion ps: `{' '.join(legion_argv(Path('HOME'), 'ps'))} ...`, a fresh process "
            "per run, stdout a pipe (start-up + the RPC + output); the 0-agents rows were "
            "timed before the spawns. agents.list/tree: one connection, one call at a time; "
            "reply KiB: the result as compact JSON"
        )
        if BUFFERED in ps1:
            print(
                f"  PYTHONUNBUFFERED={os.environ['PYTHONUNBUFFERED']} is set here and the "
                f"legion ps rows inherit it; '{BUFFERED}' runs without it"
            )
        print(f"  bytecode: {bytecode()}")
        for name, times in ps1.items():
            summary[name] = p50_p95(times)
        summary["agents.list (RPC)"] = p50_p95(list_times)
        summary["agents.tree (RPC)"] = p50_p95(tree_times)
        rss2 = rss_kib(d.pid)
        print(f"RSS     : {mib(rss2)} after the queries")
        problems = d.log_problems()
    print(f"daemon stopped (exit code {d.exit_code}); temp home removed")
    return problems


# -- part 2: talkers ----------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    send_wall: float | None = None  # all at once: time until every send was answered
    errors: int = 0
    first_error: str = ""
    daemon_cpu: float = 0.0
    bench_cpu: float = 0.0
    jobs: int = 0
    batches: int = 0

    def error(self, text: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or text

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


class Talk:
    """Part 2's clients: connections, the event subscription, the agents."""

    def __init__(self, d: BenchDaemon, args: argparse.Namespace) -> None:
        self.d = d
        self.args = args
        self.agents = [talker_id(i) for i in range(args.talkers)]
        self.conns: list[AsyncConn] = []
        self.ended = Ended()
        self.events: AsyncConn | None = None

    async def __aenter__(self) -> Talk:
        self.events = await AsyncConn.open(self.d.socket, self.ended.note)
        await self.events.result(
            "events.subscribe", {"kinds": ["session.ended", "guard.conversation"], "replay": 0}
        )
        for _ in range(self.args.connections):
            self.conns.append(await AsyncConn.open(self.d.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in [*self.conns, *([self.events] if self.events else [])]:
            await c.close()

    def conn(self, k: int) -> AsyncConn:
        return self.conns[k % len(self.conns)]

    async def tell_wait(self, conn: AsyncConn, agent: str, text: str) -> dict[str, Any]:
        mid = (await conn.result("agents.tell", {"id": agent, "text": text}))["message_id"]
        while True:
            reply = await conn.call("messages.wait", {"message_id": mid, "timeout": WAIT_TIMEOUT})
            if "result" in reply:
                out: dict[str, Any] = reply["result"]
                return out
            err = RpcError("messages.wait", reply["error"])
            if err.kind != "timeout":
                raise err

    async def warm_up(self) -> float:
        t0 = time.perf_counter()
        for r in range(WARM_ROUNDS):
            done = await asyncio.gather(
                *[
                    self.tell_wait(self.conn(k), a, f"warm-up {r}")
                    for k, a in enumerate(self.agents)
                ]
            )
            bad = [m for m in done if m["status"] != "done"]
            if bad:
                raise DaemonError(f"warm-up: {len(bad)} messages not done, first: {bad[0]}")
        return time.perf_counter() - t0

    async def measure(self, name: str, body: Callable[[Scenario], Awaitable[None]]) -> Scenario:
        s = Scenario(name)
        before = (await self.conns[0].result("daemon.info"))["database"]["writer"]
        cpu0, dcpu0 = time.process_time(), self.d.cpu_seconds()
        t0 = time.perf_counter()
        await body(s)
        s.wall = time.perf_counter() - t0
        s.bench_cpu = time.process_time() - cpu0
        s.daemon_cpu = self.d.cpu_seconds() - dcpu0
        after = (await self.conns[0].result("daemon.info"))["database"]["writer"]
        s.jobs, s.batches = after["jobs"] - before["jobs"], after["batches"] - before["batches"]
        return s

    # -- the four scenarios ---------------------------------------------------------------

    def _quota(self) -> Callable[[], bool]:
        """A shared counter: True while messages remain to be sent."""
        sent = itertools.count()
        total = self.args.messages
        return lambda: next(sent) < total

    async def tell_loop(self, s: Scenario) -> None:
        more = self._quota()

        async def agent_loop(k: int, agent: str) -> None:
            conn = self.conn(k)
            while more():
                t0 = time.perf_counter()
                msg = await self.tell_wait(conn, agent, TEXT)
                s.latencies.append(time.perf_counter() - t0)
                if msg["status"] != "done":
                    s.error(f"{msg['status']}: {msg.get('error')}")

        await asyncio.gather(*[agent_loop(k, a) for k, a in enumerate(self.agents)])

    async def tell_burst(self, s: Scenario) -> None:
        t0 = time.perf_counter()

        async def send(k: int) -> tuple[float, int]:
            agent = self.agents[k % len(self.agents)]
            sent = time.perf_counter()
            res = await self.conn(k).result("agents.tell", {"id": agent, "text": TEXT})
            return sent, res["message_id"]

        told = await asyncio.gather(*[send(k) for k in range(self.args.messages)])
        s.send_wall = time.perf_counter() - t0
        await self._collect(s, told)

    async def a2a_loop(self, s: Scenario) -> None:
        more = self._quota()
        n = len(self.agents)

        async def sender_loop(k: int) -> None:
            conn = self.conn(k)
            while more():
                t0 = time.perf_counter()
                mid = await self._agent_message(conn, k, (k + 1) % n)
                at, status = await self.ended.wait(mid)
                s.latencies.append(at - t0)
                if status != "done":
                    s.error(f"session {status}")

        await asyncio.gather(*[sender_loop(k) for k in range(n)])

    async def a2a_burst(self, s: Scenario) -> None:
        n = len(self.agents)
        t0 = time.perf_counter()

        async def send(k: int) -> tuple[float, int]:
            sent = time.perf_counter()
            return sent, await self._agent_message(self.conn(k), k % n, (k + 1) % n)

        sent = await asyncio.gather(*[send(k) for k in range(self.args.messages)])
        s.send_wall = time.perf_counter() - t0
        await self._collect(s, sent)

    async def _agent_message(self, conn: AsyncConn, sender: int, target: int) -> int:
        res = await conn.result(
            "tools.run",
            {
                "name": "agent_message",
                "agent": self.agents[sender],
                "args": {"to": self.agents[target], "text": TEXT},
            },
        )
        if not res["ok"]:
            raise DaemonError(f"agent_message: {res['error_kind']}: {res['error']}")
        mid: int = res["result"]["message_id"]
        return mid

    async def _collect(self, s: Scenario, sent: list[tuple[float, int]]) -> None:
        """Wait for every message's session.ended; latency = sent -> ended seen."""
        for t0, mid in sent:
            at, status = await self.ended.wait(mid)
            s.latencies.append(at - t0)
            if status != "done":
                s.error(f"session {status}")


SCENARIO_HEADER = (
    f"{'scenario':<27} {'msgs':>6} {'wall s':>7} {'msgs/s':>7} {'p50 ms':>8} "
    f"{'p95 ms':>8} {'p99 ms':>8} {'sent s':>7} {'errors':>6} "
    f"{'daemon CPU':>10} {'CPU ms/msg':>10} {'bench CPU':>9} {'jobs/msg':>8} "
    f"{'jobs/commit':>11}"
)


def scenario_row(s: Scenario) -> str:
    lat = s.latencies
    n = len(lat)
    sent = f"{s.send_wall:.2f}" if s.send_wall is not None else "-"
    per_commit = f"{s.jobs / s.batches:.1f}" if s.batches else "-"
    return (
        f"{s.name:<27} {n:>6} {s.wall:>7.2f} {s.rate:>7.0f} "
        f"{statistics.median(lat) * 1e3:>8.1f} {pct(lat, 95) * 1e3:>8.1f} "
        f"{pct(lat, 99) * 1e3:>8.1f} {sent:>7} {s.errors:>6} "
        f"{s.daemon_cpu / s.wall * 100:>9.0f}% {s.daemon_cpu / n * 1e3:>10.2f} "
        f"{s.bench_cpu / s.wall * 100:>8.0f}% {s.jobs / n:>8.1f} {per_commit:>11}"
    )


async def talk(d: BenchDaemon, args: argparse.Namespace) -> list[Scenario]:
    results = []
    async with Talk(d, args) as t:
        print(
            f"warm-up : {WARM_ROUNDS} messages per agent, all agents at once (the first pays "
            f"the daemon's litellm import): {await t.warm_up():.2f}s"
        )
        rss = rss_kib(d.pid)
        print(f"RSS     : {mib(rss)} after the warm-up ({threads(d.pid)} threads)")
        print()
        print(SCENARIO_HEADER)
        print("-" * len(SCENARIO_HEADER))
        for name, body in (
            ("tell, 1 in flight/agent", t.tell_loop),
            ("tell, all at once", t.tell_burst),
            ("agent->agent, 1 in flight", t.a2a_loop),
            ("agent->agent, all at once", t.a2a_burst),
        ):
            s = await t.measure(name, body)
            results.append(s)
            print(scenario_row(s), flush=True)
        if t.ended.lagged:
            raise DaemonError(f"the event subscription lagged ({t.ended.lagged} missed)")
        await asyncio.sleep(SETTLE)  # a reply routed back would start a session by now
        sessions = t.ended.counts.get("session.ended", 0)
        guards = t.ended.counts.get("guard.conversation", 0)
        expected = args.talkers * WARM_ROUNDS + 4 * args.messages
        print(
            f"sessions: {sessions} ended in all ({expected} expected: warm-up + 4 x "
            f"{args.messages}); {guards} guard.conversation events ({2 * args.messages} "
            "expected: each agent message's reply stopped at max_hops = 1)"
        )
    return results


def talkers(args: argparse.Namespace, summary: dict[str, str]) -> list[str]:
    with BenchDaemon(config=TALK_CONFIG) as d:
        info = d.call("daemon.info")
        model = info["models"]["aliases"].get("local")
        print(
            f"daemon  : pid {d.pid}, ready in {d.ready_s:.3f}s, home {d.home}; config "
            f"max_hops = 1; model local = {model}"
        )
        calls = [
            ("agents.spawn", {"id": talker_id(i), "guards": {"history_tokens": 0}})
            for i in range(args.talkers)
        ]
        asyncio.run(pipelined(d.socket, calls, args.connections))
        print(
            f"agents  : {args.talkers} talkers, history_tokens = 0; "
            f"{args.connections} connections; {args.messages} messages per scenario"
        )
        results = asyncio.run(talk(d, args))
        info = d.call("daemon.info")
        writer = info["database"]["writer"]
        print(
            "  latency: tell sent -> messages.wait answered (1 in flight), or -> the "
            "session.ended event seen (the others); sent s: until every send was answered"
        )
        print(
            "  daemon CPU: its utime+stime (all threads, /proc) in % of one core; "
            "bench CPU: this process (all clients); jobs: the store writer's"
        )
        print(
            f"daemon at the end: {info['agents']['total']} agents, {info['events']['count']} "
            f"events, RSS {mib(rss_kib(d.pid))}, writer failures {writer['failures']}"
        )
        for s in results:
            if s.first_error:
                print(f"first error in {s.name}: {s.first_error}")
        by = {s.name: s for s in results}
        loop, burst = by["tell, 1 in flight/agent"], by["tell, all at once"]
        summary["tell -> reply"] = (
            f"{loop.rate:.0f} msgs/s, {p50_p95(loop.latencies)} "
            f"(1 in flight/agent); {burst.rate:.0f} msgs/s all at once"
        )
        loop, burst = by["agent->agent, 1 in flight"], by["agent->agent, all at once"]
        summary["agent -> agent"] = (
            f"{loop.rate:.0f} msgs/s, {p50_p95(loop.latencies)} "
            f"(1 in flight/sender); {burst.rate:.0f} msgs/s all at once"
        )
        problems = d.log_problems()
    print(f"daemon stopped (exit code {d.exit_code}); temp home removed")
    return problems


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    t0 = time.perf_counter()
    print(
        f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    summary: dict[str, str] = {}
    with section(f"1. idle fleet: {args.idle} agents"):
        problems = idle_fleet(args, summary)
    print_problems(problems)
    with section(f"2. talkers: {args.talkers} agents on mock/echo"):
        problems = talkers(args, summary)
    print_problems(problems)
    with section("summary"):
        for label, text in summary.items():
            print(f"{label:<27}: {text}")
        print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    run(main)
