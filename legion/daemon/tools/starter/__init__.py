"""Starter tools: what a fresh Legion can do out of the box, shipped as a plugin.

These are registered through the same `legion_tools` hook as any third-party
plugin (see legion/plugin.py), so the plugin API is exercised every day and a
user can disable them like any other plugin. They live in the searchable
registry, not in the prompt: agents find them with `tool_search`.

- `http_get`: an API call or raw download; status, headers and body as data.
- `web_fetch`: a web page as readable text, for reading, not for parsing.
- `web_search`: Brave Search; needs `BRAVE_API_KEY` or `brave_api_key` under
  `[plugins.settings.starter]` (also `endpoint`, so tests can use a local server).
- `now`: the date and time in a timezone.
- `dag_analyze`: order, critical path and cycles of a dependency graph, the
  one computation small models reliably get wrong by hand.

One module per tool family: `http` (http_get), `page` (web_fetch and its
HTML-to-text parser), `search` (web_search), `clock` (now), `dag`
(dag_analyze); `fetching` holds what http_get and web_fetch share. Like a
third-party plugin, the package takes the tool API from legion/plugin.py,
never from legion.daemon.

Every refusal is a ToolError whose hint says what to do instead: the reader
is often a small model that will follow it on its next turn.
"""

from __future__ import annotations

from legion.plugin import Tool, hookimpl

from .clock import now
from .dag import dag_analyze
from .http import http_get
from .page import web_fetch
from .search import web_search

__all__ = ["dag_analyze", "http_get", "legion_tools", "now", "web_fetch", "web_search"]


@hookimpl
def legion_tools() -> list[Tool]:
    return [http_get, web_fetch, web_search, now, dag_analyze]
