"""The connection factory: a sqlite3 build that can load sqlite-vec.

Some Python builds (this project's CI machine among them) ship a `sqlite3`
without `enable_load_extension`. Vector search must never be dropped silently,
so the factory probes, in order, the interpreter's own `sqlite3`,
`pysqlite3` (pysqlite3-binary) and `sqlean` (sqlean.py), and uses the first
that loads sqlite-vec. `legion info` reports which one won and why.
`LEGION_SQLITE_DRIVER=stdlib|pysqlite3|sqlean` forces a choice.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from legion.errors import ConfigError

DRIVERS = ("stdlib", "pysqlite3", "sqlean")
_MODULES = {"stdlib": "sqlite3", "pysqlite3": "pysqlite3.dbapi2", "sqlean": "sqlean"}


@dataclass(frozen=True)
class Driver:
    name: str
    module: ModuleType
    sqlite_version: str
    vec_version: str | None
    # Why earlier candidates were passed over (or why vec is unavailable).
    notes: list[str] = field(default_factory=list)

    @property
    def vec_available(self) -> bool:
        return self.vec_version is not None

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "module": self.module.__name__,
            "sqlite_version": self.sqlite_version,
            "vec_version": self.vec_version,
            "notes": self.notes,
        }


def _probe(name: str) -> tuple[ModuleType, str, str | None, str]:
    """Import a candidate and try to load sqlite-vec into a throwaway connection."""
    mod = importlib.import_module(_MODULES[name])
    conn = mod.connect(":memory:")
    try:
        version = conn.execute("select sqlite_version()").fetchone()[0]
        try:
            _load_vec(conn)
            vec = conn.execute("select vec_version()").fetchone()[0]
            return mod, version, vec, ""
        except Exception as exc:
            return mod, version, None, f"{name}: cannot load sqlite-vec ({exc})"
    finally:
        conn.close()


def _load_vec(conn: Any) -> None:
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


@functools.cache
def driver() -> Driver:
    """The sqlite3 module the daemon uses, chosen once per process."""
    forced = os.environ.get("LEGION_SQLITE_DRIVER", "").strip()
    if forced and forced not in DRIVERS:
        raise ConfigError(
            f"LEGION_SQLITE_DRIVER={forced!r} is not a sqlite driver",
            hint=f"use one of {', '.join(DRIVERS)}, or unset it to let Legion "
            "pick the first that loads sqlite-vec",
        )
    order = [forced] if forced else list(DRIVERS)
    notes: list[str] = []
    fallback: tuple[str, ModuleType, str] | None = None
    for name in order:
        try:
            mod, version, vec, why = _probe(name)
        except Exception as exc:  # not installed, or broken
            notes.append(f"{name}: unavailable ({exc})")
            continue
        if vec is not None:
            return Driver(name, mod, version, vec, notes)
        notes.append(why)
        fallback = fallback or (name, mod, version)
    if fallback is None:
        raise ConfigError(
            "no usable sqlite3 module: " + "; ".join(notes),
            hint="install one (pip install sqlean.py), or unset LEGION_SQLITE_DRIVER",
        )
    notes.append(
        "vector search unavailable: install pysqlite3-binary or sqlean.py "
        "(pip install sqlean.py) so sqlite-vec can load"
    )
    return Driver(fallback[0], fallback[1], fallback[2], None, notes)


def connect(path: Path | str, *, synchronous: str = "full", busy_timeout: float = 5.0) -> Any:
    """Open one connection with Legion's pragmas and sqlite-vec loaded.

    Autocommit mode (isolation_level=None): callers say BEGIN themselves, so a
    transaction's extent is always explicit.
    """
    drv = driver()
    conn = drv.module.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    conn.row_factory = drv.module.Row
    if drv.vec_available:
        _load_vec(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return conn
