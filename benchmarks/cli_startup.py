"""How long a one-shot `legion ps --json` takes, against bare Python start-up.

Starts a daemon in a temp home, spawns a few agents, then times (wall clock,
fork to exit, interleaved round-robin so drift hits every command alike):

  python -c pass                              the interpreter's own floor
  python -m legion --home HOME ps --json      the CLI through the same interpreter
  .venv/bin/legion --home HOME ps --json      the installed console script

and prints the median of each and its ratio to bare Python. Each is timed in
two environments:

  as-is    this process's environment, unchanged. If it sets
           PYTHONDONTWRITEBYTECODE and legion/ has no __pycache__ (a fresh
           editable checkout), every run compiles legion's sources again.
  cached   PYTHONDONTWRITEBYTECODE unset and PYTHONPYCACHEPREFIX pointing at
           a temp dir (filled by the warm-up runs, removed at the end): every
           module loads from cached bytecode, as in an ordinary install. The
           source tree is not touched.

Then it runs the one-shot path under `-X importtime` (top 10 cumulative
import times, in both environments) and once under runpy to list what ended
up in sys.modules, and says whether any module the one-shot path should
never load was loaded.

    .venv/bin/python benchmarks/cli_startup.py [--runs 40] [--agents 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import REPO, BenchDaemon, console_script, interrupt_on_term, print_problems, run

# Modules the one-shot `ps --json` path must not load (the daemon side, the
# human-output side, and things a future agent runtime might drag in).
HEAVY = ("litellm", "aiosqlite", "prompt_toolkit", "rich", "msgspec", "legion.daemon")
BASELINE = "python -c pass"

_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")

_RUNPY_PROBE = """
import json, runpy, sys
out = sys.argv[1]
sys.argv = ["legion"] + sys.argv[2:]
code = 0
try:
    runpy.run_module("legion", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

Env = dict[str, str] | None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Median wall time of `legion ps --json` (python -m legion and the console "
        "script) against `python -c pass`, with the environment as it is and with cached "
        "bytecode, plus the one-shot path's import profile."
    )
    p.add_argument(
        "--runs", type=int, default=40, metavar="N", help="timed runs of each command (default: 40)"
    )
    p.add_argument(
        "--agents",
        type=int,
        default=5,
        metavar="N",
        help="agents to spawn before timing `ps` (default: 5)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=3,
        metavar="N",
        help="untimed runs of each command first (default: 3; at least 1 is "
        "needed to fill the bytecode cache of the 'cached' runs)",
    )
    p.add_argument(
        "--env",
        choices=("both", "as-is", "cached"),
        default="both",
        help="which environments to time (default: both)",
    )
    args = p.parse_args()
    if args.runs < 1 or args.agents < 0 or args.warmup < 0:
        p.error("--runs must be >= 1; --agents and --warmup >= 0")
    return args


def run_once(
    cmd: list[str], cwd: str, env: Env
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd, env=env, check=False
    )
    return time.perf_counter() - t0, proc


def check_ps(label: str, proc: subprocess.CompletedProcess[bytes], agents: int) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{label} exited {proc.returncode}:\n{proc.stderr.decode()}")
    listed = json.loads(proc.stdout)
    if not isinstance(listed, list) or len(listed) != agents:
        raise SystemExit(f"{label}: expected {agents} agents, got {proc.stdout[:200]!r}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def bytecode_note() -> str:
    """Whether this environment loads legion from cached bytecode."""
    src = REPO / "legion" / "cli" / "main.py"
    cached = Path(importlib.util.cache_from_source(str(src))).exists()
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    if cached:
        return "legion's bytecode is cached: the as-is runs load it"
    return (
        "legion's bytecode is NOT cached"
        + (f" and PYTHONDONTWRITEBYTECODE={flag}" if flag else "")
        + ": every as-is run compiles legion's sources again"
    )


def time_commands(
    cmds: dict[str, list[str]], envs: dict[str, Env], cwd: str, args: argparse.Namespace
) -> dict[tuple[str, str], list[float]]:
    for env_name, env in envs.items():
        for label, cmd in cmds.items():
            for _ in range(args.warmup):
                run_once(cmd, cwd, env)
            if label != BASELINE:
                _, proc = run_once(cmd, cwd, env)
                check_ps(f"{label} [{env_name}]", proc, args.agents)
    times: dict[tuple[str, str], list[float]] = {(e, label): [] for e in envs for label in cmds}
    for _ in range(args.runs):
        for env_name, env in envs.items():
            for label, cmd in cmds.items():
                elapsed, proc = run_once(cmd, cwd, env)
                if proc.returncode != 0:
                    raise SystemExit(
                        f"{label} [{env_name}] exited {proc.returncode}:\n{proc.stderr.decode()}"
                    )
                times[(env_name, label)].append(elapsed)
    return times


def print_times(times: dict[tuple[str, str], list[float]]) -> None:
    print(
        f"{'env':<7} {'command':<27} {'median ms':>10} {'min ms':>8} {'p90 ms':>8} {'x python':>9}"
    )
    summary = []
    for (env_name, label), ts in times.items():
        base = statistics.median(times[(env_name, BASELINE)])
        med = statistics.median(ts)
        print(
            f"{env_name:<7} {label:<27} {med * 1e3:>10.1f} {min(ts) * 1e3:>8.1f} "
            f"{percentile(ts, 90) * 1e3:>8.1f} {med / base:>9.2f}"
        )
        if label != BASELINE:
            summary.append(
                f"[{env_name}] {label}: {(med - base) * 1e3:.1f} ms over bare "
                f"python, ratio legion/python {med / base:.2f}"
            )
    print()
    for line in summary:
        print(line)
    print()


def importtime(cmd: list[str], cwd: str, env: Env) -> list[tuple[int, int, int, str]]:
    """(self_us, cumulative_us, depth, module) for every import of one run."""
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"importtime run exited {proc.returncode}:\n{proc.stderr.decode()}")
    rows = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            rows.append((int(m.group(1)), int(m.group(2)), depth, m.group(4)))
    return rows


def print_importtime(rows: list[tuple[int, int, int, str]], title: str) -> None:
    total_self = sum(r[0] for r in rows)
    print(
        f"{title}: {len(rows)} imports, {total_self / 1e3:.1f} ms of import time in all "
        "(-X importtime inflates it)"
    )
    print("  top 10 by cumulative import time (a package's time includes its children):")
    print(f"  {'cumul ms':>8} {'self ms':>8}  module")
    for self_us, cum_us, depth, name in sorted(rows, key=lambda r: -r[1])[:10]:
        print(f"  {cum_us / 1e3:>8.1f} {self_us / 1e3:>8.1f}  {'  ' * depth}{name}")
    print()


def loaded_modules(argv: list[str], cwd: str) -> set[str]:
    fd, out = tempfile.mkstemp(prefix="lgb-mods-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNPY_PROBE, out, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=cwd,
            check=False,
        )
        doc = json.loads(Path(out).read_text() or "{}")
        if proc.returncode != 0 or doc.get("code") not in (0, None):
            raise SystemExit(
                f"sys.modules probe failed ({proc.returncode}):\n{proc.stderr.decode()}"
            )
        return set(doc["modules"])
    finally:
        os.unlink(out)


def loaded_modules_count() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; print(len(sys.modules))"],
        capture_output=True,
        check=True,
    )
    return int(proc.stdout)


def has(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def report_imports(ps: list[str], envs: dict[str, Env], cwd: str) -> None:
    cmd = [sys.executable, "-X", "importtime", "-m", "legion", *ps]
    imported: set[str] = set()
    for env_name, env in envs.items():
        rows = importtime(cmd, cwd, env)
        imported |= {r[3] for r in rows}
        print_importtime(rows, f"[{env_name}] python -X importtime -m legion {' '.join(ps)}")

    modules = loaded_modules(ps, cwd)
    print(
        f"sys.modules after `legion ps --json` (via runpy): {len(modules)} modules "
        f"(bare `python -c pass`: {loaded_modules_count()})"
    )
    print("modules the one-shot path must not load:")
    bad = 0
    for name in HEAVY:
        in_mods, in_imp = has(modules, name), has(imported, name)
        bad += in_mods or in_imp
        verdict = "LOADED (bad)" if in_mods or in_imp else "not loaded (ok)"
        print(
            f"  {name:<16} {verdict:<16} sys.modules={'yes' if in_mods else 'no'} "
            f"importtime={'yes' if in_imp else 'no'}"
        )
    print(f"check: {'PASS' if bad == 0 else 'FAIL'} ({bad} of {len(HEAVY)} heavy modules loaded)")


def main() -> int:
    args = parse_args()
    interrupt_on_term()
    script = console_script()
    pycache = tempfile.mkdtemp(prefix="lgb-pyc-")
    try:
        cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached_env["PYTHONPYCACHEPREFIX"] = pycache
        envs: dict[str, Env] = {"as-is": None, "cached": cached_env}
        if args.env != "both":
            envs = {args.env: envs[args.env]}
        with BenchDaemon() as d:
            d.spawn_agents(args.agents)
            home = cwd = str(d.home)
            ps = ["--home", home, "ps", "--json"]
            cmds: dict[str, list[str]] = {
                BASELINE: [sys.executable, "-c", "pass"],
                "python -m legion ps --json": [sys.executable, "-m", "legion", *ps],
            }
            if script is not None:
                cmds["legion ps --json (script)"] = [str(script), *ps]

            print(f"interpreter : {sys.executable} (Python {sys.version.split()[0]})")
            print(f"script      : {script or 'not found (skipped)'}")
            print(
                f"daemon      : pid {d.pid}, home {home}, ready in {d.ready_s:.3f}s "
                f"(READY=1 via NOTIFY_SOCKET), {args.agents} agents spawned"
            )
            print(
                f"machine     : {os.cpu_count()} CPUs; {args.runs} runs per command "
                f"(+{args.warmup} warm-up), interleaved; wall time fork to exit"
            )
            print(f"bytecode    : {bytecode_note()}")
            print()
            print_times(time_commands(cmds, envs, cwd, args))
            report_imports(ps, envs, cwd)
            problems = d.log_problems()
    finally:
        shutil.rmtree(pycache, ignore_errors=True)
    print()
    print(f"daemon stopped (exit code {d.exit_code}); temp home and bytecode cache removed")
    print_problems(problems)
    return 0


if __name__ == "__main__":
    run(main)
