"""10,000 cron entries across 1,000 agents: fire lateness, idle CPU and RSS.

Starts a daemon in a temp home with the default config (the offline
`mock/echo` model, `guards.max_concurrent_sessions` = 3), spawns `--agents`
agents over RPC and gives each `--per-agent` cron entries, then:

1. set-up: agents.spawn/s and cron.add/s from `--clients` parallel clients,
   RSS per agent and per schedule, and READY=1 after a restart with the
   agents only. These first entries are yearly (`0 0 1 1 *`): none is due.
2. idle, before: the daemon's CPU (% of one core, utime+stime from /proc),
   wake-ups (context switches of all its threads) and RSS over
   `--idle-seconds`, with every agent and schedule loaded and nothing due;
   litellm is not imported yet. Then `agents.list` (what `legion ps` calls)
   is timed with the schedules loaded.
3. restart: SIGTERM, then the time to READY=1 with agents and schedules
   (every entry is re-armed before READY=1).
4. fire window: the yearly entries are removed; after one warm-up session
   (litellm's import), entries are added that fire every `--period` seconds
   (default 300) *only inside* a window of `--seconds` that starts once the
   adds are done: 6-field cron expressions listing the window's minutes and
   hours, so they need no removal and fire again only tomorrow. They are
   spread evenly over the period's seconds: 10,000 entries every 300 s are
   ~33 fires at every whole second (every 60 s: ~167). Each fire delivers an
   inbox message, so each also runs a short session on the mock model. With
   `--paused` the agents are paused first: fires only enqueue, and past the
   cap of 3 waiting per agent they are dropped with `trigger.dropped`.
   Reported: lateness p50/p95/p99/max from `daemon.info` and from the
   `schedule.fired` events (paged with events.list after_id), over time and
   within a burst; fire, session and drop counts; CPU and peak RSS.
5. idle, after: the sessions drain, then idle CPU and RSS once more, with
   the window's 10,000 entries still loaded (litellm now imported).
6. database size, and a restart with everything (READY=1 time).

`--seconds 0` skips steps 4 and 5.

    .venv/bin/python benchmarks/cron_scale.py [--agents 1000] [--per-agent 10]
        [--period 300] [--seconds 60] [--idle-seconds 20] [--clients 16] [--paused] [--cap N]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import (
    BenchDaemon,
    Conn,
    ctx_switches,
    interrupt_on_term,
    pct,
    print_problems,
    proc_status,
    run,
    threads,
)

YEARLY = "0 0 1 1 *"  # midnight on 1 January: never due during a run
CALL_TIMEOUT = 120.0  # socket timeout of one RPC (agents.list can take seconds here)
PAGE = 10_000  # events.list's largest page


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Cron at scale: 1,000 agents with 10 cron entries each. Set-up rates, "
        "fire lateness p50/p95/p99/max, idle CPU and RSS, database size and restart time.",
        epilog="The fire window's load is entries/period fires per second (default "
        "10,000/300 s = ~33/s), in bursts at each whole second; each fire also runs one "
        "short session on the offline mock model unless --paused. --period 60 (~167 "
        "fires/s) is more than the sessions alone can keep up with on 2 cores.",
    )
    p.add_argument(
        "--agents", type=int, default=1000, metavar="N", help="agents to spawn (default: 1000)"
    )
    p.add_argument(
        "--per-agent",
        type=int,
        default=10,
        metavar="N",
        help="cron entries per agent (default: 10)",
    )
    p.add_argument(
        "--period",
        type=int,
        default=300,
        metavar="S",
        help="seconds between two fires of one entry in the fire window: a "
        "multiple of 60 that divides 3600 (default: 300, i.e. 10,000 entries "
        "give ~33 fires/s; 60 gives ~167/s)",
    )
    p.add_argument(
        "--seconds",
        type=int,
        default=60,
        metavar="S",
        help="length of the fire window, at most 1800; 0 skips it (default: 60)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        metavar="S",
        help="length of each idle measurement (default: 20)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=16,
        metavar="N",
        help="parallel RPC clients for the set-up calls (default: 16)",
    )
    p.add_argument(
        "--paused",
        action="store_true",
        help="pause every agent before the fire window: fires only enqueue "
        "messages (no sessions) and, past the cap, are dropped",
    )
    p.add_argument(
        "--cap",
        type=int,
        default=None,
        metavar="N",
        help="set [guards] max_concurrent_sessions (default: the daemon's, 3)",
    )
    args = p.parse_args()
    if args.agents < 1 or args.per_agent < 1 or args.clients < 1 or args.clients > 100:
        p.error("--agents and --per-agent must be >= 1, --clients 1..100")
    if not 0 <= args.seconds <= 1800 or args.idle_seconds <= 0:
        p.error("--seconds must be 0..1800 and --idle-seconds > 0")
    if args.period < 60 or args.period % 60 or 3600 % args.period:
        p.error(
            "--period must be a multiple of 60 that divides 3600 (60, 120, 180, 240, "
            "300, 360, 600, 720, 900, 1200, 1800, 3600)"
        )
    if args.cap is not None and not 1 <= args.cap <= 1000:
        p.error("--cap must be 1..1000")
    return args


def window_entry(slot: int, period: int, t0: int, t1: int, now: float) -> tuple[str, int]:
    """A 6-field cron expression (second first) for the entry in `slot`: it
    fires at the epoch seconds t with t % period == slot that lie in [t0, t1),
    and at no other time in the next half hour. Returns it and its fire count.

    The planned times share their second (period is a multiple of 60), so the
    expression lists their minutes and hours: '17 41,46 9 * * *' fires at
    09:41:17 and 09:46:17 UTC, and again tomorrow. Across an hour boundary the
    cross product adds times ~30+ minutes before or after the window, never
    inside the run (the window is at most 30 minutes). An entry with no time
    in the window gets one in the past (it fires tomorrow)."""
    first = t0 + (slot - t0) % period
    times = list(range(first, t1, period))
    fires = len(times)
    if not times:
        times = [first - period * math.ceil((first - now + 60) / period)]
    dts = [datetime.fromtimestamp(t, UTC) for t in times]
    minutes = ",".join(str(m) for m in sorted({d.minute for d in dts}))
    hours = ",".join(str(h) for h in sorted({d.hour for d in dts}))
    return f"{slot % 60} {minutes} {hours} * * *", fires


def agent_id(a: int) -> str:
    return f"cron-{a:04d}"


# -- /proc ------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    return proc_status(pid, "VmRSS") / 1024


def db_bytes(home: Path) -> tuple[int, int]:
    """(legion.db, legion.db-wal) sizes in bytes."""
    sizes = []
    for name in ("legion.db", "legion.db-wal"):
        try:
            sizes.append((home / name).stat().st_size)
        except FileNotFoundError:
            sizes.append(0)
    return sizes[0], sizes[1]


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- parallel RPC calls ---------------------------------------------------------------------


@dataclass
class Batch:
    name: str
    calls: int
    clients: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    results: list[Any] = field(default_factory=list)
    daemon_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0


def parallel(
    d: BenchDaemon, name: str, calls: list[tuple[str, dict[str, Any]]], clients: int
) -> Batch:
    """Run `calls` over `clients` connections, each a thread doing one round
    trip at a time (client k takes calls k, k+clients, ...)."""
    clients = max(1, min(clients, len(calls)))
    b = Batch(name, len(calls), clients, results=[None] * len(calls))
    lats: list[list[float]] = [[] for _ in range(clients)]
    errs: list[list[str]] = [[] for _ in range(clients)]
    crashed: list[BaseException] = []
    conns: list[Conn] = []
    ths: list[threading.Thread] = []
    barrier = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        conn = conns[k]
        perf = time.perf_counter
        try:
            barrier.wait()
            for idx in range(k, len(calls), clients):
                method, params = calls[idx]
                t0 = perf()
                reply = conn.call(method, params)
                lats[k].append(perf() - t0)
                if "error" in reply:
                    errs[k].append(f"{method}: {reply['error'].get('message')}")
                else:
                    b.results[idx] = reply["result"]
        except BaseException as exc:  # reported by the main thread
            crashed.append(exc)

    try:
        conns = [Conn(d.socket, timeout=CALL_TIMEOUT) for _ in range(clients)]
        for c in conns:
            c.call("daemon.ping", None)
        ths = [
            threading.Thread(target=worker, args=(k,), daemon=True, name=f"client-{k}")
            for k in range(clients)
        ]
        for t in ths:
            t.start()
        cpu0 = d.cpu_seconds()
        t0 = time.perf_counter()
        barrier.wait()
        for t in ths:
            t.join()
        b.elapsed = time.perf_counter() - t0
        b.daemon_cpu = d.cpu_seconds() - cpu0
    finally:
        barrier.abort()
        for c in conns:
            c.close()
        for t in ths:
            t.join(timeout=5)
    if crashed:
        raise RuntimeError(f"{name}: a client failed: {crashed[0]!r}") from crashed[0]
    for k in range(clients):
        b.latencies += lats[k]
        b.errors += len(errs[k])
        if errs[k] and not b.first_error:
            b.first_error = errs[k][0]
    return b


BATCH_HEADER = (
    f"{'step':<34} {'calls':>6} {'clients':>7} {'wall s':>7} {'calls/s':>8} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'daemon CPU':>10} {'errors':>6}"
)


def batch_row(b: Batch) -> str:
    p50 = statistics.median(b.latencies) * 1e3 if b.latencies else math.nan
    p99 = pct(b.latencies, 99) * 1e3 if b.latencies else math.nan
    cpu = b.daemon_cpu / b.elapsed * 100 if b.elapsed else 0.0
    return (
        f"{b.name:<34} {b.calls:>6} {b.clients:>7} {b.elapsed:>7.2f} {b.rate:>8.0f} "
        f"{p50:>7.2f} {p99:>7.2f} {cpu:>9.0f}% {b.errors:>6}"
    )


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Idle:
    name: str
    seconds: float
    cpu_pct: float
    wakeups: float
    rss: float
    threads: int
    jobs: int
    agents: int


def measure_idle(d: BenchDaemon, name: str, seconds: float, settle: float = 2.0) -> Idle:
    time.sleep(settle)
    pid = d.pid
    cpu0, ctx0, t0 = d.cpu_seconds(), ctx_switches(pid), time.perf_counter()
    time.sleep(seconds)
    cpu1, ctx1, t1 = d.cpu_seconds(), ctx_switches(pid), time.perf_counter()
    rss, nthreads = rss_mb(pid), threads(pid)
    info = d.call("daemon.info")
    return Idle(
        name,
        t1 - t0,
        (cpu1 - cpu0) / (t1 - t0) * 100,
        (ctx1 - ctx0) / (t1 - t0),
        rss,
        nthreads,
        info["schedules"]["jobs"],
        info["agents"]["total"],
    )


IDLE_HEADER = (
    f"{'phase':<44} {'seconds':>7} {'CPU %':>6} {'wakeups/s':>9} {'RSS MB':>7} "
    f"{'threads':>7} {'agents':>6} {'schedules':>9}"
)


def idle_row(i: Idle) -> str:
    return (
        f"{i.name:<44} {i.seconds:>7.1f} {i.cpu_pct:>6.2f} {i.wakeups:>9.1f} {i.rss:>7.1f} "
        f"{i.threads:>7} {i.agents:>6} {i.jobs:>9}"
    )


def fetch_events(d: BenchDaemon, kinds: list[str], after_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = after_id
    while True:
        page = d.call("events.list", {"kinds": kinds, "after_id": cursor, "limit": PAGE})
        out += page
        if len(page) < PAGE:
            return out
        cursor = page[-1]["id"]


def wait_drained(d: BenchDaemon, end: float, timeout: float = 120.0) -> float:
    """Wait until the sessions stop: `sessions.run` of daemon.info unchanged
    for 2 s. (Not agents.list: with 10,000 schedules it blocks the daemon for
    most of a second.) Returns when the count last moved, in seconds after
    `end` (a perf_counter time: the window's end)."""
    t0 = time.perf_counter()
    last, since = -1, end
    while time.perf_counter() - t0 < timeout:
        ran = d.call("daemon.info")["sessions"]["run"]
        if ran != last:
            if last >= 0:
                since = time.perf_counter()
            last = ran
        elif time.perf_counter() - max(since, t0) >= 2.0:
            return since - end
        time.sleep(0.25)
    print(f"  (sessions still running after {timeout:g}s; going on)")
    return time.perf_counter() - end


def stats_row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<44} {0:>7} {'-':>8} {'-':>8} {'-':>8} {'-':>9}"
    return (
        f"{name:<44} {len(values):>7} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f} "
        f"{pct(values, 99):>8.1f} {max(values):>9.1f}"
    )


STATS_HEADER = f"{'lateness, ms':<44} {'fires':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>9}"


@contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    yield
    sys.stdout.flush()


# -- the run -----------------------------------------------------------------------------------


def yearly_calls(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "cron.add",
            {"agent": agent_id(a), "cron": YEARLY, "prompt": f"yearly entry {i}", "missed": "skip"},
        )
        for i in range(args.per_agent)
        for a in range(args.agents)
    ]


def window_calls(
    args: argparse.Namespace, t0: int, t1: int
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Entry i of agent a sits in slot (a + i * period / per_agent) % period:
    an agent's entries are spread over the period, and the slots hold
    entries / period entries each. Returns the calls and the planned fires."""
    calls, planned, now = [], 0, time.time()
    for i in range(args.per_agent):
        for a in range(args.agents):
            slot = (a + i * args.period // args.per_agent) % args.period
            spec, fires = window_entry(slot, args.period, t0, t1, now)
            planned += fires
            # missed=skip: a restart must not deliver late runs of these.
            calls.append(
                (
                    "cron.add",
                    {
                        "agent": agent_id(a),
                        "cron": spec,
                        "prompt": f"scale test, entry {i}",
                        "missed": "skip",
                    },
                )
            )
    return calls, planned


def remove_calls(added: Batch) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("cron.remove", {"agent": r["agent"], "schedule": r["schedule"]})
        for r in added.results
        if r is not None
    ]


def fire_window(
    d: BenchDaemon, args: argparse.Namespace, report: list[Batch], yearly: Batch
) -> dict[str, Any]:
    """Step 4: replace the yearly entries by entries that fire in the window only."""
    out: dict[str, Any] = {}

    def step(b: Batch) -> Batch:
        report.append(b)
        print(batch_row(b), flush=True)
        return b

    step(parallel(d, "cron.remove (yearly)", remove_calls(yearly), args.clients))
    if args.paused:
        step(
            parallel(
                d,
                "agents.pause",
                [("agents.pause", {"id": agent_id(a)}) for a in range(args.agents)],
                args.clients,
            )
        )
    else:
        # The first session imports litellm (~2 s on the event loop): pay it now.
        t = time.perf_counter()
        told = d.call("agents.tell", {"id": agent_id(0), "text": "warm-up"})
        done = d.call("messages.wait", {"message_id": told["message_id"], "timeout": 60})
        print(
            f"{'warm-up: 1 session (imports litellm)':<34} {time.perf_counter() - t:>23.2f}s "
            f"  status {done['status']}",
            flush=True,
        )

    # The window starts once the adds are surely done (1.5x the yearly adds'
    # time, + 3 s), at a whole second: fires are planned at whole seconds.
    start_epoch = math.ceil(time.time() + yearly.elapsed * 1.5 + 3)
    end_epoch = start_epoch + args.seconds
    calls, planned = window_calls(args, start_epoch, end_epoch)
    before = d.call("daemon.info")
    step(parallel(d, "cron.add (window entries, not due)", calls, args.clients))
    lead = start_epoch - time.time()
    if lead < 0:
        print(
            f"  (the adds ended {-lead:.1f}s into the window: fires planned before each "
            "add was done are not made)"
        )
    time.sleep(max(0.0, lead))
    pid = d.pid
    info0 = d.call("daemon.info")
    cpu0, ctx0, t0 = d.cpu_seconds(), ctx_switches(pid), time.perf_counter()
    peak = rss_mb(pid)
    while time.time() < end_epoch:
        time.sleep(min(1.0, max(0.0, end_epoch - time.time())))
        peak = max(peak, rss_mb(pid))
    cpu1, ctx1, t1 = d.cpu_seconds(), ctx_switches(pid), time.perf_counter()
    info1 = d.call("daemon.info")
    # Fires planned at the window's end may still be in hand: wait until the
    # fire count stops moving (the entries fire no more after the window).
    fired_n, since = info1["schedules"]["fired"], time.perf_counter()
    while time.perf_counter() - since < 1.0 and time.perf_counter() - t1 < 60:
        time.sleep(0.2)
        n = d.call("daemon.info")["schedules"]["fired"]
        if n != fired_n:
            fired_n, since = n, time.perf_counter()
    info2 = d.call("daemon.info")
    out["window_s"] = t1 - t0
    out["cpu_pct"] = (cpu1 - cpu0) / (t1 - t0) * 100
    out["wakeups"] = (ctx1 - ctx0) / (t1 - t0)
    out["peak_rss"] = peak
    out["rss_end"] = rss_mb(pid)
    out["sessions"] = info1["sessions"]["run"] - info0["sessions"]["run"]
    out["daemon_stats"] = info2["schedules"]
    out["fired_total"] = info2["schedules"]["fired"] - before["schedules"]["fired"]

    start = datetime.fromtimestamp(start_epoch, UTC)
    first_id = before["events"]["last_id"] or 0
    out["fired"] = fetch_events(d, ["schedule.fired"], first_id)
    out["dropped"] = len(fetch_events(d, ["trigger.dropped"], first_id))
    out["expected"] = planned
    out["start"] = start
    out["slots"] = end_epoch - start_epoch
    out["drained_s"] = wait_drained(d, t1)
    out["sessions_all"] = d.call("daemon.info")["sessions"]["run"] - info0["sessions"]["run"]
    return out


def print_fire_window(args: argparse.Namespace, w: dict[str, Any]) -> None:
    fired = w["fired"]
    handler = [e["data"]["lateness_ms"] for e in fired]
    commit = [
        (parse_ts(e["ts"]) - parse_ts(e["data"]["planned"])).total_seconds() * 1e3 for e in fired
    ]
    delivered = sum(1 for e in fired if e["data"]["delivered"])
    secs = w["slots"]
    n = args.agents * args.per_agent
    print(
        f"window  : {secs} s from {w['start']:%H:%M:%S}Z; {n} entries, each every "
        f"{args.period}s = {n / args.period:.1f} fires/s planned, in bursts at whole seconds"
    )
    print(
        f"fires   : {len(fired)} of {w['expected']} planned ({len(fired) / secs:.1f}/s); "
        f"{delivered} delivered to an inbox, {len(fired) - delivered} dropped by the cap "
        f"({w['dropped']} trigger.dropped events)"
    )
    if args.paused:
        print("sessions: none (agents paused)")
    else:
        rate = w["sessions"] / w["window_s"]
        print(
            f"sessions: {w['sessions']} ran during the window ({rate:.1f}/s); "
            f"{w['sessions_all']} in all; the last ended <= {w['drained_s']:.1f}s after the "
            "window"
        )
    print(
        f"daemon  : CPU {w['cpu_pct']:.0f}% of one core over the window, "
        f"{w['wakeups']:.0f} wakeups/s; RSS peak "
        f"{w['peak_rss']:.1f} MB, {w['rss_end']:.1f} MB at its end"
    )
    print()
    print(STATS_HEADER)
    print("-" * len(STATS_HEADER))
    ds = w["daemon_stats"]
    lat = ds["lateness_ms"]
    n_d = min(ds["fired"], 10_000)

    def fmt(v: float | None) -> str:
        return f"{v:>8.1f}" if v is not None else f"{'-':>8}"

    print(
        f"{'daemon.info (its last ' + str(n_d) + ' fires)':<44} {n_d:>7} {fmt(lat['p50'])} "
        f"{'-':>8} {fmt(lat['p99'])} {fmt(lat['max']):>9}"
    )
    print(stats_row("schedule.fired lateness_ms (in window)", handler))
    print(stats_row("planned -> event committed (ts, 1 ms res.)", commit))
    # Drift: does lateness grow over the window (overload) or stay flat?
    slices = min(6, secs)
    edges = [round(k * secs / slices) for k in range(slices + 1)]
    print()
    print(f"{'slice of the window':<44} {'fires':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>9}")
    for lo, hi in itertools.pairwise(edges):
        vals = [
            e["data"]["lateness_ms"]
            for e in fired
            if lo <= (parse_ts(e["data"]["planned"]) - w["start"]).total_seconds() < hi
        ]
        print(stats_row(f"  {lo:>3}-{hi:>3} s", vals))
    # Within a burst: lateness grows with the fire's rank in its second.
    by_slot: dict[str, list[float]] = {}
    for e in fired:
        by_slot.setdefault(e["data"]["planned"], []).append(e["data"]["lateness_ms"])
    firsts = [min(v) for v in by_slot.values()]
    lasts = [max(v) for v in by_slot.values()]
    sizes = [len(v) for v in by_slot.values()]
    if sizes:
        print(
            f"per burst: {statistics.mean(sizes):.0f} fires on average; its first fire "
            f"p50 {pct(firsts, 50):.1f} ms, its last p50 {pct(lasts, 50):.1f} ms "
            f"(max {max(lasts):.1f} ms)"
        )


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    n = args.agents * args.per_agent
    config = f"[guards]\nmax_concurrent_sessions = {args.cap}\n" if args.cap else None
    report: list[Batch] = []
    idles: list[Idle] = []

    def step(b: Batch) -> Batch:
        report.append(b)
        print(batch_row(b), flush=True)
        return b

    with BenchDaemon(config=config) as d:
        d.ready_timeout = 120.0
        assert d.home is not None
        info = d.call("daemon.info")
        db = info["database"]
        empty_ready = d.ready_s or 0.0
        print(f"daemon  : pid {d.pid}, READY=1 in {empty_ready:.2f}s (empty home), home {d.home}")
        print(
            f"store   : {db['driver']} sqlite {db['sqlite_version']}, "
            f"synchronous={db['synchronous']}"
        )
        print(f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print(
            f"setup   : {args.agents} agents x {args.per_agent} entries = {n} schedules; "
            f"model local = {info['models']['aliases'].get('local')}; "
            f"max_concurrent_sessions {args.cap or 3}; {args.clients} clients for set-up"
        )
        time.sleep(1.0)
        rss_empty = rss_mb(d.pid)

        with section("1. set-up"):
            print(BATCH_HEADER)
            print("-" * len(BATCH_HEADER))
            step(
                parallel(
                    d,
                    "agents.spawn",
                    [("agents.spawn", {"id": agent_id(a)}) for a in range(args.agents)],
                    args.clients,
                )
            )
            time.sleep(1.0)
            rss_agents = rss_mb(d.pid)
            stop_s = d.restart()
            ready_agents = d.ready_s or 0.0
            print(f"{'restart, agents only: READY=1 in':<34} {ready_agents:>23.2f}s")
            yearly = step(
                parallel(d, "cron.add (yearly, none due)", yearly_calls(args), args.clients)
            )
            time.sleep(1.0)
            rss_sched = rss_mb(d.pid)
            main_b, wal_b = db_bytes(d.home)
            print()
            print(f"database: legion.db {main_b / 2**20:.1f} MB + WAL {wal_b / 2**20:.1f} MB")
            print(
                f"RSS     : {rss_empty:.1f} MB empty -> {rss_agents:.1f} MB with "
                f"{args.agents} agents ({(rss_agents - rss_empty) * 1024 / args.agents:.1f} "
                f"KB/agent) -> {rss_sched:.1f} MB with {n} schedules "
                f"({(rss_sched - rss_agents) * 2**20 / n:.0f} B/schedule)"
            )

        with section("2. idle, nothing due (litellm not imported yet)"):
            idles.append(
                measure_idle(
                    d, f"before: {args.agents} agents, {n} yearly entries", args.idle_seconds
                )
            )
            print(IDLE_HEADER)
            print("-" * len(IDLE_HEADER))
            print(idle_row(idles[-1]), flush=True)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                listed = d.call("agents.list", {})
                times.append(time.perf_counter() - t0)
            print(
                f"\nagents.list (`legion ps`), {len(listed)} agents, {n} schedules loaded: "
                f"{statistics.median(times) * 1e3:.0f} ms (median of 3)"
            )

        with section("3. restart with the agents and the yearly entries"):
            stop_s = d.restart()
            info = d.call("daemon.info")
            print(
                f"restart : stop (SIGTERM -> exit) {stop_s:.2f}s, READY=1 in {d.ready_s:.2f}s "
                f"(empty home: {empty_ready:.2f}s, agents only: {ready_agents:.2f}s); "
                f"{info['agents']['total']} agents, "
                f"{info['schedules']['jobs']} schedules armed; RSS {rss_mb(d.pid):.1f} MB"
            )

        window = None
        if args.seconds > 0:
            mode = "agents paused" if args.paused else "agents running"
            with section(f"4. fire window ({mode})"):
                print(BATCH_HEADER)
                print("-" * len(BATCH_HEADER))
                window = fire_window(d, args, report, yearly)
                print()
                print_fire_window(args, window)

            with section("5. idle again: the window's entries stay, none due for ~23 h"):
                idles.append(
                    measure_idle(
                        d,
                        f"after: {args.agents} agents"
                        + (" (paused)" if args.paused else "")
                        + f", {n} entries",
                        args.idle_seconds,
                    )
                )
                print(IDLE_HEADER)
                print("-" * len(IDLE_HEADER))
                for i in idles:
                    print(idle_row(i))

        with section("6. database, and a restart with everything"):
            info = d.call("daemon.info")
            main_b, wal_b = db_bytes(d.home)
            print(
                f"database: legion.db {main_b / 2**20:.1f} MB + WAL {wal_b / 2**20:.1f} MB; "
                f"{info['events']['count']} events; {info['schedules']['jobs']} schedules"
            )
            stop_s = d.restart()
            info = d.call("daemon.info")
            print(
                f"restart : stop {stop_s:.2f}s, READY=1 in {d.ready_s:.2f}s (empty home: "
                f"{empty_ready:.2f}s) with {info['agents']['total']} agents and "
                f"{info['schedules']['jobs']} schedules armed; RSS {rss_mb(d.pid):.1f} MB"
            )
            main_b, wal_b = db_bytes(d.home)
            print(
                f"database: after the restart legion.db {main_b / 2**20:.1f} MB + WAL "
                f"{wal_b / 2**20:.1f} MB"
            )
        errors = [b for b in report if b.errors]
        problems = d.log_problems()
    print(f"\ndaemon stopped (exit code {d.exit_code}); temp home removed")
    for b in errors:
        print(f"{b.name}: {b.errors} errors, first: {b.first_error}")
    print_problems(problems)
    return 0


if __name__ == "__main__":
    run(main)
