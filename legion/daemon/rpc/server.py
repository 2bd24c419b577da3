"""JSON-RPC 2.0 over a Unix socket, one JSON document per line.

Each connection is a task group of its own: one reader, one task per request
(so a slow method never holds up the next request on the same connection),
and one sender per event subscription. What one client does cannot hurt
another, nor the daemon:

- the peer's uid is checked (SO_PEERCRED) before anything is read;
- every line goes through one guard (`framing.decode`): a size limit
  (`rpc.max_request_bytes`, refused unparsed, the connection resynchronises at
  the next newline), strict UTF-8, a nesting limit (`rpc.max_depth`) and a
  batch limit (`rpc.max_batch`); whatever is wrong is a JSON-RPC error on that
  connection;
- no exception raised by a connection's input leaves that connection: each
  request and each connection has a last-resort catch that logs an incident
  id and answers `InternalError` where it still can;
- a connection must send its first complete request within
  `rpc.first_request_timeout`, and every request line must be complete within
  the same bound of its first byte (a request dribbled a byte at a time is
  closed); one idle past `rpc.idle_timeout` (nothing in flight, no
  subscription) is closed;
- a client that stops reading is dropped once a send has waited
  `rpc.send_timeout`; event subscribers have bounded queues in the bus;
- one process (by pid) holds at most `rpc.max_connections_per_peer`
  connections; at `rpc.max_connections`, the connection idle the longest
  (nothing in flight, no subscription) is shed to make room, so a fresh CLI
  call always gets in; only when every connection is busy is the newcomer
  refused;
- running out of file descriptors on accept (EMFILE/ENFILE) pauses accepting
  with a backoff (100 ms doubling to 1 s), logged once per episode; existing
  connections keep being served.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from legion.config import RpcConfig
from legion.daemon.events import EventBus, Subscription
from legion.daemon.rpc import framing
from legion.daemon.rpc.dispatch import Context, Peer, Registry
from legion.daemon.rpc.throttle import LogThrottle
from legion.errors import (
    InternalError,
    InvalidRequest,
    LegionError,
    PermissionDenied,
    Unavailable,
)

log = structlog.get_logger("legion.rpc")
_encoder = msgspec.json.Encoder()
# Requests one connection may have in flight before the reader waits; batch
# items have a pool of the same size of their own (so a batch never waits on
# the slot its own line holds).
MAX_IN_FLIGHT = 64
# The encoded replies of one batch may take this much; replies past it are
# replaced by an error (their calls did run), so a batch of large reads cannot
# balloon the daemon.
BATCH_REPLY_BYTES = 16 * 1024 * 1024
# Refused clients being told why at once; past this, further ones are closed
# without the explanation (each costs a descriptor while it lingers).
MAX_LINGERING = 64
# accept() failing for lack of descriptors or memory: wait, then try again.
_ACCEPT_BACKOFF = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# accept() failing for one client that gave up meanwhile: just go on.
_ACCEPT_RETRY = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN}
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0

_incidents = itertools.count(1)


def _incident() -> str:
    return f"{os.getpid()}-{next(_incidents)}"


def _internal(ref: str, what: str) -> InternalError:
    return InternalError(
        f"internal error in {what} (incident {ref})",
        hint="this is a bug in Legion; the daemon log has the traceback under "
        f"incident={ref}. The daemon is still serving.",
    )


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
        self._batch_slots = anyio.Semaphore(MAX_IN_FLIGHT)
        self._tg: TaskGroup | None = None
        now = anyio.current_time()
        self.opened = now
        self.last_active = now
        self.requests = 0  # complete, non-blank request lines received
        self.in_flight = 0
        # When the line being received began (None between lines): it must end
        # within rpc.first_request_timeout.
        self._line_started: float | None = None
        self._read_scope: anyio.CancelScope | None = None
        # Set when the server sheds this connection to make room: told to the client.
        self.shed_reason: LegionError | None = None

    @property
    def sheddable(self) -> bool:
        """Nothing would be lost by closing it: no request running, no stream."""
        return self.in_flight == 0 and not self.subscriptions and self._line_started is None

    def deadline(self) -> float:
        """When the reader gives up on this connection (loop time; inf: never)."""
        cfg = self.server.cfg
        if self._line_started is not None:
            return self._line_started + cfg.first_request_timeout
        if self.in_flight or self.subscriptions:
            return math.inf
        end = self.last_active + cfg.idle_timeout
        if not self.requests:
            end = min(end, self.opened + cfg.first_request_timeout)
        return end

    def _rearm(self) -> None:
        # Something that changes the deadline happened outside the reader (a
        # request finished, a subscription ended): move the reader's timer.
        if self._read_scope is not None:
            self._read_scope.deadline = self.deadline()

    async def send(self, msg: Any) -> None:
        await self.send_bytes(_encoder.encode(msg) + b"\n")

    async def send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                with anyio.fail_after(self.server.cfg.send_timeout):
                    await self.stream.send(data)
            except TimeoutError:
                self.server.note(
                    "warning",
                    "client stopped reading; dropping it",
                    conn=self.id,
                    pid=self.peer.pid,
                )
                self.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.close()

    def close(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def shed(self, reason: LegionError) -> None:
        self.shed_reason = reason
        self.close()

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
        self.last_active = anyio.current_time()
        self._rearm()
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
            self._read_scope = None
            for sub_id in list(self.subscriptions):
                self.drop_subscription(sub_id)

    async def _read_loop(self, tg: TaskGroup) -> None:
        limit = self.server.cfg.max_request_bytes
        buf = bytearray()
        discarding = False
        while True:
            with anyio.CancelScope(deadline=self.deadline()) as scope:
                self._read_scope = scope
                try:
                    chunk = await self.stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    chunk = b""
            self._read_scope = None
            if scope.cancelled_caught:
                await self._timed_out()
                return
            if not chunk:
                # EOF. A last line without its newline is still a request: the
                # client may have half-closed and be waiting for the answer.
                if buf.strip() and not discarding:
                    self._line_started = None
                    await self._dispatch(tg, bytes(buf))
                return
            now = anyio.current_time()
            if self._line_started is None:
                self._line_started = now
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
                # The next line (if any bytes of it are here) began with this chunk.
                self._line_started = now if (buf or discarding) else None
                if discarding:
                    # The tail of an oversized request: skip it and resynchronise.
                    discarding = False
                    self._line_started = now if buf else None
                    continue
                if len(line) > limit:
                    await self._too_large(len(line))
                    continue
                if line.strip():
                    await self._dispatch(tg, line)
            if not buf and not discarding:
                self._line_started = None

    async def _dispatch(self, tg: TaskGroup, line: bytes) -> None:
        self.requests += 1
        self.last_active = anyio.current_time()
        await self._slots.acquire()
        self.in_flight += 1
        tg.start_soon(self._process, line)

    async def _timed_out(self) -> None:
        cfg = self.server.cfg
        self.server.timed_out += 1
        if self._line_started is not None:
            self.server.note(
                "info",
                "closing connection: request line not completed in time",
                conn=self.id,
                pid=self.peer.pid,
                bound_s=cfg.first_request_timeout,
            )
            with anyio.move_on_after(1):
                await self.send(
                    _error(
                        None,
                        InvalidRequest(
                            f"request not completed within {cfg.first_request_timeout:g} s of its "
                            "first byte; closing the connection",
                            hint="send each request whole, as one line ending in a newline "
                            "(the bound is rpc.first_request_timeout)",
                            kind="request_timeout",
                        ),
                    )
                )
        elif not self.requests:
            self.server.note(
                "info",
                "closing connection that sent no request",
                conn=self.id,
                pid=self.peer.pid,
                waited_s=cfg.first_request_timeout,
            )
        else:
            self.server.note(
                "info", "closing idle connection", conn=self.id, idle_s=cfg.idle_timeout
            )

    async def _too_large(self, size: int) -> None:
        limit = self.server.cfg.max_request_bytes
        await self.send(
            _error(
                None,
                InvalidRequest(
                    f"request too large: more than {limit} bytes (got at least {size})",
                    hint="send smaller requests; large payloads belong in files referenced by path "
                    "(the limit is rpc.max_request_bytes)",
                    kind="request_too_large",
                ),
            )
        )

    async def _process(self, line: bytes) -> None:
        cfg = self.server.cfg
        self.server.request_started()
        msg: Any = None
        try:
            try:
                msg = framing.decode(line, max_depth=cfg.max_depth, max_batch=cfg.max_batch)
            except LegionError as exc:
                await self.send(_error(None, exc))
                return
            del line  # the decoded request is what is kept from here on
            if isinstance(msg, list):
                await self._batch(msg)
                return
            ctx = self._context()
            reply = await self._handle(msg, ctx)
            if reply is not None:
                await self.send(reply)
            self._after(ctx)
        except Exception:
            # Last resort: whatever went wrong stays with this request.
            ref = _incident()
            log.exception("request failed", conn=self.id, pid=self.peer.pid, incident=ref)
            id_ = msg.get("id") if isinstance(msg, dict) else None
            if not isinstance(msg, dict) or "id" in msg:
                with contextlib.suppress(Exception):
                    await self.send(
                        _error(
                            id_ if isinstance(id_, str | int) else None,
                            _internal(ref, "this request"),
                        )
                    )
        finally:
            self.in_flight -= 1
            self.last_active = anyio.current_time()
            self._slots.release()
            self.server.request_finished()
            self._rearm()

    async def _batch(self, msgs: list[Any]) -> None:
        """Run a batch's requests concurrently; one reply array in request order.

        Each reply is encoded as soon as it is ready (bytes are far smaller
        than the objects they came from), within BATCH_REPLY_BYTES for all."""
        parts: list[bytes | None] = [None] * len(msgs)
        ctxs: list[Context] = []
        used = 0

        async def one(i: int, m: Any) -> None:
            nonlocal used
            async with self._batch_slots:
                ctx = self._context()
                ctxs.append(ctx)
                reply = await self._handle(m, ctx)
            if reply is None:
                return
            try:
                data = _encoder.encode(reply)
            except Exception:
                ref = _incident()
                log.exception("reply could not be encoded", conn=self.id, incident=ref)
                data = _encoder.encode(_error(reply.get("id"), _internal(ref, "this request")))
            if used + len(data) > BATCH_REPLY_BYTES:
                data = _encoder.encode(
                    _error(
                        reply.get("id"),
                        InvalidRequest(
                            f"reply dropped: this batch's replies passed {BATCH_REPLY_BYTES} bytes "
                            "(the call itself ran)",
                            hint="split large reads into separate requests or smaller batches",
                            kind="batch_reply_too_large",
                        ),
                    )
                )
            used += len(data)
            parts[i] = data

        async with anyio.create_task_group() as tg:
            for i, m in enumerate(msgs):
                tg.start_soon(one, i, m)
        out = [p for p in parts if p is not None]
        if out:
            await self.send_bytes(b"[" + b",".join(out) + b"]\n")
        for ctx in ctxs:
            self._after(ctx)

    def _context(self) -> Context:
        return Context(peer=self.peer, connection=self)

    def _after(self, ctx: Context) -> None:
        for fn in ctx.after_response:
            self.start(fn)

    async def _handle(self, msg: Any, ctx: Context) -> dict[str, Any] | None:
        """One request object -> its response, or None for a notification."""
        if not isinstance(msg, dict):
            return _error(
                None,
                InvalidRequest(
                    f"a request must be a JSON object, got {_json_type(msg)}",
                    hint='send {"jsonrpc": "2.0", "id": 1, "method": "...", "params": {...}}',
                ),
            )
        has_id = "id" in msg
        id_ = msg.get("id")
        if (has_id and not (id_ is None or isinstance(id_, str | int))) or isinstance(id_, bool):
            kind = {
                float: "a fractional number",
                dict: "an object",
                list: "an array",
                bool: "a boolean",
            }.get(type(id_), type(id_).__name__)
            return _error(
                None,
                InvalidRequest(
                    f"id must be a string, an integer or null, not {kind}",
                    hint="use an integer id such as 1",
                ),
            )
        method = msg.get("method")
        problem = None
        if msg.get("jsonrpc") != "2.0":
            problem = 'missing "jsonrpc": "2.0"'
        elif not isinstance(method, str):
            problem = '"method" must be a string'
        elif "params" in msg and not isinstance(msg["params"], dict | list):
            problem = '"params" must be an object'
        if problem is not None:
            return _error(
                id_,
                InvalidRequest(
                    f"invalid request: {problem}",
                    hint='send {"jsonrpc": "2.0", "id": 1, "method": "daemon.info", "params": {}}',
                ),
            )
        assert isinstance(method, str)
        try:
            result = await self.server.registry.call(ctx, method, msg.get("params"))
        except LegionError as exc:
            if not has_id:
                log.info("notification failed", method=method, error=exc.message)
                return None
            return _error(id_, exc)
        except Exception:
            ref = _incident()
            log.exception("method failed", method=method, incident=ref)
            return None if not has_id else _error(id_, _internal(ref, method))
        if not has_id:
            return None
        return {"jsonrpc": "2.0", "id": id_, "result": result}


def _json_type(value: Any) -> str:
    names = {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
        list: "an array",
    }
    return names.get(type(value), type(value).__name__)


class RpcServer:
    def __init__(self, registry: Registry, bus: EventBus, cfg: RpcConfig, path: Path) -> None:
        self.registry = registry
        self.bus = bus
        self.cfg = cfg
        self.path = path
        self.connections: dict[int, Connection] = {}
        self._per_peer: dict[int, int] = {}
        self.allowed_uids = {os.getuid(), *cfg.allowed_uids}
        self.accepted = 0
        self.refused = 0
        self.shed = 0
        self.timed_out = 0
        self.accept_pauses = 0  # episodes of running out of descriptors on accept
        self._lingering = 0
        self._scope: anyio.CancelScope | None = None
        self.in_flight = 0
        self._idle: anyio.Event | None = None
        self._throttle = LogThrottle()

    def note(self, level: str, event: str, **fields: Any) -> None:
        """A log line about one client, at most one of its kind per 10 s: a
        flood of bad clients must not become a flood of log lines."""
        held = self._throttle.allow(event)
        if held is None:
            return
        if held:
            fields["held_back"] = held  # lines of this kind not written since the last
        getattr(log, level)(event, **fields)

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
                    await self._accept_loop(listener, connections)

    def stop_accepting(self) -> None:
        """Close the listening socket; connected clients keep being served."""
        if self._scope is not None:
            self._scope.cancel()
        self.path.unlink(missing_ok=True)

    async def _accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        """accept() forever. Our own loop rather than `listener.serve`, which
        lets an accept error (EMFILE) escape and end the daemon."""
        delay = 0.0
        paused_at = 0.0
        while True:
            try:
                stream = await listener.accept()
            except anyio.BrokenResourceError as exc:
                cause = exc.__cause__
                code = cause.errno if isinstance(cause, OSError) else None
                if code in _ACCEPT_RETRY:
                    continue
                if code not in _ACCEPT_BACKOFF:
                    raise
                if not delay:
                    # Once per episode: the loop below retries quietly.
                    self.accept_pauses += 1
                    paused_at = anyio.current_time()
                    log.error(
                        "cannot accept clients: out of file descriptors; retrying with "
                        "backoff, existing clients are still served",
                        error=os.strerror(code or 0),
                        connections=len(self.connections),
                        hint="raise the limit (LimitNOFILE= in legion.service, "
                        "`ulimit -n`) or lower rpc.max_connections",
                    )
                delay = min(BACKOFF_MAX, delay * 2 if delay else BACKOFF_FIRST)
                await anyio.sleep(delay)
                continue
            if delay:
                log.info(
                    "accepting clients again", paused_s=round(anyio.current_time() - paused_at, 2)
                )
                delay = 0.0
            tg.start_soon(self._accept, stream)

    async def _accept(self, stream: SocketStream) -> None:
        try:
            async with stream:
                await self._serve_client(stream)
        except Exception:
            # Last resort: one connection's failure is logged and stays its own.
            ref = _incident()
            log.exception("connection failed", incident=ref)

    async def _serve_client(self, stream: SocketStream) -> None:
        sock = stream.extra(SocketAttribute.raw_socket)
        peer = peer_credentials(sock)
        if peer.uid not in self.allowed_uids:
            self.refused += 1
            self.note("warning", "refused client from another uid", uid=peer.uid, pid=peer.pid)
            await self._refuse(
                stream,
                PermissionDenied(
                    f"uid {peer.uid} may not use this daemon (it runs as uid {os.getuid()})",
                    hint="run the command as the daemon's user (e.g. `sudo -u legion legion "
                    "...`); to share the daemon, see rpc.allowed_uids in docs/configuration.md",
                ),
            )
            return
        refusal = self._admit(peer)
        if refusal is not None:
            self.refused += 1
            await self._refuse(stream, refusal)
            return
        conn = Connection(self, stream, peer)
        self.connections[conn.id] = conn
        self._per_peer[peer.pid] = self._per_peer.get(peer.pid, 0) + 1
        self.accepted += 1
        try:
            await conn.serve()
        finally:
            self._forget(conn)
        if conn.shed_reason is not None:
            await _send_once(stream, conn.shed_reason)

    def _admit(self, peer: Peer) -> LegionError | None:
        """None to let a new client in (shedding an idle one if that makes room),
        else why not. No await: the check and the insertion are one step."""
        cfg = self.cfg
        if self._per_peer.get(peer.pid, 0) >= cfg.max_connections_per_peer:
            self.note(
                "warning",
                "refused client: too many connections from one process",
                pid=peer.pid,
                max=cfg.max_connections_per_peer,
            )
            return Unavailable(
                f"too many connections from process {peer.pid} "
                f"(max {cfg.max_connections_per_peer} per process)",
                hint="reuse one connection for many requests, or raise "
                "rpc.max_connections_per_peer",
                kind="too_many_connections",
            )
        if len(self.connections) < cfg.max_connections:
            return None
        idle = [c for c in self.connections.values() if c.sheddable]
        if not idle:
            return Unavailable(
                f"too many connections (max {cfg.max_connections}, all busy)",
                hint="close idle clients (e.g. old `legion attach` sessions) or raise "
                "rpc.max_connections",
                kind="too_many_connections",
            )
        victim = min(idle, key=lambda c: c.last_active)
        self.shed += 1
        self.note(
            "info",
            "shedding the longest-idle connection to make room",
            conn=victim.id,
            pid=victim.peer.pid,
            idle_s=round(anyio.current_time() - victim.last_active, 2),
        )
        self._forget(victim)
        victim.shed(
            Unavailable(
                f"connection closed: the daemon is at rpc.max_connections "
                f"({cfg.max_connections}) and this one was the longest idle",
                hint="reconnect when you have a request to send; hold connections open only "
                "while you use them",
                kind="connection_shed",
            )
        )
        return None

    def _forget(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        left = self._per_peer.get(conn.peer.pid, 1) - 1
        if left:
            self._per_peer[conn.peer.pid] = left
        else:
            self._per_peer.pop(conn.peer.pid, None)

    async def _refuse(self, stream: SocketStream, err: LegionError) -> None:
        if self._lingering >= MAX_LINGERING:
            return  # a flood of refused clients: close them at once, unexplained
        self._lingering += 1
        try:
            await _send_once(stream, err)
        finally:
            self._lingering -= 1

    def statistics(self) -> dict[str, Any]:
        return {
            "socket": str(self.path),
            "connections": len(self.connections),
            "max_connections": self.cfg.max_connections,
            "accepted": self.accepted,
            "refused": self.refused,
            "shed": self.shed,
            "timed_out": self.timed_out,
            "accept_pauses": self.accept_pauses,
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
