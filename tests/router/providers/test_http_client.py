"""The provider HTTP client against raw loopback servers that answer byte for byte."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchyard.router.providers.http_client import HTTPClient, TransportError

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


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    http = HTTPClient()
    yield http
    await http.close()


async def test_a_request_carries_its_headers_and_body_and_the_connection_is_reused() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: Reader, writer: Writer) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(reply(b'{"ok":true}', extra=b"Retry-After: 7\r\n"))

    http = HTTPClient()
    async with serving(handler) as (server, url):
        for body in (b'{"n":1}', b'{"n":2}'):
            response = await http.post(url + "/v1/chat?x=1", {"Authorization": "Bearer k"}, body, 5)
            assert (response.status, await response.read()) == (200, b'{"ok":true}')
            assert response.headers["retry-after"] == "7"
            response.release()
        await http.close()
    assert server.connections == 1
    head, body = seen[1]
    assert head.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert f"Host: {url.removeprefix('http://')}".encode() in head
    assert b"Authorization: Bearer k\r\n" in head
    assert body == b'{"n":2}'


async def test_a_chunked_stream_arrives_piece_by_piece(client: HTTPClient) -> None:
    gate = asyncio.Event()

    async def handler(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # the connection stays open for the next request
        writer.write(reply(b"again"))
        await writer.drain()

    async with serving(handler) as (server, url):
        response = await client.post(url, {}, b"{}", 5)
        assert await response.read_some() == b"first"
        gate.set()
        assert await response.read_some() == b"second"
        assert await response.read_some() == b""
        response.release()
        again = await client.post(url, {}, b"{}", 5)
        assert await again.read() == b"again"
        again.release()
    assert server.connections == 1


async def test_an_idle_connection_the_server_closed_is_replaced_once(client: HTTPClient) -> None:
    async with serving(answers_once(reply(b"one request per connection"))) as (server, url):
        for _ in range(3):
            response = await client.post(url, {}, b"{}", 5)
            assert await response.read() == b"one request per connection"
            response.release()
            await asyncio.sleep(0.05)  # the close reaches the client while it is idle
    assert server.connections == 3


async def test_a_request_the_server_read_is_never_sent_again(client: HTTPClient) -> None:
    """A pooled connection that drops after the request was written (the provider may be
    working on it, and billing it) is the caller's failure, not a reason to send it twice."""

    async def handler(reader: Reader, writer: Writer) -> None:
        server.requests.append(await read_request(reader))
        writer.write(reply(b"first"))
        await writer.drain()
        server.requests.append(await read_request(reader))  # on the pooled connection
        await asyncio.sleep(0.2)  # works on it a while, then the connection drops

    async with serving(handler) as (server, url):
        response = await client.post(url, {}, b'{"n":1}', 5)
        assert await response.read() == b"first"
        response.release()
        with pytest.raises(TransportError, match="closed before the response ended"):
            await client.post(url, {}, b'{"n":2}', 5)
    assert [body for _, body in server.requests] == [b'{"n":1}', b'{"n":2}']
    assert server.connections == 1


async def _receive_request(connection: socket.socket) -> bytes:
    """The body of the one request that arrives on ``connection``."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        data += await loop.sock_recv(connection, 65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await loop.sock_recv(connection, 65536)
    return body


async def test_a_request_whose_write_fails_on_a_reset_pooled_connection_goes_on_a_new_one(
    client: HTTPClient,
) -> None:
    """The server reset the idle connection before the client's loop noticed: the write
    fails at once, so the request never left and is sent, once, on a new connection."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        bodies: list[bytes] = []

        async def accept_and_answer(answer: bytes) -> socket.socket:
            connection, _ = await loop.sock_accept(listener)
            bodies.append(await _receive_request(connection))
            await loop.sock_sendall(connection, reply(answer))
            return connection

        serving_first = asyncio.create_task(accept_and_answer(b"one"))
        response = await client.post(url, {}, b'{"n":1}', 5)
        assert await response.read() == b"one"
        response.release()
        first = await serving_first

        serving_second = asyncio.create_task(accept_and_answer(b"two"))
        await asyncio.sleep(0)  # it waits for a connection
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()  # a reset, which the client's loop gets no turn to read before the post
        # Blocking, so that the loop does not run: the reset reaches the client's socket.
        time.sleep(0.05)
        response = await client.post(url, {}, b'{"n":2}', 5)
        assert await response.read() == b"two"
        response.release()
        (await serving_second).close()
    assert bodies == [b'{"n":1}', b'{"n":2}']


async def test_a_response_cut_short_fails_and_is_not_sent_again(client: HTTPClient) -> None:
    cut_short = answers_once(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    async with serving(cut_short) as (server, url):
        response = await client.post(url, {}, b"{}", 5)
        with pytest.raises(TransportError, match="closed before the response ended"):
            await response.read()
        response.release()
    assert server.connections == 1


async def test_a_body_without_length_ends_with_the_connection(client: HTTPClient) -> None:
    unframed = answers_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
    async with serving(unframed) as (_, url):
        response = await client.post(url, {}, b"{}", 5)
        assert await response.read() == b"until the end"
        response.release()


async def test_the_deadline_bounds_the_answer_and_the_body(client: HTTPClient) -> None:
    async def silent(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async def stalls(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with serving(silent) as (_, url):
        with pytest.raises(TimeoutError):
            await client.post(url, {}, b"{}", 0.2)
    async with serving(stalls) as (_, url):
        response = await client.post(url, {}, b"{}", 0.3)
        assert await response.read_some() == b"hi"
        with pytest.raises(TimeoutError):
            await response.read_some()
        response.release()


async def test_read_with_a_limit_stops_there_and_drops_the_connection(client: HTTPClient) -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"a\r\n0123456789\r\n")
        await writer.drain()
        await asyncio.sleep(30)  # a huge error body that never ends

    async with serving(handler) as (server, url):
        response = await client.post(url, {}, b"{}", 5)
        assert response.status == 500
        assert await response.read(4) == b"0123"
        response.release()
        response = await client.post(url, {}, b"{}", 5)
        response.release()
    assert server.connections == 2


async def test_failures_below_http_are_transport_errors(client: HTTPClient) -> None:
    async def garbage(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with serving(garbage) as (_, url):
        with pytest.raises(TransportError, match="malformed response"):
            await client.post(url, {}, b"{}", 5)
    async with serving(garbage) as (_, url):
        pass  # closed: nothing listens on that port any more
    with pytest.raises(TransportError, match="could not connect"):
        await client.post(url, {}, b"{}", 5)
    with pytest.raises(ValueError, match="line breaks"):
        await client.post(url, {"X-Key": "k\r\nInjected: 1"}, b"{}", 5)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_is_verified(tmp_path: Path, client: HTTPClient) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async with serving(answers_once(reply(b"secret")), server_context) as (_, url):
        # The default trust store does not know this certificate.
        with pytest.raises(TransportError, match="could not connect"):
            await client.post(url, {}, b"{}", 5)
        trusting = HTTPClient(ssl.create_default_context(cafile=str(cert)))
        response = await trusting.post(url, {}, b"{}", 5)
        assert await response.read() == b"secret"
        response.release()
        await trusting.close()
