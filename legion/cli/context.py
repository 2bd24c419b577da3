"""What every command needs: where the daemon is, how to print, a client."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from legion import paths as paths_mod
from legion.cli import daemon_log
from legion.cli.client import Client


class CommandContext:
    # Not a dataclass, to keep `inspect` off the CLI's start-up path.
    def __init__(self, paths: paths_mod.Paths, json: bool) -> None:
        self.paths = paths
        self.json = json

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CommandContext:
        return cls(
            paths=paths_mod.resolve(getattr(args, "home", None), getattr(args, "socket", None)),
            json=bool(getattr(args, "json", False)),
        )

    def client(self, timeout: float | None = 30.0) -> Client:
        return Client(self.paths.socket, timeout=timeout, log=self.paths.home / daemon_log.LOG_NAME)

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = 30.0
    ) -> Any:
        with self.client(timeout) as c:
            return c.call(method, params)

    def show(self, doc: Any, renderer: str) -> None:
        """JSON for scripts; otherwise the named function of cli.render (rich,
        imported only here so --json never pays for it)."""
        if self.json:
            self.emit_json(doc)
            return
        from legion.cli import board_render, render

        module = board_render if hasattr(board_render, renderer) else render
        getattr(module, renderer)(doc)

    def emit_json(self, doc: Any) -> None:
        # One write: json.dump streams many small writes, one syscall each when
        # stdout is unbuffered (PYTHONUNBUFFERED), which dominates a big `ps`.
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")

    def emit_line(self, doc: Any) -> None:
        sys.stdout.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stdout.flush()
