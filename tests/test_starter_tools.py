"""The starter tools plugin, driven through the real daemon's `tools.run`.

Every web tool talks to a loopback HTTP server started by the test (no
network): a fake API, a noisy HTML page, a fake Brave Search endpoint that
records what it was sent. Refusals are checked for their hint too, since a
small model acts on the hint.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Daemon

PAGE = """<!doctype html>
<html><head><title>  Release   notes </title>
<style>body { color: red }</style>
<script>var tracking = "SCRIPT-NOISE";</script></head>
<body>
<nav><a href="/">Home</a> NAV-NOISE</nav>
<h1>Version 2.0</h1>
<p>The first   paragraph, with a <a href="https://example.org/spec">spec link</a>.</p>
<p>The second&nbsp;paragraph &amp; more.</p>
<ul><li>faster</li><li>smaller</li></ul>
<noscript>NOSCRIPT-NOISE</noscript>
<script>document.write("INLINE-NOISE")</script>
<footer>FOOTER-NOISE</footer>
</body></html>"""


class Site:
    """A loopback HTTP server: fixed answers per path, and a record of each request."""

    def __init__(self) -> None:
        # path -> (status, content type, body, extra headers)
        self.routes: dict[str, tuple[int, str, bytes, dict[str, str]]] = {}
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                site.requests.append((parts.path, parse_qs(parts.query), dict(self.headers)))
                status, ctype, body, extra = site.routes.get(
                    parts.path, (404, "text/plain", b"no such page", {})
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def route(
        self,
        path: str,
        body: str | bytes,
        ctype: str = "text/plain",
        status: int = 200,
        **headers: str,
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = (status, ctype, data, headers)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def seen(self, path: str) -> list[tuple[dict[str, list[str]], dict[str, str]]]:
        return [(q, h) for p, q, h in self.requests if p == path]


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def run(d: Daemon, name: str, **args: Any) -> dict[str, Any]:
    """`tools.run` one tool; the RPC itself must succeed, the tool may refuse."""
    reply = d.rpc("tools.run", {"name": name, "args": args})
    assert "result" in reply, reply
    out: dict[str, Any] = reply["result"]
    assert out["name"] == name
    return out


def refused(d: Daemon, name: str, **args: Any) -> dict[str, Any]:
    out = run(d, name, **args)
    assert out["ok"] is False, out
    assert out["error"], out
    assert out["hint"], f"a refusal must say what to do instead: {out}"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- http_get -------------------------------------------------------------------


def test_http_get_returns_status_body_and_parsed_json(daemon: Daemon, site: Site) -> None:
    url = site.route(
        "/api/items",
        json.dumps({"items": [1, 2], "next": None}),
        "application/json; charset=utf-8",
        ETag='"v1"',
        Server="fake/1.0",
    )
    out = run(daemon, "http_get", url=url, headers={"X-Trace": "t-1"})
    assert out["ok"] is True, out
    r = out["result"]
    assert (r["status"], r["ok"], r["url"]) == (200, True, url)
    assert r["json"] == {"items": [1, 2], "next": None}
    assert json.loads(r["body"]) == r["json"]
    assert r["truncated"] is False
    assert r["content_type"].startswith("application/json")
    # A useful subset of the headers: the ETag is kept, the server banner is noise.
    assert r["headers"]["etag"] == '"v1"'
    assert "server" not in r["headers"]
    [(_, sent)] = site.seen("/api/items")
    assert sent["X-Trace"] == "t-1"


def test_http_get_follows_redirects_and_truncates(daemon: Daemon, site: Site) -> None:
    target = site.route("/big", "x" * 5000)
    site.route("/old", "", status=301, Location="/big")
    r = run(daemon, "http_get", url=site.url("/old"), max_chars=1000)["result"]
    assert (r["status"], r["url"]) == (200, target)
    assert r["body"] == "x" * 1000
    assert r["truncated"] is True
    assert r["json"] is None


def test_http_get_error_status_is_a_result_not_a_refusal(daemon: Daemon, site: Site) -> None:
    out = run(daemon, "http_get", url=site.url("/missing"))
    assert out["ok"] is True, out
    r = out["result"]
    assert (r["status"], r["ok"], r["body"]) == (404, False, "no such page")


def test_http_get_refusals_say_what_to_do(daemon: Daemon) -> None:
    out = refused(daemon, "http_get", url=f"http://127.0.0.1:{free_port()}/")
    assert "could not connect" in out["error"]
    assert "port" in out["hint"]

    out = refused(daemon, "http_get", url="file:///etc/passwd")
    assert "http://" in out["error"]
    assert "https://" in out["hint"]

    out = refused(daemon, "http_get", url="example.com/page")
    assert "https://example.com/page" in out["hint"]


def test_http_get_bounds_are_checked_before_any_request(daemon: Daemon, site: Site) -> None:
    url = site.route("/x", "x")
    out = refused(daemon, "http_get", url=url, max_chars=5)
    assert "max_chars" in out["error"]
    assert out["error_kind"] == "bad_arguments"
    out = refused(daemon, "http_get", url=url, timeout=600)
    assert "timeout" in out["error"]
    assert site.seen("/x") == []


# --- web_fetch ------------------------------------------------------------------


def test_web_fetch_turns_html_into_readable_text(daemon: Daemon, site: Site) -> None:
    url = site.route("/notes", PAGE, "text/html; charset=utf-8")
    out = run(daemon, "web_fetch", url=url)
    assert out["ok"] is True, out
    r = out["result"]
    assert (r["url"], r["status"], r["title"]) == (url, 200, "Release notes")
    text = r["text"]
    assert "# Version 2.0" in text
    assert "The first paragraph, with a spec link (https://example.org/spec)." in text
    assert "The second paragraph & more." in text
    assert "- faster\n- smaller" in text
    for noise in (
        "SCRIPT-NOISE",
        "INLINE-NOISE",
        "color: red",
        "NAV-NOISE",
        "NOSCRIPT-NOISE",
        "FOOTER-NOISE",
        "<p>",
    ):
        assert noise not in text, (noise, text)
    # Paragraphs stay apart; runs of spaces do not survive.
    assert "\n\nThe second" in text
    assert "  " not in text
    assert (r["chars"], r["truncated"]) == (len(text), False)
    # Asked the way a browser asks, so sites serve the real page.
    [(_, sent)] = site.seen("/notes")
    assert "Chrome/" in sent["User-Agent"]
    assert "text/html" in sent["Accept"]
    assert sent["Accept-Language"]


def test_web_fetch_truncates_and_passes_text_through(daemon: Daemon, site: Site) -> None:
    r = run(daemon, "web_fetch", url=site.route("/readme.txt", "line one\n" * 100), max_chars=100)[
        "result"
    ]
    assert r["text"] == ("line one\n" * 100)[:100]
    assert (r["truncated"], r["chars"]) == (True, len("line one\n" * 100) - 1)


def test_web_fetch_refuses_binary_content(daemon: Daemon, site: Site) -> None:
    url = site.route("/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image/png")
    out = refused(daemon, "web_fetch", url=url)
    assert "image/png" in out["error"]
    assert "http_get" in out["hint"]


# --- web_search -----------------------------------------------------------------


def test_web_search_without_a_key_says_how_to_get_one(make_daemon: Any) -> None:
    d = make_daemon(env={"BRAVE_API_KEY": ""})
    out = refused(d, "web_search", query="legion daemon")
    assert "Brave Search API key" in out["error"]
    assert "BRAVE_API_KEY" in out["hint"]
    assert "[plugins.settings.starter]" in out["hint"]
    assert "web_fetch" in out["hint"]


def test_web_search_calls_the_configured_endpoint(make_daemon: Any, site: Site) -> None:
    answer = {
        "web": {
            "results": [
                {
                    "title": "<strong>Legion</strong> docs",
                    "url": "https://legion.example/docs",
                    "description": "Agents &amp; <strong>daemons</strong>",
                    "age": "2 days ago",
                },
                {"title": "Other", "url": "https://other.example/", "description": "more"},
            ]
        }
    }
    site.route("/search", json.dumps(answer), "application/json")
    d = make_daemon(
        env={"BRAVE_API_KEY": ""},
        config=(
            f'[plugins.settings.starter]\nbrave_api_key = "k"\nendpoint = "{site.url("/search")}"\n'
        ),
    )
    out = run(d, "web_search", query="legion daemon", count=2)
    assert out["ok"] is True, out
    assert out["result"] == {
        "query": "legion daemon",
        "results": [
            {
                "title": "Legion docs",
                "url": "https://legion.example/docs",
                "description": "Agents & daemons",
            },
            {"title": "Other", "url": "https://other.example/", "description": "more"},
        ],
    }
    [(query, sent)] = site.seen("/search")
    assert sent["X-Subscription-Token"] == "k"
    assert sent["Accept"] == "application/json"
    assert query == {"q": ["legion daemon"], "count": ["2"]}

    # Refusals by the service are named, with what to do next.
    site.route(
        "/search",
        '{"error": "rate limited"}',
        "application/json",
        status=429,
        **{"Retry-After": "30"},
    )
    out = refused(d, "web_search", query="again")
    assert "429" in out["error"]
    assert "30s" in out["hint"]
    site.route("/search", '{"error": "bad token"}', "application/json", status=401)
    out = refused(d, "web_search", query="again")
    assert "API key" in out["error"]
    assert "web_fetch" in out["hint"]


# --- now, dag_analyze -------------------------------------------------------------


def test_now_suggests_near_timezone_names(daemon: Daemon) -> None:
    out = run(daemon, "now", timezone="Europe/Paris")
    assert out["ok"] is True
    assert out["result"]["timezone"] == "Europe/Paris"
    assert out["result"]["iso"][-6:] in ("+01:00", "+02:00")

    out = refused(daemon, "now", timezone="Europe/Pari")
    assert "Europe/Pari" in out["error"]
    assert "Europe/Paris" in out["hint"]


def test_dag_analyze_orders_and_finds_the_critical_path(daemon: Daemon) -> None:
    edges = [
        ["design", "build"],
        ["design", "docs"],
        ["build", "test"],
        ["docs", "release"],
        ["test", "release"],
    ]
    out = run(
        daemon,
        "dag_analyze",
        edges=edges,
        durations={"design": 2, "build": 5, "docs": 1, "test": 3, "release": 1, "announce": 0.5},
    )
    assert out["ok"] is True, out
    r = out["result"]
    assert (r["nodes"], r["edges"], r["cycles"]) == (6, 5, [])
    order = r["topological_order"]
    assert sorted(order) == sorted(["design", "build", "docs", "test", "release", "announce"])
    for a, b in edges:
        assert order.index(a) < order.index(b), (a, b, order)
    assert r["critical_path"] == ["design", "build", "test", "release"]
    assert r["critical_length"] == 11
    assert r["roots"] == ["design", "announce"]
    assert sorted(r["leaves"]) == ["announce", "release"]


def test_dag_analyze_reports_cycles_and_bad_edges(daemon: Daemon) -> None:
    r = run(
        daemon,
        "dag_analyze",
        edges=[["start", "a"], ["a", "b"], ["b", "c"], ["c", "a"], ["c", "end"]],
    )["result"]
    assert r["cycles"] == [["a", "b", "c", "a"]]
    assert r["topological_order"] is None
    assert r["critical_path"] is None
    assert r["roots"] == ["start"]

    out = refused(daemon, "dag_analyze", edges=[["a", "b", "c"]])
    assert "pair" in out["error"]
    assert '["design", "build"]' in out["hint"]


def test_unknown_tool_is_an_rpc_error(daemon: Daemon) -> None:
    reply = daemon.rpc("tools.run", {"name": "http_gett", "args": {}})
    assert reply["error"]["code"] == -32001, reply
