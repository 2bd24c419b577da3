"""`legion config check`: validate a config file without starting anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from legion.cli.context import CommandContext


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="work with config.toml",
                       description="Work with config.toml.")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    c = csub.add_parser("check", parents=[common], help="validate a config file",
                        description="Validate a config file (default: HOME/config.toml) and "
                        "print the effective configuration. Exit 2 if it is invalid.")
    c.add_argument("file", nargs="?", metavar="FILE")
    c.set_defaults(handler=check)


def check(args: argparse.Namespace, ctx: CommandContext) -> int:
    from legion import config

    path = Path(args.file).expanduser() if args.file else ctx.paths.config
    cfg = config.load(path, required=bool(args.file))
    effective = config.to_dict(cfg)
    doc = {"file": str(path), "exists": path.exists(), "valid": True, "config": effective}
    if ctx.json:
        ctx.emit_json(doc)
    else:
        src = str(path) if path.exists() else f"{path} (absent: embedded defaults)"
        print(f"ok: {src}")
        for section, values in effective.items():
            for key, value in values.items():
                print(f"  {section}.{key} = {value!r}")
    return 0
