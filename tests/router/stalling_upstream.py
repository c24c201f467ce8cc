"""A loopback provider that takes requests and then stalls, on a raw socket so that what
it sends is exactly what a test says: nothing at all (no status line), or the status
line, headers and first frames of an OpenAI stream and then no token.

It counts the requests it read and notes when the router closes a connection it read one
on, so a test can tell that a request reached it once, and that the router let go of it.
A plain module, like ``fake_upstream``, for the test folders that need one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from provider_payloads import openai_chunk, openai_frame


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# An OpenAI stream's start: the headers, and the role chunk every host sends before the
# first token (a routed stream holds it back until a token comes).
STREAM_HEADERS_AND_ROLE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    + _chunk(openai_frame(openai_chunk({"role": "assistant", "content": ""})).encode())
)


class StallingUpstream:
    def __init__(self, preamble: bytes = b"") -> None:
        """``preamble``: sent once a request has been read, before the stall."""
        self.preamble = preamble
        self.url = ""  # set once served
        self.requests = 0
        # Set when a request has been read, and when the router closed its connection.
        self.request_read = asyncio.Event()
        self.closed = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        read = False
        try:
            await reader.readuntil(b"\r\n\r\n")  # the head; the body is left unread
            read = True
            self.requests += 1
            self.request_read.set()
            writer.write(self.preamble)
            await writer.drain()
            await reader.read()  # until the router closes the connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if read:
                self.closed.set()
            self._writers.discard(writer)
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[StallingUpstream]:
        listener = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            listener.close()
            for writer in list(self._writers):  # connections the router still holds
                writer.close()
