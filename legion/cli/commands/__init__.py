"""CLI command groups: each module exposes `register(subparsers, common)`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def subcommand(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    description: str,
    handler: Callable[..., int],
    *positionals: str,
) -> argparse.ArgumentParser:
    """A subcommand taking the agent ID first (then `positionals`, upper-cased as
    metavars), with the common options, bound to `handler`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=summary, description=description
    )
    parser.add_argument("id", metavar="ID")
    for positional in positionals:
        parser.add_argument(positional, metavar=positional.upper())
    parser.set_defaults(handler=handler)
    return parser
