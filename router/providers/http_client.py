"""HTTP/1.1 to providers: a keep-alive pool per origin, TLS, request bodies sent whole,
responses read whole or streamed as they arrive, and one deadline per exchange.

At most ``max_connections_per_origin`` connections (256 unless configured) are open to
one origin at once, idle ones included: a request that finds them all busy waits for one
to come free, within its deadline, rather than opening another, so a burst of requests
cannot open thousands of sockets to one provider.

It replaces a general-purpose client on the router's hot path. Per request that client
built a URL object, a request object, merged headers, entered trace and timer contexts
and picked a payload writer: about a third of the router's own time, more than the
router's routing and translation together. Providers need none of it: one method (POST
with a JSON body), no cookies, no redirects, no proxies, no compression (we ask for
``identity``). Parsing is httptools (llhttp, the parser uvicorn serves the router with).

A request goes out once. It is sent again, once, on a new connection, only when it
provably never left: the pooled connection it was given turned out closed when the
request was written to it (the provider closed it while it sat idle, and the write
failed at once). A request that was written is never sent again, whatever happens next:
a provider that read it may already be working on it (and billing it), so a connection
that closes before the response is a failure the caller sees.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

# Unread response bytes at which the socket stops being read until the reader catches up.
PAUSE_READING_BYTES = 1 << 20
# Connections open at once to one origin, in use or idle, unless the client is told otherwise.
DEFAULT_MAX_CONNECTIONS_PER_ORIGIN = 256


class TransportError(Exception):
    """The exchange failed below HTTP: the connection was refused, reset or closed before
    the response ended, or the response could not be parsed."""


class BodyTooLarge(Exception):
    """The response body is longer than its reader takes; the rest of it is not read."""


class _NotSent(TransportError):
    """The connection was closed when the request was written to it: nothing reached
    the provider, so the request may be sent on another connection."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[Origin, str, bytes]:
    """The origin, the request target and the Host header of ``url``; cached, as the
    router calls the same few URLs over and over."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if port == default else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        host = f"[{parts.hostname}]" + ("" if port == default else f":{port}")
    return Origin(parts.scheme, parts.hostname, port), target, host.encode("idna")


class _Connection(asyncio.Protocol):
    """One connection; one exchange at a time, its response parsed as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.begin()

    def begin(self) -> None:
        """Reset the per-exchange state before a request is written."""
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.failure: BaseException | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(TransportError(f"malformed response: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._reads_until_close():
            self.complete = True
            self._wake()
        elif not self.complete:
            self.fail(TransportError("the connection closed before the response ended"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        # Read here: the parser forgets it once the message is complete.
        self.keep_alive = self._parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered >= PAUSE_READING_BYTES and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # the exchange
    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` (raised to its reader) and drop the connection."""
        if self.failure is None:
            self.failure = error
        self.abort()
        self._wake()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return (
            self.complete
            and self.failure is None
            and not self.closed
            and not self._body
            and self.keep_alive
        )

    def take(self) -> bytes:
        """The body bytes received and not yet taken."""
        data = b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self) -> None:
        """Until something arrives (headers, body, the end) or the exchange fails."""
        if self.failure is not None:
            raise self.failure
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.failure is not None:
            raise self.failure

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _reads_until_close(self) -> bool:
        # Neither a length nor chunked framing: the body ends when the connection does.
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )


class Response:
    """A provider's response, once its status and headers have arrived; read it with
    :meth:`read` or :meth:`read_some`, then :meth:`release` it (which drops the connection
    of a response not read to its end: how a provider learns that nobody reads its stream)."""

    def __init__(self, client: HTTPClient, origin: Origin, connection: _Connection) -> None:
        self._client = client
        self._origin = origin
        self._connection = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers

    async def read(self, limit: int | None = None) -> bytes:
        """The body, or its first ``limit`` bytes (the rest is not read)."""
        connection = self._connection
        parts = []
        size = 0
        while True:
            if connection._body:
                part = connection.take()
                parts.append(part)
                size += len(part)
            if connection.complete or (limit is not None and size >= limit):
                body = b"".join(parts)
                return body if limit is None else body[:limit]
            await connection.wait()

    async def read_whole(self, max_bytes: int) -> bytes:
        """The whole body; BodyTooLarge when it is longer than ``max_bytes``, known from
        Content-Length before any of it is read, else once the bytes read pass it, so no
        more than ``max_bytes`` and one socket read's worth is ever held."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"the body is {declared} bytes, over {max_bytes}")
        body = await self.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise BodyTooLarge(f"the body is over {max_bytes} bytes")
        return body

    async def read_some(self) -> bytes:
        """The body bytes that arrived since the last call (several network reads when
        the reader fell behind), waiting for some; ``b""`` once the body has ended."""
        connection = self._connection
        while not connection._body:
            if connection.complete:
                return b""
            await connection.wait()
        return connection.take()

    def release(self) -> None:
        """Return the connection to the pool if the response was read to its end, close it
        otherwise."""
        self._client._release(self._origin, self._connection)


class HTTPClient:
    """The router's connections to providers; opened on the serving loop."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        max_connections_per_origin: int = DEFAULT_MAX_CONNECTIONS_PER_ORIGIN,
    ) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        # Every connection open (or being opened) to an origin, idle ones included.
        self._open: dict[Origin, set[_Connection]] = {}
        # Requests waiting for a connection to an origin that is at its cap, oldest first.
        self._waiting: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._max_connections = max_connections_per_origin
        self._deadlines: dict[_Connection, asyncio.TimerHandle] = {}
        # Certificates are verified against the system's trust store unless a context
        # (a private CA, say) is given.
        self._ssl = ssl_context

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float | None
    ) -> Response:
        """Send the request; the response once its headers have arrived. Raises
        TransportError or, past ``timeout_s`` from now (which also bounds waiting for a
        free connection and reading the body), TimeoutError; ValueError for a header
        value with a line break."""
        origin, target, host = _split(url)
        head = [b"POST ", target.encode(), b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name}: line breaks are not allowed in a value")
            head += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        head += (b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body)
        request = b"".join(head)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        connection, pooled = await self._acquire(origin, deadline, reuse=True)
        if pooled:
            try:
                return await self._exchange(origin, connection, request, deadline)
            except _NotSent:
                # The provider had closed the idle connection: on a new one.
                connection, _ = await self._acquire(origin, deadline, reuse=False)
        return await self._exchange(origin, connection, request, deadline)

    async def _exchange(
        self, origin: Origin, connection: _Connection, request: bytes, deadline: float | None
    ) -> Response:
        connection.begin()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._deadlines[connection] = loop.call_at(
                deadline, connection.fail, TimeoutError("the provider did not answer in time")
            )
        transport = connection.transport
        assert transport is not None
        try:
            transport.write(request)
            # A write to a connection the peer has reset fails at once, and closes it.
            if transport.is_closing():
                raise _NotSent("the connection was closed before the request was sent")
            while not connection.headers_done:
                await connection.wait()
        except BaseException:
            connection.abort()
            self._release(origin, connection)
            raise
        return Response(self, origin, connection)

    async def _acquire(
        self, origin: Origin, deadline: float | None, *, reuse: bool
    ) -> tuple[_Connection, bool]:
        """A connection to ``origin`` and whether it was pooled: an idle one if ``reuse``
        and one is open, else a new one once the origin is under its cap, waiting until
        ``deadline`` for a connection to come free."""
        while True:
            if reuse and (pooled := self._pooled(origin)) is not None:
                return pooled, True
            connections = self._open.setdefault(origin, set())
            if len(connections) < self._max_connections:
                connection = _Connection()
                connections.add(connection)  # its place is taken while it connects
                try:
                    await self._connect(origin, connection, deadline)
                except BaseException:
                    self._forget(origin, connection)
                    raise
                return connection, False
            idle = self._idle.get(origin)
            if idle:  # a new connection is wanted, not these: one makes room
                self._discard(origin, idle.pop())
                continue
            await self._wait_for_room(origin, deadline)

    async def _wait_for_room(self, origin: Origin, deadline: float | None) -> None:
        """Until a connection to ``origin`` is released or closed; TimeoutError at
        ``deadline``."""
        waiter = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(origin, deque())
        waiting.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake(origin)  # woken, but it will not take the room: the next may
            elif waiter in waiting:
                waiting.remove(waiter)
            if isinstance(error, TimeoutError):
                raise TimeoutError("no connection to the provider came free in time") from None
            raise

    def _wake(self, origin: Origin) -> None:
        """Tell the longest-waiting request for ``origin`` that it may find room now."""
        waiting = self._waiting.get(origin)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _pooled(self, origin: Origin) -> _Connection | None:
        """An idle connection to ``origin`` that is still open, as far as is known yet."""
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if not connection.closed and transport is not None and not transport.is_closing():
                return connection
            self._forget(origin, connection)
        return None

    async def _connect(
        self, origin: Origin, connection: _Connection, deadline: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        secure = origin.scheme == "https"
        if secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        connecting = loop.create_connection(
            lambda: connection,
            origin.host,
            origin.port,
            ssl=self._ssl if secure else None,
            server_hostname=origin.host if secure else None,
        )
        try:
            async with asyncio.timeout_at(deadline):
                await connecting
        except OSError as error:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            raise TransportError(f"could not connect: {error}") from None

    def _release(self, origin: Origin, connection: _Connection) -> None:
        deadline = self._deadlines.pop(connection, None)
        if deadline is not None:
            deadline.cancel()
        if connection.reusable() and connection in self._open.get(origin, ()):
            self._idle.setdefault(origin, []).append(connection)
            self._wake(origin)
        else:
            self._discard(origin, connection)

    def _discard(self, origin: Origin, connection: _Connection) -> None:
        connection.abort()
        self._forget(origin, connection)

    def _forget(self, origin: Origin, connection: _Connection) -> None:
        """Free the place of a connection that is closed, or was never opened."""
        connections = self._open.get(origin)
        if connections is not None and connection in connections:
            connections.remove(connection)
            self._wake(origin)

    async def close(self) -> None:
        for connections in self._open.values():
            for connection in connections:
                connection.abort()
        self._open.clear()
        self._idle.clear()
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()
        for waiting in self._waiting.values():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_exception(TransportError("the provider client was closed"))
        self._waiting.clear()
