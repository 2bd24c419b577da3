"""A small OpenAI-compatible server on loopback, for end-to-end tests.

It speaks the real wire protocol of /v1/chat/completions: JSON responses, and
`stream: true` as server-sent events with content deltas, tool_call fragments
(split across chunks as real servers do), a usage chunk and `data: [DONE]`.
Each request takes the next scripted reply; every request body is recorded.

A reply can also misbehave the ways real providers and proxies do: a 200 with
any body (an HTML error page, broken JSON), a stream holding only
`data: [DONE]`, a stream closed after `cut` chunks (no finish reason, no
[DONE]), the same with a TCP reset (`reset`), a Retry-After header of any text,
or a request held open until the test lets it go (`hold`).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Reply:
    def __init__(
        self,
        text: str = "",
        tool_calls: list[dict[str, Any]] | None = None,
        status: int = 200,
        retry_after: float | str | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        empty: bool = False,
        cut: int | None = None,
        reset: bool = False,
        hold: bool = False,
        chunked: bool = False,
    ) -> None:
        self.text = text
        self.tool_calls = tool_calls or []
        self.status = status
        # Sent as the header's text verbatim: "Infinity", "-5", "soon" are all fair game.
        self.retry_after = retry_after
        # Sent as-is (with `status`) instead of a completion, streamed or not.
        self.body = body
        self.content_type = content_type
        # A stream of only `data: [DONE]`.
        self.empty = empty
        # Stop the stream after this many content chunks: close (FIN), or RST with `reset`.
        self.cut = cut
        self.reset = reset
        # Stream with chunked transfer encoding (as most real servers do) instead of
        # a body that ends when the connection closes.
        self.chunked = chunked
        # Wait for `server.unhold` before answering (`server.holding` is set meanwhile).
        self.hold = hold


def embed(text: str, dim: int = 16) -> list[float]:
    """A deterministic toy embedding: hashed bag of words, normalised."""
    import hashlib
    import math
    import re

    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class OpenAIServer:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        # Embedding inputs containing HOLD wait until this is set (a slow embedder).
        self.release = threading.Event()
        self.held = threading.Event()
        # Replies with `hold` wait for `unhold`; `holding` says one is waiting.
        self.holding = threading.Event()
        self.unhold = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]})
                self._send(200, body.encode(), "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                req = json.loads(self.rfile.read(length))
                server.requests.append(req)
                if self.path.endswith("/embeddings"):
                    inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
                    if any("HOLD" in text for text in inputs):
                        server.held.set()
                        server.release.wait(60)
                    data = [
                        {"object": "embedding", "index": i, "embedding": embed(t)}
                        for i, t in enumerate(inputs)
                    ]
                    body = {
                        "object": "list",
                        "data": data,
                        "model": req.get("model"),
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }
                    self._send(200, json.dumps(body).encode(), "application/json")
                    return
                reply = server.replies.popleft() if server.replies else Reply("(no more replies)")
                if reply.hold:
                    server.holding.set()
                    server.unhold.wait(60)
                if reply.body is not None:
                    self._send(reply.status, reply.body, reply.content_type)
                    return
                if reply.status != 200:
                    headers = {}
                    if reply.retry_after is not None:
                        headers["Retry-After"] = str(reply.retry_after)
                    err = json.dumps(
                        {
                            "error": {
                                "message": f"scripted {reply.status}",
                                "type": "server_error",
                                "code": reply.status,
                            }
                        }
                    )
                    self._send(reply.status, err.encode(), "application/json", headers)
                    return
                if req.get("stream"):
                    self._stream(req, reply)
                else:
                    self._send(
                        200, json.dumps(_completion(req, reply)).encode(), "application/json"
                    )

            def _send(
                self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _hang_up(self, reset: bool) -> None:
                self.close_connection = True
                if reset:
                    # Linger 0: close() sends RST instead of FIN, as a crashed peer would.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    # The socket's file objects hold it open: close them first, or
                    # close() waits for them and the kernel never sends the RST.
                    self.rfile.close()
                    self.wfile.close()
                    self.connection.close()

            def _stream(self, req: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                if reply.chunked:
                    self.send_header("transfer-encoding", "chunked")
                else:
                    self.send_header("connection", "close")  # the body ends at EOF
                self.end_headers()
                base = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": req.get("model", "tiny"),
                }

                def write(data: bytes) -> None:
                    if reply.chunked:
                        data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
                    self.wfile.write(data)
                    self.wfile.flush()

                def emit(delta: dict[str, Any], finish: str | None = None) -> None:
                    chunk = {
                        **base,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    write(f"data: {json.dumps(chunk)}\n\n".encode())

                def end() -> None:
                    write(b"data: [DONE]\n\n")
                    if reply.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()

                if reply.empty:
                    end()
                    return
                emit({"role": "assistant", "content": ""})
                for n, i in enumerate(range(0, len(reply.text), 5)):
                    if reply.cut is not None and n >= reply.cut:
                        break
                    emit({"content": reply.text[i : i + 5]})
                if reply.cut is not None:
                    self._hang_up(reply.reset)
                    return
                for n, call in enumerate(reply.tool_calls):
                    args = json.dumps(call.get("arguments", {}))
                    half = len(args) // 2
                    emit(
                        {
                            "tool_calls": [
                                {
                                    "index": n,
                                    "id": f"call_{n}",
                                    "type": "function",
                                    "function": {"name": call["name"], "arguments": args[:half]},
                                }
                            ]
                        }
                    )
                    emit({"tool_calls": [{"index": n, "function": {"arguments": args[half:]}}]})
                emit({}, "tool_calls" if reply.tool_calls else "stop")
                usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
                emit_usage = {**base, "choices": [], "usage": usage}
                write(f"data: {json.dumps(emit_usage)}\n\n".encode())
                end()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a hung-up or reset connection is the point of some replies

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> OpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unhold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(req: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
            }
            for n, c in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.get("model", "tiny"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }
