"""Agent definition files: agents declared in TOML, created on daemon start.

A definition file names one agent:

    id = "scout"
    model = "local"
    system = "You watch ..."        # or: system_file = "scout.md"

On start the daemon spawns each declared agent that does not exist yet, and
brings the model and prompt of an existing one in line with its file. The
agent's state is never touched: a definition declares what an agent is, not
whether it runs, so a paused agent stays paused across restarts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from legion.config import check_keys
from legion.daemon.agents.budgets import GuardOverrides
from legion.daemon.agents.model import validate_id
from legion.errors import ConfigError, InvalidParams


class Definition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    model: str | None = None
    system: str | None = None
    system_file: str | None = None
    parent: str | None = None
    # Overrides of [guards] for this agent (max_turns, daily_tokens, ...).
    guards: dict[str, Any] = {}
    # Relevant memories added to each prompt, in estimated tokens (0: off).
    memory_context_tokens: int | None = None
    # Filled in by the loader.
    path: str = ""


def load_file(path: Path) -> Definition:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read agent definition: {exc}",
            hint="fix the file, or remove it from daemon.agents / --agents",
        ) from None
    try:
        check_keys(raw, Definition)
        d = msgspec.convert(raw, Definition)
        validate_id(d.id)
        msgspec.convert(d.guards, GuardOverrides)
    except ConfigError as exc:
        raise ConfigError(
            f"{path}: {exc.message}", hint=exc.hint, candidates=exc.candidates
        ) from None
    except (msgspec.ValidationError, InvalidParams) as exc:
        raise ConfigError(
            f"{path}: {exc}", hint="see docs/configuration.md, agent definitions"
        ) from None
    if d.system is not None and d.system_file is not None:
        raise ConfigError(
            f"{path}: give either system or system_file, not both",
            hint="keep the prompt in one place",
        )
    if d.system_file is not None:
        prompt_path = (path.parent / d.system_file).resolve()
        try:
            d.system = prompt_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: system_file {prompt_path}: {exc}",
                hint="check the path; it is relative to the definition file",
            ) from None
    d.path = str(path.resolve())
    return d


def load(paths: list[Path]) -> list[Definition]:
    """Definitions from files and directories (every *.toml in a directory, sorted)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.glob("*.toml")))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(
                f"agent definitions: {p} does not exist",
                hint="pass a .toml file or a directory of them",
            )
    defs = [load_file(f) for f in files]
    seen: dict[str, str] = {}
    for d in defs:
        if d.id in seen:
            raise ConfigError(
                f"agent '{d.id}' is defined twice: {seen[d.id]} and {d.path}",
                hint="give each definition its own id",
            )
        seen[d.id] = d.path
    # Parents first, so a child's parent exists when the child is spawned.
    ordered: list[Definition] = []
    pending = list(defs)
    while pending:
        ready = [
            d
            for d in pending
            if d.parent is None or d.parent not in seen or any(o.id == d.parent for o in ordered)
        ]
        if not ready:
            raise ConfigError(
                "agent definitions name each other as parents in a cycle: "
                + ", ".join(d.id for d in pending),
                hint="break the cycle: one of them must have no parent",
            )
        ordered.extend(ready)
        pending = [d for d in pending if d not in ready]
    return ordered
