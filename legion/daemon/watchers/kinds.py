"""Watcher kinds: how each one observes the world. No model is involved.

Each kind has a typed config (unknown keys refused) and returns an
observation: a dict of plain fields that triggers read.

- `http_poll`: {ok, status, body, json, elapsed_ms, error}
- `cmd_watch`: {exit_code, stdout, stderr, timed_out}; run in the tool
  sandbox (see legion/daemon/tools/sandbox.py): scrubbed environment (plus the
  names in `env` that `tools.sandbox.env_allow` lets through), resource
  limits, the agent's working directory, killed whole at `timeout`.
- `file_watch`: {changes: [{change, path}], count, paths}; from inotify
  (watchfiles), not polling.
- `process_watch`: {running, count, pids}; by `name` (in the command line) or
  `pid`, read from /proc.
- `tcp_probe`: {up, latency_ms, error}; a TCP connect with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from msgspec import Meta

from legion.plugin import WatcherKind, hookimpl

OUTPUT_LIMIT = 64 * 1024


class _Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class HttpPoll(_Config):
    url: Annotated[str, Meta(pattern=r"^https?://")]
    method: Literal["GET", "HEAD"] = "GET"
    timeout: Annotated[float, Meta(gt=0, le=300)] = 10.0
    headers: dict[str, str] = {}


class CmdWatch(_Config):
    command: str | list[str]
    timeout: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    # Environment variables the command needs; only those that
    # tools.sandbox.env_allow lists are passed (besides PATH, LANG, TZ, LC_ALL).
    env: list[str] = []
    cwd: str | None = None


class FileWatch(_Config):
    path: str
    recursive: bool = True
    debounce_ms: Annotated[int, Meta(ge=0, le=60_000)] = 300


class ProcessWatch(_Config):
    name: str | None = None
    pid: int | None = None


class TcpProbe(_Config):
    port: Annotated[int, Meta(ge=1, le=65535)]
    host: str = "127.0.0.1"
    timeout: Annotated[float, Meta(gt=0, le=60)] = 3.0


CONFIGS: dict[str, type[_Config]] = {
    "http_poll": HttpPoll,
    "cmd_watch": CmdWatch,
    "file_watch": FileWatch,
    "process_watch": ProcessWatch,
    "tcp_probe": TcpProbe,
}
# What fires when no trigger is given: a change in what matters for the kind.
DEFAULT_TRIGGERS = {
    "http_poll": "changed(status) or changed(body)",
    "cmd_watch": "changed(exit_code) or changed(stdout)",
    "file_watch": "count > 0",
    "process_watch": "changed(running)",
    "tcp_probe": "changed(up)",
}


async def http_poll(cfg: HttpPoll) -> dict[str, Any]:
    import httpx

    start = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=cfg.timeout, follow_redirects=True) as client:
            r = await client.request(cfg.method, cfg.url, headers=cfg.headers)
    except httpx.HTTPError as exc:
        return {
            "ok": False,
            "status": None,
            "body": None,
            "json": None,
            "error": f"{type(exc).__name__}: {exc}"[:300],
            "elapsed_ms": round((time.perf_counter() - start) * 1000, 1),
        }
    body = r.text[:OUTPUT_LIMIT]
    try:
        parsed = json.loads(body) if body.lstrip()[:1] in ("{", "[") else None
    except ValueError:
        parsed = None
    return {
        "ok": True,
        "status": r.status_code,
        "body": body,
        "json": parsed,
        "error": None,
        "elapsed_ms": round((time.perf_counter() - start) * 1000, 1),
    }


async def tcp_probe(cfg: TcpProbe) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        with anyio.fail_after(cfg.timeout):
            stream = await anyio.connect_tcp(cfg.host, cfg.port)
    except (OSError, TimeoutError) as exc:
        # anyio tries every address and says "all attempts failed"; the first
        # attempt's own error (refused, unreachable) is what a person needs.
        cause = exc.__cause__
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        shown = cause if isinstance(cause, OSError) else exc
        return {"up": False, "latency_ms": None, "error": f"{type(shown).__name__}: {shown}"[:200]}
    with contextlib.suppress(OSError):
        await stream.aclose()
    return {"up": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2), "error": None}


async def process_watch(cfg: ProcessWatch) -> dict[str, Any]:
    def scan() -> list[int]:
        if cfg.pid is not None:
            return [cfg.pid] if Path(f"/proc/{cfg.pid}").exists() else []
        found = []
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if ") Z " in stat:  # a zombie is not running
                continue
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
            if cfg.name and cfg.name in cmdline:
                found.append(int(entry.name))
        return sorted(found)

    pids = await anyio.to_thread.run_sync(scan)
    return {"running": bool(pids), "count": len(pids), "pids": pids[:50]}


async def file_changes(cfg: FileWatch, stop: anyio.Event) -> AsyncIterator[dict[str, Any]]:
    import watchfiles

    async for batch in watchfiles.awatch(
        cfg.path,
        debounce=cfg.debounce_ms,
        recursive=cfg.recursive,
        stop_event=stop,
        yield_on_timeout=False,
    ):
        changes = [{"change": change.name, "path": path} for change, path in sorted(batch)]
        yield {
            "changes": changes[:100],
            "count": len(changes),
            "paths": sorted({c["path"] for c in changes})[:100],
        }


@hookimpl
def legion_watcher_kinds() -> list[WatcherKind]:
    """The built-in pollers, registered like any plugin's. cmd_watch (which runs
    in the sandbox) and file_watch (inotify, not polling) need the daemon's
    services and are wired by the watcher service itself."""
    return [
        WatcherKind(name, CONFIGS[name], poll, DEFAULT_TRIGGERS[name])
        for name, poll in (
            ("http_poll", http_poll),
            ("tcp_probe", tcp_probe),
            ("process_watch", process_watch),
        )
    ]


def check_config(kind: str, raw: dict[str, Any], table: Mapping[str, WatcherKind]) -> Any:
    from legion.errors import InvalidParams, close_matches
    from legion.validation import problem

    if kind not in table:
        near = close_matches(kind, list(table))
        raise InvalidParams(
            f"unknown watcher kind {kind!r}",
            hint=(f"did you mean {near[0]!r}? " if near else "")
            + f"kinds: {', '.join(sorted(table))}",
            candidates=near,
        )
    struct = table[kind].config
    try:
        cfg = msgspec.convert(raw, struct, strict=False)
    except msgspec.ValidationError as exc:
        field, _kind, detail = problem(str(exc))
        fields = [f.name for f in msgspec.structs.fields(struct)]
        raise InvalidParams(
            f"{kind} config: {field + ': ' if field else ''}{detail}",
            hint=f"{kind} takes: {', '.join(fields)}",
        ) from None
    if isinstance(cfg, ProcessWatch) and (cfg.name is None) == (cfg.pid is None):
        raise InvalidParams(
            "process_watch needs exactly one of name or pid",
            hint='e.g. {"name": "nginx"} or {"pid": 1234}',
        )
    if isinstance(cfg, CmdWatch) and cfg.cwd is not None and not Path(cfg.cwd).is_dir():
        raise InvalidParams(
            f"cmd_watch: cwd {cfg.cwd} is not a directory",
            hint="leave cwd out to run in the agent's working directory",
        )
    if isinstance(cfg, FileWatch) and not Path(cfg.path).exists():
        raise InvalidParams(
            f"file_watch: {cfg.path} does not exist", hint="watch an existing file or directory"
        )
    return cfg
