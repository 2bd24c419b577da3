"""Legion: a daemon that hosts a fleet of long-lived LLM agents.

The public Python API is re-exported here. It is kept tiny and lazy so that
`import legion` (which every `legion` command does) costs nothing.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["LegionError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "LegionError":
        from legion.errors import LegionError

        return LegionError
    raise AttributeError(f"module 'legion' has no attribute {name!r}")
