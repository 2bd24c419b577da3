"""One reading of msgspec's validation messages, for every instructive error.

Config files, RPC parameters and tool arguments are all validated by msgspec,
whose messages look like "Expected `int`, got `str` - at `$.rpc.limit`". Each
caller words its own error; this turns the message into its parts once.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import Any, Literal, NamedTuple

_AT = re.compile(r" - at `\$\.?(.*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field (\S+)")
_MISSING = re.compile(r"Object missing required field (\S+)")


class Problem(NamedTuple):
    # Dotted path of the offending field ("" for the whole object).
    field: str
    kind: Literal["unknown", "missing", "invalid"]
    # What is wrong, lower-cased, without backticks ("expected int, got str").
    detail: str


def problem(message: str) -> Problem:
    m = _AT.search(message)
    where = m.group(1) if m else ""
    what = (message[: m.start()] if m else message).replace("`", "")
    prefix = f"{where}." if where else ""
    if u := _UNKNOWN.match(what):
        return Problem(prefix + u.group(1), "unknown", "unknown field")
    if g := _MISSING.match(what):
        return Problem(prefix + g.group(1), "missing", "required field is missing")
    detail = what[0].lower() + what[1:] if what else "invalid value"
    return Problem(where, "invalid", detail)


def type_name(tp: Any) -> str:
    """A short readable name for an annotation, for signatures in errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))
