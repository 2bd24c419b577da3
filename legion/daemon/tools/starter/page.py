"""`web_fetch`: a web page as readable text, for reading, not for parsing.

The page is fetched the way a browser would ask for it, decoded with the
charset it declares, and reduced to its title, headings, paragraphs and
external links: what a model needs to read it, at a fraction of the tokens.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import anyio
import httpx

from legion.plugin import ToolError, tool

from .fetching import MaxChars, _check_url, _download, _is_text

# Many sites serve a bot wall or an empty shell to unknown clients; a page meant
# for reading is fetched the way a desktop browser would ask for it.
BROWSER_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept": (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
    ),
    "Accept-Language": "en-US,en;q=0.9",
}
# HTML is mostly markup: read far more bytes than the text we keep, but never
# an unbounded download into the daemon's memory.
PAGE_BYTES = 4_000_000
FETCH_TIMEOUT = 20.0


@tool(
    keywords=[
        "web",
        "page",
        "website",
        "html",
        "read",
        "browse",
        "url",
        "fetch",
        "article",
        "text",
        "scrape",
        "link",
        "open",
    ],
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
            "headers, or look for an HTML page about the same thing",
        )
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


# --- HTML to text -------------------------------------------------------------

SKIP = frozenset(
    {
        "script",
        "style",
        "nav",
        "footer",
        "noscript",
        "svg",
        "head",
        "template",
        "iframe",
        "object",
        "canvas",
    }
)
BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "header",
        "aside",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "tr",
        "blockquote",
        "pre",
        "figure",
        "figcaption",
        "form",
        "fieldset",
        "address",
        "details",
        "summary",
        "hr",
        "br",
        "caption",
        "tbody",
        "thead",
    }
)
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
