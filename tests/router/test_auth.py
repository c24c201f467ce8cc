"""Client authentication as a raw HTTP client sends it: the router takes exactly one
``Authorization`` header."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from router_harness import serve_router

from switchyard.router.config import parse_config

KEY = "sk-client-auth"
CHAT = json.dumps({"model": "raw/m", "messages": [{"role": "user", "content": "Hi"}]}).encode()


async def exchange(url: str, request: bytes) -> tuple[int, dict]:
    """Send ``request`` as it is; the status and JSON body of the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # the request says Connection: close
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def post(*authorization: str) -> bytes:
    headers = "".join(f"Authorization: {value}\r\n" for value in authorization)
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n{headers}\r\n"
    ).encode() + CHAT


async def test_two_authorization_headers_are_refused_even_if_one_is_valid() -> None:
    config = parse_config(
        {
            "auth": {"keys": [KEY]},
            # Nothing listens there: a request that passes authentication gets a 502.
            "providers": {
                "raw": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}
            },
        }
    )
    async with serve_router(config, environ={}) as url:
        for pair in ((f"Bearer {KEY}", "Bearer other"), ("Bearer other", f"Bearer {KEY}")):
            status, body = await exchange(url, post(*pair))
            assert status == 401
            assert body["error"]["message"] == "2 Authorization headers: send exactly one"
            assert body["error"]["code"] == "multiple_authorization_headers"
        status, _ = await exchange(url, post(f"Bearer {KEY}", f"Bearer {KEY}"))
        assert status == 401
        status, _ = await exchange(url, post(f"Bearer {KEY}"))
        assert status == 502
        models = b"GET /v1/models HTTP/1.1\r\nHost: router\r\nConnection: close\r\n"
        doubled = models + f"Authorization: Bearer {KEY}\r\n".encode() * 2 + b"\r\n"
        status, _ = await exchange(url, doubled)
        assert status == 401
