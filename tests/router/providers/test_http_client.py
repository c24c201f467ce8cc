"""The provider HTTP client against raw loopback servers that answer byte for byte."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from raw_http import EndlessBody, Reader, Writer, answers_once, read_request, reply, serving

from switchyard.router.providers.http_client import BodyTooLarge, HTTPClient, TransportError


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


async def exchange_with_one_shot_server(client: HTTPClient, url: str, times: int) -> None:
    """Requests to a server that closes each connection after one answer, each sent once
    the close has reached the client's idle connection."""
    for _ in range(times):
        response = await client.post(url, {}, b"{}", 5)
        assert await response.read() == b"one request per connection"
        response.release()
        await asyncio.sleep(0.05)


async def test_an_idle_connection_the_server_closed_is_replaced_once(client: HTTPClient) -> None:
    async with serving(answers_once(reply(b"one request per connection"))) as (server, url):
        await exchange_with_one_shot_server(client, url, times=3)
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


async def test_requests_beyond_the_connection_cap_wait_for_a_free_one() -> None:
    answer = asyncio.Event()

    async def handler(reader: Reader, writer: Writer) -> None:
        while True:  # keep-alive: one request after another on the connection
            server.requests.append(await read_request(reader))
            await answer.wait()
            writer.write(reply(b"done"))
            await writer.drain()

    http = HTTPClient(max_connections_per_origin=2)

    async def one(url: str) -> bytes:
        response = await http.post(url, {}, b"{}", 30)
        try:
            return await response.read()
        finally:
            response.release()

    async with serving(handler) as (server, url):
        requests = [asyncio.create_task(one(url)) for _ in range(5)]
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time for the other three to connect, were they to
        assert (server.connections, len(server.requests)) == (2, 2)
        answer.set()
        assert await asyncio.gather(*requests) == [b"done"] * 5
        await http.close()
    assert server.connections == 2
    assert len(server.requests) == 5


async def test_a_wait_for_a_free_connection_ends_at_the_request_deadline() -> None:
    async def handler(reader: Reader, writer: Writer) -> None:
        server.requests.append(await read_request(reader))
        await asyncio.sleep(30)

    http = HTTPClient(max_connections_per_origin=1)
    async with serving(handler) as (server, url):
        first = asyncio.create_task(http.post(url, {}, b"{}", 30))
        while not server.requests:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError, match="no connection to the provider came free"):
            await http.post(url, {}, b"{}", 0.2)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await http.close()
    assert (server.connections, len(server.requests)) == (1, 1)


async def test_closed_and_failed_connections_give_their_place_back() -> None:
    http = HTTPClient(max_connections_per_origin=1)
    async with serving(answers_once(reply(b"one request per connection"))) as (server, url):
        await exchange_with_one_shot_server(http, url, times=3)
    assert server.connections == 3
    for _ in range(2):  # nothing listens any more: each refusal frees the place at once
        with pytest.raises(TransportError, match="could not connect"):
            await http.post(url, {}, b"{}", 5)
    await http.close()


async def test_read_whole_refuses_a_body_over_the_cap_without_reading_it(
    client: HTTPClient,
) -> None:
    async def declared(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)

    async with serving(declared) as (_, url):
        response = await client.post(url, {}, b"{}", 30)
        with pytest.raises(BodyTooLarge, match="1000000000 bytes"):
            await response.read_whole(1 << 20)
        response.release()

    endless = EndlessBody()

    async with serving(endless) as (_, url):
        response = await client.post(url, {}, b"{}", 30)
        with pytest.raises(BodyTooLarge, match="over 100000 bytes"):
            await response.read_whole(100_000)
        response.release()
        await asyncio.wait_for(endless.dropped.wait(), 10)
    # What the server got out before its writes failed: socket buffers and one pause
    # threshold, not the endless body.
    assert endless.written < 32 << 20
    async with serving(answers_once(reply(b"x" * 100))) as (_, url):
        response = await client.post(url, {}, b"{}", 5)
        assert await response.read_whole(100) == b"x" * 100
        response.release()


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
