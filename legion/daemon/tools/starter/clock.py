"""`now`: the date and time in a timezone.

A model has no clock; its sense of "today" is its training cut-off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from legion.plugin import ToolError, tool


@tool(
    keywords=[
        "time",
        "date",
        "clock",
        "today",
        "timezone",
        "day",
        "weekday",
        "current",
        "now",
        "hour",
    ],
)
def now(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in a timezone (IANA name, e.g. Europe/Paris)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        from legion.errors import close_matches

        near = close_matches(timezone, sorted(available_timezones()), n=3)
        raise ToolError(
            f"unknown timezone {timezone!r}",
            hint=f"use an IANA name such as {', '.join(near) or 'UTC, Europe/Paris'}",
            kind="bad_arguments",
        ) from None
    t = datetime.now(zone)
    return {
        "iso": t.isoformat(timespec="seconds"),
        "weekday": t.strftime("%A"),
        "timezone": timezone,
    }
