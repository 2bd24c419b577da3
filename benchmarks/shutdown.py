"""How long a SIGTERM takes to end the daemon: idle, right after a start, and busy.

Each row is the time from SIGTERM to the process's exit, as its parent sees it
(`BenchDaemon.restart`), over `--runs` restarts of one home:

- idle, litellm loaded: nothing runs; the floor is the same daemon with
  nothing to stop;
- idle, right after READY: litellm is still being imported in a worker thread
  (the stop the old teardown held for seconds);
- busy: a session is waiting on a model that answers in 300 s, and a client
  waits for its reply; the session is cut off (`session.ended` status
  `shutdown`) and the client told the message id.

Beside them, the floor: a bare `python -c pass` start and exit, the least a
process costs to end and be reaped here.

    .venv/bin/python benchmarks/shutdown.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._daemon import BenchDaemon, run

SLOW = '[[turn]]\ndelay = 300\ntext = "never seen"\nrepeat = true\n'


def config(home: Path) -> str:
    script = home / "slow.toml"
    script.write_text(SLOW, encoding="utf-8")
    return (
        f'[providers.slow]\nkind = "mock"\nscript = "{script}"\n\n'
        '[models.aliases]\nslow = "slow/script"\n\n[daemon]\nshutdown_grace = 30\n'
    )


def busy_stop(d: BenchDaemon) -> tuple[float, str]:
    """Start a session on the slow model with a client waiting, then restart."""
    sent = d.call("agents.tell", {"id": "busy", "text": "take your time"})
    answer: dict[str, Any] = {}

    def wait() -> None:
        try:
            answer["ok"] = d.call(
                "messages.wait", {"message_id": sent["message_id"], "timeout": 600}
            )
        except Exception as exc:  # the point: the daemon answers it as it stops
            answer["error"] = str(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    until_busy(d)
    stopped = d.restart()
    waiter.join(30)
    # The message is delivered again after the restart (on the same slow model):
    # interrupt it, so the next idle rows are idle.
    until_busy(d)
    d.call("agents.interrupt", {"id": "busy"})
    return stopped, answer.get("error", "(no error: the client got a reply)")


def until_busy(d: BenchDaemon) -> None:
    deadline = time.monotonic() + 60
    while next(a for a in d.call("agents.list") if a["id"] == "busy")["activity"] == "idle":
        if time.monotonic() > deadline:
            raise SystemExit("the busy agent never started its session")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {
        "idle, litellm loaded": [],
        "idle, right after READY": [],
        "busy: a session on a 300 s model": [],
    }
    told = ""
    with BenchDaemon(config=config) as d:
        d.call("agents.spawn", {"id": "busy", "model": "slow"})
        d.call("agents.spawn", {"id": "idle"})
        for _ in range(args.runs):
            d.wait_warm()
            rows["idle, litellm loaded"].append(d.restart())
            rows["idle, right after READY"].append(d.restart())
            d.wait_warm()
            stopped, told = busy_stop(d)
            rows["busy: a session on a 300 s model"].append(stopped)
    floor = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append(time.perf_counter() - t0)
    print(f"SIGTERM -> exit, {args.runs} runs (median / max, ms); daemon.shutdown_grace = 30 s")
    for name, values in rows.items():
        print(f"  {name:<36} {1000 * statistics.median(values):8.0f} {1000 * max(values):8.0f}")
    print(
        f"  {'floor: python -c pass (start + exit)':<36} "
        f"{1000 * statistics.median(floor):8.0f} {1000 * max(floor):8.0f}"
    )
    print(f"the waiting client was told: {told}")
    return 0


if __name__ == "__main__":
    run(main)
