"""First-reply latency after a start: what the litellm warm-up buys.

The daemon imports litellm (~3.5 s here) in the background right after READY.
This script restarts a daemon that has one agent (mock/echo, through the real
litellm path) and tells it one message at READY, then, on another start, 5 s
after READY; each figure is the time from `agents.tell` to the reply. A third
row, the same message once everything is warm, is the floor.

    .venv/bin/python benchmarks/first_reply.py [--runs 3] [--delay 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._daemon import BenchDaemon, run


def reply_s(d: BenchDaemon, text: str) -> float:
    t0 = time.perf_counter()
    sent = d.call("agents.tell", {"id": "first", "text": text})
    done = d.call("messages.wait", {"message_id": sent["message_id"], "timeout": 60})
    assert done["status"] == "done", done
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delay", type=float, default=5.0)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {
        "at READY": [],
        f"{args.delay:g} s after READY": [],
        "warm (floor)": [],
    }
    with BenchDaemon() as d:
        d.call("agents.spawn", {"id": "first"})
        for _ in range(args.runs):
            d.restart()
            rows["at READY"].append(reply_s(d, "now"))
            d.restart()
            time.sleep(args.delay)  # the point: a message that comes a while after the start
            rows[f"{args.delay:g} s after READY"].append(reply_s(d, "later"))
            rows["warm (floor)"].append(reply_s(d, "again"))
    print(f"first reply after a start, mock/echo, {args.runs} runs (median / max, ms)")
    for name, values in rows.items():
        print(f"  {name:<22} {1000 * statistics.median(values):8.0f} {1000 * max(values):8.0f}")
    return 0


if __name__ == "__main__":
    run(main)
