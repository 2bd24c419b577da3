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

Every refusal is a ToolError whose hint says what to do instead: the reader
is often a small model that will follow it on its next turn.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import deque
from datetime import datetime
from html.parser import HTMLParser
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import anyio
import httpx
from msgspec import Meta

from legion import __version__
from legion.daemon.tools.base import Tool, ToolContext, ToolError, tool
from legion.plugin import hookimpl

BRAVE_ENDPOINT = "https://api.search.brave.com/res/v1/web/search"
USER_AGENT = f"Legion/{__version__} (+https://github.com/legion; http_get)"
# Many sites serve a bot wall or an empty shell to unknown clients; a page meant
# for reading is fetched the way a desktop browser would ask for it.
BROWSER_HEADERS = {
    "User-Agent": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                   "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    "Accept": ("text/html,application/xhtml+xml,application/xml;q=0.9,"
               "image/avif,image/webp,*/*;q=0.8"),
    "Accept-Language": "en-US,en;q=0.9",
}
# Response headers worth a model's tokens; the rest are transport noise.
USEFUL_HEADERS = ("content-type", "content-length", "last-modified", "etag", "cache-control",
                  "location", "retry-after", "link", "x-ratelimit-remaining",
                  "x-ratelimit-reset")
# HTML is mostly markup: read far more bytes than the text we keep, but never
# an unbounded download into the daemon's memory.
PAGE_BYTES = 4_000_000
FETCH_TIMEOUT = 20.0
SEARCH_TIMEOUT = 15.0

MaxChars = Annotated[int, Meta(ge=100, le=200_000)]


@tool(
    keywords=["http", "get", "url", "fetch", "download", "api", "request", "rest", "json",
              "status", "headers", "endpoint"],
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


@tool(
    keywords=["web", "page", "website", "html", "read", "browse", "url", "fetch", "article",
              "text", "scrape", "link", "open"],
    timeout=FETCH_TIMEOUT + 10,
)
async def web_fetch(url: str, max_chars: MaxChars = 20000) -> dict[str, Any]:
    """Read a web page as plain text (title, headings, paragraphs, external links).

    Scripts, styles, navigation and footers are dropped; headings become `#`
    lines and links to other sites appear as `text (url)`. `chars` is the
    length of the whole text; when `truncated` is true, `text` holds only the
    first `max_chars`. Plain-text and JSON pages pass through unchanged; images,
    PDFs and other binary files are refused. For an API, use http_get.
    """
    _check_url(url, "web_fetch")
    resp, raw, cut = await _download(url, BROWSER_HEADERS, FETCH_TIMEOUT, PAGE_BYTES, "web_fetch")
    ctype = resp.headers.get("content-type", "")
    if not _is_text(ctype, raw):
        raise ToolError(
            f"{resp.url} is {ctype or 'binary data'}, not a web page or text",
            hint="web_fetch reads HTML and text only; use http_get to see its status and "
                 "headers, or look for an HTML page about the same thing")
    base = ctype.split(";", 1)[0].strip().lower()
    title = ""
    if "html" in base or (not base and raw.lstrip()[:1] == b"<"):
        page = raw.decode(_html_charset(resp, raw), errors="replace")
        # A few megabytes of HTML take a second to parse: not on the event loop.
        title, text = await anyio.to_thread.run_sync(html_to_text, page)
    else:
        text = raw.decode(resp.encoding or "utf-8", errors="replace").strip()
    return {
        "url": str(resp.url),
        "status": resp.status_code,
        "title": title,
        "text": text[:max_chars],
        "truncated": cut or len(text) > max_chars,
        "chars": len(text),
    }


@tool(
    keywords=["search", "web", "internet", "google", "brave", "find", "lookup", "query",
              "news", "online", "research"],
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
        raise ToolError("the query is empty",
                        hint='search for some words, e.g. {"query": "python asyncio tutorial"}',
                        kind="bad_arguments")
    key = str(ctx.settings.get("brave_api_key") or os.environ.get("BRAVE_API_KEY", "")).strip()
    if not key:
        raise ToolError(
            "web_search needs a Brave Search API key",
            hint="set BRAVE_API_KEY in the daemon's environment or brave_api_key under "
                 "[plugins.settings.starter] in config.toml; meanwhile use web_fetch on a "
                 "known URL")
    endpoint = str(ctx.settings.get("endpoint") or BRAVE_ENDPOINT)
    headers = {"X-Subscription-Token": key, "Accept": "application/json",
               "User-Agent": USER_AGENT}
    try:
        with anyio.fail_after(SEARCH_TIMEOUT):
            async with httpx.AsyncClient(timeout=SEARCH_TIMEOUT) as client:
                resp = await client.get(endpoint, params={"q": query, "count": count},
                                        headers=headers)
    except TimeoutError:
        raise ToolError(f"Brave Search did not answer within {SEARCH_TIMEOUT:g}s",
                        hint="try again later, or use web_fetch on a known URL") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"could not reach Brave Search: {_cause(exc)}",
                        hint="try again later, or use web_fetch on a known URL") from None
    _check_search_status(resp)
    try:
        data = resp.json()
    except ValueError:
        raise ToolError("Brave Search sent an answer that is not JSON",
                        hint="try again later, or use web_fetch on a known URL") from None
    web = data.get("web") if isinstance(data, dict) else None
    found = (web.get("results") if isinstance(web, dict) else None) or []
    results = [{"title": _plain(r.get("title", "")), "url": r.get("url", ""),
                "description": _plain(r.get("description", ""))}
               for r in found[:count] if isinstance(r, dict)]
    return {"query": query, "results": results}


@tool(
    keywords=["time", "date", "clock", "today", "timezone", "day", "weekday", "current",
              "now", "hour"],
)
def now(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in a timezone (IANA name, e.g. Europe/Paris)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        from legion.errors import close_matches

        near = close_matches(timezone, sorted(available_timezones()), n=3)
        raise ToolError(f"unknown timezone {timezone!r}",
                        hint=f"use an IANA name such as {', '.join(near) or 'UTC, Europe/Paris'}",
                        kind="bad_arguments") from None
    t = datetime.now(zone)
    return {"iso": t.isoformat(timespec="seconds"), "weekday": t.strftime("%A"),
            "timezone": timezone}


EDGE_EXAMPLE = '{"edges": [["design", "build"], ["build", "test"]], "durations": {"build": 3}}'


@tool(
    keywords=["dag", "graph", "dependencies", "dependency", "topological", "sort", "order",
              "critical", "path", "cycle", "plan", "tasks", "project"],
)
def dag_analyze(
    edges: list[list[str]],
    durations: dict[str, Annotated[float, Meta(ge=0)]] = {},  # noqa: B006 -- never mutated
) -> dict[str, Any]:
    """Analyse a dependency graph: execution order, critical path, cycles, roots and leaves.

    Each edge is a [from, to] pair meaning "from must finish before to starts".
    `durations` maps a node to its duration (default 1); a node named only in
    `durations` is a task with no dependencies. The critical path is the chain
    with the largest total duration: the shortest time the whole plan can
    take. Each cycle is listed closed, e.g. ["a", "b", "a"]; when there is a
    cycle, topological_order and critical_path are null.
    """
    nodes: dict[str, None] = {}  # insertion-ordered set: results follow the caller's order
    succ: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for i, edge in enumerate(edges):
        if len(edge) != 2 or not all(edge):
            raise ToolError(
                f"edge {i} is {edge!r}; each edge must be a [from, to] pair of node names",
                hint=f"e.g. {EDGE_EXAMPLE}")
        a, b = edge
        nodes.setdefault(a)
        nodes.setdefault(b)
        if (a, b) not in seen:
            seen.add((a, b))
            succ.setdefault(a, []).append(b)
    for name in durations:
        nodes.setdefault(name)
    indeg = dict.fromkeys(nodes, 0)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, outs in succ.items():
        for b in outs:
            indeg[b] += 1
            preds[b].append(a)
    roots = [n for n in nodes if indeg[n] == 0]
    leaves = [n for n in nodes if not succ.get(n)]

    order: list[str] = []
    queue = deque(roots)
    remaining = dict(indeg)
    while queue:
        n = queue.popleft()
        order.append(n)
        for m in succ.get(n, ()):
            remaining[m] -= 1
            if remaining[m] == 0:
                queue.append(m)
    result: dict[str, Any] = {"nodes": len(nodes), "edges": len(seen), "cycles": [],
                              "topological_order": None, "critical_path": None,
                              "critical_length": None, "roots": roots, "leaves": leaves}
    if len(order) < len(nodes):
        # Only nodes Kahn could not place can be on a cycle: search just those.
        stuck = [n for n in nodes if remaining[n] > 0]
        result["cycles"] = _cycles(stuck, succ, limit=10)
        return result

    finish: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    for n in order:
        before = max(preds[n], key=lambda p: finish[p], default=None)
        finish[n] = durations.get(n, 1.0) + (finish[before] if before is not None else 0.0)
        best_pred[n] = before
    path: list[str] = []
    end: str | None = max(order, key=lambda n: finish[n], default=None)
    length = finish[end] if end is not None else 0.0
    while end is not None:
        path.append(end)
        end = best_pred[end]
    result.update(topological_order=order, critical_path=path[::-1], critical_length=length)
    return result


@hookimpl
def legion_tools() -> list[Tool]:
    return [http_get, web_fetch, web_search, now, dag_analyze]


# --- HTTP -------------------------------------------------------------------


def _check_url(url: str, name: str) -> None:
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        guess = f"https://{url.strip().lstrip('/')}"
        raise ToolError(f"{url!r} is not a full URL (it has no http:// or https://)",
                        hint=f"give the whole URL, e.g. {guess}", kind="bad_arguments")
    if scheme.lower() not in ("http", "https"):
        raise ToolError(f"{name} only fetches http:// and https:// URLs, not {scheme}://",
                        hint="give a URL such as https://example.com/page; local files and "
                             "other protocols are not reachable from this tool",
                        kind="bad_arguments")
    if not rest.split("/", 1)[0]:
        raise ToolError(f"{url!r} has no host name", hint="e.g. https://example.com/page",
                        kind="bad_arguments")


async def _download(url: str, headers: dict[str, str], seconds: float, limit: int,
                    name: str) -> tuple[httpx.Response, bytes, bool]:
    """GET with redirects; at most `limit` bytes of body, and whether it was cut.

    `seconds` bounds the whole exchange: httpx's own timeouts are per read, and
    a server that drips bytes would otherwise hold the call forever.
    """
    try:
        with anyio.fail_after(seconds):
            async with (
                httpx.AsyncClient(follow_redirects=True, timeout=seconds,
                                  headers={"User-Agent": USER_AGENT}) as client,
                client.stream("GET", url, headers=headers) as resp,
            ):
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        break
                raw = b"".join(chunks)
                return resp, raw[:limit], size > limit
    except TimeoutError:
        raise ToolError(f"{url} did not answer within {seconds:g}s",
                        hint="try again later, or another source for the same information"
                             + (" (or a larger timeout, up to 60)" if name == "http_get"
                                else "")) from None
    except httpx.ConnectError as exc:
        raise ToolError(f"could not connect to {httpx.URL(url).host}: {_cause(exc)}",
                        hint="check the host name and port in the URL; the server may be down "
                             "or the name misspelled") from None
    except httpx.TooManyRedirects:
        raise ToolError(f"{url} redirects in a loop",
                        hint="try the site's canonical URL, or another source") from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise ToolError(f"{name} could not get {url}: {_cause(exc)}",
                        hint="check the URL (and for http_get the header names and values)"
                        ) from None


def _cause(exc: BaseException) -> str:
    # httpx often wraps an OS error whose text is the useful part ("Connection refused").
    text = str(exc) or type(exc).__name__
    inner = exc.__cause__ or exc.__context__
    while inner is not None and not str(inner):
        inner = inner.__cause__ or inner.__context__
    if inner is not None and str(inner) not in text:
        text = f"{text} ({inner})"
    return text


TEXT_TYPES = ("json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded", "csv",
              "yaml", "toml", "markdown", "x-sh", "sql", "graphql")


def _is_text(ctype: str, raw: bytes) -> bool:
    base = ctype.split(";", 1)[0].strip().lower()
    if not base:
        return b"\x00" not in raw[:1024]
    return base.startswith("text/") or any(t in base for t in TEXT_TYPES)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _html_charset(resp: httpx.Response, raw: bytes) -> str:
    # Without a charset in the header, the page's <meta> says how it is encoded.
    if resp.charset_encoding:
        return resp.encoding or "utf-8"  # httpx's choice: the header's, if Python knows it
    m = _META_CHARSET.search(raw[:4096])
    if m:
        name = m.group(1).decode("ascii")
        try:
            "".encode(name)
        except LookupError:
            return "utf-8"
        return name
    return "utf-8"


def _check_search_status(resp: httpx.Response) -> None:
    status = resp.status_code
    if status in (401, 403):
        raise ToolError(
            f"Brave Search refused the API key (HTTP {status})",
            hint="the key in BRAVE_API_KEY or brave_api_key is wrong or expired; ask the "
                 "operator to fix it, and meanwhile use web_fetch on a known URL")
    if status == 429:
        wait = resp.headers.get("retry-after")
        raise ToolError(
            "Brave Search rate limit reached (HTTP 429)",
            hint=(f"wait {wait}s before searching again" if wait else
                  "wait a minute before searching again") +
                 "; search less often, or use web_fetch on a known URL")
    if status >= 400:
        raise ToolError(f"Brave Search answered HTTP {status}: {resp.text[:200]}",
                        hint="check the query (plain words work best), or try again later")


_TAG = re.compile(r"<[^>]+>")


def _plain(text: Any) -> str:
    # Brave marks matches with <strong>; the model wants the words.
    return html.unescape(_TAG.sub("", str(text))).strip()


# --- HTML to text -------------------------------------------------------------

SKIP = frozenset({"script", "style", "nav", "footer", "noscript", "svg", "head", "template",
                  "iframe", "object", "canvas"})
BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "aside", "ul", "ol",
                   "dl", "dt", "dd", "table", "tr", "blockquote", "pre", "figure",
                   "figcaption", "form", "fieldset", "address", "details", "summary", "hr",
                   "br", "caption", "tbody", "thead"})
# Blocks set apart by a blank line; the other blocks just start a new line.
PARAGRAPHS = frozenset({"p", "ul", "ol", "dl", "table", "pre", "blockquote", "figure"})
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


# Line structure survives the whitespace collapsing as private-use characters:
# a paragraph break (a blank line) and <pre> content, whose spaces and newlines
# are the content itself.
_PARA = "\n\ue002\n"
_PRE_HIDE = str.maketrans({" ": "\ue000", "\t": "\ue001", "\n": "\ue003"})
_PRE_BACK = str.maketrans({"\ue000": " ", "\ue001": "\t", "\ue003": "\n"})


class _TextExtractor(HTMLParser):
    """Collects the readable text of a page; markup becomes line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []
        self.skip = 0
        self.pre = 0
        # 0: no <title> yet, 1: inside it, 2: done (an <svg> may have its own <title>).
        self.title_state = 0
        self.links: list[tuple[str | None, int]] = []  # (href, len(out) at <a>)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and self.title_state == 0:
            self.title_state = 1
        if tag in SKIP:
            self.skip += 1
        if self.skip:
            return
        if tag in HEADINGS:
            self.out.append(_PARA + "#" * HEADINGS[tag] + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag in PARAGRAPHS:
            self.out.append(_PARA)
        elif tag in BLOCK:
            self.out.append("\n")
        if tag == "pre":
            self.pre += 1
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.title_state == 1:
            self.title_state = 2
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in HEADINGS or tag in PARAGRAPHS:
            self.out.append(_PARA)
        elif tag in BLOCK or tag == "li":
            self.out.append("\n")
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            self._link(href, "".join(self.out[start:]).strip())

    def _link(self, href: str | None, text: str) -> None:
        # Only links written as absolute http(s) URLs are shown: relative ones are
        # mostly the site's own navigation, and every URL costs the reader tokens.
        if not href or not text or not href.startswith(("http://", "https://")):
            return
        if href.rstrip("/") != text.rstrip("/"):
            self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self.title_state == 1:
            self.title.append(data)
        if self.skip:
            return
        self.out.append(data.translate(_PRE_HIDE) if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(page: str) -> tuple[str, str]:
    """(title, readable text) of an HTML page."""
    parser = _TextExtractor()
    parser.feed(page)
    parser.close()
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    lines: list[str] = []
    for raw in "".join(parser.out).split("\n"):
        line = re.sub(r"[ \t\r\f\v]+", " ", raw).strip().removeprefix("| ")
        if line == _PARA.strip():
            if lines and lines[-1]:
                lines.append("")
        elif line:
            lines.append(line)
    return title, "\n".join(lines).strip().translate(_PRE_BACK)


# --- graphs -------------------------------------------------------------------


def _cycles(candidates: list[str], succ: dict[str, list[str]], limit: int) -> list[list[str]]:
    """Cycles found by one iterative DFS: each back edge closes one. Not every
    elementary cycle (there can be exponentially many), but every cyclic
    component yields at least one, in O(V+E)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(candidates, WHITE)
    found: list[list[str]] = []
    for start in candidates:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        index = {start: 0}
        colour[start] = GREY
        while stack:
            node, i = stack[-1]
            outs = succ.get(node, [])
            if i < len(outs):
                stack[-1] = (node, i + 1)
                nxt = outs[i]
                if nxt not in colour:
                    continue  # placed by Kahn's pass: on no cycle
                if colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    index[nxt] = len(path)
                    path.append(nxt)
                    stack.append((nxt, 0))
                elif colour[nxt] == GREY:
                    found.append([*path[index[nxt]:], nxt])
                    if len(found) >= limit:
                        return found
            else:
                colour[node] = BLACK
                stack.pop()
                path.pop()
                index.pop(node)
    return found
