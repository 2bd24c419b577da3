"""What hostile input on the socket costs everyone else.

Starts a daemon in a temp home. One honest client does sequential
`daemon.ping` round trips the whole time; each scenario adds one hostile
client that sends bad frames as fast as the daemon answers them (one at a
time: send, read the error, repeat). The floor is the honest client alone,
measured in the same run. For each scenario it prints the honest client's
requests/s and p99 latency beside the floor, how many hostile frames per
second the daemon refused, and the daemon's RSS (VmRSS) at the end of the
scenario and its peak (VmHWM) so far.

Scenarios (each `--seconds` long):

  floor            the honest client alone
  invalid UTF-8    a 200-byte request with an overlong encoding in a string
  nested 100k      a request nesting 100,000 arrays (refused before decoding)
  batch 19,000     a batch of 19,000 pings in one 0.9 MB line (refused whole)
  oversized 4 MiB  a 4 MiB line (past rpc.max_request_bytes, skipped unparsed)
  idle flood       256 connections opened and held without a word by another
                   process (32 per process are let in, so most are refused;
                   the rest close after rpc.first_request_timeout),
                   re-opened as they go

    .venv/bin/python benchmarks/rpc_hostile.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import BenchDaemon, Conn, interrupt_on_term, pct, print_problems, proc_status, run

PING = b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping"}\n'
FRAMES: dict[str, bytes] = {
    "invalid UTF-8": b'{"jsonrpc":"2.0","id":1,"method":"agents.spawn","params":{"id":"u",'
    b'"system":"' + b"x" * 100 + b'\xc0\xaf"}}\n',
    "nested 100k": b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping","params":{"x":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}\n",
    "batch 19,000": json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": "daemon.ping"} for i in range(19_000)],
        separators=(",", ":"),
    ).encode()
    + b"\n",
    "oversized 4 MiB": b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping","params":{"x":"'
    + b"x" * (4 << 20)
    + b'"}}\n',
}


def honest(path: Path, stop: threading.Event, latencies: list[float]) -> None:
    c = Conn(path)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            reply = c.call("daemon.ping", None)
            latencies.append(time.perf_counter() - t0)
            assert reply.get("result") == {"pong": True}, reply
    finally:
        c.close()


def hostile_frames(frame: bytes) -> Callable[[Path, threading.Event], int]:
    def attack(path: Path, stop: threading.Event) -> int:
        sent = 0
        while not stop.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(str(path))
                f = s.makefile("rb")
                try:
                    while not stop.is_set():
                        s.sendall(frame)
                        line = f.readline()
                        assert b'"error"' in line, line[:200]
                        sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    # The daemon answered before the whole frame was sent and
                    # closed: count the frame, connect again.
                    sent += 1
        return sent

    return attack


def idle_flood(path: Path, stop: threading.Event) -> int:
    opened = 0
    held: list[socket.socket] = []
    while not stop.is_set():
        while len(held) < 256:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except OSError:
                s.close()
                break
            held.append(s)
            opened += 1
        # Drop those the daemon has closed (refused, or timed out), keep the rest.
        alive = []
        for s in held:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                alive.append(s)
                continue
            except OSError:
                data = b""
            if data:
                alive.append(s)  # an explanation; the close follows
            else:
                s.close()
        held = alive
        stop.wait(0.05)
    for s in held:
        s.close()
    return opened


def in_child(fn: Callable[[Path, threading.Event], int]) -> Callable[[Path, threading.Event], int]:
    """Run an attack in a forked process: the daemon's per-process connection
    limit must not count the honest client (in this process) with the attacker."""

    def attack(path: Path, stop: threading.Event) -> int:
        ctx = multiprocessing.get_context("fork")
        child_stop = ctx.Event()
        opened = ctx.Value("q", 0)

        def work() -> None:
            opened.value = fn(path, child_stop)  # type: ignore[arg-type]

        proc = ctx.Process(target=work)
        proc.start()
        stop.wait()
        child_stop.set()
        proc.join(30)
        return int(opened.value)

    return attack


def scenario(
    d: BenchDaemon, name: str, seconds: float, attack: Callable[[Path, threading.Event], int] | None
) -> dict[str, float]:
    stop = threading.Event()
    latencies: list[float] = []
    hostile: list[int] = []
    threads = [threading.Thread(target=honest, args=(d.socket, stop, latencies))]
    if attack is not None:
        threads.append(threading.Thread(target=lambda: hostile.append(attack(d.socket, stop))))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(latencies) / elapsed,
        "p99_ms": pct(latencies, 99) * 1000 if latencies else float("nan"),
        "hostile_per_s": (hostile[0] / elapsed) if hostile else 0.0,
        "rss_mb": proc_status(d.pid, "VmRSS") / 1024,
        "hwm_mb": proc_status(d.pid, "VmHWM") / 1024,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description="Honest-client RPC rate and daemon RSS while one client sends hostile frames."
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="duration of each scenario (default: 3)",
    )
    args = p.parse_args()
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    interrupt_on_term()
    with BenchDaemon(config="[rpc]\nfirst_request_timeout = 1\n") as d:
        start_rss = proc_status(d.pid, "VmRSS") / 1024
        warm = d.wait_warm()
        warm_rss = proc_status(d.pid, "VmRSS") / 1024
        print(
            f"daemon RSS at start: {start_rss:.1f} MB; litellm warm {warm:.1f} s after READY "
            f"(every scenario runs after it), RSS then {warm_rss:.1f} MB"
        )
        print(
            f"{'scenario':<18}{'ping/s':>9}{'vs floor':>10}{'p99 ms':>9}"
            f"{'hostile/s':>11}{'RSS MB':>9}{'peak MB':>9}"
        )
        floor = 0.0
        plan: list[tuple[str, Callable[[Path, threading.Event], int] | None]] = [
            ("floor", None),
            *[(n, hostile_frames(f)) for n, f in FRAMES.items()],
            ("idle flood", in_child(idle_flood)),
        ]
        for name, attack in plan:
            r = scenario(d, name, args.seconds, attack)
            if attack is None:
                floor = r["rps"]
            ratio = r["rps"] / floor if floor else float("nan")
            print(
                f"{name:<18}{r['rps']:>9.0f}{ratio:>9.0%} {r['p99_ms']:>8.2f}"
                f"{r['hostile_per_s']:>11.0f}{r['rss_mb']:>9.1f}{r['hwm_mb']:>9.1f}"
            )
        alive = d.proc is not None and d.proc.poll() is None
        print(f"daemon alive after all scenarios: {alive}")
        print_problems([line for line in d.log_problems() if "litellm" not in line])
    return 0 if alive else 1


if __name__ == "__main__":
    run(main)
