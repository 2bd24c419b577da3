"""`legion config check`: validate a config file without starting anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from legion.cli.context import CommandContext


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "config",
        parents=[common],
        help="work with config.toml",
        description="Work with config.toml.",
    )
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    c = csub.add_parser(
        "check",
        parents=[common],
        help="validate a config file",
        description="Validate a config file (default: HOME/config.toml) and "
        "print the effective configuration, secrets redacted (a secret "
        "read from the environment is shown as the ${VAR} it was written "
        "as). Exit 2 if it is invalid.",
    )
    c.add_argument("file", nargs="?", metavar="FILE")
    c.set_defaults(handler=check)


def check(args: argparse.Namespace, ctx: CommandContext) -> int:
    from legion import config
    from legion.redact import config_view

    path = Path(args.file).expanduser() if args.file else ctx.paths.config
    cfg = config.load(path, required=bool(args.file))
    # Never the values of API keys and tokens: this output ends up in bug
    # reports, terminals that are shared and logs of CI runs.
    effective = config_view(cfg)
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
