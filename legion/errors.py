"""The LegionError hierarchy.

One class per kind of failure. Each carries a JSON-RPC error code (how the
daemon reports it on the wire), a CLI exit code (how a shell script sees it),
and a hint: one sentence that says what to do next. The hint is written for a
person at a terminal and for a small model reading a tool result alike.

This module is imported by the CLI, so it must stay free of heavy imports.
"""

from __future__ import annotations

from typing import Any, ClassVar

# JSON-RPC 2.0 spec codes (protocol faults).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes, in the range the spec reserves for servers.
APP_ERROR = -32000
NOT_FOUND = -32001
CONFLICT = -32002
PERMISSION_DENIED = -32003
TIMEOUT = -32004
UNAVAILABLE = -32005
STORAGE = -32006
MODEL_UNAVAILABLE = -32007

# CLI exit codes (the contract in docs/cli.md).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130


class LegionError(Exception):
    """Base of every error Legion reports on purpose."""

    code: ClassVar[int] = APP_ERROR
    exit_code: ClassVar[int] = EXIT_ERROR
    kind: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        kind: str | None = None,
        candidates: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if kind is not None:
            self.kind = kind  # type: ignore[misc]  # a per-instance refinement of the class kind
        self.candidates = candidates or []
        self.extra = data or {}

    def to_rpc(self) -> dict[str, Any]:
        """The JSON-RPC `error` object for this error."""
        data: dict[str, Any] = {"kind": self.kind, **self.extra}
        if self.hint:
            data["hint"] = self.hint
        if self.candidates:
            data["candidates"] = self.candidates
        return {"code": self.code, "message": self.message, "data": data}

    @classmethod
    def from_rpc(cls, error: dict[str, Any]) -> LegionError:
        """Rebuild an error from a JSON-RPC `error` object (client side)."""
        code = error.get("code")
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        assert isinstance(data, dict)
        klass = _BY_CODE.get(code if isinstance(code, int) else APP_ERROR, LegionError)
        extra = {k: v for k, v in data.items() if k not in {"kind", "hint", "candidates"}}
        candidates = data.get("candidates")
        return klass(
            str(error.get("message", "unknown error")),
            hint=data.get("hint"),
            kind=data.get("kind"),
            candidates=list(candidates) if isinstance(candidates, list) else None,
            data=extra,
        )


class ParseError(LegionError):
    code = PARSE_ERROR
    kind = "parse_error"


class InvalidRequest(LegionError):
    code = INVALID_REQUEST
    kind = "invalid_request"


class MethodNotFound(LegionError):
    code = METHOD_NOT_FOUND
    kind = "method_not_found"


class InvalidParams(LegionError):
    """A call's arguments are wrong: a usage error from the CLI's point of view."""

    code = INVALID_PARAMS
    exit_code = EXIT_USAGE
    kind = "invalid_params"


class InternalError(LegionError):
    code = INTERNAL_ERROR
    kind = "internal_error"


class NotFound(LegionError):
    code = NOT_FOUND
    exit_code = EXIT_NOT_FOUND
    kind = "not_found"


class Conflict(LegionError):
    """The request is valid but the current state forbids it (illegal transition,
    duplicate id, a daemon already running)."""

    code = CONFLICT
    exit_code = EXIT_CONFLICT
    kind = "conflict"


class PermissionDenied(LegionError):
    code = PERMISSION_DENIED
    kind = "permission_denied"


class Timeout(LegionError):
    code = TIMEOUT
    exit_code = EXIT_TIMEOUT
    kind = "timeout"


class Unavailable(LegionError):
    """The daemon cannot take the request now (shutting down, too many clients)."""

    code = UNAVAILABLE
    exit_code = EXIT_UNREACHABLE
    kind = "unavailable"


class StorageError(LegionError):
    """The database refused a write (disk full, read-only, corrupt)."""

    code = STORAGE
    kind = "storage"


class ModelUnavailable(LegionError):
    """Every model in an alias's chain failed (after retries and fallbacks)."""

    code = MODEL_UNAVAILABLE
    kind = "model_unavailable"


class DaemonUnreachable(LegionError):
    """Client side: nothing answers on the socket."""

    code = UNAVAILABLE
    exit_code = EXIT_UNREACHABLE
    kind = "daemon_unreachable"


class ConfigError(LegionError):
    """A configuration file or value is invalid; `key` names the offending path."""

    code = INVALID_PARAMS
    exit_code = EXIT_USAGE
    kind = "config"


_BY_CODE: dict[int, type[LegionError]] = {
    PARSE_ERROR: ParseError,
    INVALID_REQUEST: InvalidRequest,
    METHOD_NOT_FOUND: MethodNotFound,
    INVALID_PARAMS: InvalidParams,
    INTERNAL_ERROR: InternalError,
    NOT_FOUND: NotFound,
    CONFLICT: Conflict,
    PERMISSION_DENIED: PermissionDenied,
    TIMEOUT: Timeout,
    UNAVAILABLE: Unavailable,
    STORAGE: StorageError,
    MODEL_UNAVAILABLE: ModelUnavailable,
}


def close_matches(word: str, options: list[str], n: int = 5) -> list[str]:
    """Options that look like `word`, for "did you mean" candidates."""
    import difflib

    return difflib.get_close_matches(word, options, n=n, cutoff=0.5)
