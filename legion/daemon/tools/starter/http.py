"""`http_get`: an API call or raw download; status, headers and body as data.

A 404 or 500 is a result the model should read, not an error; only a request
that could not be made at all is a ToolError.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from msgspec import Meta

from legion.plugin import tool

from .fetching import MaxChars, _check_url, _download, _is_text

# Response headers worth a model's tokens; the rest are transport noise.
USEFUL_HEADERS = (
    "content-type",
    "content-length",
    "last-modified",
    "etag",
    "cache-control",
    "location",
    "retry-after",
    "link",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)


@tool(
    keywords=[
        "http",
        "get",
        "url",
        "fetch",
        "download",
        "api",
        "request",
        "rest",
        "json",
        "status",
        "headers",
        "endpoint",
    ],
    timeout=75,  # above the largest `timeout` argument, so that one reports first
)
async def http_get(
    url: str,
    headers: dict[str, str] = {},  # noqa: B006 -- msgspec copies it per call; never mutated
    timeout: Annotated[float, Meta(gt=0, le=60)] = 15,  # noqa: ASYNC109 -- the model's budget
    max_chars: MaxChars = 20000,
) -> dict[str, Any]:
    """HTTP GET a URL (an API or raw file): status, headers, body text and parsed JSON.

    Follows redirects; `url` in the result is the final one. `ok` is true for a
    2xx status; a 404 or 500 is a result, not an error, so read `status`.
    `json` holds the parsed body when the server sent JSON and it fit in
    `max_chars`; otherwise null. Binary bodies are not shown (body is null).
    To read a web page as text, use web_fetch instead.
    """
    _check_url(url, "http_get")
    resp, raw, cut = await _download(url, headers, timeout, max_chars * 4 + 4, "http_get")
    ctype = resp.headers.get("content-type", "")
    body: str | None = None
    truncated = cut
    if _is_text(ctype, raw):
        text = raw.decode(resp.encoding or "utf-8", errors="replace")
        truncated = truncated or len(text) > max_chars
        body = text[:max_chars]
    parsed: Any = None
    if body is not None and not truncated and "json" in ctype.lower():
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return {
        "status": resp.status_code,
        "ok": 200 <= resp.status_code < 300,
        "url": str(resp.url),
        "content_type": ctype,
        "headers": {k: v for k, v in resp.headers.items() if k.lower() in USEFUL_HEADERS},
        "body": body,
        "truncated": truncated,
        "json": parsed,
    }
