"""Daemon overhead per session turn, against a bare `litellm.acompletion`.

An "instant" model is the offline `mock/echo`: it streams its reply through
litellm's real code path (a registered custom provider) without any network
or sleep, so what a turn costs is the software around it. The script
measures, on this machine:

1. **bare**: `litellm.acompletion(model="mock/echo", messages=[system, user],
   tools=<the kernel tool schemas>, stream=True,
   stream_options={"include_usage": True})`, fully consumed, in this process,
   after warm-up. litellm is imported and the `mock` provider registered by
   `legion.daemon.llm.client.litellm_module()`, as the daemon does. One call at
   a time, and N calls at once (`asyncio.gather` in batches of N).
2. **daemon**: a daemon in a temp home, N agents (default 1 and 50); one
   unmeasured first message (it pays the daemon's lazy litellm import); then
   N client threads, each on its own connection, loop `agents.tell` +
   `messages.wait` to their own agent, after 3 unmeasured turns each. A turn
   is one tell+wait: one session, one model call. The agents are spawned with
   `history_tokens = 0` (and no daily token limit), so every call carries
   exactly the bare call's messages (system + user); one more row runs a
   single agent with the default history budget. From the daemon's events
   it also splits each session into its phases.
3. **prompt bytes**: what a minimal agent (no system prompt of its own)
   sends per turn: the system message (Legion's protocol text) and the tool
   schemas, taken from the real code path: an agent on a scripted model
   (`mock/script`), whose `<script>.toml.log` records the exact messages of
   each call.

    .venv/bin/python benchmarks/session_overhead.py [--seconds 4 | --turns N] [--agents 1,50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import BenchDaemon, DaemonError, interrupt_on_term, pct, print_problems, run
from _daemon import Conn as BaseConn

from legion.config import GuardsConfig

CALL_TIMEOUT = 60.0  # socket timeout of one RPC
# messages.wait's own timeout. Short on purpose: when a wait misses its
# wake-up (see `Turn.late`), the daemon answers only when this runs out, and
# a message still running after it is simply waited for again.
WAIT_TIMEOUT = 1.0
# A reply that reaches us this long after the message was done (its done_at)
# came by the timeout path: the wait missed the session's end.
LATE_AFTER = 0.5
TEXT = "What time is it in Paris?"
WARMUP_CALLS = 30
# Unmeasured turns each client makes, all clients at once, before a scenario's
# clock starts: it grows the daemon's thread pools (litellm runs parts of each
# call on the default executor and on anyio's workers) to the concurrency.
WARM_TURNS = 3
# Agent ids have one width everywhere ("c050-0007"), so the system prompt,
# which names the agent, has the same length in every scenario and in the
# bare calls.
BARE_ID = "c001-0000"
PROBE_ID = "p001-0000"
SCRIPT = '[[turn]]\ntext = "ok"\nrepeat = true\n'
EVENT_KINDS = [
    "message.received",
    "session.started",
    "model.request",
    "model.response",
    "session.ended",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time per session turn with an instant model (mock/echo): the daemon "
        "(agents.tell + messages.wait) against a bare litellm.acompletion in-process, at 1 and "
        "50 concurrent agents; and the prompt bytes (system + tool schemas) a minimal agent "
        "sends per turn."
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        metavar="S",
        help="duration of each scenario, bare and daemon (default: 4)",
    )
    how.add_argument(
        "--turns",
        type=int,
        default=None,
        metavar="N",
        help="instead of --seconds: N turns (calls) per scenario in all, split "
        "evenly over its agents (rounded up)",
    )
    p.add_argument(
        "--agents",
        default="1,50",
        metavar="N,M",
        help="comma-separated agent counts = concurrency levels (default: 1,50)",
    )
    p.add_argument(
        "--mock-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="add [providers.mock] with concurrency = N to the daemon's config "
        "(default: no block, i.e. the daemon's default provider limit)",
    )
    p.add_argument(
        "--synchronous",
        choices=("full", "normal"),
        default=None,
        help="set [store] synchronous in the daemon's config (default: the "
        "daemon's default, full: every commit is fsynced)",
    )
    args = p.parse_args()
    try:
        args.levels = sorted({int(x) for x in args.agents.split(",") if x.strip()})
    except ValueError:
        p.error("--agents takes comma-separated integers, e.g. 1,50")
    if not args.levels or args.levels[0] < 1 or args.levels[-1] > 100:
        p.error("--agents: each count must be between 1 and 100")
    if args.seconds <= 0 or (args.turns is not None and args.turns < 1):
        p.error("--seconds must be > 0 and --turns >= 1")
    if args.mock_concurrency is not None and not 1 <= args.mock_concurrency <= 1000:
        p.error("--mock-concurrency must be between 1 and 1000")
    return args


def ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


# -- 1. bare litellm ------------------------------------------------------------------


@dataclass
class Bare:
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0  # this process's CPU time (all threads: litellm uses a few)

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def per_call(self) -> float:
        """Throughput-based time per call: wall / calls."""
        return self.wall / self.calls


def bare_inputs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from legion.daemon.agents import prompt
    from legion.daemon.tools import kernel, meta

    messages = [
        {"role": "system", "content": prompt.system_prompt(BARE_ID, "")},
        prompt.user_message("user", TEXT),
    ]
    return messages, [t.schema() for t in [*kernel.PROMPT, *meta.PROMPT]]


def run_bare(args: argparse.Namespace) -> tuple[float, list[Bare]]:
    from legion.daemon.llm.client import litellm_module

    t0 = time.perf_counter()
    litellm = litellm_module()
    import_s = time.perf_counter() - t0
    messages, tools = bare_inputs()

    async def one(out: list[float]) -> None:
        start = time.perf_counter()
        stream = await litellm.acompletion(
            model="mock/echo",
            messages=messages,
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
        if not text:
            raise RuntimeError("the bare mock/echo call streamed no text")
        out.append(time.perf_counter() - start)

    async def level(c: int) -> Bare:
        res = Bare(c)
        batches = math.ceil(args.turns / c) if args.turns else None
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        n = 0
        while (n < batches) if batches is not None else (time.perf_counter() < deadline):
            if c == 1:
                await one(res.latencies)
            else:
                await asyncio.gather(*[one(res.latencies) for _ in range(c)])
            n += 1
        res.wall = time.perf_counter() - t0
        res.cpu = time.process_time() - cpu0
        return res

    async def main() -> list[Bare]:
        scratch: list[float] = []
        for _ in range(WARMUP_CALLS):
            await one(scratch)
        await asyncio.gather(*[one(scratch) for _ in range(max(args.levels))])
        return [await level(c) for c in args.levels]

    return import_s, asyncio.run(main())


# -- 2. the daemon --------------------------------------------------------------------


class RpcError(DaemonError):
    def __init__(self, method: str, message: str, kind: str | None) -> None:
        super().__init__(f"{method}: {message}")
        self.kind = kind


@dataclass
class Turn:
    reply: dict[str, Any]
    rewaits: int  # messages.wait calls that ran out (the message was still running)
    # > 0 when the reply came this many seconds after the message was done: the
    # wait missed the session's end and answered only when its timeout ran out.
    late: float


class Conn(BaseConn):
    """A connection whose calls return results and raise the daemon's errors."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, CALL_TIMEOUT)

    def call(self, method: str, params: dict[str, Any] | None) -> Any:
        reply = super().call(method, params)
        if "error" in reply:
            err = reply["error"]
            raise RpcError(method, err.get("message", ""), (err.get("data") or {}).get("kind"))
        return reply["result"]

    def turn(self, agent: str) -> Turn:
        """agents.tell, then messages.wait until the message is final."""
        mid = self.call("agents.tell", {"id": agent, "text": TEXT})["message_id"]
        rewaits = 0
        while True:
            try:
                reply = self.call("messages.wait", {"message_id": mid, "timeout": WAIT_TIMEOUT})
                break
            except RpcError as exc:
                if exc.kind != "timeout":
                    raise
                rewaits += 1  # still running after WAIT_TIMEOUT: wait again, up to a limit
                if rewaits * WAIT_TIMEOUT >= CALL_TIMEOUT:
                    raise DaemonError(
                        f"message {mid} to {agent}: no reply within {CALL_TIMEOUT:g}s ({exc})"
                    ) from None
        lag = time.time() - ts(reply["done_at"]) if reply.get("done_at") else 0.0
        return Turn(reply, rewaits, lag if lag >= LATE_AFTER else 0.0)


@dataclass
class ClientState:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    prompt_tokens: int = 0
    late: list[float] = field(default_factory=list)
    rewaits: int = 0
    crashed: BaseException | None = None


@dataclass
class Run:
    name: str
    agents: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0
    first_error: str = ""
    daemon_cpu: float = 0.0
    bench_cpu: float = 0.0
    writer_jobs: int = 0
    writer_batches: int = 0
    prompt_tokens: int = 0  # of the last turn, as the model reported it
    late: list[float] = field(default_factory=list)
    rewaits: int = 0
    phases: dict[str, list[float]] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return len(self.latencies)

    @property
    def per_turn(self) -> float:
        """wall / turns, less the time clients spent in missed wake-ups: each of
        the `agents` clients lost its `late` seconds of the wall time."""
        return (self.wall - sum(self.late) / self.agents) / self.turns


@dataclass
class Gate:
    """What the main thread shares with its client threads."""

    warmed: threading.Barrier  # passed once every client has made its warm-up turns
    barrier: threading.Barrier  # opened by the main thread to start the clock
    quota: int | None  # turns per client, or None: run until the deadline
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0  # set just before the barrier opens


def client_loop(conn: Conn, agent: str, st: ClientState, gate: Gate) -> None:
    perf = time.perf_counter
    try:
        for _ in range(WARM_TURNS):
            conn.turn(agent)
        gate.warmed.wait()
        gate.barrier.wait()
        n = 0
        while (
            (n < gate.quota) if gate.quota is not None else (perf() < gate.deadline)
        ) and not gate.stop.is_set():
            n += 1
            t0 = perf()
            try:
                turn = conn.turn(agent)
            except DaemonError as exc:
                st.errors += 1
                st.first_error = st.first_error or str(exc)
                continue
            st.latencies.append(perf() - t0)
            st.rewaits += turn.rewaits
            if turn.late:
                st.late.append(turn.late)
            reply = turn.reply
            if reply["status"] != "done":
                st.errors += 1
                st.first_error = st.first_error or (
                    f"message ended {reply['status']}: {reply.get('error')}"
                )
            elif reply.get("usage"):
                st.prompt_tokens = reply["usage"]["prompt_tokens"]
    except BaseException as exc:  # reported by the main thread
        st.crashed = exc
        # The main thread (and the other clients) must not wait for this one.
        gate.warmed.abort()
        gate.barrier.abort()


def run_daemon_scenario(
    d: BenchDaemon, name: str, agents: list[str], args: argparse.Namespace
) -> Run:
    res = Run(name, len(agents))
    conns: list[Conn] = []
    threads: list[threading.Thread] = []
    gate = Gate(
        threading.Barrier(len(agents) + 1),
        threading.Barrier(len(agents) + 1),
        math.ceil(args.turns / len(agents)) if args.turns else None,
    )
    try:
        conns = [Conn(d.socket) for _ in agents]
        states = [ClientState() for _ in agents]
        threads = [
            threading.Thread(
                target=client_loop,
                daemon=True,
                name=f"client-{i}",
                args=(conns[i], agents[i], states[i], gate),
            )
            for i in range(len(agents))
        ]
        for t in threads:
            t.start()
        try:
            gate.warmed.wait(timeout=CALL_TIMEOUT * 2)
        except threading.BrokenBarrierError:
            crashed = [st.crashed for st in states if st.crashed is not None]
            raise SystemExit(
                f"{name}: a client failed during its warm-up turns: "
                + ("; ".join(f"{type(c).__name__}: {c}" for c in crashed[:3]) or "timed out")
            ) from None
        info0 = d.call("daemon.info")
        last_id = info0["events"]["last_id"] or 0
        cpu0, dcpu0 = time.process_time(), d.cpu_seconds()
        t0 = time.perf_counter()
        gate.deadline = t0 + args.seconds
        gate.barrier.wait()
        for t in threads:
            t.join()
        res.wall = time.perf_counter() - t0
        res.bench_cpu = time.process_time() - cpu0
        res.daemon_cpu = d.cpu_seconds() - dcpu0
        for st in states:
            if st.crashed is not None:
                raise RuntimeError(f"{name}: a client failed: {st.crashed!r}") from st.crashed
            res.latencies += st.latencies
            res.errors += st.errors
            res.first_error = res.first_error or st.first_error
            res.prompt_tokens = max(res.prompt_tokens, st.prompt_tokens)
            res.late += st.late
            res.rewaits += st.rewaits
        w0, w1 = info0["database"]["writer"], d.call("daemon.info")["database"]["writer"]
        res.writer_jobs = w1["jobs"] - w0["jobs"]
        res.writer_batches = w1["batches"] - w0["batches"]
        res.phases = session_phases(d, last_id)
    finally:
        gate.stop.set()
        gate.warmed.abort()
        gate.barrier.abort()
        for c in conns:
            c.close()
        for t in threads:
            t.join(timeout=5)
    return res


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def session_phases(d: BenchDaemon, after_id: int) -> dict[str, list[float]]:
    """Each session's phases, in seconds, from the events' own timestamps.

    Event ts are taken by the store's writer thread as it inserts the event,
    with 1 ms resolution; the `caused_by` links tie the events of one session
    together (request -> session start, response -> request)."""
    events: list[dict[str, Any]] = []
    while True:
        page = d.call("events.list", {"kinds": EVENT_KINDS, "after_id": after_id, "limit": 10_000})
        events += page
        if len(page) < 10_000:
            break
        after_id = page[-1]["id"]
    received: dict[int, float] = {}
    started: dict[int, dict[str, Any]] = {}  # by event id
    request: dict[int, dict[str, Any]] = {}  # by caused_by (the session.started id)
    response: dict[int, float] = {}  # by caused_by (the model.request id)
    ended: dict[int, float] = {}  # by session
    for ev in events:
        kind, data = ev["kind"], ev["data"]
        if kind == "message.received":
            received[data["message_id"]] = ts(ev["ts"])
        elif kind == "session.started":
            started[ev["id"]] = ev
        elif kind == "model.request" and data.get("turn") == 1:
            request[ev["caused_by"]] = ev
        elif kind == "model.response":
            response[ev["caused_by"]] = ts(ev["ts"])
        elif kind == "session.ended":
            ended[data["session"]] = ts(ev["ts"])
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "received->started",
            "started->request",
            "request->response",
            "response->ended",
            "started->ended",
            "received->ended",
        )
    }
    for sid, ev in started.items():
        data = ev["data"]
        t_start = ts(ev["ts"])
        t_recv = received.get(data["message_id"])
        req = request.get(sid)
        t_end = ended.get(data["session"])
        if t_recv is None or req is None or t_end is None or req["id"] not in response:
            continue  # a session that began before the scenario, or has not ended
        t_req, t_resp = ts(req["ts"]), response[req["id"]]
        out["received->started"].append(t_start - t_recv)
        out["started->request"].append(t_req - t_start)
        out["request->response"].append(t_resp - t_req)
        out["response->ended"].append(t_end - t_resp)
        out["started->ended"].append(t_end - t_start)
        out["received->ended"].append(t_end - t_recv)
    return out


def spawn(d: BenchDaemon, ids: list[str], **params: Any) -> None:
    d.call_many([("agents.spawn", {"id": i, **params}) for i in ids])


def first_turn(d: BenchDaemon, agent: str) -> None:
    """One message, which pays the daemon's lazy litellm import."""
    with contextlib.closing(Conn(d.socket)) as conn:
        reply = conn.turn(agent).reply
    if reply["status"] != "done":
        raise SystemExit(f"the first message ended {reply['status']}: {reply['error']}")


# -- 3. prompt bytes ------------------------------------------------------------------


def config_text(home: Path, args: argparse.Namespace) -> str:
    """HOME/config.toml: the scripted provider for the prompt probe, and the options."""
    script = home / "s.toml"
    script.write_text(SCRIPT, encoding="utf-8")
    text = (
        f'[providers.s]\nkind = "mock"\nscript = "{script}"\n\n'
        '[models.aliases]\nlocal = "mock/echo"\ns = "s/script"\n'
        # One process stands for many clients here (a connection per agent): past
        # the per-process connection limit it would be refused.
        "\n[rpc]\nmax_connections_per_peer = 1024\n"
    )
    if args.mock_concurrency is not None:
        text += f'\n[providers.mock]\nkind = "mock"\nconcurrency = {args.mock_concurrency}\n'
    if args.synchronous is not None:
        text += f'\n[store]\nsynchronous = "{args.synchronous}"\n'
    return text


def fsync_ms(directory: Path, n: int = 40) -> float:
    """Median time of overwriting 4 KB in a 1 MB file and fsync'ing it, in ms: what a
    commit's flush costs on the file system the daemon's database is on."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * (1 << 20))
        os.fsync(fd)
        times = []
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 256) * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


def prompt_probe(d: BenchDaemon) -> dict[str, Any]:
    from legion.daemon.agents import prompt
    from legion.daemon.llm.client import tool_schema_bytes
    from legion.daemon.tools import kernel, meta

    assert d.home is not None
    spawn(d, [PROBE_ID], model="s")
    with contextlib.closing(Conn(d.socket)) as conn:
        reply = conn.turn(PROBE_ID).reply
    if reply["status"] != "done":
        raise SystemExit(f"prompt probe: the message ended {reply['status']}: {reply['error']}")
    calls = [
        json.loads(line)
        for line in (d.home / "s.toml.log").read_text(encoding="utf-8").splitlines()
        if line
    ]
    if len(calls) != 1:
        raise SystemExit(f"prompt probe: expected 1 logged call, found {len(calls)}")
    messages = calls[0]["messages"]
    system = [m for m in messages if m["role"] == "system"]
    if len(system) != 1:
        raise SystemExit(f"prompt probe: expected 1 system message, got {len(system)}")
    system_text = system[0]["content"]
    tools = [t.schema() for t in [*kernel.PROMPT, *meta.PROMPT]]
    req = d.call("events.list", {"agent": PROBE_ID, "kinds": ["model.request"], "limit": 1})
    return {
        "system_bytes": len(system_text.encode()),
        "tool_bytes": tool_schema_bytes(tools),
        "tools": [t["function"]["name"] for t in tools],
        "tool_sizes": {t["function"]["name"]: tool_schema_bytes([t]) for t in tools},
        "messages": len(messages),
        "messages_bytes": len(json.dumps(messages, separators=(",", ":")).encode()),
        "user_bytes": sum(len(str(m["content"]).encode()) for m in messages if m["role"] == "user"),
        "same_as_code": system_text == prompt.system_prompt(PROBE_ID, ""),
        "estimate": req[0]["data"]["prompt_tokens_estimate"] if req else None,
        "reported_prompt_tokens": (reply.get("usage") or {}).get("prompt_tokens"),
    }


# -- report ---------------------------------------------------------------------------


def print_bare(import_s: float, bare: list[Bare]) -> None:
    print(
        f'1. bare litellm.acompletion(model="mock/echo", stream=True, tools=kernel), '
        f"in-process; litellm_module() took {import_s:.2f}s, then {WARMUP_CALLS} warm-up "
        "calls"
    )
    head = (
        f"{'concurrency':>11} {'calls':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'wall/call ms':>12} {'calls/s':>8} {'CPU ms/call':>11}"
    )
    print(head)
    print("-" * len(head))
    for b in bare:
        print(
            f"{b.concurrency:>11} {b.calls:>7} {ms(statistics.median(b.latencies)):>8} "
            f"{ms(pct(b.latencies, 95)):>8} {ms(b.per_call):>12} {b.calls / b.wall:>8.0f} "
            f"{ms(b.cpu / b.calls):>11}"
        )
    print(
        "  p50/p95: each call's own time (for concurrency > 1, from its batch's start to its "
        "end); wall/call: wall time / calls;"
    )
    print("  CPU ms/call: this process's CPU time (all its threads) / calls")


def print_daemon(runs: list[Run], bare: dict[int, Bare]) -> None:
    print(
        "2. daemon: one turn = agents.tell + messages.wait (one session, one model call), "
        "each client on its own connection and agent"
    )
    head = (
        f"{'scenario':<22} {'turns':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'wall/turn ms':>12} {'turns/s':>8} {'x bare p50':>10} {'x bare wall':>11} "
        f"{'daemon CPU':>10} {'CPU ms/turn':>11} {'x bare CPU':>10} {'bench CPU':>9} "
        f"{'jobs/turn':>9} {'jobs/commit':>11} {'late':>4}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        b = bare.get(r.agents)
        p50 = statistics.median(r.latencies)
        x50 = f"{p50 / statistics.median(b.latencies):.1f}" if b else "-"
        xw = f"{r.per_turn / b.per_call:.1f}" if b else "-"
        jc = f"{r.writer_jobs / r.writer_batches:.1f}" if r.writer_batches else "-"
        xc = f"{r.daemon_cpu / r.turns / (b.cpu / b.calls):.1f}" if b else "-"
        print(
            f"{r.name:<22} {r.turns:>6} {r.errors:>6} {ms(p50):>8} "
            f"{ms(pct(r.latencies, 95)):>8} {ms(r.per_turn):>12} {r.turns / r.wall:>8.0f} "
            f"{x50:>10} {xw:>11} {r.daemon_cpu / r.wall * 100:>9.0f}% "
            f"{ms(r.daemon_cpu / r.turns):>11} {xc:>10} "
            f"{r.bench_cpu / r.wall * 100:>8.0f}% {r.writer_jobs / max(1, r.turns):>9.1f} "
            f"{jc:>11} {len(r.late):>4}"
        )
    print(
        "  x bare p50 = daemon p50 / bare p50; x bare wall = daemon wall/turn / bare wall/call;"
        " x bare CPU = daemon CPU ms/turn / bare CPU ms/call; each at the same concurrency"
    )
    print(
        "  daemon CPU: the daemon's CPU time (all threads, /proc) in % of one core; "
        "CPU ms/turn: that time / turns; bench CPU: this process, the clients"
    )
    print(
        "  jobs/turn, jobs/commit: the store writer's write jobs per turn and per transaction "
        "(one commit each)"
    )
    print(
        f"  late: turns whose messages.wait missed the session's end and answered only when "
        f"its {WAIT_TIMEOUT:g}s timeout ran out"
    )
    for r in runs:
        if r.late:
            print(
                f"  {r.name}: {len(r.late)} late repl{'ies' if len(r.late) > 1 else 'y'} "
                f"({', '.join(f'{x:.2f}s' for x in r.late[:5])} after the message was done);"
                " p50/p95 include them, wall/turn leaves their lost time out"
            )
        if r.rewaits:
            print(
                f"  {r.name}: {r.rewaits} messages.wait calls ran out with the message still "
                "running, and were repeated"
            )
    print()
    print(
        "   in-daemon view, from event timestamps (ms, mean per session; ts have 1 ms resolution)"
    )
    cols = [
        "received->started",
        "started->request",
        "request->response",
        "response->ended",
        "started->ended",
        "received->ended",
    ]
    head = (
        f"{'scenario':<22} {'sessions':>8} "
        + " ".join(f"{c:>17}" for c in cols)
        + f" {'e2e mean':>8} {'e2e - recv->end':>15}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        n = len(r.phases["started->ended"])
        if not n:
            print(f"{r.name:<22} {0:>8}  (no complete sessions found in the events)")
            continue
        means = {k: statistics.fmean(v) for k, v in r.phases.items()}
        e2e = statistics.fmean(r.latencies)
        print(
            f"{r.name:<22} {n:>8} "
            + " ".join(f"{ms(means[c]):>17}" for c in cols)
            + f" {ms(e2e):>8} {ms(e2e - means['received->ended']):>15}"
        )
    print(
        "  received->started: tell's commit to the session's start (wake, claim, open); "
        "started->request: history, prompt, model.request;"
    )
    print(
        "  request->response: the model call (litellm) and its delta/response events; "
        "response->ended: the session's closing write;"
    )
    print(
        "  e2e - recv->end: what the daemon's events do not cover: the RPCs (tell before "
        "its commit, wait after the end) and the client"
    )


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    t_start = time.perf_counter()
    how = f"{args.turns} turns" if args.turns else f"{args.seconds:g}s"
    print(
        f"machine : {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"litellm {version('litellm')}; {how} per scenario; agents {args.levels}; "
        f"message {TEXT!r}"
    )
    print()
    import_s, bare_runs = run_bare(args)
    bare = {b.concurrency: b for b in bare_runs}
    print_bare(import_s, bare_runs)
    print()

    runs: list[Run] = []
    cfg: Callable[[Path], str] = lambda home: config_text(home, args)  # noqa: E731
    with BenchDaemon(config=cfg) as d:
        info = d.call("daemon.info")
        mock = info["models"]["providers"]["mock"]
        print(
            f"daemon  : pid {d.pid}, ready in {d.ready_s:.3f}s, home {d.home}; "
            f"store {info['database']['driver']} synchronous={info['database']['synchronous']};"
            f" provider mock: concurrency {mock['concurrency']}"
        )
        assert d.home is not None
        print(
            f"disk    : 4 KB overwrite + fsync in the daemon's home: "
            f"{fsync_ms(d.home):.2f} ms (median)"
        )
        scenarios: list[tuple[str, list[str], dict[str, Any]]] = []
        for n in args.levels:
            ids = [f"c{n:03d}-{i:04d}" for i in range(n)]
            scenarios.append(
                (
                    f"{n} agent{'s' if n > 1 else ''}",
                    ids,
                    {"guards": {"history_tokens": 0, "daily_tokens": 0}},
                )
            )
        h = args.levels[0]
        # daily_tokens = 0 (no limit): with its history, an agent sends ~6k tokens a
        # turn and would reach the default 2M-a-day budget (and be paused) within
        # ~320 turns, i.e. within seconds with an instant model.
        scenarios.append(
            (
                f"{h} agent{'s' if h > 1 else ''}, history",
                [f"h{h:03d}-{i:04d}" for i in range(h)],
                {"guards": {"daily_tokens": 0}},
            )
        )
        for _, ids, params in scenarios:
            spawn(d, ids, **params)
        t0 = time.perf_counter()
        first_turn(d, scenarios[0][1][0])
        print(
            f"warm-up : the first message took {time.perf_counter() - t0:.2f}s (the daemon "
            f"imports litellm); then each scenario starts after {WARM_TURNS} unmeasured "
            "turns per client, all clients at once"
        )
        print()
        for name, ids, _ in scenarios:
            runs.append(run_daemon_scenario(d, name, ids, args))
        print_daemon(runs, bare)
        for r in runs:
            if r.first_error:
                print(f"first error in {r.name}: {r.first_error}")
        hist = runs[-1]
        print(
            f"  history row: agents keep the default history budget "
            f"({GuardsConfig().history_tokens} tokens); by the end each call carried "
            f"~{hist.prompt_tokens} prompt tokens (mock/echo's count, 4 chars a token), against "
            f"{runs[0].prompt_tokens} without history"
        )
        print()

        probe = prompt_probe(d)
        total = probe["system_bytes"] + probe["tool_bytes"]
        print(
            "3. prompt bytes a minimal agent sends per turn (agent with no system prompt, "
            f"id {PROBE_ID!r}; from <script>.toml.log of a mock/script call)"
        )
        print(
            f"   system message (Legion's protocol) : {probe['system_bytes']:>6} B"
            f"{'' if probe['same_as_code'] else '  (differs from prompt.system_prompt!)'}"
        )
        sizes = ", ".join(f"{k} {v} B" for k, v in probe["tool_sizes"].items())
        print(
            f"   tool schemas (compact JSON)        : {probe['tool_bytes']:>6} B  "
            f"({len(probe['tools'])} kernel tools: {sizes})"
        )
        print(
            f"   system + tools                     : {total:>6} B  (~{total // 4} tokens "
            "at 4 chars a token)"
        )
        print(
            f"   the user message (the bench's)     : {probe['user_bytes']:>6} B; all "
            f"{probe['messages']} messages as compact JSON: {probe['messages_bytes']} B"
        )
        print(
            f"   daemon's model.request prompt_tokens_estimate: {probe['estimate']} "
            "(messages and tool schemas); "
            f"usage.prompt_tokens reported: {probe['reported_prompt_tokens']}"
        )
        problems = d.log_problems()
    print()
    print(
        f"daemon stopped (exit code {d.exit_code}); temp home removed; "
        f"total {time.perf_counter() - t_start:.1f}s"
    )
    print_problems(problems)
    return 0


if __name__ == "__main__":
    run(main)
