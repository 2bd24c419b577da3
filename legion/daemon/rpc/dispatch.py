"""Method registry and typed parameter decoding.

Every method declares a msgspec struct for its parameters. A call whose
parameters do not fit gets `-32602` naming the field, what was expected, and
the method's whole signature, so the caller (a person, a script or a model)
can correct itself in one step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from legion.errors import InvalidParams, MethodNotFound, close_matches
from legion.validation import problem, type_name


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every method's parameter struct."""


class NoParams(Params):
    pass


@dataclass
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass
class Context:
    """What a handler knows about its caller."""

    peer: Peer
    # Callables run after the response is written (e.g. start an event stream).
    after_response: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Set by the connection: subscriptions it must close when it goes away.
    connection: Any = None


Handler = Callable[[Context, Any], Awaitable[Any]]


@dataclass
class Method:
    name: str
    handler: Handler
    params: type[Params]
    summary: str

    def signature(self) -> str:
        parts = []
        for f in msgspec.structs.fields(self.params):
            req = f.required
            default = (
                "" if req else f" = {f.default!r}" if f.default is not msgspec.NODEFAULT else ""
            )
            parts.append(f"{f.encode_name}: {type_name(f.type)}{default}")
        return f"{self.name}({', '.join(parts)})"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "signature": self.signature(),
            "params": msgspec.json.schema(self.params),
        }


class Registry:
    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def add(self, name: str, handler: Handler, params: type[Params] = NoParams) -> None:
        summary = (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else ""
        self.methods[name] = Method(name, handler, params, summary)

    def method(self, name: str, params: type[Params] = NoParams) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(name, fn, params)
            return fn

        return deco

    def lookup(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            near = close_matches(name, list(self.methods))
            raise MethodNotFound(
                f"unknown method {name!r}",
                hint=(f"did you mean {near[0]!r}? " if near else "")
                + "`daemon.methods` lists every method with its parameters",
                candidates=near,
            ) from None

    async def call(self, ctx: Context, name: str, raw: Any) -> Any:
        method = self.lookup(name)
        params = decode_params(method, raw)
        return await method.handler(ctx, params)


def decode_params(method: Method, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        raise InvalidParams(
            f"{method.name}: positional parameters are not supported",
            hint=f"pass an object with named fields: {method.signature()}",
        )
    if not isinstance(raw, dict):
        raise InvalidParams(
            f"{method.name}: params must be an object",
            hint=f"pass an object with named fields: {method.signature()}",
        )
    where = _huge_int(raw, "")
    if where is not None:
        raise InvalidParams(
            f"{method.name}: {where + ': ' if where else ''}number out of range "
            "(integers must fit in 64 bits)",
            hint=f"the method takes {method.signature()}",
            data={"field": where} if where else None,
        )
    try:
        return msgspec.convert(raw, method.params, strict=True)
    except msgspec.ValidationError as exc:
        raise _params_error(method, str(exc)) from None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _huge_int(value: Any, path: str) -> str | None:
    """The path of the first integer outside 64 bits in decoded JSON, if any.

    JSON allows `10**400`, and msgspec decodes it into a Python int that
    passes an `int` field; SQLite, and any model provider, cannot take it. So
    it is refused here, naming the field, rather than failing deep inside a
    method as an internal error. Nesting is bounded by `rpc.max_depth`.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return path if not _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, int | dict | list):
                found = _huge_int(v, f"{path}.{k}" if path else str(k))
                if found is not None:
                    return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, int | dict | list):
                found = _huge_int(v, f"{path}[{i}]")
                if found is not None:
                    return found
    return None


def _params_error(method: Method, msg: str) -> InvalidParams:
    where, kind, what = problem(msg)
    candidates: list[str] = []
    if kind == "unknown":
        names = [f.encode_name for f in msgspec.structs.fields(method.params)]
        candidates = close_matches(where.rsplit(".", 1)[-1], names)
        what = "unknown parameter"
    elif kind == "missing":
        what = "required parameter is missing"
    return InvalidParams(
        f"{method.name}: {where + ': ' if where else ''}{what}",
        hint=(f"did you mean {candidates[0]!r}? " if candidates else "")
        + f"the method takes {method.signature()}",
        candidates=candidates,
        data={"field": where} if where else None,
    )
