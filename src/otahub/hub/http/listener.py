"""The hub's HTTP listener: GET and HEAD answered here, file bodies sent with sendfile.

uvicorn has no zero-copy path (no ``http.response.pathsend`` or
``zerocopysend``), so every firmware byte went through user space. This
listener owns the socket instead. Each connection's requests are read here;
a request without a body (GET, HEAD) is run through the same ASGI app, with
the ``http.response.zerocopysend`` and ``http.response.pathsend``
extensions, which ``files.FileStreamResponse`` answers by handing over an
open descriptor and a byte range: the kernel copies those pages into the
socket (``os.sendfile``) with no byte in user space. The routes, their auth
and their header rules stay where they are; the listener only moves bytes.

A GET or HEAD of a download route (firmware content, thin-edge file
transfer, EnOS and ThingsBoard downloads) that the app was seen to route
there skips the framework: the route's own handler runs directly
(``direct.py``); docs/benchmarks.md has what that saves.

Anything else (a request with a body, an upgrade, a malformed head) hands
the connection, with what was read of it, to uvicorn's own protocol, which
goes on with it exactly as if uvicorn had accepted it: uploads, the admin
API and error answers behave as before, except that a request body with no
new byte for a minute is cut (uvicorn would wait for it as long as the
client keeps the connection open, and an upload keeps its temporary file).

The socket is a plain non-blocking socket the loop polls only while this
listener waits on it, because uvloop's transports offer no sendfile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools
import uvicorn
from starlette.requests import Request

from otahub.hub.http.direct import DirectRoutes

log = logging.getLogger("otahub.hub.http")

__all__ = ["HubHttpServer", "ListenFailed"]

# Read size per recv; a request head must fit in MAX_HEAD or uvicorn gets it.
_RECV = 64 * 1024
MAX_HEAD = 64 * 1024
# At most this much per sendfile call (Linux caps one call near 2 GiB).
_SENDFILE_MAX = 1 << 30
# A file body up to this size is read and sent with its head (see _Exchange._file).
_INLINE = 64 * 1024
_EXTENSIONS: dict[str, dict[object, object]] = {
    "http.response.zerocopysend": {},
    "http.response.pathsend": {},
}
_NO_BODY_STATUS = frozenset({204, 304})


class ListenFailed(Exception):
    """The listening socket could not be bound."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HubHttpServer(uvicorn.Server):
    """uvicorn's server (lifespan, handed-over connections, shutdown) on our own socket.

    Signal handling is the hub's, not uvicorn's.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._handed_over: set[_HandedOver] = set()
        #: seconds a handed-over request may wait for more of its body
        self.body_timeout = _BODY_TIMEOUT

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one given for 0)."""
        assert self._listener is not None
        port: int = self._listener.getsockname()[1]
        return port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        try:
            self._listener = _bind(config.host, config.port, config.backlog)
        except OSError as exc:
            raise ListenFailed(exc.strerror or str(exc)) from exc
        # No listener of uvicorn's own: it only runs the lifespan and the
        # connections handed to it.
        await super().startup(sockets=[])
        self._accepting = asyncio.create_task(self._accept(self._listener), name="HTTP accept")
        self._sweeping = asyncio.create_task(self._sweep(), name="HTTP idle sweep")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in (self._accepting, self._sweeping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections):
            connection.shutdown()
        await asyncio.gather(self._drain(), super().shutdown(sockets=sockets))

    async def _drain(self) -> None:
        """Let responses under way finish within the graceful timeout, then cut them."""
        tasks = [connection.task for connection in self._connections]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.config.timeout_graceful_shutdown)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _sweep(self) -> None:
        """Close connections that waited too long for a request, the rest of a head
        or, once handed over, more of a request body."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            now = loop.time()
            for connection in list(self._connections):
                if connection.expired(now):
                    connection.task.cancel()
            for handed in list(self._handed_over):
                handed.sweep(now, self.body_timeout)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and the like: keep serving the connections we have
                log.warning("HTTP listener: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, sock, _address(peer), _address(sock.getsockname()))
            self._connections.add(connection)
            connection.task.add_done_callback(self._ended(connection))

    def _ended(self, connection: _Connection) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._connections.discard(connection)

        return forget

    def direct_routes(self) -> DirectRoutes | None:
        """The app's routes this listener may run without the framework, if any."""
        state = getattr(self.config.app, "state", None)
        routes = getattr(state, "direct_routes", None) if state is not None else None
        return routes if isinstance(routes, DirectRoutes) and len(routes) else None

    def hand_over(self, sock: socket.socket, received: bytes) -> asyncio.Task[None]:
        """Give a connection, with the bytes already read from it, to uvicorn's protocol."""
        config = self.config
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            inner: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return _HandedOver(inner, received, self._handed_over)

        async def connect() -> None:
            await loop.connect_accepted_socket(protocol, sock)

        return asyncio.ensure_future(connect())


class _HandedOver(asyncio.Protocol):
    """Starts uvicorn's protocol with the bytes this listener already read, then
    passes everything on to it, watching one thing uvicorn does not: a request
    body that stops arriving.

    The bytes read here must reach uvicorn's protocol before anything the
    transport reads next, so they are fed from ``connection_made``. uvicorn
    waits for the rest of a body as long as the client keeps the connection
    open, holding the upload's temporary file; a body with no new byte for
    ``body_timeout`` seconds, while the transport was reading, cuts the
    connection, which the app sees as the client's disconnect.
    """

    def __init__(
        self, inner: asyncio.Protocol, received: bytes, registry: set[_HandedOver]
    ) -> None:
        self.inner = inner
        self.received = received
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        # only framing is tracked: no per-byte callbacks
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.in_body = False
        self.last = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.last = asyncio.get_running_loop().time()
        self.registry.add(self)
        self.inner.connection_made(transport)
        if self.received:
            self.data_received(self.received)
            self.received = b""

    def data_received(self, data: bytes) -> None:
        self.last = asyncio.get_running_loop().time()
        if self.parser is not None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:  # uvicorn answers it; an upgrade is its too
                self.parser = None
                self.in_body = False
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.in_body = True

    def on_message_complete(self) -> None:
        self.in_body = False

    def sweep(self, now: float, limit: float) -> None:
        """Cut the connection if its request body stalled for ``limit`` seconds."""
        transport = self.transport
        if transport is None or not self.in_body or transport.is_closing():
            return
        if not transport.is_reading():  # the app is behind, not the client
            self.last = now
            return
        if now - self.last > limit:
            log.warning(
                "HTTP: closed a connection from %s: no request body bytes for %.0f s",
                _address(transport.get_extra_info("peername")),
                limit,
            )
            self.in_body = False
            transport.abort()


def _bind(host: str | None, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _address(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return None


@dataclass(slots=True)
class _Head:
    """A request head as the parser saw it."""

    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False  # a message without body: nothing follows the head

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass(slots=True)
class _Request:
    method: str
    http_version: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool


def parse_request(head: bytes) -> _Request | None:
    """The request in ``head`` (up to and with its blank line) if this listener takes it.

    It takes GET and HEAD with no body and no upgrade; None hands the
    connection to uvicorn, which answers everything else (errors included).
    """
    parsed = _Head()
    parser = httptools.HttpRequestParser(parsed)
    try:
        parser.feed_data(head)
    except httptools.HttpParserError:
        return None
    method = parser.get_method()
    if method not in (b"GET", b"HEAD") or not parsed.complete or parser.should_upgrade():
        return None
    for name, value in parsed.headers:
        if name in (b"content-length", b"transfer-encoding") and value.strip() not in (b"", b"0"):
            return None
        if name in (b"expect", b"upgrade"):
            return None
    try:
        url = httptools.parse_url(parsed.url)
    except httptools.HttpParserInvalidURLError:
        return None
    if url.path is None or not url.path.startswith(b"/"):
        return None
    return _Request(
        method=method.decode("ascii"),
        http_version=parser.get_http_version(),
        raw_path=url.path,
        query=url.query or b"",
        headers=parsed.headers,
        keep_alive=parser.should_keep_alive(),
    )


class _Connection:
    """One client connection, served here until a request needs uvicorn.

    The socket stays registered for reading for the connection's life (a
    read callback fills ``inbox``), rather than once per read, and idle
    connections are timed out by the server's sweep rather than a timer per
    read: both showed in the CPU per request.
    """

    def __init__(
        self,
        server: HubHttpServer,
        sock: socket.socket,
        peer: tuple[str, int] | None,
        local: tuple[str, int] | None,
    ) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.local = local
        self.loop = asyncio.get_running_loop()
        self.idle = True
        self.closing = False
        self.since = self.loop.time()  # when the connection became idle, or a head began
        self.inbox = bytearray()
        self.eof = False
        self.reading = False
        self._arrived: asyncio.Future[None] | None = None
        self._read()
        self.task = asyncio.create_task(self._run(), name=f"HTTP {peer}")

    def shutdown(self) -> None:
        """Finish the response under way, if any, and close."""
        self.closing = True
        if self.idle:
            self.task.cancel()

    def expired(self, now: float) -> bool:
        """Whether it waited too long for a request (keep-alive) or the rest of a head."""
        limit = self.server.config.timeout_keep_alive if self.idle else _HEAD_TIMEOUT
        return self.waiting and now - self.since > limit

    waiting = False  # waiting for request bytes, as opposed to answering

    def _read(self) -> None:
        if not self.reading and not self.eof:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.inbox += data
            if len(self.inbox) > MAX_HEAD:
                self._stop_reading()  # enough to decide on; resumed when it is taken
        else:
            self.eof = True
            self._stop_reading()
        arrived = self._arrived
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    async def _more(self) -> None:
        self._read()
        self._arrived = self.loop.create_future()
        self.waiting = True
        try:
            await self._arrived
        finally:
            self.waiting = False
            self._arrived = None

    async def _run(self) -> None:
        inbox = self.inbox
        handed_over = False
        try:
            while True:
                end = inbox.find(b"\r\n\r\n")
                while end < 0:
                    if self.eof:
                        return  # the client closed its side with no whole request
                    if len(inbox) > MAX_HEAD:
                        break
                    idle = not inbox
                    if idle != self.idle or idle:
                        self.since = self.loop.time()
                    self.idle = idle
                    if self._idle_at_shutdown():
                        return
                    await self._more()
                    end = inbox.find(b"\r\n\r\n")
                self.idle = False
                request = None if end < 0 else parse_request(bytes(inbox[: end + 4]))
                if request is None:
                    handed_over = True
                    self._stop_reading()
                    await self.server.hand_over(self.sock, bytes(inbox))
                    return
                del inbox[: end + 4]
                self._read()
                keep_alive = await _Exchange(self, request).run()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            if not handed_over:
                self._stop_reading()
                self.sock.close()

    def _idle_at_shutdown(self) -> bool:
        return self.closing and self.idle

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """All of ``data`` (a head goes out as its own segment: with MSG_MORE
        the benchmark's range rounds were no faster, see docs/benchmarks.md)."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await self._writable()
                continue
            view = view[sent:]

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of ``fd`` from ``offset``, page cache to socket."""
        out = self.sock.fileno()
        while count > 0:
            try:
                sent = os.sendfile(out, fd, offset, min(count, _SENDFILE_MAX))
            except BlockingIOError:
                await self._writable()
                continue
            if sent == 0:
                raise EOFError("the file ended before the bytes announced")
            offset += sent
            count -= sent

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            loop.remove_writer(fd)


_HEAD_TIMEOUT = 30.0  # seconds for the rest of a head once its first bytes came
_BODY_TIMEOUT = 60.0  # seconds a handed-over request body may go without a byte
_SWEEP_EVERY = 0.5  # seconds between two looks for connections that waited too long


class _Exchange:
    """One request and its response, run through the ASGI app."""

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.head_only = request.method == "HEAD"
        self.keep_alive = request.keep_alive and request.http_version == "1.1"
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # the app sent http.response.start
        self.head_sent = False
        self.complete = False
        self.broken = False  # the client went away; what follows is dropped
        self.chunked = False
        self.length: int | None = None  # body bytes still owed under Content-Length
        self.done = asyncio.Event()
        self.asked = False
        self._head = b""  # the response head, until it goes out with the first body bytes

    async def run(self) -> bool:
        """Serve the request; whether the connection may carry another one."""
        connection = self.connection
        request = self.request
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "server": connection.local,
            "client": connection.peer,
            "scheme": "http",
            "method": request.method,
            "root_path": connection.server.config.root_path,
            "path": unquote(request.raw_path.decode("ascii", "surrogateescape")),
            "raw_path": request.raw_path,
            "query_string": request.query,
            "headers": request.headers,
            "state": dict(connection.server.lifespan.state),
            "extensions": _EXTENSIONS,
        }
        try:
            await self._serve(scope)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("HTTP %s %s failed", request.method, scope["path"])
            if not self.started and not self.broken:
                await self._plain(500, b"Internal Server Error")
            return False
        finally:
            self.done.set()
        if not self.complete:
            if not self.started and not self.broken:
                log.error("HTTP %s %s: the app sent no response", request.method, scope["path"])
                await self._plain(500, b"Internal Server Error")
            return False
        return self.keep_alive and not self.broken and not self.connection.closing

    async def _serve(self, scope: dict[str, Any]) -> None:
        """Run a direct route's handler (``direct.py``) if one answers, else the app."""
        server = self.connection.server
        config = server.config
        routes = server.direct_routes()
        if routes is not None and not config.root_path and not _forwarded(self.request.headers):
            found = routes.lookup(self.request.method, scope["path"])
            if found is not None:
                handler, params = found
                scope["app"] = config.app
                try:
                    response = await handler(Request(scope, self.receive), params)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the app answers it, through its error handling
                    response = None
                    del scope["app"]
                if response is not None:
                    await response(scope, self.receive, self.send)
                    return
        app: Callable[..., Any] = config.loaded_app
        await app(scope, self.receive, self.send)

    async def receive(self) -> dict[str, Any]:
        if not self.asked:
            self.asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
            return
        if not self.started:
            raise RuntimeError(f"{kind} before http.response.start")
        if self.complete:
            raise RuntimeError(f"{kind} after the response ended")
        if kind == "http.response.body":
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            await self._body(body, more)
        elif kind == "http.response.zerocopysend":
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            offset = message.get("offset")
            count = message.get("count")
            start = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else int(offset)
            if count is None:
                count = os.fstat(fd).st_size - start
            await self._file(fd, start, int(count), bool(message.get("more_body", False)))
        elif kind == "http.response.pathsend":
            fd = os.open(message["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                await self._file(fd, 0, os.fstat(fd).st_size, False)
            finally:
                os.close(fd)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    async def _body(self, body: bytes, more: bool) -> None:
        if not self.head_sent:
            self._frame(None if more else len(body))
        await self._out(body, more, sized=len(body))

    async def _file(self, fd: int, offset: int, count: int, more: bool) -> None:
        if not self.head_sent:
            self._frame(None if more else count)
        if self.broken or self.head_only or self.status in _NO_BODY_STATUS:
            await self._out(b"", more, sized=0)
            return
        if self.length is not None:
            self.length -= count
        try:
            if self._head and not self.chunked and count <= _INLINE:
                # One segment and one system call instead of two: for small
                # ranges the second send cost more than copying the bytes.
                body = os.pread(fd, count, offset)
                if len(body) != count:
                    raise EOFError("the file ended before the bytes announced")
                head, self._head = self._head, b""
                await self.connection.write(head + body)
            else:
                await self._flush_head()
                if self.chunked and count:
                    await self.connection.write(b"%x\r\n" % count)
                await self.connection.sendfile(fd, offset, count)
                if self.chunked and count:
                    await self.connection.write(b"\r\n")
            if not more:
                await self._finish()
        except OSError:
            self.broken = True
        if not more:
            self.complete = True

    def _frame(self, length: int | None) -> None:
        """Decide the framing at the first body message: the app's, or a length, or chunks."""
        names = {name.lower() for name, _ in self.headers}
        if self.status in _NO_BODY_STATUS or self.status < 200:
            pass
        elif b"content-length" in names:
            for name, value in self.headers:
                if name.lower() == b"content-length":
                    self.length = int(value)
        elif b"transfer-encoding" in names:
            self.keep_alive = False  # the app frames it itself; the end of the connection ends it
        elif length is not None:
            self.headers.append((b"content-length", b"%d" % length))
            self.length = length
        elif self.request.http_version == "1.1":
            self.headers.append((b"transfer-encoding", b"chunked"))
            self.chunked = not self.head_only
        else:
            self.keep_alive = False
        if self.head_only:
            self.length = None
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, _reason(self.status))]
        for name, value in self.connection.server.server_state.default_headers:
            if name.lower() not in names:
                lines.append(b"%s: %s\r\n" % (name, value))
        lines.extend(b"%s: %s\r\n" % (name, value) for name, value in self.headers)
        if not self.keep_alive or self.connection.closing:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        self._head = b"".join(lines)
        self.head_sent = True

    async def _flush_head(self) -> None:
        head, self._head = self._head, b""
        if head:
            await self.connection.write(head)

    async def _out(self, body: bytes, more: bool, *, sized: int) -> None:
        if not more:
            self.complete = True
        if self.broken:
            return
        if self.head_only or self.status in _NO_BODY_STATUS:
            body = b""
        try:
            if body and self.chunked:
                body = b"%x\r\n%s\r\n" % (len(body), body)
            if body:
                if self.length is not None:
                    self.length -= sized
                await self.connection.write(self._head + body if self._head else body)
                self._head = b""
            else:
                await self._flush_head()
            if not more:
                await self._finish()
        except OSError:
            self.broken = True

    async def _finish(self) -> None:
        if self.chunked:
            await self.connection.write(b"0\r\n\r\n")
        if self.length not in (None, 0):
            # Fewer (or more) bytes than announced: the framing is lost.
            log.error("HTTP %s: the body did not match its Content-Length", self.request.method)
            self.keep_alive = False

    async def _plain(self, status: int, text: bytes) -> None:
        self.status = status
        self.headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self.keep_alive = False
        self.started = True
        self._frame(len(text))
        await self._out(text, False, sized=len(text))


# Looking a status up in HTTPStatus per response was a tenth of the listener's CPU.
_REASONS = {int(status): status.phrase.encode("ascii") for status in HTTPStatus}


def _forwarded(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request carries proxy headers: uvicorn's middleware in the app
    may rewrite its client address from them, so the app serves it."""
    return any(name in _PROXY_HEADERS for name, _value in headers)


_PROXY_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"})


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")
