"""Structured logs with structlog: JSON lines for the journal, readable on a terminal.

Every line passes through a `Redactor` before it is rendered, so an API key in
an error message, a URL or an exception's text never reaches the journal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from legion.redact import Redactor, active

_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)


class RedactSecrets:
    """A structlog processor: known secrets and credential shapes become `[redacted]`."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        # None: whatever the daemon installed (`legion.redact.install`), looked
        # up per line, so logging can be set up before the config is read.
        self.redactor = redactor

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # Objects (exceptions, paths) are rendered by their str() later; render
        # them here instead, so that text is redacted too.
        plain = {k: v if isinstance(v, _PLAIN) else str(v) for k, v in event_dict.items()}
        out = (self.redactor or active()).value(plain)
        assert isinstance(out, dict)
        return out


def configure(level: str = "info", fmt: str = "auto", redactor: Redactor | None = None) -> None:
    """Set up the daemon's logging; `redactor` knows the config's secrets.

    Without one, the redactor installed with `legion.redact.install` is used,
    and before any is installed only the credential shapes (`sk-...`,
    `Bearer ...`) are hidden.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            # After format_exc_info, so a traceback's text is redacted as well.
            RedactSecrets(redactor),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
