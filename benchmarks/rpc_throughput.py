"""JSON-RPC round trips per second against a live daemon.

Starts a daemon in a temp home and drives it from this process: each client
is a thread with its own Unix-socket connection (a blocking socket) doing
strictly sequential request -> response round trips (no pipelining), so N
clients means at most N requests in flight. Blocking sockets are used
because, for one client, an asyncio client's own loop overhead cost ~20% of
the measured rate; with 16 clients threads, processes and asyncio all gave
the same figure within 3% (the daemon is the bottleneck there).

For every scenario it reports the total requests per second over all
clients, the p50/p99 round-trip latency of single requests, and how much CPU
the daemon and this benchmark process used, in % of one core (on a small
machine the clients share the cores with the daemon; a benchmark process
near 100% means the figure is bounded by the client, not the daemon).

Scenarios (each `--seconds` long, with 1 and with 16 clients by default):

  daemon.ping          a method that touches nothing: the RPC layer's floor
  agents.list          with `--agents` (100) agents in the daemon
  spawn+pause+resume   the write path: each client loops agents.spawn (a new
                       id), agents.pause, agents.resume; each is a committed
                       transaction with an event. "jobs/commit" is the
                       writer's jobs per transaction (group commit) during
                       the scenario.

    .venv/bin/python benchmarks/rpc_throughput.py [--seconds 3] [--clients 1,16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import BenchDaemon, Conn, interrupt_on_term, pct, print_problems, run

# (client index, request number on that client) -> (method, params)
CALL_TIMEOUT = 30.0
RequestFn = Callable[[int, int], tuple[str, dict[str, Any] | None]]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="RPC round trips per second (and p50/p99 latency) for daemon.ping, "
        "agents.list and the spawn/pause/resume write path, with 1 and 16 clients."
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="duration of each scenario (default: 3)",
    )
    p.add_argument(
        "--clients",
        default="1,16",
        metavar="N,M",
        help="comma-separated client counts to run each scenario with (default: 1,16)",
    )
    p.add_argument(
        "--agents",
        type=int,
        default=100,
        metavar="N",
        help="agents present for the agents.list scenario (default: 100)",
    )
    args = p.parse_args()
    try:
        args.client_counts = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        p.error("--clients takes comma-separated integers, e.g. 1,16")
    if not args.client_counts or min(args.client_counts) < 1 or max(args.client_counts) > 100:
        p.error("--clients: each count must be between 1 and 100")
    if args.seconds <= 0 or args.agents < 0:
        p.error("--seconds must be > 0 and --agents >= 0")
    return args


@dataclass
class Result:
    name: str
    clients: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    daemon_cpu: float = 0.0
    client_cpu: float = 0.0
    writer_jobs: int = 0
    writer_batches: int = 0
    cycles: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


@dataclass
class ClientState:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    cycles: int = 0
    crashed: BaseException | None = None


@dataclass
class Gate:
    """What the main thread shares with its client threads."""

    barrier: threading.Barrier
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0  # set just before the barrier opens


def client_loop(conn: Conn, st: ClientState, i: int, request: RequestFn, gate: Gate) -> None:
    perf = time.perf_counter
    n = 0
    try:
        gate.barrier.wait()
        while perf() < gate.deadline and not gate.stop.is_set():
            method, params = request(i, n)
            t0 = perf()
            reply = conn.call(method, params)
            st.latencies.append(perf() - t0)
            n += 1
            if "error" in reply:
                st.errors += 1
                if not st.first_error:
                    st.first_error = f"{method}: {reply['error'].get('message')}"
            elif method == "agents.resume":
                st.cycles += 1
    except BaseException as exc:  # reported by the main thread
        st.crashed = exc


def run_scenario(
    d: BenchDaemon,
    name: str,
    clients: int,
    seconds: float,
    request: RequestFn,
    *,
    writes: bool = False,
) -> Result:
    res = Result(name, clients)
    conns: list[Conn] = []
    threads: list[threading.Thread] = []
    gate = Gate(threading.Barrier(clients + 1))
    try:
        conns = [Conn(d.socket) for _ in range(clients)]
        # Warm every connection (the daemon's per-connection setup is not the
        # subject here), then release all clients together.
        for c in conns:
            c.call("daemon.ping", None)
        before = d.call("daemon.info")["database"]["writer"] if writes else None
        states = [ClientState() for _ in range(clients)]
        threads = [
            threading.Thread(
                target=client_loop,
                args=(conns[i], states[i], i, request, gate),
                daemon=True,
                name=f"client-{i}",
            )
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        cpu0, dcpu0 = time.process_time(), d.cpu_seconds()
        t0 = time.perf_counter()
        gate.deadline = t0 + seconds
        gate.barrier.wait()
        for t in threads:
            t.join()
        res.elapsed = time.perf_counter() - t0
        res.client_cpu = time.process_time() - cpu0
        res.daemon_cpu = d.cpu_seconds() - dcpu0
        for st in states:
            if st.crashed is not None:
                raise RuntimeError(f"{name}: a client failed: {st.crashed!r}") from st.crashed
            res.latencies += st.latencies
            res.errors += st.errors
            res.cycles += st.cycles
            res.first_error = res.first_error or st.first_error
        if before is not None:
            after = d.call("daemon.info")["database"]["writer"]
            res.writer_jobs = after["jobs"] - before["jobs"]
            res.writer_batches = after["batches"] - before["batches"]
    finally:
        gate.stop.set()
        gate.barrier.abort()
        for c in conns:
            c.close()
        for t in threads:
            t.join(timeout=5)
    return res


def row(r: Result) -> str:
    p50 = statistics.median(r.latencies) * 1e3 if r.latencies else float("nan")
    p99 = pct(r.latencies, 99) * 1e3 if r.latencies else float("nan")
    dcpu = r.daemon_cpu / r.elapsed * 100 if r.elapsed else 0.0
    ccpu = r.client_cpu / r.elapsed * 100 if r.elapsed else 0.0
    batch = f"{r.writer_jobs / r.writer_batches:.1f}" if r.writer_batches else "-"
    return (
        f"{r.name:<20} {r.clients:>7} {r.requests:>9} {r.rate:>9.0f} {p50:>8.3f} "
        f"{p99:>8.3f} {r.errors:>6} {dcpu:>9.0f}% {ccpu:>9.0f}% {batch:>11}"
    )


HEADER = (
    f"{'scenario':<20} {'clients':>7} {'requests':>9} {'req/s':>9} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'errors':>6} {'daemon CPU':>10} {'bench CPU':>10} "
    f"{'jobs/commit':>11}"
)


def bench(d: BenchDaemon, args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []

    def report(r: Result) -> None:
        results.append(r)
        print(row(r), flush=True)

    print(HEADER)
    print("-" * len(HEADER))
    for n in args.client_counts:
        report(run_scenario(d, "daemon.ping", n, args.seconds, lambda i, k: ("daemon.ping", None)))

    d.spawn_agents(args.agents, prefix="list")
    listed = d.call("agents.list")
    if len(listed) != args.agents:
        raise SystemExit(f"expected {args.agents} agents, agents.list returned {len(listed)}")
    for n in args.client_counts:
        report(
            run_scenario(
                d, f"agents.list ({args.agents})", n, args.seconds, lambda i, k: ("agents.list", {})
            )
        )

    for n in args.client_counts:
        tag = f"w{n}"

        def write(i: int, k: int, tag: str = tag) -> tuple[str, dict[str, Any]]:
            agent = f"{tag}-{i}-{k // 3}"
            step = k % 3
            if step == 0:
                return "agents.spawn", {"id": agent}
            return ("agents.pause" if step == 1 else "agents.resume"), {"id": agent}

        report(run_scenario(d, "spawn+pause+resume", n, args.seconds, write, writes=True))
    return results


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    with BenchDaemon() as d:
        info = d.call("daemon.info")
        db = info["database"]
        print(
            f"daemon  : pid {d.pid}, ready in {d.ready_s:.3f}s (READY=1 via NOTIFY_SOCKET), "
            f"home {d.home}"
        )
        print(
            f"store   : {db['driver']} sqlite {db['sqlite_version']}, "
            f"synchronous={db['synchronous']}"
        )
        print(
            f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
            f"{args.seconds:g}s per scenario; clients {args.client_counts}; "
            f"each client = 1 connection, 1 request in flight"
        )
        print()
        results = bench(d, args)

        print()
        for r in results:
            if r.first_error:
                print(f"first error in {r.name} x{r.clients}: {r.first_error}")
            if r.writer_batches:
                print(
                    f"{r.name} x{r.clients}: {r.rate:.0f} writes/s = {r.cycles / r.elapsed:.0f} "
                    f"spawn+pause+resume cycles/s; writer committed {r.writer_jobs} jobs in "
                    f"{r.writer_batches} transactions"
                )
        end = d.call("daemon.info")
        writer = end["database"]["writer"]
        print(
            f"daemon at the end: {end['agents']['total']} agents, {end['events']['count']} "
            f"events, writer largest batch {writer['largest_batch']}, "
            f"failures {writer['failures']}"
        )
        problems = d.log_problems()
    print(f"daemon stopped (exit code {d.exit_code}); temp home removed")
    print_problems(problems)
    return 0


if __name__ == "__main__":
    run(main)
