"""JSON-RPC 2.0 over a Unix socket, one JSON document per line.

Each connection is a task group of its own: one reader, one task per request
(so a slow method never holds up the next request on the same connection),
and one sender per event subscription. What one client does cannot hurt
another:

- the peer's uid is checked (SO_PEERCRED) before anything is read;
- a request line longer than `rpc.max_request_bytes` is refused unparsed and
  the connection resynchronises at the next newline;
- a connection idle past `rpc.idle_timeout` (with no subscription) is closed;
- a client that stops reading is dropped once a send has waited
  `rpc.send_timeout`; event subscribers have bounded queues in the bus;
- past `rpc.max_connections`, a new client is told so and closed.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from legion.config import RpcConfig
from legion.daemon.events import EventBus, Subscription
from legion.daemon.rpc.dispatch import Context, Peer, Registry
from legion.errors import (
    InternalError,
    InvalidRequest,
    LegionError,
    ParseError,
    PermissionDenied,
    Unavailable,
)

log = structlog.get_logger("legion.rpc")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
# Requests one connection may have in flight before the reader waits.
MAX_IN_FLIGHT = 64


def peer_credentials(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def _error(id_: Any, err: LegionError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": err.to_rpc()}


class Connection:
    _ids = itertools.count(1)

    def __init__(self, server: RpcServer, stream: SocketStream, peer: Peer) -> None:
        self.id = next(self._ids)
        self.server = server
        self.stream = stream
        self.peer = peer
        self.subscriptions: dict[int, Subscription] = {}
        self._send_lock = anyio.Lock()
        self._slots = anyio.Semaphore(MAX_IN_FLIGHT)
        self._tg: anyio.abc.TaskGroup | None = None

    async def send(self, msg: Any) -> None:
        data = _encoder.encode(msg) + b"\n"
        async with self._send_lock:
            try:
                with anyio.fail_after(self.server.cfg.send_timeout):
                    await self.stream.send(data)
            except TimeoutError:
                log.warning("client stopped reading; dropping it", conn=self.id,
                            pid=self.peer.pid)
                self.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.close()

    def close(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def start(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn)

    def add_subscription(self, sub: Subscription) -> None:
        self.subscriptions[sub.id] = sub

    def drop_subscription(self, sub_id: int) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        self.server.bus.unsubscribe(sub)
        return True

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._read_loop(tg)
                # The client closed its side: let requests already running finish,
                # then end (their responses have nowhere to go, but their effects stand).
                for sub_id in list(self.subscriptions):
                    self.drop_subscription(sub_id)
        finally:
            for sub_id in list(self.subscriptions):
                self.drop_subscription(sub_id)

    async def _read_loop(self, tg: anyio.abc.TaskGroup) -> None:
        cfg = self.server.cfg
        limit = cfg.max_request_bytes
        buf = bytearray()
        discarding = False
        while True:
            timeout = None if self.subscriptions else cfg.idle_timeout
            try:
                with anyio.fail_after(timeout):
                    chunk = await self.stream.receive(65536)
            except TimeoutError:
                log.info("closing idle connection", conn=self.id, idle_s=timeout)
                return
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > limit:
                        if not discarding:
                            await self._too_large(len(buf))
                        discarding = True
                        buf.clear()
                    break
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if discarding:
                    # The tail of an oversized request: skip it and resynchronise.
                    discarding = False
                    continue
                if len(line) > limit:
                    await self._too_large(len(line))
                    continue
                if line.strip():
                    await self._slots.acquire()
                    tg.start_soon(self._process, line)

    async def _too_large(self, size: int) -> None:
        limit = self.server.cfg.max_request_bytes
        await self.send(_error(None, InvalidRequest(
            f"request too large: more than {limit} bytes (got at least {size})",
            hint="send smaller requests; large payloads belong in files referenced by path "
            "(the limit is rpc.max_request_bytes)",
            kind="request_too_large",
        )))

    async def _process(self, line: bytes) -> None:
        self.server.request_started()
        try:
            try:
                msg = _decoder.decode(line)
            except msgspec.DecodeError as exc:
                await self.send(_error(None, ParseError(
                    f"invalid JSON: {exc}",
                    hint="send one JSON-RPC 2.0 object per line, e.g. "
                    '{"jsonrpc": "2.0", "id": 1, "method": "daemon.info"}',
                )))
                return
            if isinstance(msg, list):
                if not msg:
                    await self.send(_error(None, InvalidRequest(
                        "empty batch", hint="a batch is a non-empty array of requests")))
                    return
                ctxs: list[Context] = []
                replies: list[Any] = [None] * len(msg)

                async def one(i: int, m: Any) -> None:
                    ctx = self._context()
                    ctxs.append(ctx)
                    replies[i] = await self._handle(m, ctx)

                async with anyio.create_task_group() as tg:
                    for i, m in enumerate(msg):
                        tg.start_soon(one, i, m)
                out = [r for r in replies if r is not None]
                if out:
                    await self.send(out)
                for ctx in ctxs:
                    self._after(ctx)
                return
            ctx = self._context()
            reply = await self._handle(msg, ctx)
            if reply is not None:
                await self.send(reply)
            self._after(ctx)
        finally:
            self._slots.release()
            self.server.request_finished()

    def _context(self) -> Context:
        return Context(peer=self.peer, connection=self)

    def _after(self, ctx: Context) -> None:
        for fn in ctx.after_response:
            self.start(fn)

    async def _handle(self, msg: Any, ctx: Context) -> dict[str, Any] | None:
        """One request object -> its response, or None for a notification."""
        if not isinstance(msg, dict):
            return _error(None, InvalidRequest(
                f"a request must be a JSON object, got {type(msg).__name__}",
                hint='send {"jsonrpc": "2.0", "id": 1, "method": "...", "params": {...}}'))
        has_id = "id" in msg
        id_ = msg.get("id")
        if (has_id and not (id_ is None or isinstance(id_, str | int))) or isinstance(id_, bool):
            return _error(None, InvalidRequest("id must be a string, a number or null",
                                               hint="use an integer id such as 1"))
        method = msg.get("method")
        problem = None
        if msg.get("jsonrpc") != "2.0":
            problem = 'missing "jsonrpc": "2.0"'
        elif not isinstance(method, str):
            problem = '"method" must be a string'
        elif "params" in msg and not isinstance(msg["params"], dict | list):
            problem = '"params" must be an object'
        if problem is not None:
            return _error(id_, InvalidRequest(
                f"invalid request: {problem}",
                hint='send {"jsonrpc": "2.0", "id": 1, "method": "daemon.info", "params": {}}'))
        assert isinstance(method, str)
        try:
            result = await self.server.registry.call(ctx, method, msg.get("params"))
        except LegionError as exc:
            if not has_id:
                log.info("notification failed", method=method, error=exc.message)
                return None
            return _error(id_, exc)
        except Exception:
            ref = f"{os.getpid()}-{next(_incidents)}"
            log.exception("method failed", method=method, incident=ref)
            return None if not has_id else _error(id_, InternalError(
                f"internal error in {method} (incident {ref})",
                hint="this is a bug in Legion; the daemon log has the traceback under "
                f"incident={ref}. The daemon is still serving."))
        if not has_id:
            return None
        return {"jsonrpc": "2.0", "id": id_, "result": result}


_incidents = itertools.count(1)


class RpcServer:
    def __init__(self, registry: Registry, bus: EventBus, cfg: RpcConfig, path: Path) -> None:
        self.registry = registry
        self.bus = bus
        self.cfg = cfg
        self.path = path
        self.connections: dict[int, Connection] = {}
        self.allowed_uids = {os.getuid(), *cfg.allowed_uids}
        self.accepted = 0
        self.refused = 0
        self._scope: anyio.CancelScope | None = None
        self.in_flight = 0
        self._idle: anyio.Event | None = None

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is being processed on any connection."""
        while self.in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept clients until `stop_accepting`; connections outlive the accept
        loop (a graceful shutdown lets their requests finish) and end when the
        owner cancels this task."""
        listener = await anyio.create_unix_listener(self.path, mode=0o600)
        async with anyio.create_task_group() as connections:
            with anyio.CancelScope() as accepting:
                self._scope = accepting
                async with listener:
                    task_status.started()
                    await listener.serve(self._accept, task_group=connections)

    def stop_accepting(self) -> None:
        """Close the listening socket; connected clients keep being served."""
        if self._scope is not None:
            self._scope.cancel()
        self.path.unlink(missing_ok=True)

    async def _accept(self, stream: SocketStream) -> None:
        async with stream:
            sock = stream.extra(SocketAttribute.raw_socket)
            peer = peer_credentials(sock)
            if peer.uid not in self.allowed_uids:
                self.refused += 1
                log.warning("refused client from another uid", uid=peer.uid, pid=peer.pid)
                await _send_once(stream, PermissionDenied(
                    f"uid {peer.uid} may not use this daemon (it runs as uid {os.getuid()})",
                    hint="run the command as the daemon's user (e.g. `sudo -u legion legion "
                    "...`); to share the daemon, see rpc.allowed_uids in docs/configuration.md"))
                return
            if len(self.connections) >= self.cfg.max_connections:
                self.refused += 1
                await _send_once(stream, Unavailable(
                    f"too many connections (max {self.cfg.max_connections})",
                    hint="close idle clients (e.g. old `legion attach` sessions) or raise "
                    "rpc.max_connections"))
                return
            conn = Connection(self, stream, peer)
            self.connections[conn.id] = conn
            self.accepted += 1
            try:
                await conn.serve()
            finally:
                self.connections.pop(conn.id, None)

    def statistics(self) -> dict[str, Any]:
        return {
            "socket": str(self.path),
            "connections": len(self.connections),
            "max_connections": self.cfg.max_connections,
            "accepted": self.accepted,
            "refused": self.refused,
            "in_flight": self.in_flight,
            "subscriptions": sum(len(c.subscriptions) for c in self.connections.values()),
        }


async def _send_once(stream: SocketStream, err: LegionError) -> None:
    """Tell a refused client why, then hang up politely.

    Closing a Unix socket with unread input resets it, and the client would
    see ECONNRESET instead of our explanation: so half-close, and drain what
    it sent (briefly) before closing.
    """
    with anyio.move_on_after(1):
        try:
            await stream.send(_encoder.encode(_error(None, err)) + b"\n")
            await stream.send_eof()
            while True:
                await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
