"""Raw loopback HTTP/1.1 servers for the provider client's tests: each answers byte for
byte what its handler writes, so a test controls framing, timing and closes exactly. A
plain module, like ``fake_upstream``, for the test folders that need one."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer], Awaitable[None]]


async def read_request(reader: Reader) -> tuple[bytes, bytes]:
    """The head and the body of one request (the client always sends Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def reply(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body


def answers_once(raw: bytes) -> Handler:
    """Reads one request, writes ``raw``, then closes the connection without saying so
    (no "Connection: close"), as servers do on an idle timeout."""

    async def handler(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()

    return handler


class EndlessBody:
    """A handler whose 200 body never ends: chunks of JSON whitespace (valid, and never
    complete) until the client stops reading. ``written`` counts what got out before the
    writes failed; ``dropped`` is set once they have."""

    def __init__(self) -> None:
        self.written = 0
        self.dropped = asyncio.Event()

    async def __call__(self, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b" " * 65536
        try:
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                self.written += len(piece)
        finally:
            self.dropped.set()


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def handle(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator:
    server = Server(handler)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ssl_context)
    port = listener.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield server, f"{scheme}://127.0.0.1:{port}"
    finally:
        listener.close()
