"""`web_search`: Brave Search, titles, URLs and snippets of the top results.

Needs `BRAVE_API_KEY` or `brave_api_key` under `[plugins.settings.starter]`
(also `endpoint`, so tests can use a local server). Each refusal from Brave
(bad key, rate limit) becomes a ToolError that says what to do meanwhile.
"""

from __future__ import annotations

import html
import os
import re
from typing import Annotated, Any

import anyio
import httpx
from msgspec import Meta

from legion.plugin import ToolContext, ToolError, tool

from .fetching import USER_AGENT, _cause

BRAVE_ENDPOINT = "https://api.search.brave.com/res/v1/web/search"
SEARCH_TIMEOUT = 15.0


@tool(
    keywords=[
        "search",
        "web",
        "internet",
        "google",
        "brave",
        "find",
        "lookup",
        "query",
        "news",
        "online",
        "research",
    ],
    timeout=SEARCH_TIMEOUT + 10,
)
async def web_search(
    ctx: ToolContext, query: str, count: Annotated[int, Meta(ge=1, le=20)] = 5
) -> dict[str, Any]:
    """Search the web (Brave Search): titles, URLs and snippets of the top results.

    Read a result in full with web_fetch on its url. Needs a Brave Search API
    key: BRAVE_API_KEY in the daemon's environment, or brave_api_key under
    [plugins.settings.starter] in config.toml.
    """
    if not query.strip():
        raise ToolError(
            "the query is empty",
            hint='search for some words, e.g. {"query": "python asyncio tutorial"}',
            kind="bad_arguments",
        )
    key = str(ctx.settings.get("brave_api_key") or os.environ.get("BRAVE_API_KEY", "")).strip()
    if not key:
        raise ToolError(
            "web_search needs a Brave Search API key",
            hint="set BRAVE_API_KEY in the daemon's environment or brave_api_key under "
            "[plugins.settings.starter] in config.toml; meanwhile use web_fetch on a "
            "known URL",
        )
    endpoint = str(ctx.settings.get("endpoint") or BRAVE_ENDPOINT)
    headers = {"X-Subscription-Token": key, "Accept": "application/json", "User-Agent": USER_AGENT}
    try:
        with anyio.fail_after(SEARCH_TIMEOUT):
            async with httpx.AsyncClient(timeout=SEARCH_TIMEOUT) as client:
                resp = await client.get(
                    endpoint, params={"q": query, "count": count}, headers=headers
                )
    except TimeoutError:
        raise ToolError(
            f"Brave Search did not answer within {SEARCH_TIMEOUT:g}s",
            hint="try again later, or use web_fetch on a known URL",
        ) from None
    except httpx.HTTPError as exc:
        raise ToolError(
            f"could not reach Brave Search: {_cause(exc)}",
            hint="try again later, or use web_fetch on a known URL",
        ) from None
    _check_search_status(resp)
    try:
        data = resp.json()
    except ValueError:
        raise ToolError(
            "Brave Search sent an answer that is not JSON",
            hint="try again later, or use web_fetch on a known URL",
        ) from None
    web = data.get("web") if isinstance(data, dict) else None
    found = (web.get("results") if isinstance(web, dict) else None) or []
    results = [
        {
            "title": _plain(r.get("title", "")),
            "url": r.get("url", ""),
            "description": _plain(r.get("description", "")),
        }
        for r in found[:count]
        if isinstance(r, dict)
    ]
    return {"query": query, "results": results}


def _check_search_status(resp: httpx.Response) -> None:
    status = resp.status_code
    if status in (401, 403):
        raise ToolError(
            f"Brave Search refused the API key (HTTP {status})",
            hint="the key in BRAVE_API_KEY or brave_api_key is wrong or expired; ask the "
            "operator to fix it, and meanwhile use web_fetch on a known URL",
        )
    if status == 429:
        wait = resp.headers.get("retry-after")
        raise ToolError(
            "Brave Search rate limit reached (HTTP 429)",
            hint=(
                f"wait {wait}s before searching again"
                if wait
                else "wait a minute before searching again"
            )
            + "; search less often, or use web_fetch on a known URL",
        )
    if status >= 400:
        raise ToolError(
            f"Brave Search answered HTTP {status}: {resp.text[:200]}",
            hint="check the query (plain words work best), or try again later",
        )


_TAG = re.compile(r"<[^>]+>")


def _plain(text: Any) -> str:
    # Brave marks matches with <strong>; the model wants the words.
    return html.unescape(_TAG.sub("", str(text))).strip()
