"""What http_get and web_fetch share: URL checks, one bounded download, text sniffing.

Both tools GET a URL the model chose, so both refuse the same malformed URLs
with the same hints, and both read the body through `_download`, which bounds
the whole exchange in time and bytes: a slow or huge server must not hold the
call, or the daemon's memory, forever. `_cause` also serves web_search.
"""

from __future__ import annotations

from typing import Annotated

import anyio
import httpx
from msgspec import Meta

from legion import __version__
from legion.plugin import ToolError

USER_AGENT = f"Legion/{__version__} (+https://github.com/legion; http_get)"

MaxChars = Annotated[int, Meta(ge=100, le=200_000)]


def _check_url(url: str, name: str) -> None:
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        guess = f"https://{url.strip().lstrip('/')}"
        raise ToolError(
            f"{url!r} is not a full URL (it has no http:// or https://)",
            hint=f"give the whole URL, e.g. {guess}",
            kind="bad_arguments",
        )
    if scheme.lower() not in ("http", "https"):
        raise ToolError(
            f"{name} only fetches http:// and https:// URLs, not {scheme}://",
            hint="give a URL such as https://example.com/page; local files and "
            "other protocols are not reachable from this tool",
            kind="bad_arguments",
        )
    if not rest.split("/", 1)[0]:
        raise ToolError(
            f"{url!r} has no host name", hint="e.g. https://example.com/page", kind="bad_arguments"
        )


async def _download(
    url: str, headers: dict[str, str], seconds: float, limit: int, name: str
) -> tuple[httpx.Response, bytes, bool]:
    """GET with redirects; at most `limit` bytes of body, and whether it was cut.

    `seconds` bounds the whole exchange: httpx's own timeouts are per read, and
    a server that drips bytes would otherwise hold the call forever.
    """
    try:
        with anyio.fail_after(seconds):
            async with (
                httpx.AsyncClient(
                    follow_redirects=True, timeout=seconds, headers={"User-Agent": USER_AGENT}
                ) as client,
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
        raise ToolError(
            f"{url} did not answer within {seconds:g}s",
            hint="try again later, or another source for the same information"
            + (" (or a larger timeout, up to 60)" if name == "http_get" else ""),
        ) from None
    except httpx.ConnectError as exc:
        raise ToolError(
            f"could not connect to {httpx.URL(url).host}: {_cause(exc)}",
            hint="check the host name and port in the URL; the server may be down "
            "or the name misspelled",
        ) from None
    except httpx.TooManyRedirects:
        raise ToolError(
            f"{url} redirects in a loop", hint="try the site's canonical URL, or another source"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise ToolError(
            f"{name} could not get {url}: {_cause(exc)}",
            hint="check the URL (and for http_get the header names and values)",
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


TEXT_TYPES = (
    "json",
    "xml",
    "javascript",
    "ecmascript",
    "x-www-form-urlencoded",
    "csv",
    "yaml",
    "toml",
    "markdown",
    "x-sh",
    "sql",
    "graphql",
)


def _is_text(ctype: str, raw: bytes) -> bool:
    base = ctype.split(";", 1)[0].strip().lower()
    if not base:
        return b"\x00" not in raw[:1024]
    return base.startswith("text/") or any(t in base for t in TEXT_TYPES)
